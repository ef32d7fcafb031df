//! The control API between flatnetd and its clients (the CLI, the CNI
//! plugin): one JSON request line, one JSON response line, per connection on
//! a root-only unix socket. Every message carries `version`; a daemon answers
//! a version it does not speak with an `unsupported_version` error instead
//! of guessing.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ipam::{AllocationInfo, BlockInfo};

/// The protocol version this build speaks.
pub const API_VERSION: u32 = 1;
/// Largest request line flatnetd reads: requests are small, and the bound
/// is what one slow client can make the daemon hold.
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest answer a client reads: lists grow with the cluster (10,000
/// endpoints are a few MiB), so this only guards against a runaway peer.
pub const MAX_RESPONSE: usize = 256 << 20;

/// One attachment: a container's interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct AttachmentRef {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentRef {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        AttachmentRef {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

/// The IPAM handle and endpoint key as text: `<container id>/<ifname>`.
impl std::fmt::Display for AttachmentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// A handle text that is not `<container id>/<ifname>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad attachment handle {0:?}: expected <container id>/<ifname>")]
pub struct BadHandle(pub String);

/// Parses `<container id>/<ifname>`, splitting at the last '/' (an ifname
/// has none; a container id may).
impl std::str::FromStr for AttachmentRef {
    type Err = BadHandle;
    fn from_str(s: &str) -> Result<Self, BadHandle> {
        match s.rsplit_once('/') {
            Some((id, ifn)) if !id.is_empty() && !ifn.is_empty() => Ok(AttachmentRef::new(id, ifn)),
            _ => Err(BadHandle(s.to_string())),
        }
    }
}

impl From<&AttachmentRef> for flatnet_ipam::Handle {
    fn from(r: &AttachmentRef) -> Self {
        flatnet_ipam::Handle::new(r.container_id.clone(), r.ifname.clone())
    }
}

impl From<flatnet_ipam::Handle> for AttachmentRef {
    fn from(h: flatnet_ipam::Handle) -> Self {
        AttachmentRef::new(h.container_id, h.ifname)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddArgs {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    #[serde(default)]
    pub app: Option<String>,
    /// The CNI network name (GC of one network leaves others alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DelArgs {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    #[serde(default)]
    pub netns: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckArgs {
    #[serde(flatten)]
    pub attachment: AttachmentRef,
    pub netns: String,
    /// Addresses the runtime's prevResult says the attachment has.
    #[serde(default)]
    pub expect_ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GcArgs {
    pub valid: Vec<AttachmentRef>,
    /// Only attachments made for this CNI network are collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// A request, tagged by `op`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Add(AddArgs),
    Del(DelArgs),
    Check(CheckArgs),
    Gc(GcArgs),
    Status,
    Endpoints,
    IpamShow,
    IpamCheck,
    /// `flatnet bgp neighbors` (flatnet-bgpd answers it too).
    BgpNeighbors,
    /// `flatnet bgp routes [--received-from P | --advertised-to P]`.
    BgpRoutes(flatnet_bgp::speaker::control::RoutesArgs),
    /// `flatnet fib`: flatnet's (protocol 200) routes in the kernel.
    Fib,
    /// `flatnet reload` (like SIGHUP): re-read the config file, apply the peers.
    Reload,
    /// Stores a policy document (validated again by flatnetd).
    PolicyApply(PolicyApplyArgs),
    PolicyList,
    PolicyShow(PolicyName),
    PolicyDelete(PolicyName),
    PolicyTrace(crate::policy::trace::Flow),
    PolicyStats,
    /// `flatnet policy defaults set`: the cluster defaults in the datastore.
    PolicyDefaultsSet(crate::policy::defaults::DefaultsChange),
    /// `flatnet policy defaults`: stored and effective defaults.
    PolicyDefaultsShow,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyApplyArgs {
    pub policy: crate::policy::RawPolicy,
    /// Compare-and-swap: the revision read (0: must be new); absent: replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_revision: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyName {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    /// Parses one request strictly: the operation is chosen by its name
    /// only (serde alone would also take a variant's position: `{"op": 3}`).
    pub fn parse(line: &str) -> Result<Request, String> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        match v.get("op") {
            Some(serde_json::Value::String(_)) => {}
            Some(other) => return Err(format!("`op` must be an operation name, found {other}")),
            None => return Err("missing field `op`".into()),
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
}

/// The result of ADD (and of CHECK/endpoints listings).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    /// The node (flatnetd `node.name`) the container runs on.
    #[serde(default)]
    pub node: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub host_ifname: String,
    pub host_mac: String,
    pub container_mac: String,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    /// The veths' MTU; absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The resolver a container should use (`[dns] enabled`): set in ADD
    /// answers only, never stored in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
}

/// The CNI result's `dns`: flatnetd's listener and the discovery zone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsInfo {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    pub version: String,
    pub uptime_seconds: u64,
    /// flatnetd is up, its datastore answers and, when BGP peers are
    /// configured, at least one session is Established.
    pub ready: bool,
    /// Why not ready (absent when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub datastore: String,
    pub datastore_reachable: bool,
    pub routing: String,
    pub endpoints: usize,
    /// Configured BGP peers and their session state (empty: no BGP).
    #[serde(default)]
    pub peers: Vec<PeerState>,
}

/// One BGP peer as STATUS shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerState {
    pub address: std::net::IpAddr,
    pub asn: u32,
    /// RFC 4271 FSM state (serialised by name, `Idle` .. `Established`).
    pub state: flatnet_bgp::fsm::State,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IpamView {
    pub blocks: Vec<BlockInfo>,
    pub allocations: Vec<AllocationInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GcReport {
    pub removed: Vec<String>,
}

/// Successful answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Answer {
    Endpoint(Endpoint),
    Done,
    Gc(GcReport),
    Status(Status),
    Endpoints(Vec<Endpoint>),
    Ipam(IpamView),
    IpamCheck(Vec<String>),
    /// The revision a policy document was stored at.
    PolicyRevision(i64),
    Policies(Vec<crate::policy::store::StoredPolicy>),
    Policy(crate::policy::store::StoredPolicy),
    Trace(crate::policy::trace::Verdict),
    PolicyStats(Vec<crate::policy::enforce::EdgeCounter>),
    PolicyDefaults(crate::policy::defaults::DefaultsView),
    BgpNeighbors(Vec<flatnet_bgp::speaker::control::Neighbor>),
    BgpRoutes(Vec<flatnet_bgp::speaker::control::Route>),
    Fib(Vec<FibRoute>),
    Reloaded(crate::routing::reload::ReloadReport),
}

/// One route flatnet has in the kernel (route protocol 200), as `ip route`
/// shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FibRoute {
    /// `10.244.1.0/26`.
    pub prefix: String,
    /// `unicast`, `blackhole`, ...
    pub kind: String,
    /// Routing table id.
    pub table: u32,
    pub metric: Option<u32>,
    /// Nexthop object id, when the route uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop_id: Option<u32>,
    /// Next hops (several: ECMP).
    pub nexthops: Vec<FibNexthop>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FibNexthop {
    pub gateway: Option<IpAddr>,
    /// Interface name (or index when the name is unknown).
    pub dev: Option<String>,
    /// ECMP weight (1 = equal).
    pub weight: u16,
}

/// Failure classes a client can act on (the CNI plugin maps them to codes).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    UnsupportedVersion,
    InvalidRequest,
    NetnsNotFound,
    /// A CNI environment value that cannot be right (e.g. `CNI_NETNS`
    /// naming the host's own namespace).
    InvalidEnvironment,
    IfnameTaken,
    PoolExhausted,
    DatastoreUnavailable,
    CheckFailed,
    NotFound,
    /// A policy document was changed by someone else since it was read.
    Conflict,
    /// Application policy is not enabled on this host.
    PolicyDisabled,
    /// flatnetd serves `api.max_connections` clients already.
    Busy,
    Internal,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub version: u32,
    #[serde(flatten)]
    pub result: Outcome,
}

/// One per connection and short-lived: the size of the ok variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Answer),
    Error(ApiError),
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// flatnetd is not running or not listening (CNI: try again later).
    #[error("flatnetd is not reachable at {path}: {source}")]
    Unreachable {
        path: String,
        source: std::io::Error,
    },
    /// The connection broke or the answer was not understood.
    #[error("talking to flatnetd: {0}")]
    Protocol(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Sends one request and waits for its answer (blocking; the CNI plugin and
/// the CLI are short-lived processes and need no runtime).
pub fn call(socket: &Path, op: Op, timeout: Duration) -> Result<Answer, ClientError> {
    let mut s = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable {
        path: socket.display().to_string(),
        source,
    })?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let req = Request {
        version: API_VERSION,
        op,
    };
    let mut line = serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    // A daemon that refuses early (busy) may close before taking all of
    // the request: its answer is still there to read.
    let sent = s.write_all(&line);
    let mut r = BufReader::new(s).take(MAX_RESPONSE as u64);
    let mut buf = String::new();
    let got = r.read_line(&mut buf);
    if let Err(e) = sent
        && buf.is_empty()
    {
        return Err(ClientError::Protocol(format!("send: {e}")));
    }
    got.map_err(|e| ClientError::Protocol(format!("receive: {e}")))?;
    if buf.is_empty() {
        return Err(ClientError::Protocol(
            "flatnetd closed the connection without answering".into(),
        ));
    }
    let resp: Response = serde_json::from_str(&buf)
        .map_err(|e| ClientError::Protocol(format!("bad answer: {e}")))?;
    match resp.result {
        Outcome::Ok(a) => Ok(a),
        Outcome::Error(e) => Err(ClientError::Api(e)),
    }
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_split_at_the_last_slash() {
        let h: AttachmentRef = "abc/def/eth0".parse().unwrap();
        assert_eq!(
            (h.container_id.as_str(), h.ifname.as_str()),
            ("abc/def", "eth0")
        );
        assert!("noslash".parse::<AttachmentRef>().is_err());
        assert_eq!(h.to_string(), "abc/def/eth0");
        assert_eq!(flatnet_ipam::Handle::from(&h).to_string(), "abc/def/eth0");
    }

    #[test]
    fn request_wire_shape_is_stable() {
        let r = Request {
            version: 1,
            op: Op::Add(AddArgs {
                attachment: AttachmentRef {
                    container_id: "c1".into(),
                    ifname: "eth0".into(),
                },
                netns: "/run/netns/x".into(),
                app: Some("web".into()),
                network: None,
            }),
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"version":1,"op":"add","container_id":"c1","ifname":"eth0",
                               "netns":"/run/netns/x","app":"web"})
        );
        let back: Request = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
        let s: Request = serde_json::from_str(r#"{"version":1,"op":"status"}"#).unwrap();
        assert_eq!(s.op, Op::Status);
    }

    #[test]
    fn response_wire_shape() {
        let e = Response {
            version: 1,
            result: Outcome::Error(ApiError::new(ErrorKind::PoolExhausted, "full")),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"version":1,"error":{"kind":"pool_exhausted","message":"full"}})
        );
        let ok = Response {
            version: 1,
            result: Outcome::Ok(Answer::Done),
        };
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({"version":1,"ok":{"kind":"done"}})
        );
    }

    #[test]
    fn an_operation_is_chosen_by_its_name_only() {
        let gc_by_index = r#"{"version":1,"op":3,"valid":[]}"#;
        let e = Request::parse(gc_by_index).unwrap_err();
        assert!(e.contains("operation name"), "{e}");
        assert!(Request::parse(r#"{"version":1}"#).is_err());
        assert!(Request::parse(r#"{"version":1,"op":"gc_all"}"#).is_err());
        let r = Request::parse(r#"{"version":1,"op":"gc","valid":[]}"#).unwrap();
        assert!(matches!(r.op, Op::Gc(_)));
        assert_eq!(
            Request::parse(r#"{"version":1,"op":"status"}"#).unwrap().op,
            Op::Status
        );
    }

    /// flatnet-bgpd answers with `flatnet_bgp::speaker::control`'s types:
    /// the CLI must read them as its own, and its requests must be theirs.
    #[test]
    fn bgp_queries_and_answers_are_flatnet_bgpds() {
        use flatnet_bgp::speaker::control::{self, Query, Reply, RoutesArgs};
        for (op, q) in [
            (Op::BgpNeighbors, Query::BgpNeighbors),
            (
                Op::BgpRoutes(RoutesArgs {
                    received_from: Some("10.0.0.1".parse().unwrap()),
                    advertised_to: None,
                }),
                Query::BgpRoutes(RoutesArgs {
                    received_from: Some("10.0.0.1".parse().unwrap()),
                    advertised_to: None,
                }),
            ),
        ] {
            let mut j = serde_json::to_value(Request { version: 1, op }).unwrap();
            j.as_object_mut().unwrap().remove("version");
            assert_eq!(serde_json::from_value::<Query>(j).unwrap(), q);
        }
        let n = control::Neighbor {
            address: "10.0.0.1".parse().unwrap(),
            remote_as: 65001,
            state: "Established".into(),
            uptime_secs: Some(3),
            last_error: None,
            capabilities: vec!["route-refresh".into()],
            families: vec!["ipv4-unicast".into()],
            hold_time: Some(9),
            prefixes_received: 1,
            prefixes_accepted: 1,
            prefixes_advertised: 2,
            per_family: Vec::new(),
            updates_in: 4,
            updates_out: 5,
            stale_paths: 0,
            max_prefix_resets: 0,
            next_attempt_ms: None,
            consecutive_errors: 0,
        };
        let wire = serde_json::json!({"version": 1, "ok": Reply::BgpNeighbors(vec![n.clone()])});
        let r: Response = serde_json::from_value(wire).unwrap();
        assert_eq!(r.result, Outcome::Ok(Answer::BgpNeighbors(vec![n])));
        let wire = serde_json::json!({"version": 1, "ok": Reply::BgpRoutes(Vec::new())});
        let r: Response = serde_json::from_value(wire).unwrap();
        assert_eq!(r.result, Outcome::Ok(Answer::BgpRoutes(Vec::new())));
        let e: Response = serde_json::from_str(
            r#"{"version":1,"error":{"kind":"not_found","message":"no peer 192.0.2.9"}}"#,
        )
        .unwrap();
        assert!(matches!(
            e.result,
            Outcome::Error(ApiError {
                kind: ErrorKind::NotFound,
                ..
            })
        ));
    }
}
