//! clamd's answers come over a socket from another process that may be
//! broken, replaced or hostile: parsing them must never panic, and nothing
//! but the exact `stream: OK` may ever read as clean.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ferry_guard::Detection::Clean) = ferry_guard::parse_instream_reply(data) {
        assert_eq!(data, b"stream: OK\0");
    }
    if let Some(v) = ferry_guard::parse_version_reply(data) {
        assert!(v.engine.starts_with("ClamAV "));
        let _ = v.database_age_days(i64::MAX);
        let _ = v.database_age_days(i64::MIN);
    }
});
