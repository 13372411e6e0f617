//! Every class of bad input the guard must survive: truncated and
//! malformed files of every type, invalid UTF-8, ragged CSV, deep JSON,
//! XML entities, sparse giants, archive bombs, links and traversal names,
//! data hidden where it would not be inspected. Each gets a verdict with a
//! reason, in bounded memory and time, never a panic or a machine error.

mod common;

use common::*;
use ferry_guard::Verdict;

fn rejected(data: &[u8], name: &str, ty: &str, needle: &str) {
    let (r, out) = inspect(&guard(), data, name, ty);
    assert_rejected(&r, needle);
    assert!(out.is_none());
    assert!(r.digest_after.is_none());
}

#[test]
fn truncated_and_malformed_csv() {
    rejected(b"a,b\n\"x,1\n", "a.csv", "text/csv", "not closed");
    rejected(
        b"a,b\n1,\"x\"y\n",
        "a.csv",
        "text/csv",
        "after the closing quote",
    );
    rejected(
        b"a,b\n1,x\"y\n",
        "a.csv",
        "text/csv",
        "a quote inside an unquoted field",
    );
    rejected(
        b"a,b,c\n1,2,3\n1,2\n",
        "a.csv",
        "text/csv",
        "line 3: 2 fields, but the header has 3",
    );
    rejected(
        b"a,b\n1,2\n\n3,4\n",
        "a.csv",
        "text/csv",
        "line 3: a blank line",
    );
    rejected(b"", "a.csv", "text/csv", "no header");
    rejected(b"\n1,2\n", "a.csv", "text/csv", "header) is empty");
    rejected(
        b"owner_name\n\"x\"\n",
        "a.csv",
        "text/csv",
        "every column is a forbidden attribute",
    );
    // A trailing blank line and CRLF are fine; so is a quoted line break.
    let g = guard();
    for ok in [
        &b"a,b\r\n1,2\r\n\r\n"[..],
        b"a,b\n\"x\ny\",2",
        b"a,b\n\"x \"\"q\"\"\",2\n",
    ] {
        assert_eq!(
            inspect(&g, ok, "a.csv", "text/csv").0.verdict,
            Verdict::Pass
        );
    }
    // One record larger than the record limit.
    let mut big = b"a,b\n1,".to_vec();
    big.extend(std::iter::repeat_n(
        b'x',
        ferry_guard::RECORD_MAX_BYTES + 10,
    ));
    big.push(b'\n');
    rejected(&big, "a.csv", "text/csv", "a record longer than");
}

#[test]
fn invalid_utf8_anywhere() {
    rejected(b"caf\xE9 au lait\n", "a.txt", "text/plain", "not UTF-8");
    // Past the first block, so that the sniffed head is clean.
    let mut csv = b"a,b\n".to_vec();
    while csv.len() < 300_000 {
        csv.extend_from_slice(b"12345,abcdef\n");
    }
    let at = csv.len();
    csv.extend_from_slice(b"1,\xC0\xAF\n");
    let (r, _) = inspect(&guard(), &csv, "a.csv", "text/csv");
    assert_rejected(&r, &format!("invalid byte at offset {}", at + 2));
    rejected(
        b"{\"a\": \"\xFF\"}",
        "a.json",
        "application/json",
        "not UTF-8",
    );
    rejected(b"<a>\xFF</a>", "a.xml", "application/xml", "not UTF-8");
    rejected(b"\xFF\xFEa\x00b\x00", "a.txt", "text/plain", "UTF-16");
    rejected(b"text with a \x00 NUL", "a.txt", "text/plain", "binary");
}

#[test]
fn truncated_and_malformed_json() {
    for (doc, needle) in [
        (&b"{\"a\": [1, 2"[..], "ends early"),
        (b"{\"a\" 1}", "expected `:`"),
        (b"{\"a\":1}}", "data after the JSON value"),
        (b"{\"a\":1}\n{\"b\":2}", "JSON Lines"),
        (b"[1, 2,]", "not a JSON value"),
        (b"{\"a\": \"\\x\"}", "invalid escape"),
        (b"[\"\\ud800\"]", "lone surrogate"),
        (b"[\"a\tb\"]", "control character"),
        (b"[01]", "an invalid number"),
        (b"[tru]", "not a JSON value"),
        (b"{\"a\": \"open", "not closed"),
    ] {
        rejected(doc, "a.json", "application/json", needle);
    }
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    rejected(
        deep.as_bytes(),
        "deep.json",
        "application/json",
        "nested deeper than 128",
    );
    let deep = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);
    rejected(
        deep.as_bytes(),
        "deep.json",
        "application/json",
        "nested deeper than 128",
    );
    let deep = "<a>".repeat(10_000) + &"</a>".repeat(10_000);
    rejected(
        deep.as_bytes(),
        "deep.xml",
        "application/xml",
        "nested deeper than 256",
    );
    // Just inside the limit is fine.
    let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
    assert_eq!(
        inspect(&guard(), ok.as_bytes(), "ok.json", "").0.verdict,
        Verdict::Pass
    );
}

#[test]
fn xml_dtds_entities_and_malformed() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<lolz>&lol2;</lolz>"#;
    rejected(laughs.as_bytes(), "a.xml", "application/xml", "DTD");
    rejected(
        b"<a>&ext;</a>",
        "a.xml",
        "application/xml",
        "XML entity reference at line",
    );
    rejected(b"<a><b></a>", "a.xml", "application/xml", "does not match");
    rejected(
        b"<a><b></b>",
        "a.xml",
        "application/xml",
        "ends inside an element",
    );
    rejected(
        b"<a/><b/>",
        "a.xml",
        "application/xml",
        "more than one root",
    );
    rejected(b"<a x=1/>", "a.xml", "application/xml", "must be quoted");
    rejected(
        b"<a>x</a>tail",
        "a.xml",
        "application/xml",
        "text outside the root",
    );
    rejected(b"<a>x & y</a>", "a.xml", "application/xml", "bare `&`");
    rejected(
        b"<?xml version=\"1.0\" encoding=\"GBK\"?><a/>",
        "a.xml",
        "application/xml",
        "only UTF-8",
    );
    let ok = b"<?xml version='1.0' encoding='utf-8'?><a b=\"&lt;&#65;\"><![CDATA[x]]]]><!-- c --><?pi x?></a>";
    assert_eq!(inspect(&guard(), ok, "a.xml", "").0.verdict, Verdict::Pass);
}

#[test]
fn truncated_pdf_and_images() {
    let p = pdf();
    rejected(
        &p[..p.len() - 8],
        "a.pdf",
        "application/pdf",
        "truncated PDF",
    );
    rejected(b"%PDF-x", "a.pdf", "application/pdf", "no version");
    let png = png();
    rejected(&png[..png.len() - 5], "a.png", "image/png", "truncated PNG");
    let mut bad = png.clone();
    bad[20] ^= 0xFF;
    rejected(&bad, "a.png", "image/png", "checksum");
    let mut appended = png.clone();
    appended.extend_from_slice(b"PK\x03\x04 hidden zip");
    rejected(&appended, "a.png", "image/png", "bytes after the end");
    rejected(
        b"\xFF\xD8\xFF\xE0\x00\x10JFIF",
        "a.jpg",
        "image/jpeg",
        "truncated JPEG",
    );
    rejected(
        b"GIF89a\x01\x00\x01\x00",
        "a.gif",
        "image/gif",
        "truncated GIF",
    );
    rejected(
        b"II*\x00\xFF\xFF\x00\x00",
        "a.tif",
        "image/tiff",
        "truncated TIFF",
    );
}

#[test]
fn truncated_and_corrupt_archives() {
    let csv = b"a,b\n1,2\n".as_slice();
    let z = zip(&[entry("a.csv", csv), entry("b.csv", csv)]);
    rejected(
        &z[..z.len() / 2],
        "a.zip",
        "application/zip",
        "no end-of-central-directory",
    );
    let mut corrupt = z.clone();
    corrupt[40] ^= 0x55;
    let (r, _) = inspect(&guard(), &corrupt, "a.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    let g = gzip(csv);
    rejected(
        &g[..g.len() - 4],
        "a.csv.gz",
        "application/gzip",
        "truncated",
    );
    let mut bad_crc = g.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 1;
    rejected(&bad_crc, "a.csv.gz", "application/gzip", "CRC");
    let mut garbage = g.clone();
    garbage.extend_from_slice(b"trailing");
    rejected(
        &garbage,
        "a.csv.gz",
        "application/gzip",
        "not a gzip member",
    );
    let t = tar(&[("a.csv", b'0', csv)]);
    rejected(&t[..600], "a.tar", "application/x-tar", "truncated");
    rejected(
        &t[..1024],
        "a.tar",
        "application/x-tar",
        "no end-of-archive marker",
    );
    let mut hidden = t.clone();
    hidden.extend_from_slice(b"secret data after the end");
    rejected(
        &hidden,
        "a.tar",
        "application/x-tar",
        "after the end-of-archive marker",
    );
    let mut bad_sum = t.clone();
    bad_sum[0] = b'b';
    rejected(&bad_sum, "a.tar", "application/x-tar", "checksum");
    // A concatenated gzip is one stream.
    let mut two = gzip(b"a,b\n1,");
    two.extend_from_slice(&gzip(b"2\n"));
    assert_eq!(
        inspect(&guard(), &two, "a.csv.gz", "").0.verdict,
        Verdict::Pass
    );
}

#[test]
fn sparse_ten_gigabyte_file_is_refused_after_one_block() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard();
    for (name, ty, head) in [
        ("big.csv", "text/csv", &b"parcel_id,lon,lat\n"[..]),
        ("big.zip", "application/zip", b""),
        ("big.json", "application/json", b"{\"a\": \""),
    ] {
        let path = dir.path().join(name);
        let f = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &f, head).unwrap();
        f.set_len(10 * 1024 * 1024 * 1024).unwrap();
        drop(f);
        let r = g.inspect(&path, name, ty, &dir.path().join("out")).unwrap();
        assert_eq!(r.verdict, Verdict::Reject, "{name}: {:#?}", r.reasons);
        assert!(
            r.bytes_read <= 1024 * 1024,
            "{name}: read {} bytes",
            r.bytes_read
        );
        assert!(r.digest_before.is_none());
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn archive_bombs() {
    // Ratio: 16 MiB of zeros in one member.
    let zeros = vec![0u8; 16 * 1024 * 1024];
    let mut text = zeros.clone();
    text.fill(b'a');
    let z = zip(&[entry("a.txt", &text)]);
    rejected(
        &z,
        "bomb.zip",
        "application/zip",
        "compression ratio above max_ratio",
    );
    rejected(
        &gzip(&text),
        "bomb.txt.gz",
        "application/gzip",
        "compression ratio above max_ratio",
    );
    // Total size: members each fine, together too large.
    let g = guard_edit(|s| s["archives"]["max_expanded_bytes"] = (1024 * 1024).into());
    let mut rng = Rng::new(7);
    let chunk: String = (0..400_000)
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect();
    let z = zip(&[
        entry("a.txt", chunk.as_bytes()),
        entry("b.txt", chunk.as_bytes()),
        entry("c.txt", chunk.as_bytes()),
    ]);
    let (r, _) = inspect(&g, &z, "big.zip", "application/zip");
    assert_rejected(&r, "expands beyond max_expanded_bytes");
    // Depth: zip in zip in zip, limit 2.
    let z1 = zip(&[entry("a.csv", b"a\n1\n")]);
    let z2 = zip(&[entry("z1.zip", &z1)]);
    let (r, _) = inspect(&guard(), &z2, "z2.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    let z3 = zip(&[entry("z2.zip", &z2)]);
    rejected(
        &z3,
        "z3.zip",
        "application/zip",
        "nested deeper than max_depth (2)",
    );
    // Overlapping members (every entry points at the same data).
    let one = b"a,b\n1,2\n".as_slice();
    let entries: Vec<_> = (0..3).map(|_| entry("x.csv", one)).collect();
    let mut named = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        named.push(format!("m{i}.csv").into_bytes());
        let _ = e;
    }
    let es: Vec<ZipEntry<'_>> = named
        .iter()
        .map(|n| ZipEntry {
            name: n,
            data: one,
            deflate: true,
            unix_mode: None,
        })
        .collect();
    let overlapping = zip_with(&es, Some(&[0, 0, 0]));
    rejected(
        &overlapping,
        "o.zip",
        "application/zip",
        "not stored one after another",
    );
    // Member count is checked before the directory is read.
    let names: Vec<String> = (0..150).map(|i| format!("f{i}.csv")).collect();
    let many: Vec<ZipEntry<'_>> = names.iter().map(|n| entry(n, one)).collect();
    rejected(
        &zip(&many),
        "many.zip",
        "application/zip",
        "150 members, more than max_members (100)",
    );
}

#[test]
fn links_and_traversal_names() {
    let csv = b"a\n1\n".as_slice();
    let link = ZipEntry {
        name: b"link.csv",
        data: b"/etc/passwd",
        deflate: false,
        unix_mode: Some(0o120_777),
    };
    rejected(&zip(&[link]), "l.zip", "application/zip", "symbolic link");
    let dev = ZipEntry {
        name: b"dev.csv",
        data: b"",
        deflate: false,
        unix_mode: Some(0o020_666),
    };
    rejected(&zip(&[dev]), "d.zip", "application/zip", "device");
    for bad in [
        "../evil.csv",
        "a/../../evil.csv",
        "/etc/cron.d/x.csv",
        "C:/x.csv",
        "a\\..\\x.csv",
    ] {
        rejected(
            &zip(&[entry(bad, csv)]),
            "t.zip",
            "application/zip",
            "member",
        );
        rejected(
            &tar(&[(bad, b'0', csv)]),
            "t.tar",
            "application/x-tar",
            "member",
        );
    }
    rejected(
        &tar(&[("l.csv", b'2', b"")]),
        "t.tar",
        "application/x-tar",
        "symbolic link",
    );
    rejected(
        &tar(&[("l.csv", b'1', b"")]),
        "t.tar",
        "application/x-tar",
        "hard or symbolic",
    );
    rejected(
        &tar(&[("d", b'3', b"")]),
        "t.tar",
        "application/x-tar",
        "device",
    );
    rejected(
        &zip(&[entry("a.csv", csv), entry("a.csv", csv)]),
        "t.zip",
        "application/zip",
        "occurs twice",
    );
    rejected(
        &zip(&[entry("noext", csv)]),
        "t.zip",
        "application/zip",
        "no extension",
    );
    rejected(
        &zip(&[entry("x.exe", csv)]),
        "t.zip",
        "application/zip",
        "extension `.exe`",
    );
    rejected(
        &zip(&[entry("x.csv", b"\x7FELF\x02\x01")]),
        "t.zip",
        "application/zip",
        "ELF",
    );
}

#[test]
fn data_hidden_where_it_would_not_be_inspected() {
    let csv = b"a,b\n1,2\n".as_slice();
    let z = zip(&[entry("a.csv", csv)]);
    // A comment.
    let mut c = z.clone();
    let n = c.len();
    c[n - 2..].copy_from_slice(&5u16.to_le_bytes());
    c.extend_from_slice(b"hello");
    rejected(&c, "c.zip", "application/zip", "comment");
    // Bytes appended after the end record.
    let mut a = z.clone();
    a.extend_from_slice(b"appended");
    rejected(
        &a,
        "a.zip",
        "application/zip",
        "no end-of-central-directory",
    );
    // Bytes before the first member (a self-extractor, a polyglot).
    let mut p = b"GIF89a".to_vec();
    p.extend_from_slice(&z);
    rejected(&p, "p.zip", "application/zip", "application/zip");
    // Unsupported and encrypted members.
    let mut enc = z.clone();
    enc[6] |= 1;
    let cd = enc.len() - 22 - 46 - 5;
    enc[cd + 8] |= 1;
    rejected(&enc, "e.zip", "application/zip", "encrypted");
    let mut bz = z.clone();
    bz[8] = 12;
    bz[cd + 10] = 12;
    rejected(&bz, "b.zip", "application/zip", "compression method 12");
    // After a JSON value, after a PNG.
    rejected(
        b"{\"a\":1} x",
        "a.json",
        "application/json",
        "data after the JSON value",
    );
}

#[test]
fn profiles_that_cannot_be_compiled_say_why() {
    use ferry_guard::{GuardError, Profile};
    let e = Profile::from_settings(
        "p",
        &serde_json::json!({"archives": {"max_depth": 99}}),
        &lists,
    )
    .unwrap_err();
    assert!(matches!(e, GuardError::Settings { .. }), "{e}");
    assert!(e.to_string().contains("max_depth"), "{e}");
    let e = Profile::from_settings(
        "p",
        &serde_json::json!({"dirty_words": {"lists": ["relative.txt"]}}),
        &lists,
    )
    .unwrap_err();
    assert!(e.to_string().contains("absolute"), "{e}");
    let e = Profile::from_settings(
        "p",
        &serde_json::json!({"geodata": {"bbox": [1, 2, 3]}}),
        &lists,
    )
    .unwrap_err();
    assert!(e.to_string().contains("bbox"), "{e}");
}
