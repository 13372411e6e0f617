//! Random and mutated input never panics and never becomes a machine
//! error: every outcome is a verdict.

mod common;

use common::*;
use proptest::prelude::*;

const NAMES: &[(&str, &str)] = &[
    ("a.csv", "text/csv"),
    ("a.txt", "text/plain"),
    ("a.json", "application/json"),
    ("a.geojson", "application/geo+json"),
    ("a.xml", "application/xml"),
    ("a.zip", "application/zip"),
    ("a.tar", "application/x-tar"),
    ("a.csv.gz", "application/gzip"),
    ("a.pdf", "application/pdf"),
    ("a.png", "image/png"),
    ("a", ""),
];

/// Valid samples of every type, to be mutated.
fn samples() -> Vec<(Vec<u8>, &'static str, &'static str)> {
    let p = parcels(4, 11);
    let csv = csv(&p);
    let gj = geojson(&p);
    vec![
        (csv.clone().into_bytes(), "a.csv", "text/csv"),
        (gj.clone().into_bytes(), "a.geojson", "application/geo+json"),
        (
            "密级：秘 密★\n电话13812345678\n".as_bytes().to_vec(),
            "a.txt",
            "text/plain",
        ),
        (
            b"<a x=\"1\">&amp;<b>\xE7\xA7\x98\xE5\xAF\x86</b><!-- c --></a>".to_vec(),
            "a.xml",
            "application/xml",
        ),
        (
            zip(&[
                entry("p.csv", csv.as_bytes()),
                entry("g.geojson", gj.as_bytes()),
            ]),
            "a.zip",
            "application/zip",
        ),
        (
            gzip(&tar(&[("d/p.csv", b'0', csv.as_bytes())])),
            "a.tar.gz",
            "application/gzip",
        ),
        (png(), "a.png", "image/png"),
        (pdf(), "a.pdf", "application/pdf"),
    ]
}

/// A profile with every column rule and suppression.
fn deid_guard() -> ferry_guard::Guard {
    let mut s = settings();
    s["columns"] = serde_json::json!([
        { "match": ["parcel_id", "area_m2", "乡镇", "合计"], "action": "keep" },
        { "match": ["owner_name", "owner_id"], "action": "pseudonymize" },
        { "match": ["phone"], "action": "mask", "keep_prefix": 3, "keep_suffix": 4 },
        { "match": ["company"], "action": "generalize", "to": "district" },
        { "match": ["email"], "action": "drop" },
        { "match": ["registered"], "action": "generalize", "to": "month" },
        { "match": ["price"], "action": "generalize", "to": "range", "step": 1000 },
    ]);
    s["suppression"] =
        serde_json::json!({ "count_columns": ["户数", "宗地数"], "k": 5, "total_column": "合计" });
    guard_with(s).with_pseudonym_key(1, b"random test key")
}

/// Tables for the column rules: parcels with dates and prices, JSON
/// records, and a township table with totals.
fn deid_samples() -> Vec<(Vec<u8>, &'static str, &'static str)> {
    let table = "parcel_id,owner_name,owner_id,phone,registered,price,area_m2\n\
                 P1,张伟,11010519491231002X,13812345678,2021-03-17,1234567.5,88.1\n\
                 P2,王芳,11010519491231002X,138 1234 5678,2021年3月,12,\"1,000\"\n";
    let records = r#"[{"parcel_id":"P1","owner_name":"张伟","phone":"13812345678","registered":"20210317","price":99999},{"parcel_id":"P2","owner_id":null,"email":{"a":1}}]"#;
    let stats = "乡镇,户数,宗地数,合计\n甲,3,40,43\n乙,12,2,14\n丙,0,9,9\n合计,15,51,66\n";
    vec![
        (table.as_bytes().to_vec(), "a.csv", "text/csv"),
        (records.as_bytes().to_vec(), "a.json", "application/json"),
        (stats.as_bytes().to_vec(), "s.csv", "text/csv"),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn apply(mut data: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = data.len().max(1);
        match m {
            Mutation::Flip(i, x) => {
                if !data.is_empty() {
                    let i = i % n;
                    data[i] ^= x | 1;
                }
            }
            Mutation::Truncate(i) => data.truncate(i % n),
            Mutation::Insert(i, b) => {
                let i = i % n;
                let i = i.min(data.len());
                data.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(i, len) => {
                let i = (i % n).min(data.len());
                let end = (i + len % 64).min(data.len());
                data.drain(i..end);
            }
        }
    }
    data
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, l)| Mutation::Delete(i, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048), k in 0usize..11) {
        let g = guard();
        let (name, ty) = NAMES[k];
        let r = g.inspect_bytes(&data, name, ty);
        prop_assert!(r.is_ok());
    }

    /// Column rules and suppression under mutated tables: never a panic,
    /// and what they release passes them again without a finding.
    #[test]
    fn mutated_tables_under_column_rules_never_panic(k in 0usize..3, muts in prop::collection::vec(mutation(), 1..4)) {
        let g = deid_guard();
        let (data, name, ty) = deid_samples().swap_remove(k);
        let data = apply(data, &muts);
        let r = g.inspect_bytes_for("c", &data, name, ty);
        prop_assert!(r.is_ok());
        let (report, masked) = r.unwrap();
        if let Some(m) = masked {
            let (again, _) = g.inspect_bytes_for("c", &m, name, ty).unwrap();
            let remnant = again.findings.iter().all(|f| f.kind == ferry_guard::FindingKind::PersonalData);
            prop_assert!(
                again.may_pass() && remnant,
                "{:?} → {:?} {:?}", report.reasons, again.reasons, again.findings
            );
        }
    }

    #[test]
    fn mutated_samples_never_panic(k in 0usize..8, muts in prop::collection::vec(mutation(), 1..4)) {
        let g = guard();
        let (data, name, ty) = samples().swap_remove(k);
        let data = apply(data, &muts);
        let r = g.inspect_bytes(&data, name, ty);
        prop_assert!(r.is_ok());
        let (report, masked) = r.unwrap();
        // A masked package passes the same profile. (Masking keeps what
        // the profile lets it keep; in contrived input such remnants can
        // join neighbouring text into something that reads as personal
        // data again, so only that may be found a second time.)
        if let Some(m) = masked {
            let (again, _) = g.inspect_bytes(&m, name, ty).unwrap();
            let remnant = again.findings.iter().all(|f| f.kind == ferry_guard::FindingKind::PersonalData);
            prop_assert!(
                again.verdict == ferry_guard::Verdict::Pass
                    || (again.verdict == ferry_guard::Verdict::Masked && remnant),
                "{:?} → {:?}", report.reasons, again.reasons
            );
        }
    }
}
