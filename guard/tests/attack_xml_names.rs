//! Adversarial suite for the promise that every part of an XML document
//! the sender wrote is searched (docs/guard.md, "Dirty words" and
//! "Personal data"): markings and personal data hidden in element and
//! attribute **names** are found, as in JSON keys and CSV headers, and
//! the names that hold them are shown as `*` in locations.

mod common;

use common::*;
use ferry_guard::Verdict;

#[test]
fn a_marking_in_an_element_name_is_found() {
    let g = guard();
    let doc = "<parcels><机密><id>A-17</id></机密></parcels>";
    let (r, _) = inspect(&g, doc.as_bytes(), "p.xml", "application/xml");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r);
    assert_eq!(count(&r, "dirty_word"), 1, "{:#?}", r.findings);
}

#[test]
fn a_marking_in_an_attribute_name_is_found() {
    let g = guard();
    let doc = "<parcels><p 内部资料=\"1\">A-17</p></parcels>";
    let (r, _) = inspect(&g, doc.as_bytes(), "p.xml", "application/xml");
    assert_eq!(count(&r, "dirty_word"), 1, "{:#?}", r.findings);
    assert_eq!(r.verdict, Verdict::Reject);
}

#[test]
fn personal_data_in_names_is_found_and_the_names_are_not_shown() {
    let g = guard_edit(|s| s["pii"]["action"] = serde_json::json!("review"));
    let doc = "<r><owner_13812345678 id_110105194912310021=\"x\">v</owner_13812345678></r>";
    let (r, _) = inspect(&g, doc.as_bytes(), "p.xml", "application/xml");
    assert_eq!(r.verdict, Verdict::Review, "{:#?}", r);
    assert_eq!(count(&r, "mobile"), 1, "{:#?}", r.findings);
    let json = serde_json::to_string(&r).expect("serialises");
    assert!(!json.contains("13812345678"), "{json}");
    assert!(
        r.findings
            .iter()
            .any(|f| f.location.field.as_deref() == Some("/r/* (element name)")),
        "{:#?}",
        r.findings
    );
}

#[test]
fn clean_names_pass_and_are_shown() {
    let g = guard();
    let doc = "<parcels><parcel area=\"1200\">A-17</parcel></parcels>";
    let (r, _) = inspect(&g, doc.as_bytes(), "p.xml", "application/xml");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r);
}
