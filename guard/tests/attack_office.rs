//! Adversarial suite for office documents and legacy encodings
//! (docs/guard.md, "Office documents" and "Legacy encodings"): what
//! land-resources offices exchange every day is *inspected*, with the same
//! archive limits as any zip — never waved through, never refused for its
//! container. Markings split across Word runs are found; macros and
//! embedded binaries are refused (or held, as the profile says); GBK text
//! is decoded where the profile allows it and otherwise refused with its
//! encoding named.

mod common;

use common::*;
use ferry_guard::{Guard, Verdict};

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const ODT: &str = "application/vnd.oasis.opendocument.text";

fn office_guard(edit: impl FnOnce(&mut serde_json::Value)) -> Guard {
    guard_edit(|s| {
        let types = s["allowed_types"].as_array_mut().expect("list");
        for t in [DOCX, XLSX, ODT] {
            types.push(serde_json::json!(t));
        }
        edit(s);
    })
}

const CONTENT_TYPES: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>"#;
const RELS: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;

fn document(body: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    )
    .into_bytes()
}

/// A minimal real .docx: content types, package relationships, the
/// document part, and any `extra` parts.
fn docx(body: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let doc = document(body);
    let mut entries = vec![
        entry("[Content_Types].xml", CONTENT_TYPES),
        entry("_rels/.rels", RELS),
        entry("word/document.xml", &doc),
    ];
    for (n, d) in extra {
        entries.push(entry(n, d));
    }
    zip(&entries)
}

fn xlsx(shared: &str) -> Vec<u8> {
    let sst = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1"><si><t>{shared}</t></si></sst>"#
    );
    let sheet = br#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>13800000000.5</v></c></row></sheetData></worksheet>"#;
    zip(&[
        entry("[Content_Types].xml", CONTENT_TYPES),
        entry("_rels/.rels", RELS),
        entry("xl/sharedStrings.xml", sst.as_bytes()),
        entry("xl/worksheets/sheet1.xml", sheet),
    ])
}

fn odt(text: &str) -> Vec<u8> {
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text><text:p>{text}</text:p></office:text></office:body></office:document-content>"#
    );
    let manifest = br#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/></manifest:manifest>"#;
    let mut mt = entry("mimetype", ODT.as_bytes());
    mt.deflate = false;
    zip(&[
        mt,
        entry("content.xml", content.as_bytes()),
        entry("META-INF/manifest.xml", manifest),
    ])
}

#[test]
fn a_clean_docx_passes_by_its_extension_and_as_a_zip() {
    let g = office_guard(|_| {});
    let d = docx(
        "<w:p><w:r><w:t>宗地 A-17 面积 1200 平方米</w:t></w:r></w:p>",
        &[],
    );
    let (r, _) = inspect(&g, &d, "report.docx", "");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert_eq!(r.detected_type.as_deref(), Some(DOCX));
    assert!(r.members >= 3, "its parts were inspected");
    // The same bytes named .zip: `_rels/.rels` is known as an office part.
    let (r, _) = inspect(&g, &d, "report.zip", "");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
}

#[test]
fn a_marking_split_across_word_runs_is_found() {
    let g = office_guard(|_| {});
    let d = docx(
        "<w:p><w:r><w:rPr><w:b w:val=\"1\"/></w:rPr><w:t>机</w:t></w:r><w:r><w:t>密</w:t></w:r></w:p>",
        &[],
    );
    let (r, _) = inspect(&g, &d, "memo.docx", DOCX);
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    assert_eq!(count(&r, "dirty_word"), 1, "{:#?}", r.findings);
    // A mobile number split across runs, too.
    let d = docx(
        "<w:p><w:r><w:t>电话 138</w:t></w:r><w:r><w:t>1234</w:t></w:r><w:r><w:t>5678</w:t></w:r></w:p>",
        &[],
    );
    let (r, _) = inspect(&g, &d, "memo.docx", DOCX);
    assert_eq!(count(&r, "mobile"), 1, "{:#?}", r.findings);
    assert_eq!(
        r.verdict,
        Verdict::Reject,
        "mask is impossible inside a document"
    );
}

#[test]
fn xlsx_and_odt_text_is_inspected() {
    let g = office_guard(|_| {});
    let (r, _) = inspect(&g, &xlsx("秘密 parcel list"), "parcels.xlsx", "");
    assert_eq!(count(&r, "dirty_word"), 1, "{:#?}", r);
    let (r, _) = inspect(&g, &xlsx("owner 13812345678"), "parcels.xlsx", "");
    assert_eq!(count(&r, "mobile"), 1, "{:#?}", r);
    let (r, _) = inspect(&g, &odt("TOP SECRET plan"), "plan.odt", "");
    assert_eq!(count(&r, "dirty_word"), 1, "{:#?}", r);
    let (r, _) = inspect(&g, &odt("nothing to see"), "plan.odt", "");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
}

#[test]
fn macros_and_embedded_binaries_are_refused_or_held_as_the_profile_says() {
    let vba = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1 macro";
    let d = docx("<w:p/>", &[("word/vbaProject.bin", vba)]);
    let g = office_guard(|_| {});
    let (r, _) = inspect(&g, &d, "m.docx", "");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    assert_eq!(count(&r, "office_macro"), 1);
    let e = docx("<w:p/>", &[("word/embeddings/oleObject1.bin", vba)]);
    let (r, _) = inspect(&g, &e, "m.docx", "");
    assert_eq!(count(&r, "office_embedded"), 1, "{:#?}", r);
    assert_eq!(r.verdict, Verdict::Reject);
    let g = office_guard(|s| s["office"] = serde_json::json!({ "action": "review" }));
    let (r, _) = inspect(&g, &d, "m.docx", "");
    assert_eq!(r.verdict, Verdict::Review, "{:#?}", r.reasons);
    assert_eq!(count(&r, "office_macro"), 1);
}

#[test]
fn office_documents_get_the_archive_limits() {
    // Too many parts.
    let g = office_guard(|s| s["archives"]["max_members"] = serde_json::json!(2));
    let (r, _) = inspect(&g, &docx("<w:p/>", &[]), "big.docx", "");
    assert_rejected(&r, "max_members");
    // A bomb: one part far larger than its compressed size.
    let g = office_guard(|s| s["archives"]["max_ratio"] = serde_json::json!(10));
    let body = format!("<w:p><w:r><w:t>{}</w:t></w:r></w:p>", "a".repeat(2_000_000));
    let (r, _) = inspect(&g, &docx(&body, &[]), "bomb.docx", "");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    // Documents inside documents stop at max_depth.
    let inner = docx("<w:p/>", &[]);
    let outer = docx("<w:p/>", &[("word/embeddings/inner.docx", &inner)]);
    let g = office_guard(|s| s["archives"]["max_depth"] = serde_json::json!(1));
    let (r, _) = inspect(&g, &outer, "outer.docx", "");
    assert_rejected(&r, "max_depth");
}

/// "地块编号,联系电话\n" and "机密" in GBK.
const GBK_HEADER: &[u8] = b"\xb5\xd8\xbf\xe9\xb1\xe0\xba\xc5,\xc1\xaa\xcf\xb5\xb5\xe7\xbb\xb0\n";
const GBK_MARKING: &[u8] = b"\xbb\xfa\xc3\xdc";

#[test]
fn gbk_text_is_refused_naming_its_encoding_unless_the_profile_allows_it() {
    let mut csv = GBK_HEADER.to_vec();
    csv.extend_from_slice(b"A-17,13812345678\n");
    let mut txt = b"memo ".to_vec();
    txt.extend_from_slice(GBK_MARKING);
    txt.extend_from_slice(b"\n");
    let g = office_guard(|_| {});
    let (r, _) = inspect(&g, &txt, "memo.txt", "text/plain");
    assert_rejected(&r, "GBK/GB18030");
    let g = office_guard(|s| s["legacy_encodings"] = serde_json::json!(true));
    let (r, _) = inspect(&g, &txt, "memo.txt", "text/plain");
    assert_eq!(count(&r, "dirty_word"), 1, "{:#?}", r);
    let (r, _) = inspect(&g, &csv, "owners.csv", "text/csv");
    assert_eq!(count(&r, "mobile"), 1, "{:#?}", r);
    assert_eq!(r.verdict, Verdict::Reject, "GBK text is not rewritten");
    assert_rejected(&r, "does not rewrite GBK");
    // Clean GBK passes unchanged.
    let (r, _) = inspect(&g, GBK_HEADER, "h.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
}

/// Promise: a GBK/GB18030 member of an archive is decoded and inspected
/// like a GBK package (a marking in it is found), and refused naming its
/// encoding where the profile does not allow legacy encodings — packing
/// legacy text into a zip neither hides it nor changes the rule.
#[test]
fn gbk_members_of_an_archive_are_decoded_and_inspected_too() {
    let mut txt = b"memo ".to_vec();
    txt.extend_from_slice(GBK_MARKING);
    txt.extend_from_slice(b"\n");
    let mut clean = GBK_HEADER.to_vec();
    clean.extend_from_slice(b"A-17,42\n");
    let packed = zip(&[entry("memo.txt", &txt), entry("owners.csv", &clean)]);
    let allow_zip = |s: &mut serde_json::Value| {
        s["archives"]["allowed"] = serde_json::json!(true);
    };
    let g = office_guard(|s| allow_zip(s));
    let (r, _) = inspect(&g, &packed, "memos.zip", "application/zip");
    assert_rejected(&r, "GBK/GB18030");
    let g = office_guard(|s| {
        allow_zip(s);
        s["legacy_encodings"] = serde_json::json!(true);
    });
    let (r, _) = inspect(&g, &packed, "memos.zip", "application/zip");
    assert_eq!(count(&r, "dirty_word"), 1, "{:#?}", r);
    let only_clean = zip(&[entry("owners.csv", &clean)]);
    let (r, _) = inspect(&g, &only_clean, "clean.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
}
