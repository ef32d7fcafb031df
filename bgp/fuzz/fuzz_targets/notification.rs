//! NOTIFICATION body decoder and shutdown-communication reader.
#![no_main]

use flatnet_bgp::wire::Notification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(n) = Notification::decode_body(data) {
        let _ = n.shutdown_message();
        let _ = n.to_string();
        let mut out = Vec::new();
        n.encode_body(&mut out);
        assert_eq!(out, data);
    }
});
