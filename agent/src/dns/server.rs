//! The DNS server: a hickory-server [`RequestHandler`] that answers from
//! the zone or forwards, over UDP (flatnetd's own receive loop, so that
//! oversized, malformed and response packets are counted when dropped) and
//! TCP (hickory's `Server`, which frames and times out connections).
//! Every message is decoded and encoded by hickory; nothing here panics on
//! input: a packet that does not decode is dropped, a query that is not
//! one standard question gets FORMERR / NOTIMP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

use super::follow::ZoneHandle;
use super::forward::Forwarder;
use super::zone::{Lookup, QueryType, Zone};
use crate::metrics::{DnsMetrics, ProtoLabels, RcodeLabels};
use prometheus_client::metrics::counter::Counter;

/// The largest UDP query accepted; larger datagrams are dropped as
/// oversized (a question with EDNS is well under 600 octets).
pub const MAX_UDP_QUERY: usize = 4096;
/// The largest UDP answer sent, whatever the client offers (no
/// fragmentation on a 1500-octet veth).
pub const MAX_UDP_ANSWER: u16 = 1232;
/// Forwarded queries in flight at once; more are dropped as `overload`
/// (a client retries) rather than queued without bound.
pub const MAX_FORWARDS: usize = 1024;
/// A TCP connection that sends no query for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(5);

/// Answers one query: the zone first, then the forwarder (or REFUSED).
pub struct Resolver {
    zone: ZoneHandle,
    forward: Option<Forwarder>,
    metrics: DnsMetrics,
    /// The series every query touches, looked up once (a family lookup
    /// per query would allocate its label).
    hot: Hot,
}

struct Hot {
    udp: Counter,
    tcp: Counter,
    rcodes: Vec<(ResponseCode, Counter)>,
}

impl Hot {
    fn new(m: &DnsMetrics) -> Hot {
        let q = |p: &str| {
            m.queries
                .get_or_create(&ProtoLabels { proto: p.into() })
                .clone()
        };
        let rcodes = [
            ResponseCode::NoError,
            ResponseCode::NXDomain,
            ResponseCode::Refused,
            ResponseCode::ServFail,
            ResponseCode::FormErr,
            ResponseCode::NotImp,
        ]
        .into_iter()
        .map(|c| {
            let ctr = m
                .answers
                .get_or_create(&RcodeLabels {
                    rcode: rcode_label(c),
                })
                .clone();
            (c, ctr)
        })
        .collect();
        Hot {
            udp: q("udp"),
            tcp: q("tcp"),
            rcodes,
        }
    }
}

/// The handler hickory's server and the UDP loop call.
#[derive(Clone)]
pub struct Handler(Arc<Resolver>);

impl Handler {
    pub fn new(zone: ZoneHandle, forward: Option<Forwarder>, metrics: DnsMetrics) -> Handler {
        Handler(Arc::new(Resolver {
            zone,
            forward,
            hot: Hot::new(&metrics),
            metrics,
        }))
    }

    /// Whether answering `req` needs no upstream (so it can be answered
    /// inline, without a task of its own).
    pub fn answers_locally(&self, req: &Request) -> bool {
        match req.queries.queries() {
            [q] => self.0.forward.is_none() || self.0.zone.get().contains(&q.name().to_string()),
            _ => true,
        }
    }

    pub fn metrics(&self) -> &DnsMetrics {
        &self.0.metrics
    }
}

fn query_type(t: RecordType) -> QueryType {
    match t {
        RecordType::A => QueryType::A,
        RecordType::AAAA => QueryType::Aaaa,
        RecordType::ANY => QueryType::Any,
        RecordType::SOA => QueryType::Soa,
        _ => QueryType::Other,
    }
}

fn soa(zone: &Zone) -> Option<Record> {
    let origin = Name::from_ascii(format!("{}.", zone.origin())).ok()?;
    let mname = Name::from_ascii(format!("ns.{}.", zone.origin())).ok()?;
    let rname = Name::from_ascii(format!("hostmaster.{}.", zone.origin())).ok()?;
    let ttl = zone.ttl();
    let rd = SOA::new(mname, rname, zone.serial(), 60, 30, 600, ttl);
    Some(Record::from_rdata(origin, ttl, RData::SOA(rd)))
}

/// The OPT of an answer to an EDNS query: our own payload size.
fn response_edns(req: &Request) -> Option<Edns> {
    req.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP_ANSWER);
        e
    })
}

/// The mnemonic of RFC 1035 / 6895 (`NOERROR`, `NXDOMAIN`, ...), the
/// `rcode` label of `flatnet_dns_answers_total`.
pub fn rcode_label(c: ResponseCode) -> String {
    match c {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

async fn send<'a, R: ResponseHandler>(
    mut response: R,
    req: &Request,
    edns: Option<&Edns>,
    meta: Metadata,
    answers: &'a [Record],
    authorities: &'a [Record],
    additionals: &'a [Record],
) -> ResponseInfo {
    let mut b = MessageResponseBuilder::from_message_request(req);
    if let Some(e) = edns {
        b.edns(e);
    }
    let msg = b.build(
        meta,
        answers.iter(),
        authorities.iter(),
        std::iter::empty(),
        additionals.iter(),
    );
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(src = %req.src(), error = %e, "dns: answer not sent");
            let mut m = meta;
            m.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: m,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// An answer without records.
async fn error<R: ResponseHandler>(
    response: R,
    req: &Request,
    edns: Option<&Edns>,
    meta: Metadata,
) -> ResponseInfo {
    send(response, req, edns, meta, &[], &[], &[]).await
}

impl Resolver {
    async fn answer<R: ResponseHandler>(&self, req: &Request, response: R) -> ResponseInfo {
        let edns = response_edns(req);
        let mut meta = Metadata::response_from_request(&req.metadata);
        meta.recursion_available = self.forward.is_some();
        let code = move |c| {
            let mut m = meta;
            m.response_code = c;
            m
        };
        if req.metadata.op_code != OpCode::Query {
            return error(response, req, edns.as_ref(), code(ResponseCode::NotImp)).await;
        }
        let [q] = req.queries.queries() else {
            return error(response, req, edns.as_ref(), code(ResponseCode::FormErr)).await;
        };
        let zone = self.zone.get();
        let name = q.name().to_string();
        let lookup = if q.query_class() == DNSClass::IN || q.query_class() == DNSClass::ANY {
            zone.lookup(&name, query_type(q.query_type()))
        } else if zone.contains(&name) {
            return error(response, req, edns.as_ref(), code(ResponseCode::Refused)).await;
        } else {
            Lookup::OutOfZone
        };
        let owner = q.original().name().clone();
        meta.authoritative = lookup != Lookup::OutOfZone;
        match lookup {
            Lookup::Addrs(addrs) if !addrs.is_empty() => {
                let ttl = zone.ttl();
                let recs: Vec<Record> = addrs
                    .into_iter()
                    .map(|a| {
                        let rd = match a {
                            std::net::IpAddr::V4(v4) => RData::A(A(v4)),
                            std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                        };
                        Record::from_rdata(owner.clone(), ttl, rd)
                    })
                    .collect();
                send(response, req, edns.as_ref(), meta, &recs, &[], &[]).await
            }
            Lookup::Soa => {
                let recs: Vec<Record> = soa(&zone).into_iter().collect();
                send(response, req, edns.as_ref(), meta, &recs, &[], &[]).await
            }
            Lookup::Addrs(_) | Lookup::NxDomain => {
                if lookup == Lookup::NxDomain {
                    meta.response_code = ResponseCode::NXDomain;
                }
                // The SOA lets caching resolvers keep the negative answer
                // for one TTL (RFC 2308).
                let auth: Vec<Record> = soa(&zone).into_iter().collect();
                send(response, req, edns.as_ref(), meta, &[], &auth, &[]).await
            }
            Lookup::OutOfZone => match &self.forward {
                None => error(response, req, edns.as_ref(), code(ResponseCode::Refused)).await,
                Some(f) => self.forwarded(f, req, response, meta, edns).await,
            },
        }
    }

    async fn forwarded<R: ResponseHandler>(
        &self,
        f: &Forwarder,
        req: &Request,
        response: R,
        mut meta: Metadata,
        edns: Option<Edns>,
    ) -> ResponseInfo {
        let mut q = Message::new(req.metadata.id, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = req.metadata.recursion_desired;
        q.metadata.checking_disabled = req.metadata.checking_disabled;
        q.queries = req
            .queries
            .queries()
            .iter()
            .map(|l| l.original().clone())
            .collect();
        if let Some(e) = &req.edns {
            let mut e = e.clone();
            e.set_max_payload(e.max_payload().max(512));
            q.set_edns(e);
        }
        self.metrics.forwarded.inc();
        match f.forward(&q).await {
            Ok(up) => {
                meta.response_code = up.metadata.response_code;
                meta.recursion_available = up.metadata.recursion_available;
                meta.truncation = up.metadata.truncation;
                send(
                    response,
                    req,
                    edns.as_ref(),
                    meta,
                    &up.answers,
                    &up.authorities,
                    &up.additionals,
                )
                .await
            }
            Err(e) => {
                tracing::debug!(name = %q.queries.first().map(|q| q.name().to_string()).unwrap_or_default(), error = %e, "dns: forward failed");
                self.metrics.forward_failures.inc();
                meta.response_code = ResponseCode::ServFail;
                send(response, req, edns.as_ref(), meta, &[], &[], &[]).await
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let t = Instant::now();
        let (m, hot) = (&self.0.metrics, &self.0.hot);
        match request.protocol() {
            Protocol::Udp => hot.udp.inc(),
            Protocol::Tcp => hot.tcp.inc(),
            _ => m
                .queries
                .get_or_create(&ProtoLabels {
                    proto: "other".into(),
                })
                .inc(),
        };
        let info = self.0.answer(request, response_handle).await;
        match hot.rcodes.iter().find(|(c, _)| *c == info.response_code) {
            Some((_, ctr)) => ctr.inc(),
            None => m
                .answers
                .get_or_create(&RcodeLabels {
                    rcode: rcode_label(info.response_code),
                })
                .inc(),
        };
        m.latency.observe(t.elapsed().as_secs_f64());
        info
    }
}

/// Sends an answer back over the UDP socket it came in on, encoded by
/// hickory within the client's payload size (truncated with TC set when
/// it does not fit).
#[derive(Clone)]
struct UdpResponse {
    socket: Arc<tokio::net::UdpSocket>,
    dst: SocketAddr,
    max: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponse {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, buf) = encode(response, self.max)?;
        self.socket.send_to(&buf, self.dst).await?;
        Ok(info)
    }
}

/// Encodes an answer within `max` octets (hickory truncates and sets TC).
pub(crate) fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    max: u16,
) -> Result<(ResponseInfo, Vec<u8>), NetError> {
    let mut buf = Vec::with_capacity(512);
    let info = {
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(max);
        response.destructive_emit(&mut enc)?
    };
    Ok((info, buf))
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Longer than [`MAX_UDP_QUERY`].
    Oversized,
    /// Not a DNS message (hickory cannot decode it), or from port 0.
    Malformed,
    /// A response, not a query (answering would reflect).
    Response,
}

impl Dropped {
    /// The `reason` label of `flatnet_dns_dropped_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Dropped::Oversized => "oversized",
            Dropped::Malformed => "malformed",
            Dropped::Response => "response",
        }
    }
}

/// A datagram as a query, or why it is dropped: every octet from the
/// network passes here first (the fuzz tests feed it arbitrary input).
pub fn decode_udp(bytes: &[u8], src: SocketAddr) -> Result<Request, Dropped> {
    if bytes.len() > MAX_UDP_QUERY {
        return Err(Dropped::Oversized);
    }
    if src.port() == 0 {
        return Err(Dropped::Malformed);
    }
    let req =
        Request::from_bytes(bytes.to_vec(), src, Protocol::Udp).map_err(|_| Dropped::Malformed)?;
    if req.metadata.message_type == MessageType::Response {
        return Err(Dropped::Response);
    }
    Ok(req)
}

/// The UDP loop of one socket: every datagram is decoded by hickory;
/// what is not a query is dropped and counted. Answers from the zone are
/// sent inline; forwarded queries get a task each (at most
/// [`MAX_FORWARDS`] at once).
pub async fn serve_udp(socket: Arc<tokio::net::UdpSocket>, handler: Handler) {
    let forwards = Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS));
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier sends surface here; never spin.
                tracing::debug!(error = %e, "dns: udp receive");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let m = handler.metrics();
        let req = match decode_udp(&buf[..n], src) {
            Ok(r) => r,
            Err(d) => {
                m.dropped(d.reason());
                continue;
            }
        };
        let resp = UdpResponse {
            socket: socket.clone(),
            dst: src,
            max: req.max_payload().min(MAX_UDP_ANSWER),
        };
        if handler.answers_locally(&req) {
            handler.handle_request::<_, TokioTime>(&req, resp).await;
            continue;
        }
        let Ok(permit) = forwards.clone().try_acquire_owned() else {
            m.dropped("overload");
            continue;
        };
        let h = handler.clone();
        tokio::spawn(async move {
            h.handle_request::<_, TokioTime>(&req, resp).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
#[path = "fuzz_tests.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::EndpointRecord;

    pub(super) fn handler(forward: bool) -> Handler {
        let recs = [EndpointRecord {
            app: Some("cart".into()),
            container_id: "c1".into(),
            v4: Some("10.244.0.2".parse().unwrap()),
            v6: None,
            node: "h".into(),
        }];
        let zone = ZoneHandle::new(Zone::build("apps.internal", 5, 1, &recs));
        let fwd = forward.then(|| Forwarder::new("/nonexistent".into(), vec![]));
        let m = crate::metrics::Metrics::new();
        Handler::new(zone, fwd, m.dns.clone())
    }

    /// Runs one query through the handler and returns the decoded answer.
    async fn ask(h: &Handler, name: &str, t: RecordType) -> Message {
        let mut q = Message::query();
        q.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            t,
        ));
        ask_raw(h, q.to_vec().unwrap()).await.unwrap()
    }

    async fn ask_raw(h: &Handler, bytes: Vec<u8>) -> Option<Message> {
        let server = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(serve_udp(server, h.clone()));
        client.send_to(&bytes, addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let r = tokio::time::timeout(Duration::from_millis(300), client.recv(&mut buf)).await;
        task.abort();
        r.ok()
            .map(|n| Message::from_vec(&buf[..n.unwrap()]).unwrap())
    }

    #[tokio::test]
    async fn zone_answers_over_udp() {
        let h = handler(false);
        let a = ask(&h, "Cart.apps.internal.", RecordType::A).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].ttl, 5);
        assert_eq!(a.answers[0].name.to_string(), "Cart.apps.internal.");
        let a = ask(&h, "cart.apps.internal.", RecordType::AAAA).await;
        assert_eq!(
            (a.metadata.response_code, a.answers.len()),
            (ResponseCode::NoError, 0)
        );
        assert_eq!(a.authorities.len(), 1, "SOA for negative caching");
        let a = ask(&h, "nope.apps.internal.", RecordType::A).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
        let a = ask(&h, "example.com.", RecordType::A).await;
        assert_eq!(a.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn rcodes_are_labelled_by_mnemonic() {
        assert_eq!(rcode_label(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_label(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_label(ResponseCode::BADCOOKIE), "RCODE23");
    }

    #[tokio::test]
    async fn forwarding_without_resolvers_is_servfail() {
        let h = handler(true);
        let a = ask(&h, "example.com.", RecordType::A).await;
        assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(h.metrics().forward_failures.get(), 1);
    }

    #[tokio::test]
    async fn malformed_and_response_packets_are_dropped_and_counted() {
        let h = handler(false);
        assert!(ask_raw(&h, vec![0x12]).await.is_none());
        let mut q = Message::query();
        q.add_query(hickory_proto::op::Query::query(
            Name::from_ascii("cart.apps.internal.").unwrap(),
            RecordType::A,
        ));
        let mut bytes = q.to_vec().unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(ask_raw(&h, bytes).await.is_none());
        q.metadata.message_type = MessageType::Response;
        assert!(ask_raw(&h, q.to_vec().unwrap()).await.is_none());
        assert!(ask_raw(&h, vec![0u8; MAX_UDP_QUERY + 1]).await.is_none());
        let d = |r: &str| {
            h.metrics()
                .dropped
                .get_or_create(&crate::metrics::ReasonLabels { reason: r.into() })
                .get()
        };
        assert_eq!((d("malformed"), d("response"), d("oversized")), (2, 1, 1));
        // The server still answers.
        let a = ask(&h, "cart.apps.internal.", RecordType::A).await;
        assert_eq!(a.answers.len(), 1);
    }

    #[tokio::test]
    async fn two_questions_are_formerr() {
        let h = handler(false);
        let mut q = Message::query();
        for n in ["cart.apps.internal.", "x.apps.internal."] {
            q.add_query(hickory_proto::op::Query::query(
                Name::from_ascii(n).unwrap(),
                RecordType::A,
            ));
        }
        let a = ask_raw(&h, q.to_vec().unwrap()).await.unwrap();
        assert_eq!(a.metadata.response_code, ResponseCode::FormErr);
    }
}
