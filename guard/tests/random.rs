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
