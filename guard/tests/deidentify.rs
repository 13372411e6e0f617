//! De-identification on generated land-registry tables: every column rule
//! does what it says, pseudonyms are stable under one key and change with
//! the key, a column no rule names is refused, small-cell suppression
//! leaves no small cell and no total that recovers one, and the released
//! table passes re-inspection with no finding.

mod common;

use common::{lists, mobile, prc_id, Rng};
use ferry_guard::{Guard, Profile, Report, Verdict};
use serde_json::json;
use std::collections::HashMap;

const HEADER: &str = "宗地编号,权利人,证件号码,联系电话,坐落,登记日期,宗地面积,成交价格,备注";

const ADDRESSES: [(&str, &str); 4] = [
    ("湖北省武汉市洪山区珞喻路1037号", "湖北省武汉市洪山区"),
    ("北京市朝阳区建国路88号5号楼", "北京市朝阳区"),
    ("河北省保定市涞水县永阳镇北义安村", "河北省保定市涞水县"),
    ("广东省东莞市南城街道鸿福路3号", "广东省东莞市"),
];

struct Row {
    parcel: String,
    owner: String,
    owner_id: String,
    phone: String,
    address: usize,
    date: (u32, u32, u32),
    area: String,
    price: u64,
}

/// `n` parcels of 6 owners (each owner holds several parcels).
fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = Rng::new(seed);
    let owners: Vec<(String, String, String)> = ["张伟", "王芳", "李娜", "赵敏", "陈静", "刘强"]
        .iter()
        .map(|o| (o.to_string(), prc_id(&mut rng), mobile(&mut rng)))
        .collect();
    (0..n)
        .map(|i| {
            let (owner, owner_id, phone) = owners[rng.below(6) as usize].clone();
            Row {
                parcel: format!("420111GB{i:05}"),
                owner,
                owner_id,
                phone,
                address: rng.below(4) as usize,
                date: (
                    2015 + rng.below(10) as u32,
                    1 + rng.below(12) as u32,
                    1 + rng.below(28) as u32,
                ),
                area: format!("{}.{}", 100 + rng.below(9000), rng.below(10)),
                price: 50_000 + rng.below(5_000_000),
            }
        })
        .collect()
}

fn csv(rows: &[Row]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{:04}-{:02}-{:02},{},{},\"见证人电话{}，原件存档\"\n",
            r.parcel,
            r.owner,
            r.owner_id,
            r.phone,
            ADDRESSES[r.address].0,
            r.date.0,
            r.date.1,
            r.date.2,
            r.area,
            r.price,
            r.phone
        ));
    }
    s
}

fn settings() -> serde_json::Value {
    json!({
        "allowed_types": ["text/csv", "application/json", "application/geo+json"],
        "archives": { "allowed": true, "formats": ["zip"] },
        "dirty_words": { "lists": [common::LIST_PATH], "action": "reject" },
        "pii": { "action": "mask" },
        "require_rules": true,
        "columns": [
            { "match": ["宗地编号", "宗地面积", "乡镇", "合计"], "action": "keep" },
            { "match": ["权利人", "证件号码"], "action": "pseudonymize" },
            { "match": ["联系电话"], "action": "mask", "keep_prefix": 3, "keep_suffix": 4 },
            { "match": ["坐落"], "action": "generalize", "to": "district" },
            { "match": ["登记日期"], "action": "generalize", "to": "month" },
            { "match": ["成交价格"], "action": "generalize", "to": "range", "step": 100000 },
            { "match": ["备注"], "action": "drop" }
        ],
        "suppression": { "count_columns": ["户数", "宗地数"], "k": 5, "total_column": "合计" }
    })
}

fn guard_with(settings: &serde_json::Value, key: Option<(u32, &[u8])>) -> Guard {
    let g = Guard::with_finding_key(
        Profile::from_settings("registry-release", settings, &lists).expect("profile compiles"),
        b"test finding key",
    );
    match key {
        Some((epoch, secret)) => g.with_pseudonym_key(epoch, secret),
        None => g,
    }
}

fn inspect(g: &Guard, channel: &str, data: &str, name: &str) -> (Report, Option<String>) {
    let ctype = if name.ends_with(".csv") {
        "text/csv"
    } else {
        "application/json"
    };
    let (r, out) = g
        .inspect_bytes_for(channel, data.as_bytes(), name, ctype)
        .expect("inspection runs");
    (r, out.map(|o| String::from_utf8(o).expect("UTF-8 out")))
}

fn deid(r: &Report, technique: &str, target: &str) -> u64 {
    r.deidentification
        .iter()
        .filter(|d| d.technique == technique && d.target == target)
        .map(|d| d.values)
        .sum()
}

/// Promise: each column rule does what it says, and the record says what
/// was done, how often, under which key epoch — without a value.
#[test]
fn every_column_rule_does_what_it_says() {
    let rows = rows(40, 7);
    let g = guard_with(&settings(), Some((1, b"site pseudonym key epoch 1")));
    let (r, out) = inspect(&g, "parcel-open-data", &csv(&rows), "parcels.csv");
    assert_eq!(r.verdict, Verdict::Masked, "{:?}", r.reasons);
    // Phone numbers in the masked and the dropped column are the rules'
    // business, not findings.
    assert_eq!(r.findings_total, 0, "{:?}", r.findings);
    let out = out.expect("a masked copy");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("宗地编号,权利人,证件号码,联系电话,坐落,登记日期,宗地面积,成交价格")
    );
    let mut pseudonym_of: HashMap<String, String> = HashMap::new();
    for (row, line) in rows.iter().zip(lines) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 8, "{line}");
        assert_eq!(f[0], row.parcel, "keep");
        for (value, token) in [(&row.owner, f[1]), (&row.owner_id, f[2])] {
            assert!(token.starts_with("p1-") && token.len() == 23, "{token}");
            let seen = pseudonym_of
                .entry(value.clone())
                .or_insert(token.to_string());
            assert_eq!(seen, token, "the same value, the same pseudonym");
        }
        assert_eq!(f[3], format!("{}****{}", &row.phone[..3], &row.phone[7..]));
        assert_eq!(f[4], ADDRESSES[row.address].1);
        assert_eq!(f[5], format!("{:04}-{:02}", row.date.0, row.date.1));
        assert_eq!(f[6], row.area);
        let lo = row.price / 100_000 * 100_000;
        assert_eq!(f[7], format!("{lo}~{}", lo + 100_000));
        assert!(!line.contains(&row.phone) && !line.contains(&row.owner));
    }
    // Six owners, each name and number one pseudonym.
    assert_eq!(
        pseudonym_of
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        pseudonym_of.len()
    );
    for (technique, target) in [
        ("pseudonymize", "column 权利人"),
        ("pseudonymize", "column 证件号码"),
        ("mask", "column 联系电话"),
        ("generalize", "column 坐落"),
        ("generalize", "column 登记日期"),
        ("generalize", "column 成交价格"),
        ("keep", "column 宗地编号"),
    ] {
        assert_eq!(deid(&r, technique, target), 40, "{technique} {target}");
    }
    assert_eq!(deid(&r, "drop", "column 备注"), 1);
    assert!(r
        .deidentification
        .iter()
        .filter(|d| d.technique == "pseudonymize")
        .all(|d| d.key_epoch == Some(1)));
    let record = serde_json::to_string(&r).unwrap();
    for row in &rows {
        for v in [&row.owner, &row.owner_id, &row.phone] {
            assert!(!record.contains(v.as_str()), "a value in the report");
        }
    }
}

/// Promise: the same owner gets the same pseudonym in two packages of a
/// channel under one key, a different one after rotation, and a different
/// one on another channel.
#[test]
fn pseudonyms_are_stable_per_channel_and_key_and_change_with_them() {
    let a = rows(20, 1);
    let mut b = rows(20, 1);
    b.reverse();
    let token = |g: &Guard, ch: &str, rows: &[Row]| -> HashMap<String, String> {
        let (r, out) = inspect(g, ch, &csv(rows), "parcels.csv");
        assert_eq!(r.verdict, Verdict::Masked, "{:?}", r.reasons);
        rows.iter()
            .zip(out.unwrap().lines().skip(1))
            .map(|(row, line)| (row.owner_id.clone(), line.split(',').nth(2).unwrap().into()))
            .collect()
    };
    let k1 = guard_with(&settings(), Some((1, b"key one")));
    let first = token(&k1, "open-data", &a);
    let second = token(&k1, "open-data", &b);
    assert_eq!(first, second, "two packages, one key: joinable");
    let k2 = guard_with(&settings(), Some((2, b"key two")));
    let rotated = token(&k2, "open-data", &a);
    for (id, t) in &first {
        assert_ne!(&rotated[id], t, "rotation changes every pseudonym");
        assert!(rotated[id].starts_with("p2-"));
    }
    let other = token(&k1, "other-channel", &a);
    for (id, t) in &first {
        assert_ne!(&other[id], t, "another channel, other pseudonyms");
    }
}

/// Promise: without a pseudonym key, a value to pseudonymize refuses the
/// package (never released as it is).
#[test]
fn pseudonymize_without_a_key_refuses() {
    let g = guard_with(&settings(), None);
    let (r, out) = inspect(&g, "c", &csv(&rows(3, 2)), "parcels.csv");
    assert_eq!(r.verdict, Verdict::Reject);
    assert!(out.is_none());
    assert!(
        r.reasons.iter().any(|x| x.contains("no pseudonym key")),
        "{:?}",
        r.reasons
    );
}

/// Promise: under require_rules, a new column in a feed cannot slip out.
#[test]
fn a_column_no_rule_names_is_refused() {
    let g = guard_with(&settings(), Some((1, b"k")));
    let text = csv(&rows(3, 3))
        .replacen("备注\n", "备注,微信号\n", 1)
        .replace("原件存档\"\n", "原件存档\",wx_zhangwei\n");
    let (r, out) = inspect(&g, "c", &text, "parcels.csv");
    assert_eq!(r.verdict, Verdict::Reject);
    assert!(out.is_none());
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("column 微信号 has no rule") && x.contains("require_rules")),
        "{:?}",
        r.reasons
    );
    // Without require_rules the same column passes (scanned by the
    // detectors, released as it is).
    let mut s = settings();
    s["require_rules"] = json!(false);
    let g = guard_with(&s, Some((1, b"k")));
    let (r, _) = inspect(&g, "c", &text, "parcels.csv");
    assert_eq!(r.verdict, Verdict::Masked, "{:?}", r.reasons);
}

/// Promise: what the guard releases passes a second inspection under the
/// same profile — the egress side, which holds no pseudonym key — with no
/// finding and no change.
#[test]
fn the_released_table_passes_reinspection_unchanged() {
    let g = guard_with(&settings(), Some((1, b"k")));
    let (_, out) = inspect(&g, "c", &csv(&rows(30, 4)), "parcels.csv");
    let out = out.unwrap();
    let egress = guard_with(&settings(), None);
    let (r, again) = inspect(&egress, "c", &out, "parcels.csv");
    assert_eq!(r.findings_total, 0, "{:?}", r.findings);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    assert!(again.is_none());
    assert_eq!(deid(&r, "pseudonymize", "column 权利人"), 30);
}

/// Promise: rules that change data are never applied half-way inside an
/// archive the guard cannot rewrite: the package is refused, with why.
#[test]
fn rules_inside_archives_refuse_the_package() {
    let g = guard_with(&settings(), Some((1, b"k")));
    let table = csv(&rows(3, 5));
    let zip = common::zip(&[common::entry("parcels.csv", table.as_bytes())]);
    let (r, out) = g
        .inspect_bytes_for("c", &zip, "parcels.zip", "application/zip")
        .unwrap();
    assert_eq!(r.verdict, Verdict::Reject, "{:?}", r.reasons);
    assert!(out.is_none());
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("the rule changes the data")),
        "{:?}",
        r.reasons
    );
}

/// Township statistics: (township, households, parcels, total) rows and a
/// 合计 row of column sums.
fn township_table(rng: &mut Rng, n: usize) -> (String, Vec<[u64; 3]>) {
    let mut rows = Vec::new();
    for _ in 0..n {
        // Many small counts, some zeros.
        let h = match rng.below(4) {
            0 => rng.below(5),
            _ => 5 + rng.below(60),
        };
        let p = match rng.below(3) {
            0 => rng.below(5),
            _ => 5 + rng.below(40),
        };
        rows.push([h, p, h + p]);
    }
    let mut total = [0u64; 3];
    for r in &rows {
        for k in 0..3 {
            total[k] += r[k];
        }
    }
    let mut s = String::from("乡镇,户数,宗地数,合计\n");
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!("镇{i},{},{},{}\n", r[0], r[1], r[2]));
    }
    s.push_str(&format!("合计,{},{},{}\n", total[0], total[1], total[2]));
    rows.push(total);
    (s, rows)
}

/// Promise: no published count is below k, and no total recovers a
/// suppressed cell: every row and column with a published total hides
/// zero or at least two of its cells.
#[test]
fn small_cell_suppression_leaves_no_small_cell_and_no_recovering_total() {
    let g = guard_with(&settings(), None);
    let mut rng = Rng::new(11);
    let mut suppressed_somewhere = false;
    for round in 0..40 {
        let (text, values) = township_table(&mut rng, 3 + round % 6);
        let (r, out) = inspect(&g, "c", &text, "townships.csv");
        let out = match (r.verdict, out) {
            (Verdict::Masked, Some(o)) => o,
            (Verdict::Pass, None) => text.clone(),
            (v, _) => panic!("round {round}: {v:?} {:?}", r.reasons),
        };
        let cells: Vec<Vec<Option<u64>>> = out
            .lines()
            .skip(1)
            .map(|l| l.split(',').skip(1).map(|c| c.parse().ok()).collect())
            .collect();
        assert_eq!(cells.len(), values.len());
        let mut hidden = 0;
        for (row, orig) in cells.iter().zip(&values) {
            for (c, o) in row.iter().zip(orig) {
                match c {
                    Some(v) => {
                        assert_eq!(v, o, "a published cell is the true count");
                        assert!(*v == 0 || *v >= 5, "round {round}: {v} published");
                    }
                    None => hidden += 1,
                }
            }
        }
        // Lines: each row (members 0..2, total 2); each column (members
        // every row but the last, total the last).
        let mut lines: Vec<Vec<Option<u64>>> = cells.clone();
        for col in 0..3 {
            // Every row's cell of the column; the last row is the total.
            lines.push(cells.iter().map(|row| row[col]).collect());
        }
        for l in &lines {
            let unknowns = l.iter().filter(|c| c.is_none()).count();
            assert_ne!(
                unknowns, 1,
                "round {round}: a line gives a hidden cell away\n{out}"
            );
        }
        let listed: u64 = r
            .deidentification
            .iter()
            .filter(|d| d.technique == "suppress")
            .map(|d| d.values)
            .sum();
        assert_eq!(
            listed, hidden,
            "round {round}: the record counts every hidden cell"
        );
        suppressed_somewhere |= hidden > 0;
    }
    assert!(suppressed_somewhere, "the generator made small cells");
}

/// Promise: JSON arrays of records and GeoJSON properties follow the same
/// column rules as CSV.
#[test]
fn json_records_and_geojson_properties_follow_the_same_rules() {
    let g = guard_with(&settings(), Some((1, b"k")));
    let records = json!([
        { "宗地编号": "420111GB00001", "权利人": "张伟", "联系电话": "13812345678", "登记日期": "2021-03-17", "成交价格": 1234567, "备注": "见证人 13900001111" },
        { "宗地编号": "420111GB00002", "权利人": "张伟", "联系电话": "13812345678", "登记日期": "2021年3月17日", "成交价格": "88000", "备注": null }
    ]);
    let (r, out) = inspect(&g, "c", &records.to_string(), "parcels.json");
    assert_eq!(r.verdict, Verdict::Masked, "{:?}", r.reasons);
    assert_eq!(r.findings_total, 0, "{:?}", r.findings);
    let v: serde_json::Value = serde_json::from_str(&out.unwrap()).unwrap();
    for rec in v.as_array().unwrap() {
        assert!(rec.get("备注").is_none(), "dropped");
        assert!(rec["权利人"].as_str().unwrap().starts_with("p1-"));
        assert_eq!(rec["联系电话"], "138****5678");
        assert_eq!(rec["登记日期"], "2021-03");
    }
    assert_eq!(v[0]["权利人"], v[1]["权利人"]);
    assert_eq!(v[0]["成交价格"], "1200000~1300000");
    assert_eq!(v[1]["成交价格"], "0~100000");
    let geo = json!({ "type": "FeatureCollection", "features": [
        { "type": "Feature", "geometry": { "type": "Point", "coordinates": [114.36, 30.53] },
          "properties": { "宗地编号": "420111GB00003", "权利人": "王芳", "坐落": "湖北省武汉市洪山区珞喻路1037号" } }
    ]});
    let (r, out) = inspect(&g, "c", &geo.to_string(), "parcels.geojson");
    assert_eq!(r.verdict, Verdict::Masked, "{:?}", r.reasons);
    let v: serde_json::Value = serde_json::from_str(&out.unwrap()).unwrap();
    let props = &v["features"][0]["properties"];
    assert_eq!(props["坐落"], "湖北省武汉市洪山区");
    assert!(props["权利人"].as_str().unwrap().starts_with("p1-"));
    // A property no rule names, under require_rules.
    let mut extra = geo.clone();
    extra["features"][0]["properties"]["微信号"] = json!("wx_wangfang");
    let (r, _) = inspect(&g, "c", &extra.to_string(), "parcels.geojson");
    assert_eq!(r.verdict, Verdict::Reject);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("微信号") && x.contains("require_rules")),
        "{:?}",
        r.reasons
    );
}
