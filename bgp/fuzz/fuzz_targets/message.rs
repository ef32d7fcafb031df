//! Whole-message decode (header + any body) under every context; a clean
//! decode must re-encode to the same bytes or to bytes that decode equal.
#![no_main]

use flatnet_bgp::wire::{DecodeContext, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&c, msg)) = data.split_first() else {
        return;
    };
    let ctx = DecodeContext {
        four_octet_as: c & 1 != 0,
        add_path_ipv4: c & 2 != 0,
        add_path_ipv6: c & 4 != 0,
        extended_message: c & 8 != 0,
        extended_next_hop_ipv4: c & 16 != 0,
    };
    if let Ok(d) = decode(msg, &ctx) {
        if let Ok(bytes) = d.message.to_bytes(&ctx) {
            let again = decode(&bytes, &ctx).expect("re-encoded message decodes");
            assert_eq!(again.message, d.message);
        }
    }
});
