//! Random event sequences never panic the FSM and keep its invariants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use flatnet_bgp::fsm::{Action, Event, Fsm, FsmConfig, State};
use flatnet_bgp::wire::Family;
use flatnet_bgp::wire::{Capability, Open};
use flatnet_bgp::wire::{ErrorCode, Notification};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Event(Event),
    Advance(u64),
    FireNext,
}

fn open_strategy() -> impl Strategy<Value = Open> {
    (
        3u8..6,
        prop_oneof![Just(65000u32), Just(65001), any::<u32>()],
        0u16..20,
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(ver, asn, hold, id, mp)| {
            let mut caps = vec![Capability::FourOctetAs(asn)];
            if mp {
                caps.push(Capability::Multiprotocol(Family::IPV6_UNICAST));
            }
            let mut o = Open::new(asn, hold, Ipv4Addr::from(id % 4), caps);
            o.version = ver;
            o
        })
}

fn notification() -> impl Strategy<Value = Notification> {
    (1u8..8, 0u8..10).prop_map(|(c, s)| Notification::new(ErrorCode(c), s, vec![]))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Event(Event::ManualStart)),
        1 => Just(Step::Event(Event::ManualStop(None))),
        1 => Just(Step::Event(Event::TcpConnected)),
        1 => Just(Step::Event(Event::TcpAccepted)),
        1 => Just(Step::Event(Event::TcpFailed)),
        3 => open_strategy().prop_map(|o| Step::Event(Event::Open(o))),
        1 => notification().prop_map(|n| Step::Event(Event::DecodeError(n))),
        1 => notification().prop_map(|n| Step::Event(Event::Notification(n))),
        1 => (notification(), proptest::option::of(0u64..100)).prop_map(|(n, r)| Step::Event(Event::LocalError {
            notification: n,
            restart_after: r.map(Duration::from_secs)
        })),
        3 => Just(Step::Event(Event::Keepalive)),
        1 => Just(Step::Event(Event::Update)),
        1 => Just(Step::Event(Event::RouteRefresh)),
        1 => Just(Step::Event(Event::OpenCollisionDump)),
        1 => (0u64..20_000).prop_map(Step::Advance),
        3 => Just(Step::FireNext),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_sequences_keep_invariants(
        steps in proptest::collection::vec(step(), 1..80),
        passive in any::<bool>(),
        delay in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut c = FsmConfig::new(65001, Some(65000), Ipv4Addr::new(0, 0, 0, 1));
        c.passive = passive;
        c.delay_open = delay.then(|| Duration::from_secs(2));
        c.seed = seed;
        c.hold_time = 9;
        let mut f = Fsm::new(c);
        let mut now = Instant::now();
        for s in steps {
            let before = f.state();
            match s {
                Step::Event(e) => f.handle(e, now),
                Step::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    f.handle_timeout(now);
                }
                Step::FireNext => {
                    if let Some(t) = f.poll_timeout() {
                        now = now.max(t);
                        f.handle_timeout(now);
                    }
                }
            }
            if let Err(e) = f.check_invariants() {
                prop_assert!(false, "invariant broken after {:?}: {}", before, e);
            }
            // After handle_timeout(now) no deadline remains in the past.
            f.handle_timeout(now);
            if let Some(t) = f.poll_timeout() {
                prop_assert!(t > now);
            }
            while let Some(a) = f.poll_action() {
                match a {
                    Action::Established(_) => prop_assert_eq!(f.state(), State::Established),
                    Action::Connect => prop_assert!(!passive, "a passive peer never connects out"),
                    _ => {}
                }
            }
        }
    }
}
