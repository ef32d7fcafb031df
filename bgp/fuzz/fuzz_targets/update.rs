//! UPDATE body decoder under every context; a clean decode must re-encode
//! byte-exact or at least decode back to the same repr.
#![no_main]

use flatnet_bgp::wire::{DecodeContext, Update};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&c, body)) = data.split_first() else {
        return;
    };
    let ctx = DecodeContext {
        four_octet_as: c & 1 != 0,
        add_path_ipv4: c & 2 != 0,
        add_path_ipv6: c & 4 != 0,
        extended_message: c & 8 != 0,
        extended_next_hop_ipv4: c & 16 != 0,
    };
    if let Ok(d) = Update::decode_body(body, &ctx) {
        let mut out = Vec::new();
        d.update.encode_body(&ctx, &mut out);
        let again = Update::decode_body(&out, &ctx).expect("re-encoded update decodes");
        assert_eq!(again.update, d.update);
    }
});
