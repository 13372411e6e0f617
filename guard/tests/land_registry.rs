//! The guard on a synthetic land-registry data set: fake but valid
//! identity numbers, mobiles, credit codes and e-mail addresses, parcel
//! coordinates at 8 decimals, owner names, and a document marked 秘密 in
//! disguise. Every finding must be caught and masked as the profile says,
//! the masked package must pass the same profile, clean data must pass
//! unchanged, and no report may contain a sensitive value.

mod common;

use common::*;
use ferry_guard::{Action, FindingKind, Verdict};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// No value of the data set appears anywhere in the report.
fn assert_no_values(report: &ferry_guard::Report, parcels: &[Parcel]) {
    let json = serde_json::to_string(report).unwrap();
    for p in parcels {
        for v in [
            &p.owner_id,
            &p.phone,
            &p.company,
            &p.email,
            &p.lon,
            &p.lat,
            &p.owner_name,
        ] {
            assert!(!json.contains(v.as_str()), "the report contains {v}");
        }
    }
}

#[test]
fn csv_findings_are_caught_and_masked() {
    let parcels = parcels(60, 1);
    let data = csv(&parcels);
    let g = guard();
    let (r, masked) = inspect(&g, data.as_bytes(), "parcels-2026.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
    assert_eq!(r.detected_type.as_deref(), Some("text/csv"));
    // Every identity number, phone (column and remark), credit code,
    // address and coordinate.
    assert_eq!(count(&r, "prc_id"), 60);
    assert_eq!(count(&r, "mobile"), 60 + 30);
    assert_eq!(count(&r, "uscc"), 60);
    assert_eq!(count(&r, "email"), 60);
    assert_eq!(count(&r, "precision"), 120);
    assert_eq!(count(&r, "forbidden_attribute"), 1);
    assert_eq!(count(&r, "bank_card"), 0, "parcel ids are not cards");
    assert_eq!(r.findings_total as usize, r.findings.len());
    assert!(r.findings.iter().all(|f| f.action == Action::Mask));
    for f in &r.findings {
        if f.kind == FindingKind::PersonalData {
            let h = f.value_hash.as_deref().unwrap();
            assert_eq!(h.len(), 64);
        }
    }
    // Locations: line and column name.
    let id0 = r.findings.iter().find(|f| f.detector == "prc_id").unwrap();
    assert_eq!(id0.location.line, Some(2));
    assert_eq!(id0.location.field.as_deref(), Some("owner_id"));
    let first_line_len = CSV_HEADER.len() as u64 + 1;
    let off = first_line_len
        + data
            .lines()
            .nth(1)
            .unwrap()
            .find(&parcels[0].owner_id)
            .unwrap() as u64;
    assert_eq!(id0.location.byte_offset, Some(off));
    assert_no_values(&r, &parcels);
    assert_eq!(
        r.digest_before.as_deref(),
        Some(sha256_hex(data.as_bytes()).as_str())
    );

    let out = String::from_utf8(masked.expect("masked output")).unwrap();
    assert_eq!(
        r.digest_after.as_deref(),
        Some(sha256_hex(out.as_bytes()).as_str())
    );
    assert_ne!(r.digest_after, r.digest_before);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "parcel_id,owner_id,phone,company,email,lon,lat,area_m2,remark"
    );
    for (p, line) in parcels.iter().zip(lines) {
        assert!(!line.contains(&p.owner_name));
        let f: Vec<&str> = line.splitn(9, ',').collect();
        assert_eq!(f[0], p.parcel_id);
        assert_eq!(
            f[1],
            format!("{}********{}", &p.owner_id[..6], &p.owner_id[14..])
        );
        assert_eq!(f[2], format!("{}****{}", &p.phone[..3], &p.phone[7..]));
        assert!(f[4].contains('*') && f[4].contains('@'));
        for (v, orig) in [(f[5], &p.lon), (f[6], &p.lat)] {
            let decimals = v.split('.').nth(1).unwrap().len();
            assert_eq!(decimals, 4, "{v}");
            let d: f64 = v.parse::<f64>().unwrap() - orig.parse::<f64>().unwrap();
            assert!(d.abs() <= 0.00005 + 1e-12, "{v} vs {orig}");
        }
        assert_eq!(f[7], p.area);
    }
    // The masked package passes the same profile.
    let (again, _) = inspect(&g, out.as_bytes(), "parcels-2026.csv", "text/csv");
    assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
}

#[test]
fn geojson_findings_are_caught_and_masked() {
    let parcels = parcels(25, 2);
    let data = geojson(&parcels);
    let g = guard();
    let (r, masked) = inspect(
        &g,
        data.as_bytes(),
        "parcels.geojson",
        "application/geo+json",
    );
    assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
    assert_eq!(r.detected_type.as_deref(), Some("application/geo+json"));
    assert_eq!(count(&r, "prc_id"), 25);
    assert_eq!(count(&r, "mobile"), 25);
    assert_eq!(count(&r, "forbidden_attribute"), 25);
    assert_eq!(count(&r, "precision"), 25 * 8);
    let f = r.findings.iter().find(|f| f.detector == "prc_id").unwrap();
    assert_eq!(
        f.location.field.as_deref(),
        Some("/features/0/properties/owner_id")
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.detector == "precision")
        .unwrap();
    assert_eq!(
        f.location.field.as_deref(),
        Some("/features/0/geometry/coordinates/0/0/0")
    );
    assert_no_values(&r, &parcels);

    let out = masked.expect("masked output");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("masked GeoJSON is JSON");
    let features = v["features"].as_array().unwrap();
    assert_eq!(features.len(), 25);
    for (p, feat) in parcels.iter().zip(features) {
        let props = feat["properties"].as_object().unwrap();
        assert!(!props.contains_key("owner_name"));
        assert_eq!(props["parcel_id"], p.parcel_id.as_str());
        let id = props["owner_id"].as_str().unwrap();
        assert_eq!(
            id,
            format!("{}********{}", &p.owner_id[..6], &p.owner_id[14..])
        );
        for ring in feat["geometry"]["coordinates"].as_array().unwrap() {
            for pos in ring.as_array().unwrap() {
                for c in pos.as_array().unwrap() {
                    let s = c.to_string();
                    assert!(s.split('.').nth(1).is_none_or(|d| d.len() <= 4), "{s}");
                }
            }
        }
    }
    let (again, _) = inspect(&g, &out, "parcels.geojson", "application/geo+json");
    assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
}

#[test]
fn forbidden_first_and_last_members_are_dropped_cleanly() {
    let g = guard_edit(|s| {
        s["geodata"]["forbidden_attributes"] = serde_json::json!(["a", "c"]);
    });
    for (input, want) in [
        (r#"{"a":1,"b":2,"c":3}"#, serde_json::json!({"b": 2})),
        (
            r#"{"a":1,"c":3,"b":[1,{"a":{"x":[1,2]}}]}"#,
            serde_json::json!({"b": [1, {}]}),
        ),
        (
            r#"[{"c":"x"},{"a":null, "c": true}]"#,
            serde_json::json!([{}, {}]),
        ),
    ] {
        let (r, out) = inspect(&g, input.as_bytes(), "x.json", "application/json");
        assert_eq!(r.verdict, Verdict::Masked, "{input}");
        let v: serde_json::Value = serde_json::from_slice(&out.unwrap()).expect(input);
        assert_eq!(v, want, "{input}");
    }
}

#[test]
fn marked_document_is_caught_in_disguise() {
    let doc = "土地登记资料汇编\n\
               密级：秘 密★  保密期限：十年\n\
               本文件属ＴＯＰ　ＳＥＣＲＥＴ级别，\n\
               另见《絕\u{200B}密》附件与 Top Secret 附录。\n\
               联系人电话：１３８１２３４５６７８\n";
    let g = guard();
    let (r, masked) = inspect(&g, doc.as_bytes(), "report.txt", "text/plain");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    assert!(masked.is_none());
    let words: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::DirtyWord)
        .collect();
    assert_eq!(words.len(), 4, "{words:#?}");
    let lines: Vec<u64> = words.iter().map(|f| f.location.line.unwrap()).collect();
    assert_eq!(lines, vec![2, 3, 4, 4]);
    // The longest entry wins: "秘密★" (line 6 of the list), not "秘密".
    assert_eq!(words[0].pattern.as_deref(), Some("/lists/classified.txt:6"));
    assert_eq!(words[1].pattern.as_deref(), Some("/lists/classified.txt:7"));
    assert_eq!(words[2].pattern.as_deref(), Some("/lists/classified.txt:4"));
    assert!(words.iter().all(|f| f.value_hash.is_none()));
    // The full-width phone number is personal data too.
    assert_eq!(count(&r, "mobile"), 1);
    assert!(r
        .reasons
        .iter()
        .any(|x| x.starts_with("dirty word (dirty_word): 4 findings, rejected")));

    // Under a masking profile the words become stars.
    let g = guard_edit(|s| s["dirty_words"]["action"] = "mask".into());
    let (r, masked) = inspect(&g, doc.as_bytes(), "report.txt", "text/plain");
    assert_eq!(r.verdict, Verdict::Masked);
    let out = String::from_utf8(masked.unwrap()).unwrap();
    assert!(out.contains("密级：* **  保密期限"), "{out}");
    assert!(out.contains("本文件属**********级别"), "{out}");
    assert!(out.contains("另见《***》附件与 *** ****** 附录"), "{out}");
    assert!(out.contains("138****5678"), "{out}");
    let (again, _) = inspect(&g, out.as_bytes(), "report.txt", "text/plain");
    assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
}

#[test]
fn clean_data_passes_unchanged() {
    let g = guard();
    let clean_csv = "parcel_id,district,lon,lat,area_m2\nP-0001,海淀区,116.3974,39.9087,120.5\nP-0002,朝阳区,116.4,39.91,88\n";
    let clean_json = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"district":"海淀区"},"geometry":{"type":"Point","coordinates":[116.3974,39.9087]}}]}"#;
    for (data, name, ty) in [
        (clean_csv, "clean.csv", "text/csv"),
        (clean_json, "clean.geojson", "application/geo+json"),
        ("普通的文字，没有问题。\n", "note.txt", "text/plain"),
        (
            "<doc><p lang=\"zh\">公开信息</p></doc>",
            "doc.xml",
            "application/xml",
        ),
    ] {
        let (r, masked) = inspect(&g, data.as_bytes(), name, ty);
        assert_eq!(r.verdict, Verdict::Pass, "{name}: {:#?}", r.reasons);
        assert!(r.findings.is_empty() && r.reasons.is_empty(), "{name}");
        assert!(masked.is_none());
        let d = sha256_hex(data.as_bytes());
        assert_eq!(r.digest_before.as_deref(), Some(d.as_str()), "{name}");
        assert_eq!(r.digest_after, r.digest_before, "{name}");
        assert_eq!(r.bytes_read, data.len() as u64);
    }
}

#[test]
fn file_api_writes_the_masked_package_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let parcels = parcels(10, 3);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, csv(&parcels)).unwrap();
    let g = guard();
    let target = out_dir.join("parcels.csv");
    let r = g
        .inspect(&input, "parcels.csv", "text/csv", &target)
        .unwrap();
    assert_eq!(r.verdict, Verdict::Masked);
    let written = std::fs::read(&target).unwrap();
    assert_eq!(
        r.digest_after.as_deref(),
        Some(sha256_hex(&written).as_str())
    );
    let (_, in_memory) = inspect(&g, csv(&parcels).as_bytes(), "parcels.csv", "text/csv");
    assert_eq!(Some(written), in_memory);
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        1,
        "no temporary files left"
    );

    // Clean and rejected packages leave the output path alone.
    let clean = dir.path().join("clean.csv");
    std::fs::write(&clean, "a,b\n1,2\n").unwrap();
    let target2 = out_dir.join("clean.csv");
    let r = g
        .inspect(&clean, "clean.csv", "text/csv", &target2)
        .unwrap();
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(!target2.exists());
    let r = g
        .inspect(&clean, "clean.json", "application/json", &target2)
        .unwrap();
    assert_eq!(r.verdict, Verdict::Reject);
    assert!(!target2.exists());
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
    // A missing input is the machine's problem.
    assert!(g
        .inspect(&dir.path().join("none"), "x.csv", "text/csv", &target2)
        .is_err());
}

#[test]
fn archives_are_inspected_member_by_member() {
    let g = guard();
    let clean = b"parcel_id,lon,lat\nP-1,116.3974,39.9087\n".as_slice();
    let z = zip(&[
        entry("stats/a.csv", clean),
        entry("stats/b.json", br#"{"n": 1}"#),
    ]);
    let (r, _) = inspect(&g, &z, "stats.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert_eq!(r.members, 2);
    assert_eq!(r.digest_after, r.digest_before);

    // Findings inside: located by member; masking is refused.
    let parcels = parcels(3, 4);
    let data = csv(&parcels);
    let z = zip(&[
        entry("a.csv", clean),
        entry("data/parcels.csv", data.as_bytes()),
    ]);
    let (r, out) = inspect(&g, &z, "release.zip", "application/zip");
    assert_rejected(&r, "does not rewrite archives");
    assert!(out.is_none());
    let f = r.findings.iter().find(|f| f.detector == "prc_id").unwrap();
    assert_eq!(f.location.member.as_deref(), Some("data/parcels.csv"));
    assert_eq!(f.action, Action::Reject);
    assert_no_values(&r, &parcels);

    // With review, the package is held instead.
    let g2 = guard_edit(|s| {
        s["pii"]["action"] = "review".into();
        s["geodata"]["action"] = "review".into();
    });
    let (r, _) = inspect(&g2, &z, "release.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Review, "{:#?}", r.reasons);

    // tar.gz, a gzip-compressed CSV, a zip inside a zip.
    let t = gzip(&tar(&[("d/a.csv", b'0', clean), ("d", b'5', b"")]));
    let (r, _) = inspect(&g, &t, "bundle.tar.gz", "application/gzip");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    let c = gzip(data.as_bytes());
    let (r, _) = inspect(&g, &c, "parcels.csv.gz", "application/gzip");
    assert_eq!(r.verdict, Verdict::Reject);
    let f = r.findings.iter().find(|f| f.detector == "prc_id").unwrap();
    assert_eq!(f.location.member.as_deref(), Some("parcels.csv"));
    let inner = zip(&[entry("in.csv", clean)]);
    let outer = zip(&[entry("inner.zip", &inner)]);
    let (r, _) = inspect(&g, &outer, "outer.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert_eq!(r.members, 2);
}

#[test]
fn names_are_content_but_never_shown_when_they_hold_a_finding() {
    let g = guard();
    let id = prc_id(&mut Rng::new(9));
    let name = format!("{id}.csv");
    let z = zip(&[entry(&name, b"a,b\n1,2\n")]);
    let (r, _) = inspect(&g, &z, "x.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Reject);
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(&id), "{json}");
    assert_eq!(r.findings[0].location.member.as_deref(), Some("#0"));
    assert_eq!(r.findings[0].location.field.as_deref(), Some("name"));
    let (r, _) = inspect(&g, b"a,b\n1,2\n", "秘密-名单.csv", "text/csv");
    assert_rejected(&r, "dirty word");
}

#[test]
fn xml_pdf_and_images() {
    let g = guard();
    let id = prc_id(&mut Rng::new(5));
    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<parcels><p owner=\"{id}\">&#x79D8;&#x5BC6;</p><!-- 内部 --></parcels>");
    let (r, _) = inspect(&g, xml.as_bytes(), "p.xml", "application/xml");
    assert_eq!(r.verdict, Verdict::Reject);
    assert_eq!(count(&r, "prc_id"), 1);
    assert_eq!(count(&r, "dirty_word"), 2, "{:#?}", r.findings);
    assert_rejected(&r, "does not rewrite XML");
    let f = r.findings.iter().find(|f| f.detector == "prc_id").unwrap();
    assert_eq!(f.location.field.as_deref(), Some("/parcels/p/@owner"));

    // PDF and images: identified; under content checks held for review.
    let (r, _) = inspect(&g, &pdf(), "plan.pdf", "application/pdf");
    assert_eq!(r.verdict, Verdict::Review, "{:#?}", r.reasons);
    assert_eq!(r.findings[0].kind, FindingKind::Uninspectable);
    let (r, _) = inspect(&g, &png(), "map.png", "image/png");
    assert_eq!(r.verdict, Verdict::Review, "{:#?}", r.reasons);
    let plain = guard_with(serde_json::json!({"allowed_types": ["application/pdf", "image/*"]}));
    let (r, _) = inspect(&plain, &pdf(), "plan.pdf", "application/pdf");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    let (r, _) = inspect(&plain, &png(), "map.png", "");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert_eq!(r.detected_type.as_deref(), Some("image/png"));
}

#[test]
fn type_must_agree_and_be_allowed() {
    let g = guard();
    let csv = b"a,b\n1,2\n";
    let (r, _) = inspect(&g, csv, "a.csv", "application/json");
    assert_rejected(&r, "disagree");
    let (r, _) = inspect(&g, csv, "a.json", "application/json");
    assert_rejected(&r, "plain text");
    let (r, _) = inspect(&g, &zip(&[entry("a.csv", csv)]), "a.csv", "text/csv");
    assert_rejected(&r, "application/zip");
    let (r, _) = inspect(&g, csv, "a.exe", "");
    assert_rejected(&r, "extension `.exe`");
    let (r, _) = inspect(&g, csv, "README", "");
    assert_rejected(&r, "neither a content type");
    let (r, _) = inspect(&g, csv, "a.csv", "application/vnd.ms-excel");
    assert_rejected(&r, "not one the guard can inspect");
    let strict = guard_with(serde_json::json!({"allowed_types": ["text/csv"]}));
    let (r, _) = inspect(&strict, b"hello", "a.txt", "text/plain");
    assert_rejected(&r, "not in allowed_types");
    let strict = guard_with(serde_json::json!({"allowed_types": ["text/csv", "application/json"]}));
    let (r, _) = inspect(
        &strict,
        br#"{"type":"Point","coordinates":[1,2]}"#,
        "p.json",
        "application/json",
    );
    assert_rejected(&r, "application/geo+json is not in allowed_types");
    let (r, _) = inspect(
        &strict,
        &zip(&[entry("a.csv", csv)]),
        "a.zip",
        "application/zip",
    );
    assert_rejected(&r, "archives are not allowed");
    let (r, _) = inspect(&g, b"{\"a\":1}", "a.geojson", "application/geo+json");
    assert_rejected(&r, "no GeoJSON");
}

#[test]
fn bbox_and_coordinate_formats() {
    let g = guard();
    let data = "id,lon,lat\n1,-74.0060,40.7128\n2,116.39,N/A\n3,116.39,39.9\n";
    let (r, _) = inspect(&g, data.as_bytes(), "x.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    assert_eq!(count(&r, "bbox"), 1);
    assert_eq!(count(&r, "coordinate_format"), 1);
    assert_rejected(&r, "cannot be masked");
    let g = guard_edit(|s| s["geodata"]["bbox"] = serde_json::Value::Null);
    let (r, out) = inspect(&g, data.as_bytes(), "x.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Masked);
    assert_eq!(
        String::from_utf8(out.unwrap()).unwrap(),
        "id,lon,lat\n1,-74.0060,40.7128\n2,116.39,\n3,116.39,39.9\n"
    );
}

/// A number no latitude can be (a phone number in the wrong column) is a
/// format finding like `N/A`, and masking empties it, so the masked table
/// passes a second inspection (a mutated sample once left `130****6028`
/// there, found again as a malformed coordinate).
#[test]
fn an_out_of_range_coordinate_is_a_format_finding_and_masking_settles() {
    let g = guard_edit(|s| s["geodata"]["bbox"] = serde_json::Value::Null);
    let data = "id,lon,lat\n1,116.39,13090196028\n2,-181,39.9\n3,116.39,39.9\n";
    let (r, out) = inspect(&g, data.as_bytes(), "x.csv", "text/csv");
    assert_eq!(count(&r, "coordinate_format"), 2, "{:#?}", r.reasons);
    let out = String::from_utf8(out.expect("masked")).expect("utf-8");
    assert!(out.starts_with("id,lon,lat\n1,116.39,\n2,,39.9\n"), "{out}");
    let (again, _) = inspect(&g, out.as_bytes(), "x.csv", "text/csv");
    assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
}

#[test]
fn a_rejection_early_in_a_large_file_does_not_misreport_later_masks() {
    let mut data = String::from("id,note,phone\n1,内部资料,\n");
    let mut rng = Rng::new(12);
    while data.len() < 1_000_000 {
        data.push_str(&format!("2,ok,{}\n", mobile(&mut rng)));
    }
    let (r, out) = inspect(&guard(), data.as_bytes(), "big.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Reject);
    assert!(out.is_none());
    assert!(r
        .findings
        .iter()
        .filter(|f| f.detector == "mobile")
        .all(|f| f.action == Action::Mask));
    assert!(
        !r.reasons.iter().any(|x| x.contains("failed")),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn dropping_columns_never_leaves_blank_lines() {
    let (r, out) = inspect(&guard(), b",owner_name\nx,a\n,b\n", "a.csv", "text/csv");
    assert_eq!(r.verdict, Verdict::Masked);
    let out = out.unwrap();
    assert_eq!(out, b"\"\"\nx\n\"\"\n");
    assert_eq!(
        inspect(&guard(), &out, "a.csv", "text/csv").0.verdict,
        Verdict::Pass
    );
}
