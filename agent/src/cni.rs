//! The CNI plugin logic (spec 1.1.0; configs of 0.4.0 and 1.0.0 accepted):
//! parse the runtime's environment and stdin, forward to flatnetd, and print
//! the spec's result or error object. Pure apart from the socket call, so it
//! is tested without a runtime.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{
    AddArgs, Answer, AttachmentRef, CheckArgs, ClientError, DelArgs, Endpoint, ErrorKind, GcArgs,
    Op,
};
use crate::config::DEFAULT_API_SOCKET;
use crate::kernel::{GATEWAY_V4, GATEWAY_V6};
use crate::names::{check_app, check_container_id, check_ifname, check_network_name};

pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
pub const CURRENT_VERSION: &str = "1.1.0";

/// CNI error codes (spec "Error" section) and flatnet's own (>= 100).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// flatnet: flatnetd failed internally.
    pub const INTERNAL: u32 = 100;
    /// flatnet: plugin and flatnetd speak different API versions.
    pub const API_MISMATCH: u32 = 101;
    /// flatnet: the interface name is already taken in the container.
    pub const IFNAME_TAKEN: u32 = 110;
    /// flatnet: no free address in the pool.
    pub const POOL_EXHAUSTED: u32 = 111;
    /// flatnet: CHECK found the attachment not as it should be.
    pub const CHECK_FAILED: u32 = 112;
}

/// A CNI error object.
#[derive(Debug, Clone, PartialEq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

/// The network configuration fields flatnet reads (others are ignored, as
/// the spec allows for plugin-specific keys).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetConf {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// flatnetd's control socket.
    #[serde(rename = "flatnetd_socket")]
    flatnetd_socket: Option<PathBuf>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    runtime_config: Option<Value>,
    #[serde(default)]
    prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Debug, Deserialize)]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// Parses CNI_ARGS ("K1=V1;K2=V2").
pub fn parse_cni_args(s: &str) -> HashMap<String, String> {
    s.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The app id, by precedence: CNI_ARGS `FLATNET_APP`, then
/// `runtimeConfig.flatnet.app`, then `args.flatnet.app`.
fn app_id(conf: &NetConf, cni_args: &HashMap<String, String>) -> Option<String> {
    let from = |v: &Option<Value>, path: &[&str]| -> Option<String> {
        let mut cur = v.as_ref()?;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str().map(String::from)
    };
    cni_args
        .get("FLATNET_APP")
        .cloned()
        .or_else(|| from(&conf.runtime_config, &["flatnet", "app"]))
        .or_else(|| from(&conf.args, &["flatnet", "app"]))
        .filter(|a| !a.is_empty())
}

/// Renders an ADD result in the shape of `version`.
pub fn result_json(ep: &Endpoint, version: &str) -> Value {
    let old = version == "0.4.0";
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    if let Some(v4) = ep.v4 {
        let mut ip = json!({"address": format!("{v4}/32"), "gateway": GATEWAY_V4.to_string(), "interface": 1});
        if old {
            ip["version"] = json!("4");
        }
        ips.push(ip);
        routes.push(json!({"dst": "0.0.0.0/0", "gw": GATEWAY_V4.to_string()}));
    }
    if let Some(v6) = ep.v6 {
        let mut ip = json!({"address": format!("{v6}/128"), "gateway": GATEWAY_V6.to_string(), "interface": 1});
        if old {
            ip["version"] = json!("6");
        }
        ips.push(ip);
        routes.push(json!({"dst": "::/0", "gw": GATEWAY_V6.to_string()}));
    }
    let mut interfaces = [
        json!({"name": ep.host_ifname, "mac": ep.host_mac}),
        json!({"name": ep.ifname, "mac": ep.container_mac, "sandbox": ep.netns}),
    ];
    // `interfaces[].mtu` is a CNI 1.1 field.
    if let (Some(mtu), "1.1.0") = (ep.mtu, version) {
        for i in &mut interfaces {
            i["mtu"] = json!(mtu);
        }
    }
    // flatnetd's resolver when `[dns] enabled`: the runtime writes it
    // into the container's resolv.conf.
    let dns = match &ep.dns {
        Some(d) => json!({"nameservers": d.nameservers, "search": d.search}),
        None => json!({}),
    };
    json!({
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

/// The result of an ADD that ran after other plugins (CNI 1.1: a plugin
/// given a `prevResult` MUST pass it on, modified): theirs first, then
/// flatnet's interfaces, with flatnet's `ips[].interface` shifted past
/// theirs, and both sets of routes; `dns` stays theirs unless empty.
pub fn merge_prev_result(prev: &Value, ours: Value) -> Result<Value, CniError> {
    let bad = |what: &str| {
        CniError::new(
            code::INVALID_CONFIG,
            "invalid prevResult",
            format!("prevResult.{what} is not a list"),
        )
    };
    let list = |v: &Value, k: &str| -> Result<Vec<Value>, CniError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(bad(k)),
        }
    };
    let mut interfaces = list(prev, "interfaces")?;
    let shift = interfaces.len() as u64;
    interfaces.extend(list(&ours, "interfaces")?);
    let mut ips = list(prev, "ips")?;
    ips.extend(list(&ours, "ips")?.into_iter().map(|mut ip| {
        if let Some(i) = ip.get("interface").and_then(Value::as_u64) {
            ip["interface"] = json!(i + shift);
        }
        ip
    }));
    let mut routes = list(prev, "routes")?;
    routes.extend(list(&ours, "routes")?);
    let dns = match prev.get("dns") {
        Some(d) if d.as_object().is_some_and(|o| !o.is_empty()) => d.clone(),
        _ => ours.get("dns").cloned().unwrap_or_else(|| json!({})),
    };
    let mut out = ours;
    out["interfaces"] = Value::Array(interfaces);
    out["ips"] = Value::Array(ips);
    out["routes"] = Value::Array(routes);
    out["dns"] = dns;
    Ok(out)
}

/// The answer when the plugin cannot read its configuration at all.
pub fn io_failure(e: &std::io::Error) -> (String, i32) {
    let err = CniError::new(
        code::IO_FAILURE,
        "cannot read the network configuration",
        e.to_string(),
    );
    (error_json(&err, CURRENT_VERSION).to_string(), 1)
}

/// Renders an error object.
pub fn error_json(e: &CniError, version: &str) -> Value {
    json!({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details})
}

fn map_client(e: ClientError) -> CniError {
    match e {
        ClientError::Unreachable { .. } | ClientError::Protocol(_) => CniError::new(
            code::TRY_AGAIN_LATER,
            "flatnetd is not reachable; try again later",
            e.to_string(),
        ),
        ClientError::Api(a) => {
            let c = match a.kind {
                ErrorKind::UnsupportedVersion => code::API_MISMATCH,
                ErrorKind::InvalidRequest => code::INVALID_CONFIG,
                ErrorKind::NetnsNotFound | ErrorKind::NotFound => code::UNKNOWN_CONTAINER,
                ErrorKind::IfnameTaken => code::IFNAME_TAKEN,
                ErrorKind::InvalidEnvironment => code::INVALID_ENV,
                ErrorKind::PoolExhausted => code::POOL_EXHAUSTED,
                ErrorKind::DatastoreUnavailable | ErrorKind::Busy => code::TRY_AGAIN_LATER,
                ErrorKind::CheckFailed => code::CHECK_FAILED,
                ErrorKind::Internal | ErrorKind::Conflict | ErrorKind::PolicyDisabled => {
                    code::INTERNAL
                }
            };
            let msg = match a.kind {
                ErrorKind::NetnsNotFound => "network namespace does not exist",
                ErrorKind::NotFound => "no such attachment",
                ErrorKind::IfnameTaken => "interface name already exists in the container",
                ErrorKind::InvalidEnvironment => "invalid CNI environment",
                ErrorKind::PoolExhausted => "address pool exhausted",
                ErrorKind::DatastoreUnavailable => "datastore unavailable; try again later",
                ErrorKind::Busy => "flatnetd is busy; try again later",
                ErrorKind::CheckFailed => "attachment check failed",
                ErrorKind::InvalidRequest => "invalid request",
                ErrorKind::UnsupportedVersion => "flatnetd speaks another API version",
                ErrorKind::Internal | ErrorKind::Conflict | ErrorKind::PolicyDisabled => {
                    "flatnetd internal error"
                }
            };
            CniError::new(c, msg, a.message)
        }
    }
}

/// Runs one plugin invocation. `env` reads an environment variable. Returns
/// (stdout, exit code).
pub fn run(env: &dyn Fn(&str) -> Option<String>, stdin: &[u8], timeout: Duration) -> (String, i32) {
    let command = env("CNI_COMMAND").unwrap_or_default();
    // VERSION needs no valid config.
    if command == "VERSION" {
        let v = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| {
                v.get("cniVersion")
                    .and_then(|x| x.as_str())
                    .map(String::from)
            })
            // The spec: "the value of cniVersion specified on input".
            .filter(|v| !v.is_empty() && v.len() <= 32)
            .unwrap_or_else(|| CURRENT_VERSION.to_string());
        let out = json!({"cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS});
        return (out.to_string(), 0);
    }
    let mut version = CURRENT_VERSION.to_string();
    match run_inner(&command, env, stdin, timeout, &mut version) {
        Ok(out) => (out.map(|v| v.to_string()).unwrap_or_default(), 0),
        Err(e) => (error_json(&e, &version).to_string(), 1),
    }
}

fn need(env: &dyn Fn(&str) -> Option<String>, k: &str) -> Result<String, CniError> {
    env(k).filter(|v| !v.is_empty()).ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            format!("{k} is required"),
            format!("the runtime did not set {k}"),
        )
    })
}

fn run_inner(
    command: &str,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    timeout: Duration,
    version: &mut String,
) -> Result<Option<Value>, CniError> {
    let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            "cannot decode the network configuration",
            e.to_string(),
        )
    })?;
    let v = conf
        .cni_version
        .clone()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "cniVersion is missing", ""))?;
    if !SUPPORTED_VERSIONS.contains(&v.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("incompatible CNI version {v}"),
            format!("flatnet-cni supports {}", SUPPORTED_VERSIONS.join(", ")),
        ));
    }
    *version = v.clone();
    if conf.name.as_deref().unwrap_or("").is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "network name is missing",
            "",
        ));
    }
    if let Some(n) = conf.name.as_deref() {
        check_network_name(n)
            .map_err(|e| CniError::new(code::INVALID_CONFIG, "invalid network name", e))?;
    }
    if conf.kind.as_deref().unwrap_or("").is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "plugin type is missing",
            "",
        ));
    }
    let socket = conf
        .flatnetd_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_API_SOCKET));
    let call = |op: Op| crate::api::call(&socket, op, timeout).map_err(map_client);
    // ADD admits only what it can name everywhere; DEL and CHECK take any
    // id, so what an older flatnet accepted can still be removed.
    let attachment = |strict: bool| -> Result<AttachmentRef, CniError> {
        let ifname = need(env, "CNI_IFNAME")?;
        let bad_if = |e: String| {
            CniError::new(
                code::INVALID_ENV,
                format!("invalid CNI_IFNAME {ifname:?}"),
                e,
            )
        };
        if strict {
            check_ifname(&ifname).map_err(bad_if)?;
        } else if !crate::kernel::valid_ifname(&ifname) {
            return Err(bad_if(
                "1 to 15 characters, no '/', ':' or whitespace".into(),
            ));
        }
        let container_id = need(env, "CNI_CONTAINERID")?;
        if strict {
            check_container_id(&container_id)
                .map_err(|e| CniError::new(code::INVALID_ENV, "invalid CNI_CONTAINERID", e))?;
        }
        Ok(AttachmentRef {
            container_id,
            ifname,
        })
    };
    match command {
        "ADD" => {
            let attachment = attachment(true)?;
            let netns = need(env, "CNI_NETNS")?;
            let cni_args = parse_cni_args(&env("CNI_ARGS").unwrap_or_default());
            let app = app_id(&conf, &cni_args);
            if let Some(a) = app.as_deref() {
                check_app(a)
                    .map_err(|e| CniError::new(code::INVALID_CONFIG, "invalid app id", e))?;
            }
            match call(Op::Add(AddArgs {
                attachment,
                netns,
                app,
                network: conf.name.clone(),
            }))? {
                Answer::Endpoint(ep) => {
                    let ours = result_json(&ep, &v);
                    match &conf.prev_result {
                        Some(prev) => merge_prev_result(prev, ours).map(Some),
                        None => Ok(Some(ours)),
                    }
                }
                other => Err(unexpected(&other)),
            }
        }
        "DEL" => {
            let attachment = attachment(false)?;
            call(Op::Del(DelArgs {
                attachment,
                netns: env("CNI_NETNS").filter(|s| !s.is_empty()),
            }))?;
            Ok(None)
        }
        "CHECK" => {
            let attachment = attachment(false)?;
            let netns = need(env, "CNI_NETNS")?;
            let prev = conf
                .prev_result
                .as_ref()
                .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "CHECK needs prevResult", ""))?;
            let expect_ips = prev_ips(prev, &attachment.ifname)?;
            call(Op::Check(CheckArgs {
                attachment,
                netns,
                expect_ips,
            }))?;
            Ok(None)
        }
        "GC" => {
            if v != "1.1.0" {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    "GC needs cniVersion 1.1.0",
                    "",
                ));
            }
            let valid = conf
                .valid_attachments
                .unwrap_or_default()
                .into_iter()
                .map(|a| AttachmentRef {
                    container_id: a.container_id,
                    ifname: a.ifname,
                })
                .collect();
            call(Op::Gc(GcArgs {
                valid,
                network: conf.name.clone(),
            }))?;
            Ok(None)
        }
        "STATUS" => match crate::api::call(&socket, Op::Status, timeout) {
            Ok(Answer::Status(s)) if s.ready => Ok(None),
            Ok(Answer::Status(s)) => Err(CniError::new(
                code::NOT_AVAILABLE,
                "flatnet is not ready",
                s.reason.unwrap_or_else(|| {
                    format!(
                        "datastore {} reachable: {}",
                        s.datastore, s.datastore_reachable
                    )
                }),
            )),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(CniError::new(
                code::NOT_AVAILABLE,
                "flatnetd is not available",
                e.to_string(),
            )),
        },
        "" => Err(CniError::new(
            code::INVALID_ENV,
            "CNI_COMMAND is required",
            "",
        )),
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("unknown CNI_COMMAND {other:?}"),
            "expected ADD, DEL, CHECK, GC, STATUS or VERSION",
        )),
    }
}

fn unexpected(a: &Answer) -> CniError {
    CniError::new(
        code::INTERNAL,
        "unexpected answer from flatnetd",
        format!("{a:?}"),
    )
}

/// Addresses of a prevResult (any supported version's shape).
/// The addresses `prevResult` gives the container's `ifname`: in a chain,
/// other plugins' addresses on other interfaces are theirs to check.
fn prev_ips(prev: &Value, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
    let bad = |d: String| CniError::new(code::INVALID_CONFIG, "invalid prevResult", d);
    let ips = prev
        .get("ips")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("prevResult has no ips".into()))?;
    let interfaces = prev.get("interfaces").and_then(Value::as_array);
    let ours = |ip: &Value| match (ip.get("interface").and_then(Value::as_u64), interfaces) {
        (Some(i), Some(ifs)) => ifs
            .get(i as usize)
            .and_then(|x| x.get("name"))
            .and_then(Value::as_str)
            .is_none_or(|n| n == ifname),
        _ => true,
    };
    ips.iter()
        .filter(|ip| ours(ip))
        .map(|ip| {
            let a = ip
                .get("address")
                .and_then(|a| a.as_str())
                .ok_or_else(|| bad("ips[].address missing".into()))?;
            let host = a.split('/').next().unwrap_or(a);
            host.parse::<IpAddr>()
                .map_err(|e| bad(format!("ips[].address {a:?}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn run_t(pairs: &[(&str, &str)], stdin: &str) -> (Value, i32) {
        let e = env_of(pairs);
        let (out, code) = run(&e, stdin.as_bytes(), Duration::from_secs(1));
        (serde_json::from_str(&out).unwrap_or(Value::Null), code)
    }

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"n","type":"flatnet-cni","flatnetd_socket":"/nonexistent/flatnetd.sock"}"#;

    #[test]
    fn version_lists_supported() {
        let (v, c) = run_t(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(c, 0);
        assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn bad_inputs_get_spec_codes() {
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/x"),
        ];
        let (v, c) = run_t(&add, "{not json");
        assert_eq!((c, v["code"].as_u64()), (1, Some(6)));
        let (v, _) = run_t(&add, r#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#);
        assert_eq!(v["code"], 1);
        let (v, _) = run_t(&add, r#"{"cniVersion":"1.0.0","type":"t"}"#);
        assert_eq!(v["code"], 7);
        let (v, _) = run_t(&add[..3], CONF);
        assert_eq!(v["code"], 4);
        assert!(v["msg"].as_str().unwrap().contains("CNI_NETNS"));
        let (v, _) = run_t(&add, CONF);
        assert_eq!(v["code"], 11, "{v}");
        let (v, _) = run_t(&[("CNI_COMMAND", "STATUS")], CONF);
        assert_eq!(v["code"], 50);
        let (v, _) = run_t(&[("CNI_COMMAND", "FROB")], CONF);
        assert_eq!(v["code"], 4);
        let mut bad_if = add;
        bad_if[2] = ("CNI_IFNAME", "a/b");
        let (v, _) = run_t(&bad_if, CONF);
        assert_eq!(v["code"], 4);
    }

    fn sample_ep() -> Endpoint {
        Endpoint {
            node: "n1".into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            host_ifname: "fl0123456789a".into(),
            host_mac: "aa:bb:cc:dd:ee:ff".into(),
            container_mac: "11:22:33:44:55:66".into(),
            v4: Some("10.1.0.5".parse().unwrap()),
            v6: Some("fd00::5".parse().unwrap()),
            app: None,
            network: None,
            mtu: Some(1450),
            dns: None,
        }
    }

    #[test]
    fn result_shapes_per_version() {
        let ep = sample_ep();
        let r = result_json(&ep, "1.1.0");
        assert_eq!(r["ips"][0]["address"], "10.1.0.5/32");
        assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(r["ips"][1]["gateway"], "fe80::1");
        assert!(r["ips"][0].get("version").is_none());
        assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/x");
        assert_eq!(r["interfaces"][0]["mtu"], 1450);
        assert_eq!(r["interfaces"][1]["mtu"], 1450);
        let r = result_json(&ep, "1.0.0");
        assert!(r["interfaces"][1].get("mtu").is_none(), "{r}");
        let r = result_json(&ep, "0.4.0");
        assert_eq!(r["ips"][1]["version"], "6");
        assert_eq!(prev_ips(&r, "eth0").unwrap().len(), 2);
        assert_eq!(prev_ips(&r, "eth1").unwrap().len(), 0);
    }

    #[test]
    fn result_carries_flatnetd_dns_when_enabled() {
        let ep = sample_ep();
        assert_eq!(result_json(&ep, "1.1.0")["dns"], json!({}));
        let ep = Endpoint {
            dns: Some(crate::api::DnsInfo {
                nameservers: vec!["169.254.1.1".into()],
                search: vec!["apps.internal".into()],
            }),
            ..sample_ep()
        };
        for v in ["1.1.0", "1.0.0", "0.4.0"] {
            assert_eq!(
                result_json(&ep, v)["dns"],
                json!({"nameservers": ["169.254.1.1"], "search": ["apps.internal"]}),
                "{v}"
            );
        }
        // After another plugin: theirs stays when they set one, ours otherwise.
        let theirs = json!({"dns": {"nameservers": ["192.0.2.53"]}});
        let r = merge_prev_result(&theirs, result_json(&ep, "1.1.0")).unwrap();
        assert_eq!(r["dns"], json!({"nameservers": ["192.0.2.53"]}));
        let r = merge_prev_result(&json!({"dns": {}}), result_json(&ep, "1.1.0")).unwrap();
        assert_eq!(r["dns"]["search"][0], "apps.internal");
    }

    #[test]
    fn version_echoes_the_input_version() {
        let (v, _) = run_t(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(v["cniVersion"], "1.0.0");
    }

    #[test]
    fn add_after_another_plugin_passes_its_result_on() {
        let prev = json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "bond0"}],
            "ips": [{"address": "192.0.2.7/24", "interface": 0}],
            "routes": [{"dst": "192.0.2.0/24"}],
            "dns": {"nameservers": ["192.0.2.53"]},
        });
        let ep = Endpoint {
            v6: None,
            ..sample_ep()
        };
        let r = merge_prev_result(&prev, result_json(&ep, "1.1.0")).unwrap();
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 3);
        assert_eq!(r["interfaces"][0]["name"], "bond0");
        assert_eq!(r["ips"][0]["address"], "192.0.2.7/24");
        // Ours now points past their interface: eth0 is index 2.
        assert_eq!(r["ips"][1]["address"], "10.1.0.5/32");
        assert_eq!(r["ips"][1]["interface"], 2);
        assert_eq!(r["interfaces"][2]["name"], "eth0");
        assert_eq!(r["routes"].as_array().unwrap().len(), 2);
        assert_eq!(r["dns"]["nameservers"][0], "192.0.2.53");
        let bad = json!({"ips": "nope"});
        assert_eq!(
            merge_prev_result(&bad, result_json(&ep, "1.1.0"))
                .unwrap_err()
                .code,
            7
        );
    }

    #[test]
    fn app_id_precedence() {
        let conf: NetConf = serde_json::from_str(
            r#"{"cniVersion":"1.1.0","name":"n","type":"t","args":{"flatnet":{"app":"from-args"}},
                "runtimeConfig":{"flatnet":{"app":"from-rc"}}}"#,
        )
        .unwrap();
        assert_eq!(app_id(&conf, &HashMap::new()).as_deref(), Some("from-rc"));
        let a = parse_cni_args("IgnoreUnknown=1;FLATNET_APP=web");
        assert_eq!(app_id(&conf, &a).as_deref(), Some("web"));
    }
}
