//! Hostile and broken input: a located error, never a panic, never a
//! partially loaded policy — and a policy that allows nothing denies
//! everything.

use ferry_policy::{load, parse_str, NoUsage, PolicyError, Request, San, Subject, Verdict};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn located(text: &str) -> (usize, usize, &'static str) {
    match parse_str(text, "p.toml") {
        Err(PolicyError::Invalid { diagnostics }) => {
            let d = &diagnostics[0];
            assert!(d.line >= 1 && d.column >= 1);
            (d.line, d.column, d.code)
        }
        Ok(_) => panic!("accepted"),
        Err(e) => panic!("unlocated: {e}"),
    }
}

#[test]
fn ten_megabytes_of_nested_tables_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let mut text = String::new();
    let mut key = String::from("a");
    while text.len() < 10 << 20 {
        text.push_str(&format!("[{key}]\nx = 1\n"));
        key.push_str(".a");
        if key.len() > 4000 {
            key = "a".into();
        }
    }
    std::fs::write(&file, &text).unwrap();
    let start = Instant::now();
    let err = load(&file).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let d = &err.diagnostics()[0];
    assert_eq!((d.code, d.line, d.column), ("too-large", 1, 1));
}

#[test]
fn deep_nesting_within_the_size_limit_is_refused() {
    // One header 100 000 keys deep, well under 1 MiB.
    let text = format!("[{}]\nx = 1\n", vec!["a"; 100_000].join("."));
    assert_eq!(located(&text), (1, 1, "too-deep"));
    let text = format!("x = {}1{}\n", "[".repeat(50_000), "]".repeat(50_000));
    assert_eq!(located(&text), (1, 1, "too-deep"));
    let text = format!("x = {}\n", "{a = ".repeat(5_000));
    assert_eq!(located(&text), (1, 1, "too-deep"));
}

#[test]
fn binary_garbage_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, b"version = 1\n\xff\xfe\x00garbage").unwrap();
    let err = load(&file).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!((d.code, d.line, d.column), ("not-utf8", 2, 1));
    for bytes in [
        &b"\x00\x01\x02\x03"[..],
        b"\x7fELF\x02\x01\x01",
        b"[[[[",
        b"=",
        b"\"\"\"",
        b"a = 'x",
    ] {
        let text = String::from_utf8_lossy(bytes);
        located(&text);
    }
}

#[test]
fn a_policy_with_one_error_yields_nothing() {
    // Everything valid but one value: no Policy comes back at all.
    let text = "[policy]\ntime_zone = \"UTC\"\n[channel.c]\ndirection = \"import\"\nlink = \"l\"\n[identity.i]\ncn = \"x\"\n[[rule]]\nid = \"r\"\neffect = \"allow\"\nidentities = [\"i\"]\nchannels = [\"c\"]\nmax_package_bytes = 0\n";
    assert_eq!(located(text), (13, 21, "invalid-value"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Whatever the text, parsing returns (no panic); anything accepted is
    /// complete enough to decide.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse_str(&text, "fuzz.toml");
    }

    /// TOML-ish text built from policy vocabulary never panics either.
    #[test]
    fn policy_shaped_text_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("[channel.c]\n"), Just("direction = \"release\"\n"), Just("link = \"l\"\n"),
        Just("[[rule]]\n"), Just("id = \"r\"\n"), Just("effect = \"deny\"\n"),
        Just("identities = [\"*\"]\n"), Just("channels = [\"c\"]\n"), Just("[window.w]\n"),
        Just("from = \"22:00\"\n"), Just("to = \"22:00\"\n"), Just("time_zone = \"Asia/Shanghai\"\n"),
        Just("[spool.s]\n"), Just("schedule = \"*/5 * * * *\"\n"), Just("max_package_bytes = -5\n"),
        Just("windows = [\"w\", \"w\"]\n"), Just("[identity.i]\n"), Just("spool = \"s\"\n"),
        Just("cn = \"x\"\n"), Just("names = [\"*[\"]\n"),
    ], 0..40)) {
        let text: String = parts.concat();
        let _ = parse_str(&text, "fuzz.toml");
    }
}

/// Channels and identities but only deny rules (or none): nothing allowed.
const ALLOW_NOTHING: &str = r#"
[policy]
time_zone = "Asia/Shanghai"
[identity.a]
cn = "a"
[identity.r]
role = "pusher"
[channel.out]
direction = "release"
link = "l"
[channel.in]
direction = "import"
link = "m"
[[rule]]
id = "no-exe"
effect = "deny"
identities = ["*"]
channels = ["*"]
names = ["*.exe"]
"#;

fn subject() -> impl Strategy<Value = Subject> {
    (
        proptest::option::of(prop_oneof![Just("a".to_string()), "[a-z]{0,8}"]),
        proptest::option::of(prop_oneof![Just("pusher".to_string()), "[a-z]{1,8}"]),
        proptest::collection::vec("[A-Za-z ]{0,8}", 0..3),
        proptest::option::of("[0-9a-f]{64}"),
        proptest::option::of("[a-z]{1,8}"),
        any::<bool>(),
    )
        .prop_map(|(cn, role, ou, fp, spool, dns)| Subject {
            subject: cn.as_ref().map(|c| format!("CN={c}")).unwrap_or_default(),
            common_name: cn,
            org_units: ou,
            san: if dns {
                vec![San::Dns("a.example".into())]
            } else {
                vec![]
            },
            fingerprint_sha256: fp,
            role,
            spool: if dns { None } else { spool },
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn allow_nothing_policy_denies_every_request(
        identity in subject(),
        channel in prop_oneof![Just("out".to_string()), Just("in".to_string()), "[a-z]{0,6}"],
        file_name in "[^/\\\\]{0,40}",
        content_type in prop_oneof![Just("text/csv".to_string()), "[a-z]{1,8}/[a-z]{1,8}", ".{0,20}"],
        size_bytes in any::<u64>(),
        at in -2_000_000_000i64..4_000_000_000i64,
    ) {
        let (policy, _) = parse_str(ALLOW_NOTHING, "p.toml").unwrap();
        let req = Request {
            identity,
            channel,
            file_name,
            content_type,
            size_bytes,
            at: time::OffsetDateTime::from_unix_timestamp(at).unwrap(),
        };
        let d = policy.decide(&req, &NoUsage);
        prop_assert_eq!(d.verdict, Verdict::Deny);
        prop_assert!(!d.reasons.is_empty());
        prop_assert!(d.profile.is_none() && d.approval.is_none() && d.charges.is_empty());
    }
}

#[test]
fn too_many_rules_is_refused() {
    let mut text = String::from("[channel.c]\ndirection = \"import\"\nlink = \"l\"\n");
    for i in 0..=ferry_policy::RULES_MAX {
        text.push_str(&format!(
            "[[rule]]\nid=\"r{i}\"\neffect=\"deny\"\nidentities=[\"*\"]\nchannels=[\"*\"]\n"
        ));
    }
    assert!(text.len() < ferry_policy::FILE_MAX_BYTES);
    let (_, _, code) = located(&text);
    assert_eq!(code, "invalid-value");
}
