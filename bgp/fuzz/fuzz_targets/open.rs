//! OPEN body decoder; whatever decodes must re-encode and decode the same.
#![no_main]

use flatnet_bgp::wire::Open;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = Open::decode_body(data) {
        let mut out = Vec::new();
        if o.encode_body(&mut out).is_ok() {
            assert_eq!(Open::decode_body(&out).as_ref(), Ok(&o));
        }
    }
});
