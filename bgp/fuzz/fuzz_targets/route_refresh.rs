//! ROUTE-REFRESH body decoder.
#![no_main]

use flatnet_bgp::wire::RouteRefresh;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = RouteRefresh::decode_body(data, data) {
        let mut out = Vec::new();
        r.encode_body(&mut out);
        assert_eq!(out, data);
    }
});
