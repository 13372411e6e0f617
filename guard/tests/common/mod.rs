//! Test data made by the tests: fake but valid land-registry records,
//! profiles, and hand-built archives (so that malformed ones can be built
//! too).
#![allow(dead_code)]

use ferry_guard::{prc_id_check, uscc_check, Guard, Profile, Report, Verdict};
use std::io::Write;
use std::path::Path;

/// Says loudly that test `test` of this crate is skipped, and lists it
/// where `.ci/run` counts skipped tests (the daemon tests' `common::skip`
/// writes the same file).
pub fn skip(test: &str, why: &str) {
    let list = concat!(env!("CARGO_TARGET_TMPDIR"), "/ferry-skipped-tests.txt");
    let line = format!("{}::{test}: {why}", env!("CARGO_CRATE_NAME"));
    eprintln!("skipped (loudly): {line}");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("could not list the skip in {list}: {e}");
    }
}

pub const LIST_PATH: &str = "/lists/classified.txt";
pub const LIST: &str = "# classification markings\n秘密\n机密\n絕密\n内部\n秘密★\nTOP SECRET\n";

/// A deterministic pseudo-random sequence (xorshift).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// A valid PRC resident identity number.
pub fn prc_id(rng: &mut Rng) -> String {
    const REGIONS: [&str; 6] = ["110105", "310104", "440305", "510107", "330106", "420102"];
    let region = REGIONS[rng.below(6) as usize];
    let year = 1950 + rng.below(56);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(28);
    let first17 = format!("{region}{year:04}{month:02}{day:02}{}", rng.digits(3));
    let check = prc_id_check(first17.as_bytes()).expect("17 digits");
    format!("{first17}{}", char::from(check))
}

/// A valid mainland mobile number.
pub fn mobile(rng: &mut Rng) -> String {
    format!("1{}{}", 3 + rng.below(7), rng.digits(9))
}

/// A valid unified social credit code.
pub fn uscc(rng: &mut Rng) -> String {
    const CS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut s = format!(
        "91{}",
        ["110108", "310115", "440300"][rng.below(3) as usize]
    );
    for _ in 0..9 {
        s.push(char::from(CS[rng.below(31) as usize]));
    }
    let check = uscc_check(s.as_bytes()).expect("17 characters");
    s.push(char::from(check));
    s
}

/// A coordinate written with exactly 8 decimals.
pub fn coord(rng: &mut Rng, int: u32) -> String {
    format!("{int}.{:07}{}", rng.below(10_000_000), 1 + rng.below(9))
}

const SURNAMES: [&str; 6] = ["张", "王", "李", "赵", "陈", "刘"];
const GIVEN: [&str; 6] = ["伟", "芳", "娜", "敏", "静", "强"];

pub struct Parcel {
    pub parcel_id: String,
    pub owner_name: String,
    pub owner_id: String,
    pub phone: String,
    pub company: String,
    pub email: String,
    pub lon: String,
    pub lat: String,
    pub area: String,
}

pub fn parcels(n: usize, seed: u64) -> Vec<Parcel> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| Parcel {
            parcel_id: format!("110105{:06}GB{:05}", rng.below(1_000_000), i),
            owner_name: format!(
                "{}{}",
                SURNAMES[rng.below(6) as usize],
                GIVEN[rng.below(6) as usize]
            ),
            owner_id: prc_id(&mut rng),
            phone: mobile(&mut rng),
            company: uscc(&mut rng),
            email: format!("owner{i}@registry-example.cn"),
            lon: coord(&mut rng, 116),
            lat: coord(&mut rng, 39),
            area: format!("{}.{}", 50 + rng.below(2000), rng.below(100)),
        })
        .collect()
}

pub const CSV_HEADER: &str =
    "parcel_id,owner_name,owner_id,phone,company,email,lon,lat,area_m2,remark";

pub fn csv(parcels: &[Parcel]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for (i, p) in parcels.iter().enumerate() {
        let remark = if i % 2 == 0 {
            "\"已核实, 无争议\"".to_string()
        } else {
            format!("联系电话 {}", p.phone)
        };
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            p.parcel_id,
            p.owner_name,
            p.owner_id,
            p.phone,
            p.company,
            p.email,
            p.lon,
            p.lat,
            p.area,
            remark
        ));
    }
    s
}

pub fn geojson(parcels: &[Parcel]) -> String {
    let features: Vec<String> = parcels
        .iter()
        .map(|p| {
            format!(
                r#"{{"type": "Feature", "properties": {{"parcel_id": "{}", "owner_name": "{}", "owner_id": "{}", "phone": "{}", "area_m2": {}}}, "geometry": {{"type": "Polygon", "coordinates": [[[{lon}, {lat}], [{lon}, {lat2}], [{lon2}, {lat2}], [{lon}, {lat}]]]}}}}"#,
                p.parcel_id,
                p.owner_name,
                p.owner_id,
                p.phone,
                p.area,
                lon = p.lon,
                lat = p.lat,
                lon2 = p.lon.replacen("116.", "116.1", 1),
                lat2 = p.lat.replacen("39.", "39.1", 1),
            )
        })
        .collect();
    format!(
        "{{\"type\": \"FeatureCollection\",\n \"name\": \"parcels\",\n \"features\": [\n{}\n]}}\n",
        features.join(",\n")
    )
}

/// The land-registry release profile of the tests.
pub fn settings() -> serde_json::Value {
    serde_json::json!({
        "description": "release of land-registry data",
        "allowed_types": ["text/*", "application/json", "application/geo+json", "application/xml", "application/pdf", "image/*"],
        "archives": { "allowed": true, "formats": ["zip", "tar", "gzip"], "max_depth": 2, "max_members": 100, "max_expanded_bytes": 67_108_864, "max_ratio": 100 },
        "dirty_words": { "lists": [LIST_PATH], "action": "reject" },
        "pii": { "detectors": ["prc_id", "mobile", "bank_card", "email", "uscc"], "action": "mask" },
        "geodata": { "max_decimal_places": 4, "bbox": [73.5, 18.0, 135.1, 53.6], "forbidden_attributes": ["owner_name"], "coordinate_columns": ["lon", "lat"], "action": "mask" }
    })
}

pub fn lists(path: &Path) -> std::io::Result<Vec<u8>> {
    if path == Path::new(LIST_PATH) {
        Ok(LIST.as_bytes().to_vec())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such list",
        ))
    }
}

pub fn guard_with(settings: serde_json::Value) -> Guard {
    Guard::with_finding_key(
        Profile::from_settings("land-release", &settings, &lists).expect("profile compiles"),
        b"test finding key",
    )
}

pub fn guard() -> Guard {
    guard_with(settings())
}

/// `settings()` with `edit` applied to it.
pub fn guard_edit(edit: impl FnOnce(&mut serde_json::Value)) -> Guard {
    let mut s = settings();
    edit(&mut s);
    guard_with(s)
}

pub fn inspect(g: &Guard, data: &[u8], name: &str, ty: &str) -> (Report, Option<Vec<u8>>) {
    g.inspect_bytes(data, name, ty).expect("no machine error")
}

/// Asserts a rejection whose reasons mention `needle`.
pub fn assert_rejected(r: &Report, needle: &str) {
    assert_eq!(r.verdict, Verdict::Reject, "{:#?}", r.reasons);
    assert!(
        r.reasons.iter().any(|x| x.contains(needle)),
        "no reason mentions {needle:?}: {:#?}",
        r.reasons
    );
}

pub fn count(r: &Report, detector: &str) -> usize {
    r.findings.iter().filter(|f| f.detector == detector).count()
}

// ---- archives, written by hand --------------------------------------------

pub struct ZipEntry<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
    pub deflate: bool,
    /// Unix mode (with the file type bits), when "made by" Unix.
    pub unix_mode: Option<u32>,
}

pub fn entry<'a>(name: &'a str, data: &'a [u8]) -> ZipEntry<'a> {
    ZipEntry {
        name: name.as_bytes(),
        data,
        deflate: true,
        unix_mode: None,
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

/// A zip archive; `local_offsets` lets a test point central-directory
/// entries elsewhere (overlapping members).
pub fn zip_with(entries: &[ZipEntry<'_>], local_offsets: Option<&[u32]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let body = if e.deflate {
            deflate(e.data)
        } else {
            e.data.to_vec()
        };
        let method: u16 = if e.deflate { 8 } else { 0 };
        let crc = crc32(e.data);
        let off = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0x0800u16.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(e.name);
        out.extend_from_slice(&body);
        let made_by: u16 = if e.unix_mode.is_some() {
            0x031E
        } else {
            0x0014
        };
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&made_by.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(body.len() as u32).to_le_bytes());
        central.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]);
        central.extend_from_slice(&(e.unix_mode.unwrap_or(0) << 16).to_le_bytes());
        let o = local_offsets.map_or(off, |l| l[i]);
        central.extend_from_slice(&o.to_le_bytes());
        central.extend_from_slice(e.name);
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

pub fn zip(entries: &[ZipEntry<'_>]) -> Vec<u8> {
    zip_with(entries, None)
}

/// One tar entry: name, type flag, data.
pub fn tar(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, ty, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"14723545600");
        h[156] = *ty;
        if *ty == b'2' {
            h[157..168].copy_from_slice(b"/etc/passwd");
        }
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0, pad));
    }
    out.extend(std::iter::repeat_n(0, 1024));
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A minimal valid PNG (1×1, grey).
pub fn png() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, ty: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(ty);
        out.extend_from_slice(data);
        let mut h = crc32fast::Hasher::new();
        h.update(ty);
        h.update(data);
        out.extend_from_slice(&h.finalize().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1A\n".to_vec();
    chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&[0, 0x80]).unwrap();
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}
