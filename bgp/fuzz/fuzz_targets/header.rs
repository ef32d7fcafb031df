//! Framing: `frame` on arbitrary stream prefixes must never panic, and what
//! it accepts must be a header `check_header` accepts.
#![no_main]

use flatnet_bgp::wire::{DecodeContext, Header, check_header, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else {
        return;
    };
    let ctx = DecodeContext {
        extended_message: c & 1 != 0,
        ..DecodeContext::legacy()
    };
    if let Ok(Some(n)) = frame(rest, &ctx) {
        assert!(n <= rest.len() && n >= 19);
        let h = Header::peek(rest).expect("framed message has a header");
        assert_eq!(check_header(h, &ctx).map(|(_, l)| l), Ok(n));
    }
});
