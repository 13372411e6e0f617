//! A client certificate is attacker-controlled input to the mTLS endpoints:
//! identity extraction must never panic, whatever the DER says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_certs::Identity::from_cert_der(data);
});
