#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Smoke run of the full-table feed benchmark (`bench-bgp-feed`): 10,000
//! prefixes against BIRD and flatnet's speaker must all reach the Loc-RIB.
//! Needs root (namespaces) and BIRD 2.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flatnet_lab::feed::{self, FeedSpec, FlatnetCmd, Kind, RunOptions};

#[test]
fn ten_thousand_prefixes_reach_bird_and_flatnet() {
    flatnet_lab::require_root().unwrap();
    let started = Instant::now();
    let spec = FeedSpec {
        prefixes: 10_000,
        attr_sets: 300,
        ..FeedSpec::default()
    };
    let feed = Arc::new(feed::build_feed(&spec, feed::FEEDER_ADDR).unwrap());
    assert_eq!(feed.prefixes, 10_000);
    let opts = RunOptions {
        poll: Duration::from_millis(50),
        timeout: Duration::from_secs(10),
        flatnet: Some(FlatnetCmd::Program {
            program: env!("CARGO_BIN_EXE_bench-bgp-feed").into(),
            args: vec!["flatnet-receiver".into()],
        }),
    };
    let mut results = Vec::new();
    for kind in [Kind::Bird, Kind::Flatnet] {
        let r = feed::run_one(kind, &feed, &opts).unwrap();
        assert_eq!(r.prefixes, 10_000, "{}: {r:?}", kind.label());
        assert!(r.peak_kib > 0 && r.peak_kib >= r.baseline_kib, "{r:?}");
        assert!(r.seconds > 0.0, "{r:?}");
        results.push(r);
    }
    let t = feed::table(&results);
    println!("{t}");
    assert!(t.contains("| BIRD 2 |") && t.contains("| flatnet ("), "{t}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
