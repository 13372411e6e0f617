//! The signed-manifest codec, both ways.
//!
//! 1. Arbitrary bytes to `Manifest::decode_signed`: it must never panic,
//!    and whatever it accepts must re-encode (`encode_body` +
//!    `encode_signed`) to exactly the same bytes. The signature covers the
//!    re-encoded body on the egress side's terms, so the encoding must be
//!    canonical: one manifest, one byte string.
//! 2. The same bytes read as a manifest value: if it encodes, its encoding
//!    must decode back to the same value, unless a field is one that only
//!    the decoder bounds (chunk size, block symbols, symbol size).
#![no_main]

use ferry_protocol::manifest::MAX_SIGNATURE_LEN;
use ferry_protocol::sender::MAX_CHUNK_SIZE;
use ferry_protocol::{wire, Inspection, InspectionVerdict, Manifest, PackageId, PackageMeta, SuiteId};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn manifest_from(u: &mut Unstructured<'_>) -> Result<(Manifest, Vec<u8>)> {
    let m = Manifest {
        meta: PackageMeta {
            id: PackageId(u.arbitrary()?),
            channel: u.arbitrary()?,
            size: u.arbitrary()?,
            digest: u.arbitrary()?,
            file_name: u.arbitrary()?,
            content_type: u.arbitrary()?,
            sender_identity: u.arbitrary()?,
            created_unix_ms: u.arbitrary()?,
            inspection: if u.arbitrary()? {
                Some(Inspection {
                    profile: u.arbitrary()?,
                    verdict: match u.int_in_range(0..=2u8)? {
                        0 => InspectionVerdict::Pass,
                        1 => InspectionVerdict::Masked,
                        _ => InspectionVerdict::Reviewed,
                    },
                    sha256_before: u.arbitrary()?,
                    sha256_after: u.arbitrary()?,
                })
            } else {
                None
            },
        },
        suite: if u.arbitrary()? {
            SuiteId::Intl
        } else {
            SuiteId::Gm
        },
        seq: u.arbitrary()?,
        epoch: u.arbitrary()?,
        chunk_size: u.arbitrary()?,
        block_symbols: u.arbitrary()?,
        symbol_size: u.arbitrary()?,
        signing_key_id: u.arbitrary()?,
        recipient_key_id: u.arbitrary()?,
        ephemeral: u.arbitrary()?,
        first_seq: u.arbitrary()?,
        bundle_from_seq: u.arbitrary()?,
    };
    let signature = u.arbitrary()?;
    Ok((m, signature))
}

fuzz_target!(|data: &[u8]| {
    if let Ok((m, body, signature)) = Manifest::decode_signed(data) {
        let again = m.encode_body().expect("a decoded manifest re-encodes");
        assert!(again == body, "body re-encodes differently");
        let signed = Manifest::encode_signed(&again, signature).expect("signature re-encodes");
        assert!(signed == data, "signed manifest re-encodes differently");
    }

    let Ok((m, signature)) = manifest_from(&mut Unstructured::new(data)) else {
        return;
    };
    let Ok(body) = m.encode_body() else {
        return;
    };
    let Ok(signed) = Manifest::encode_signed(&body, &signature) else {
        assert!(signature.len() > MAX_SIGNATURE_LEN);
        return;
    };
    let decoder_only_fields_ok = (1..=MAX_CHUNK_SIZE).contains(&m.chunk_size)
        && (1..=wire::MAX_BLOCK_SYMBOLS).contains(&m.block_symbols)
        && m.symbol_size != 0
        && m.symbol_size % 2 == 0;
    match Manifest::decode_signed(&signed) {
        Ok((back, b, s)) => {
            assert!(decoder_only_fields_ok);
            assert!(back == m, "manifest changed through encode/decode");
            assert!(b == &body[..] && s == &signature[..]);
        }
        Err(e) => assert!(
            !decoder_only_fields_ok,
            "an encodable manifest did not decode: {e}"
        ),
    }
});
