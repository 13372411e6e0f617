//! A policy file is written by people and may arrive damaged: parsing and
//! validation must never panic and never yield a partial policy.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ferry_policy::parse_str(text, "fuzz.toml");
    }
});
