//! Adversarial suite for RFC 4180 quoted fields that span lines
//! (docs/guard.md, "CSV"): a line break inside a quoted field is part of
//! the field, so a marking or a personal-data value split by one is found
//! there as it is in text, JSON and XML — for every detector. Two separate
//! records are never joined.

mod common;

use common::*;
use ferry_guard::Verdict;

fn csv_with(field: &str) -> Vec<u8> {
    format!("parcel,note\nA-17,\"{field}\"\nA-18,plain\n").into_bytes()
}

#[test]
fn a_marking_split_inside_a_quoted_field_is_found() {
    let g = guard();
    for field in ["机\n密", "机\r\n密", "see 秘\n密 file", "TOP\nSECRET"] {
        let (r, _) = inspect(&g, &csv_with(field), "n.csv", "text/csv");
        assert_eq!(count(&r, "dirty_word"), 1, "{field:?}: {:#?}", r.findings);
        assert_eq!(r.verdict, Verdict::Reject, "{field:?}");
    }
}

#[test]
fn every_personal_data_detector_sees_across_the_split() {
    let g = guard_edit(|s| s["pii"]["action"] = serde_json::json!("review"));
    let mut rng = Rng::new(16);
    let id = prc_id(&mut rng);
    let uscc_v = uscc(&mut rng);
    let card = luhn_complete("622202123456789");
    let cases = [
        ("mobile", "138\n12345678".to_string()),
        ("mobile", "tel 1381234\r\n5678".to_string()),
        ("prc_id", format!("{}\n{}", &id[..6], &id[6..])),
        ("uscc", format!("{}\n{}", &uscc_v[..9], &uscc_v[9..])),
        ("bank_card", format!("{}\n{}", &card[..8], &card[8..])),
        ("email", "li.ming@\nexample.com".to_string()),
    ];
    for (detector, field) in cases {
        let (r, _) = inspect(&g, &csv_with(&field), "n.csv", "text/csv");
        assert_eq!(
            count(&r, detector),
            1,
            "{detector} {field:?}: {:#?}",
            r.findings
        );
        assert_eq!(r.verdict, Verdict::Review, "{detector}");
    }
}

#[test]
fn a_split_value_is_masked_and_the_csv_stays_valid() {
    let g = guard();
    let (r, masked) = inspect(&g, &csv_with("138\n12345678"), "n.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r);
    let out = masked.expect("masked copy");
    let text = String::from_utf8(out.clone()).expect("utf-8");
    assert!(!text.contains("12345678"), "{text}");
    let (again, _) = inspect(&g, &out, "n.csv", "text/csv");
    assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again);
}

#[test]
fn separate_records_are_not_joined() {
    let g = guard();
    let data = "note\n机\n密\n138\n12345678\n";
    let (r, _) = inspect(&g, data.as_bytes(), "n.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r);
}

/// `body` with its Luhn check digit appended.
fn luhn_complete(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}
