//! Fuzz-style property tests of the DNS server's input path: arbitrary
//! octets, and real queries truncated, bit-flipped or with forged counts,
//! go through [`decode_udp`] and, when they decode, through the handler.
//! Nothing may panic; every answer must decode, echo the query's ID and
//! fit the size the client allowed. `scripts/fuzz-smoke.sh` runs these
//! with many more cases (`PROPTEST_CASES`).

use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::server::{RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use proptest::prelude::*;

use super::tests::handler;
use super::{Handler, MAX_UDP_ANSWER, decode_udp};

/// Keeps the encoded answer instead of sending it.
#[derive(Clone)]
struct Capture {
    out: Arc<Mutex<Vec<Vec<u8>>>>,
    max: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
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
        let (info, buf) = super::encode(response, self.max)?;
        self.out.lock().unwrap().push(buf);
        Ok(info)
    }
}

fn valid_query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut q = Message::query();
    if let Ok(n) = Name::from_ascii(name) {
        q.add_query(Query::query(n, t));
    }
    if let Some(p) = edns {
        let mut e = Edns::new();
        e.set_max_payload(p);
        q.set_edns(e);
    }
    q.to_vec().unwrap_or_default()
}

/// One input through the server's path; panics (fails the case) when an
/// answer is not a well-formed reply to it.
fn run(rt: &tokio::runtime::Runtime, h: &Handler, bytes: &[u8]) {
    let src = "127.0.0.1:5353".parse().unwrap();
    let Ok(req) = decode_udp(bytes, src) else {
        return;
    };
    let max = req.max_payload().min(MAX_UDP_ANSWER);
    let cap = Capture {
        out: Arc::default(),
        max,
    };
    rt.block_on(h.handle_request::<_, TokioTime>(&req, cap.clone()));
    let out = cap.out.lock().unwrap();
    assert!(out.len() <= 1, "one answer per query");
    for a in out.iter() {
        assert!(a.len() <= usize::from(max), "{} > {max}", a.len());
        let m = Message::from_vec(a).expect("answer decodes");
        assert_eq!(m.metadata.id, req.metadata.id);
        assert_eq!(m.metadata.message_type, MessageType::Response);
    }
}

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cart.apps.internal.".to_string()),
        Just("c1.cart.apps.internal.".to_string()),
        Just("nope.apps.internal.".to_string()),
        Just("apps.internal.".to_string()),
        Just("example.com.".to_string()),
        "[a-z0-9.-]{0,80}",
    ]
}

fn qtypes() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::A),
        Just(RecordType::AAAA),
        Just(RecordType::ANY),
        Just(RecordType::SOA),
        Just(RecordType::TXT),
        any::<u16>().prop_map(RecordType::from),
    ]
}

/// A real query, then damaged: truncated, bytes overwritten, counts forged.
fn damaged() -> impl Strategy<Value = Vec<u8>> {
    (
        names(),
        qtypes(),
        proptest::option::of(0u16..=4096),
        any::<prop::sample::Index>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        0u8..4,
    )
        .prop_map(|(n, t, edns, cut, flips, how)| {
            let mut b = valid_query(&n, t, edns);
            if b.is_empty() {
                return b;
            }
            match how {
                0 => b.truncate(cut.index(b.len())),
                1 => {
                    for (i, v) in flips {
                        let i = i.index(b.len());
                        b[i] = v;
                    }
                }
                2 if b.len() >= 12 => {
                    // QDCOUNT .. ARCOUNT claim more (or fewer) than there is.
                    for (i, v) in flips {
                        b[4 + i.index(8)] = v;
                    }
                }
                _ => {}
            }
            b
        })
}

fn feed(inputs: &[Vec<u8>]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (handler(false), handler(true));
    for i in inputs {
        run(&rt, &a, i);
        run(&rt, &b, i);
    }
}

proptest! {
    #[test]
    fn arbitrary_octets_never_crash_the_server(
        inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..16)
    ) {
        feed(&inputs);
    }

    #[test]
    fn damaged_queries_never_crash_the_server(inputs in proptest::collection::vec(damaged(), 1..16)) {
        feed(&inputs);
    }
}

#[test]
fn oversized_and_header_only_inputs_are_dropped() {
    let src = "127.0.0.1:5353".parse().unwrap();
    assert_eq!(
        decode_udp(&[0u8; super::MAX_UDP_QUERY + 1], src).err(),
        Some(super::Dropped::Oversized)
    );
    assert_eq!(
        decode_udp(&[0u8; 11], src).err(),
        Some(super::Dropped::Malformed)
    );
    let q = valid_query("cart.apps.internal.", RecordType::A, Some(1232));
    assert!(decode_udp(&q, src).is_ok());
    assert_eq!(
        decode_udp(&q, "127.0.0.1:0".parse().unwrap()).err(),
        Some(super::Dropped::Malformed)
    );
}
