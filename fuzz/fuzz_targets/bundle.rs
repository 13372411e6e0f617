//! The bundle payload codec: arbitrary bytes to `bundle::decode` must never
//! panic, every member's range must lie inside the input, and whatever it
//! accepts must re-encode to exactly the same bytes (one bundle, one byte
//! string: the egress side delivers what the signed digest covered, no
//! more and no less).
#![no_main]

use ferry_protocol::bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(members) = bundle::decode(data) else {
        return;
    };
    let pairs: Vec<_> = members
        .iter()
        .map(|(m, range)| {
            assert!(range.end <= data.len(), "member range outside the input");
            (m.clone(), &data[range.clone()])
        })
        .collect();
    let again = bundle::encode(&pairs).expect("a decoded bundle re-encodes");
    assert!(again == data, "bundle re-encodes differently");
});
