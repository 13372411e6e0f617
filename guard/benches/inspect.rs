//! Inspection throughput on one core for a text/CSV profile with 1 000
//! dirty words and every personal-data and geodata check on:
//! `cargo bench -p ferry-guard`. Criterion reports MB/s (decimal).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry_guard::{prc_id_check, Guard, Profile};
use std::path::Path;

#[path = "../examples/registry_table.rs"]
mod registry_table;

use registry_table::Rng;

/// 1 000 entries: the markings, 100 ASCII code names and CJK words.
fn word_list() -> String {
    let mut rng = Rng(0x5EED);
    let mut s = String::from("秘密\n机密\n绝密\n内部\n秘密★\n机密★\n绝密★\nTOP SECRET\n");
    let mut n = 8;
    for i in 0..100 {
        s.push_str(&format!("codename-{i:03}x\n"));
        n += 1;
    }
    while n < 1000 {
        let len = 2 + rng.below(3);
        for _ in 0..len {
            let c = char::from_u32(0x4E00 + rng.below(0x51A5) as u32).unwrap_or('中');
            s.push(c);
        }
        s.push('\n');
        n += 1;
    }
    s
}

/// A guard for `settings`, whose dirty-word list is [`word_list`].
fn guard_for(name: &str, settings: &serde_json::Value) -> Guard {
    let list = word_list();
    let lists = move |_: &Path| -> std::io::Result<Vec<u8>> { Ok(list.clone().into_bytes()) };
    let p = Profile::from_settings(name, settings, &lists).expect("profile");
    assert_eq!(p.word_count(), 1000);
    Guard::with_finding_key(p, b"bench")
}

fn guard() -> Guard {
    let settings = serde_json::json!({
        "allowed_types": ["text/*"],
        "dirty_words": { "lists": ["/bench/words.txt"], "action": "reject" },
        "pii": { "detectors": ["prc_id", "mobile", "bank_card", "email", "uscc"], "action": "mask" },
        "geodata": { "max_decimal_places": 4, "bbox": [73.5, 18.0, 135.1, 53.6], "forbidden_attributes": ["owner_name"], "coordinate_columns": ["lon", "lat"], "action": "mask" }
    });
    guard_for("bench", &settings)
}

/// The de-identification example profile: every column of the parcel
/// table under a rule, detectors on (docs/guard.md §7).
fn deid_guard() -> Guard {
    let settings = serde_json::json!({
        "allowed_types": ["text/*"],
        "dirty_words": { "lists": ["/bench/words.txt"], "action": "reject" },
        "pii": { "action": "mask" },
        "require_rules": true,
        "columns": [
            { "match": ["宗地编号", "宗地面积"], "action": "keep" },
            { "match": ["权利人", "证件号码"], "action": "pseudonymize" },
            { "match": ["联系电话"], "action": "mask", "keep_prefix": 3, "keep_suffix": 4 },
            { "match": ["坐落"], "action": "generalize", "to": "district" },
            { "match": ["登记日期"], "action": "generalize", "to": "month" },
            { "match": ["成交价格"], "action": "generalize", "to": "range", "step": 100000 },
            { "match": ["备注"], "action": "drop" }
        ]
    });
    guard_for("bench-deid", &settings).with_pseudonym_key(1, b"bench pseudonym key")
}

const DISTRICTS: [&str; 6] = ["海淀区", "朝阳区", "西城区", "东城区", "丰台区", "通州区"];

/// Land-registry statistics without personal data (the common case).
fn clean_csv(bytes: usize) -> Vec<u8> {
    let mut rng = Rng(42);
    let mut s = String::from("parcel_id,district,use,lon,lat,area_m2,registered,remark\n");
    let mut i = 0u64;
    while s.len() < bytes {
        s.push_str(&format!(
            "110105{:06}GB{:05},{},住宅用地,116.{:04},39.{:04},{}.{:02},2026-{:02}-{:02},已核实 无争议 编号{}\n",
            rng.below(1_000_000),
            i % 100_000,
            DISTRICTS[rng.below(6) as usize],
            rng.below(10_000),
            rng.below(10_000),
            50 + rng.below(5000),
            rng.below(100),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(1_000_000)
        ));
        i += 1;
    }
    s.into_bytes()
}

/// The same with an identity number and a mobile in every row (all
/// masked) and 8-decimal coordinates (all rounded).
fn pii_csv(bytes: usize) -> Vec<u8> {
    let mut rng = Rng(43);
    let mut s = String::from("parcel_id,district,owner_id,phone,lon,lat,area_m2\n");
    let mut i = 0u64;
    while s.len() < bytes {
        let first17 = format!(
            "110105{}{:02}{:02}{:03}",
            1950 + rng.below(50),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(1000)
        );
        let check = char::from(prc_id_check(first17.as_bytes()).unwrap_or(b'0'));
        s.push_str(&format!(
            "P{i:08},{},{first17}{check},13{:09},116.{:08},39.{:08},{}.{:02}\n",
            DISTRICTS[rng.below(6) as usize],
            rng.below(1_000_000_000),
            rng.below(100_000_000),
            rng.below(100_000_000),
            50 + rng.below(5000),
            rng.below(100),
        ));
        i += 1;
    }
    s.into_bytes()
}

/// Chinese prose with some ASCII.
fn text(bytes: usize) -> Vec<u8> {
    let mut rng = Rng(44);
    let para = "根据土地管理法和不动产登记暂行条例，本年度共办理不动产首次登记与转移登记业务，\
                涉及宗地面积与房屋建筑面积统计如下，数据已经核实并按规定公开。Statistics, \
                version 2026.1, see appendix B for the methodology.\n";
    let mut s = String::new();
    while s.len() < bytes {
        s.push_str(para);
        s.push_str(&format!(
            "第{}项 合计 {} 平方米\n",
            rng.below(1000),
            rng.below(1_000_000)
        ));
    }
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let g = guard();
    const SIZE: usize = 16 * 1024 * 1024;
    let mut group = c.benchmark_group("inspect");
    group.sample_size(20);
    for (name, data, file, ty) in [
        ("clean_csv", clean_csv(SIZE), "stats.csv", "text/csv"),
        ("pii_csv_masked", pii_csv(SIZE), "parcels.csv", "text/csv"),
        ("chinese_text", text(SIZE), "report.txt", "text/plain"),
    ] {
        let (r, _) = g.inspect_bytes(&data, file, ty).expect("inspects");
        eprintln!(
            "{name}: {} bytes, verdict {}, {} findings",
            data.len(),
            r.verdict.as_str(),
            r.findings_total
        );
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| g.inspect_bytes(&data, file, ty).expect("inspects"))
        });
    }
    // The parcel table: clean under the detector profile, and with owners
    // under the column rules (every value of six columns rewritten).
    let d = deid_guard();
    for (name, guard, data) in [
        (
            "registry_table_clean",
            &g,
            registry_table::table(SIZE, false),
        ),
        (
            "registry_table_column_rules",
            &d,
            registry_table::table(SIZE, true),
        ),
    ] {
        let (r, _) = guard
            .inspect_bytes_for("bench", &data, "parcels.csv", "text/csv")
            .expect("inspects");
        eprintln!(
            "{name}: {} bytes, verdict {}, {} findings, {} techniques",
            data.len(),
            r.verdict.as_str(),
            r.findings_total,
            r.deidentification.len()
        );
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                guard
                    .inspect_bytes_for("bench", &data, "parcels.csv", "text/csv")
                    .expect("inspects")
            })
        });
    }
    // Disarm: a 16 MiB JPEG with an EXIF block holding a GPS position,
    // stripped (every marker walked, the entropy-coded data scanned for
    // markers, the block cut out and the rest written).
    let photos = Guard::with_finding_key(
        Profile::from_settings(
            "photos",
            &serde_json::json!({ "allowed_types": ["image/*"], "disarm": "strip" }),
            &|_: &Path| -> std::io::Result<Vec<u8>> { Ok(Vec::new()) },
        )
        .expect("profile"),
        b"bench",
    );
    let data = jpeg_with_gps(SIZE);
    let (r, out) = photos
        .inspect_bytes(&data, "parcel.jpg", "image/jpeg")
        .expect("inspects");
    assert_eq!(r.verdict.as_str(), "masked");
    eprintln!(
        "jpeg_strip_gps: {} bytes, verdict {}, {} bytes after",
        data.len(),
        r.verdict.as_str(),
        out.map_or(0, |o| o.len())
    );
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("jpeg_strip_gps", |b| {
        b.iter(|| {
            photos
                .inspect_bytes(&data, "parcel.jpg", "image/jpeg")
                .expect("inspects")
        })
    });
    group.finish();
}

/// A JPEG of about `bytes`: JFIF, an EXIF block with a GPS directory,
/// tables, one scan of pseudo-random entropy-coded data (0xFF stuffed, a
/// restart marker every 4 KiB), EOI.
fn jpeg_with_gps(bytes: usize) -> Vec<u8> {
    fn seg(v: &mut Vec<u8>, code: u8, payload: &[u8]) {
        v.extend_from_slice(&[0xFF, code]);
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
    }
    let mut v = vec![0xFF, 0xD8];
    seg(&mut v, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    let mut exif =
        b"Exif\0\0II*\0\x08\0\0\0\x01\0\x25\x88\x04\0\x01\0\0\0\x1a\0\0\0\0\0\0\0".to_vec();
    exif.resize(8 * 1024, 0);
    seg(&mut v, 0xE1, &exif);
    seg(&mut v, 0xDB, &[0; 65]);
    seg(&mut v, 0xC0, &[8, 0, 16, 0, 16, 1, 1, 0x11, 0]);
    seg(&mut v, 0xC4, &[0; 29]);
    seg(&mut v, 0xDA, &[1, 1, 0, 0, 63, 0]);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut n = 0u32;
    while v.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for b in x.to_le_bytes() {
            v.push(b);
            if b == 0xFF {
                v.push(0);
            }
        }
        if v.len() % 4096 < 8 {
            v.extend_from_slice(&[0xFF, 0xD0 + (n % 8) as u8]);
            n += 1;
        }
    }
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

criterion_group!(benches, bench);
criterion_main!(benches);
