//! Adversarial suite for the promise that masking changes personal data
//! and nothing else (docs/guard.md, "What can still be mistaken"): digits
//! that are part of a larger number — a decimal fraction, a sign — are an
//! amount, not a phone or identity number, and leave unchanged. A land
//! value of `13800000000.50` yuan must not be masked.

mod common;

use common::*;
use ferry_guard::Verdict;
use proptest::prelude::*;

/// Inspects `text` as plain text and as a CSV column under the mask
/// profile; true when neither found personal data.
fn untouched(text: &str) -> bool {
    let g = guard();
    let (r, m) = inspect(
        &g,
        format!("地价 {text} 元\n").as_bytes(),
        "v.txt",
        "text/plain",
    );
    let (c, cm) = inspect(
        &g,
        format!("parcel,value\nA-17,{text}\n").as_bytes(),
        "v.csv",
        "text/csv",
    );
    r.verdict == Verdict::Pass && m.is_none() && c.verdict == Verdict::Pass && cm.is_none()
}

#[test]
fn an_eleven_digit_amount_with_a_fraction_is_not_a_phone_number() {
    for n in [
        "13800000000.50",
        "13800000000.5",
        "-13800000000",
        "-13800000000.00",
        "+13800000000.1",
        "0.13800000000",
        "12.13812345678",
        "13812345678.0",
        "138 1234 5678.25",
        "110105194912310021.5",
    ] {
        assert!(untouched(n), "{n} was taken for personal data");
    }
}

#[test]
fn phone_numbers_next_to_punctuation_are_still_found() {
    let g = guard();
    for text in [
        "call 13812345678.",
        "Tel.13812345678",
        "电话:13812345678。",
        "+8613812345678",
        "+86 138 1234 5678",
        "a-13812345678",
        "13812345678,13912345678",
    ] {
        let (r, m) = inspect(&g, format!("{text}\n").as_bytes(), "p.txt", "text/plain");
        assert_eq!(r.verdict, Verdict::Masked, "{text}: {:#?}", r.findings);
        assert!(count(&r, "mobile") >= 1, "{text}");
        assert!(m.is_some());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Masking never changes a number that is not a phone number: any
    /// amount with a fractional part, or signed, whose integer digits
    /// would look like a mobile number.
    #[test]
    fn masking_never_changes_an_amount(
        second in 3u8..=9,
        rest in "[0-9]{9}",
        frac in "[0-9]{1,4}",
        form in 0u8..4,
    ) {
        let int = format!("1{second}{rest}");
        let n = match form {
            0 => format!("{int}.{frac}"),
            1 => format!("-{int}"),
            2 => format!("-{int}.{frac}"),
            _ => format!("{frac}.{int}"),
        };
        prop_assert!(untouched(&n), "{} was taken for personal data", n);
    }
}
