//! The shipped example policy checks clean under --strict and passes its cases.

use ferry_policy::cli::{run_to, PolicyCommand};
use std::path::PathBuf;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn example_policy_is_valid_under_strict() {
    let report = ferry_policy::check(&examples().join("policy.toml"), true);
    assert!(report.valid, "{}", report.render());
    assert_eq!(report.warnings, 0, "{}", report.render());
}

#[test]
fn example_cases_pass() {
    let mut out = Vec::new();
    let code = run_to(
        PolicyCommand::Test {
            file: examples().join("policy.toml"),
            cases: examples().join("policy-cases.toml"),
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

#[test]
fn example_spool_runs_at_01_30_shanghai() {
    let (p, _) = ferry_policy::load(&examples().join("policy.toml")).unwrap();
    let s = &p.spool_collections()[0];
    assert_eq!(s.name, "nightly-registry");
    let at = time::OffsetDateTime::from_unix_timestamp(1_795_824_000).unwrap(); // 2026-11-28T00:00Z
    let next = s.next_run_after(at).unwrap();
    assert_eq!(next.unix_timestamp(), 1_795_824_000 + 17 * 3600 + 1800); // 17:30Z = 01:30 +08
}
