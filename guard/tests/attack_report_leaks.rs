//! Adversarial suite for the guard's report promise (docs/guard.md,
//! "Reports"): *a report never holds a sensitive value*, whatever part of
//! the package the value hides in — archive member names refused for
//! their shape (traversal, backslash, duplicate, link, encryption), XML
//! element and attribute names, XML parse errors, CSV headers, the
//! declared type and the file-name extension. Each package plants a
//! marking and personal data where a hostile sender would, and every
//! rendering of the report (JSON as audited, text as printed) is scanned
//! for them.

mod common;

use common::*;
use ferry_guard::{Guard, Report};

const MARKING: &str = "机密";
/// A valid PRC identity number (check digit computed below).
fn id_number() -> String {
    let first17 = "11010519491231002";
    let c = ferry_guard::prc_id_check(first17.as_bytes()).expect("valid first 17");
    format!("{first17}{}", char::from(c))
}
const MOBILE: &str = "13812345678";

/// Every rendering of `r` that leaves the guard: the JSON that goes into
/// the audit record and the reasons as `ferryctl` prints them.
fn renderings(r: &Report) -> Vec<String> {
    let mut out = vec![
        serde_json::to_string(r).expect("report serialises"),
        r.reasons.join("\n"),
    ];
    for f in &r.findings {
        out.push(format!(
            "{} {} {:?} {:?}",
            f.kind.as_str(),
            f.detector,
            f.location.member,
            f.location.field
        ));
    }
    out
}

/// Asserts that no planted value appears in any rendering of `r`.
fn assert_no_leak(what: &str, r: &Report) {
    let id = id_number();
    for text in renderings(r) {
        for planted in [MARKING, id.as_str(), MOBILE] {
            assert!(
                !text.contains(planted),
                "{what}: the report holds the planted value {planted:?}:\n{text}"
            );
        }
    }
}

fn run(g: &Guard, what: &str, data: &[u8], name: &str, ty: &str) -> Report {
    let (r, _) = inspect(g, data, name, ty);
    assert_no_leak(what, &r);
    r
}

/// Sets the "encrypted" flag of every central-directory entry.
fn encrypt_flag(mut z: Vec<u8>) -> Vec<u8> {
    let mut i = 0;
    while i + 4 <= z.len() {
        if z[i..i + 4] == 0x0201_4b50u32.to_le_bytes() {
            z[i + 8] |= 1;
        }
        i += 1;
    }
    z
}

#[test]
fn member_names_refused_for_their_shape_never_reach_a_report() {
    let id = id_number();
    let g = guard();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "path traversal",
            zip(&[entry(&format!("../{MARKING}/{id}.csv"), b"a\n1\n")]),
            "path traversal",
        ),
        (
            "backslash",
            zip(&[entry(&format!("{MARKING}\\{MOBILE}.csv"), b"a\n1\n")]),
            "backslash",
        ),
        (
            "absolute",
            zip(&[entry(&format!("/{MARKING}/{id}.csv"), b"a\n1\n")]),
            "absolute path",
        ),
        (
            "duplicate",
            zip(&[
                entry(&format!("{MARKING}{id}.txt"), b"x\n"),
                entry(&format!("{MARKING}{id}.txt"), b"y\n"),
            ]),
            "",
        ),
        (
            "symlink",
            zip(&[ZipEntry {
                name: format!("{MARKING}-{MOBILE}.txt").as_bytes().to_vec().leak(),
                data: b"/etc/passwd",
                deflate: false,
                unix_mode: Some(0o120_777),
            }]),
            "symbolic link",
        ),
        (
            "encrypted",
            encrypt_flag(zip(&[entry(&format!("{MARKING}_{id}.csv"), b"a\n1\n")])),
            "encrypted",
        ),
        (
            "tar symlink",
            tar(&[(&format!("{MARKING}{MOBILE}.txt"), b'2', b"")]),
            "link",
        ),
        (
            "tar traversal",
            tar(&[(&format!("../{id}/{MARKING}.txt"), b'0', b"x\n")]),
            "path traversal",
        ),
    ];
    for (what, data, needle) in cases {
        let name = if what.starts_with("tar") {
            "p.tar"
        } else {
            "p.zip"
        };
        let r = run(&g, what, &data, name, "");
        assert_rejected(&r, needle);
        assert!(
            r.reasons.iter().any(|x| x.contains("member #")),
            "{what}: the member is named by its position: {:#?}",
            r.reasons
        );
    }
}

#[test]
fn member_names_are_redacted_even_when_the_profile_does_not_look_for_that_data() {
    // A profile without personal-data detectors: an identity number in a
    // refused member name still never reaches the report.
    let id = id_number();
    let g = guard_edit(|s| {
        s.as_object_mut().expect("object").remove("pii");
    });
    let data = zip(&[entry(&format!("../{id}.csv"), b"a\n1\n")]);
    let r = run(&g, "no pii profile", &data, "p.zip", "");
    assert_rejected(&r, "path traversal");
}

#[test]
fn xml_names_and_parse_errors_never_reach_a_report() {
    let id = id_number();
    let g = guard_edit(|s| {
        s["pii"]["action"] = serde_json::json!("review");
    });
    let cases = [
        (
            "mismatched end tag",
            format!("<r><{MARKING}></x{MOBILE}></r>"),
        ),
        (
            "finding under a named element",
            format!("<r><{MARKING} a=\"1\">{MOBILE}</{MARKING}></r>"),
        ),
        (
            "finding in an attribute of a named element",
            format!("<r><x{MOBILE} a{id}=\"{MOBILE}\"/></r>"),
        ),
        ("unknown entity", format!("<r>&e_{MOBILE};</r>")),
        (
            "bad encoding declaration",
            format!("<?xml version=\"1.0\" encoding=\"x{MOBILE}\"?><r/>"),
        ),
    ];
    for (what, doc) in cases {
        run(&g, what, doc.as_bytes(), "d.xml", "application/xml");
    }
}

#[test]
fn csv_headers_declared_types_and_extensions_never_reach_a_report() {
    let id = id_number();
    let g = guard_edit(|s| {
        s["pii"]["action"] = serde_json::json!("review");
    });
    run(
        &g,
        "csv header",
        format!("{MARKING},{id},phone\n1,2,{MOBILE}\n").as_bytes(),
        "t.csv",
        "text/csv",
    );
    run(
        &g,
        "declared type",
        b"hello\n",
        "t.txt",
        &format!("text/{MARKING}-{MOBILE}"),
    );
    run(&g, "extension", b"hello\n", &format!("t.{MARKING}{id}"), "");
    run(
        &g,
        "ascii extension",
        b"hello\n",
        &format!("t.x{MOBILE}"),
        "",
    );
}
