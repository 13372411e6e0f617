//! Promise pinned here (docs/guard.md, "Disarm"): under `disarm` a PDF's
//! JavaScript, launch and URI actions, embedded files and XFA forms are
//! found wherever they are — also inside compressed object streams, where
//! no byte search sees them — and taken out (`"strip"`) or refused
//! (`"refuse"`); what is left is a valid PDF (`qpdf --check`) in which
//! `qpdf` finds none of them. A PDF the parser cannot read is refused,
//! never passed.

mod common;

use common::{assert_rejected, count, skip};
use ferry_guard::{Guard, Profile, Verdict};
use std::path::Path;
use std::process::Command;

fn guard(disarm: &str) -> Guard {
    let s = serde_json::json!({ "allowed_types": ["application/pdf"], "disarm": disarm });
    Guard::new(Profile::from_settings("import", &s, &common::lists).expect("profile"))
}

/// A PDF written object by object, with a correct cross-reference table.
fn pdf(objects: &[&str]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

const PAGE_TEXT: &str = "BT /F1 12 Tf 72 720 Td (Parcel survey) Tj ET";

/// Everything a hostile PDF carries: a script that runs on open, a link
/// that launches a program, a URI link, an embedded file, an XFA form.
fn hostile() -> Vec<u8> {
    let content = format!(
        "<< /Length {} >>\nstream\n{PAGE_TEXT}\nendstream",
        PAGE_TEXT.len() + 1
    );
    pdf(&[
        "<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R /Names << /EmbeddedFiles << /Names [(survey.exe) 8 0 R] >> >> /AcroForm << /Fields [] /XFA 9 0 R >> >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R /Annots [6 0 R 7 0 R] /Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>",
        "<< /Type /Action /S /JavaScript /JS (app.alert\\('owned'\\);) >>",
        &content,
        "<< /Type /Annot /Subtype /Link /Rect [72 700 200 720] /A << /S /Launch /F (cmd.exe) >> >>",
        "<< /Type /Annot /Subtype /Link /Rect [72 680 200 700] /A << /S /URI /URI (http://192.0.2.7/track) >> >>",
        "<< /Type /Filespec /F (survey.exe) /EF << /F 10 0 R >> >>",
        "<< /Length 12 >>\nstream\n<xdp:xdp/>\n\nendstream",
        "<< /Type /EmbeddedFile /Length 4 >>\nstream\nMZ\x00\x00\nendstream",
    ])
}

fn qpdf(args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new("qpdf")
        .args(args)
        .arg(file)
        .output()
        .expect("qpdf");
    (
        out.status.success() || out.status.code() == Some(3),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The PDF uncompressed by qpdf (object streams expanded), as text.
fn expanded(dir: &Path, data: &[u8]) -> String {
    let f = dir.join("in.pdf");
    std::fs::write(&f, data).expect("write");
    let out = dir.join("qdf.pdf");
    let st = Command::new("qpdf")
        .args(["--qdf", "--object-streams=disable"])
        .arg(&f)
        .arg(&out)
        .status()
        .expect("qpdf");
    assert!(st.success() || st.code() == Some(3), "qpdf --qdf failed");
    String::from_utf8_lossy(&std::fs::read(&out).expect("read")).into_owned()
}

const ACTIVE: &[&str] = &[
    "/JavaScript",
    "/JS",
    "/Launch",
    "/URI",
    "/EmbeddedFile",
    "/XFA",
    "cmd.exe",
    "app.alert",
];

#[test]
fn active_content_is_stripped_even_from_compressed_object_streams() {
    const T: &str = "active_content_is_stripped_even_from_compressed_object_streams";
    if Command::new("qpdf").arg("--version").output().is_err() {
        skip(T, "`qpdf` not found (Debian: qpdf)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = hostile();
    // The same document with its objects packed into compressed object
    // streams by qpdf: a byte search for /JavaScript finds nothing.
    let src = dir.path().join("hostile.pdf");
    std::fs::write(&src, &plain).expect("write");
    let packed_path = dir.path().join("packed.pdf");
    let st = Command::new("qpdf")
        .args(["--object-streams=generate", "--compress-streams=y"])
        .arg(&src)
        .arg(&packed_path)
        .status()
        .expect("qpdf");
    assert!(st.success() || st.code() == Some(3));
    let packed = std::fs::read(&packed_path).expect("read");
    assert!(
        memchr::memmem::find(&packed, b"JavaScript").is_none(),
        "not packed"
    );
    let before = expanded(dir.path(), &packed);
    assert!(
        before.contains("/JavaScript") && before.contains("/XFA"),
        "{before}"
    );

    let g = guard("strip");
    for (label, data) in [("plain", &plain), ("packed", &packed)] {
        let (r, out) = g
            .inspect_bytes(data, "survey.pdf", "application/pdf")
            .expect("no machine error");
        assert_eq!(r.verdict, Verdict::Masked, "{label}: {:#?}", r.reasons);
        for d in [
            "pdf_javascript",
            "pdf_launch",
            "pdf_uri",
            "pdf_embedded_file",
            "pdf_xfa",
        ] {
            assert!(count(&r, d) >= 1, "{label}: no {d} in {:#?}", r.findings);
        }
        let json = serde_json::to_string(&r).expect("json");
        for secret in ["owned", "cmd.exe", "192.0.2.7", "survey.exe"] {
            assert!(!json.contains(secret), "{label}: {secret} in the report");
        }
        let out = out.expect("stripped copy");
        let f = dir.path().join(format!("{label}-out.pdf"));
        std::fs::write(&f, &out).expect("write");
        let (ok, check) = qpdf(&["--check"], &f);
        assert!(ok, "{label}: qpdf --check: {check}");
        let after = expanded(dir.path(), &out);
        for a in ACTIVE {
            assert!(!after.contains(a), "{label}: {a} left: {after}");
        }
        // The page and its text are still there.
        assert!(after.contains("Parcel survey"), "{label}: {after}");
        // A second inspection finds nothing left to strip.
        let (again, copy) = g
            .inspect_bytes(&out, "survey.pdf", "application/pdf")
            .expect("no machine error");
        assert_eq!(
            again.verdict,
            Verdict::Pass,
            "{label}: {:#?}",
            again.reasons
        );
        assert!(copy.is_none());
    }
}

#[test]
fn refuse_mode_refuses_and_a_clean_pdf_passes_unchanged() {
    let (r, out) = guard("refuse")
        .inspect_bytes(&hostile(), "survey.pdf", "application/pdf")
        .expect("no machine error");
    assert_rejected(&r, "disarm = \"refuse\"");
    assert!(out.is_none());
    let content = format!(
        "<< /Length {} >>\nstream\n{PAGE_TEXT}\nendstream",
        PAGE_TEXT.len() + 1
    );
    let clean = pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        &content,
    ]);
    let (r, out) = guard("strip")
        .inspect_bytes(&clean, "survey.pdf", "application/pdf")
        .expect("no machine error");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert!(out.is_none());
    assert_eq!(r.digest_after, r.digest_before);
}

#[test]
fn a_pdf_the_parser_cannot_read_is_refused_not_passed() {
    let mut broken = hostile();
    // Cut out the middle: the cross-reference table points nowhere.
    broken.drain(200..400);
    let (r, out) = guard("strip")
        .inspect_bytes(&broken, "survey.pdf", "application/pdf")
        .expect("no machine error");
    assert_ne!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert_ne!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
    assert!(out.is_none());
    let (r, _) = guard("strip")
        .inspect_bytes(b"%PDF-1.7\ngarbage\n%%EOF\n", "x.pdf", "application/pdf")
        .expect("no machine error");
    assert_rejected(&r, "cannot");
}

mod hostile_bytes {
    //! Mutated hostile PDFs end in a verdict, never a panic; a stripped
    //! one comes back clean (the fuzz target `guard_inspect` runs the same
    //! profile on arbitrary bytes).
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        #[test]
        fn mutated_pdfs_never_panic_and_stripped_ones_come_back_clean(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let mut data = hostile();
            for (at, byte, how) in edits {
                let i = at.index(data.len());
                match how {
                    0 => data[i] = byte,
                    1 => { data.remove(i); }
                    _ => data.insert(i, byte),
                }
            }
            let g = guard("strip");
            let (r, out) = g.inspect_bytes(&data, "a.pdf", "application/pdf").expect("no machine error");
            if let Some(out) = out {
                prop_assert_eq!(r.verdict, Verdict::Masked);
                let (again, copy) = g.inspect_bytes(&out, "a.pdf", "application/pdf").expect("no machine error");
                prop_assert_eq!(again.verdict, Verdict::Pass, "{:?}", again.reasons);
                prop_assert!(copy.is_none());
            }
        }
    }
}
