//! The policy boundary, attacked as a careless (or hostile) administrator
//! and a hostile client would: every matcher that would match anyone is
//! refused, located, by `policy check` (strict or not) and by the load the
//! daemon runs; `policy explain` never allows a client no identity
//! matches; a FIFO, device or directory named as a policy file, an
//! include, a cases file or a signature is refused at once instead of
//! blocking the check forever.

use ferry_policy::cli::{run_to, IdentityArgs, PolicyCommand};
use ferry_policy::{check, load, Severity};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// A FIFO read must fail at once; this bounds the test if it does not.
const FIFO_LIMIT: Duration = Duration::from_secs(10);

/// A policy that allows identity `x` to push on `out`; `IDENTITY` is the
/// line under `[identity.x]` (line 2), `APPROVAL` the `roles` line of the
/// channel's approval (line 6).
const TEMPLATE: &str = r#"[identity.x]
IDENTITY
[approval.two]
reviewers = 2
expires_after_s = 3600
APPROVAL
[channel.out]
direction = "release"
link = "release-1"
approval = "two"
[[rule]]
id = "R1"
effect = "allow"
identities = ["x"]
channels = ["out"]
"#;

fn policy(identity: &str, roles: &str) -> String {
    TEMPLATE
        .replace("IDENTITY", identity)
        .replace("APPROVAL", roles)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Every vacuous or shapeless matcher: (the line, the line it lands on,
/// whether it goes in the identity or the approval slot).
const VACUOUS: &[(&str, &str)] = &[
    ("identity", "ou = []"),
    ("identity", "san = []"),
    ("identity", "cn = \"\""),
    ("identity", "cn = \"  \""),
    ("identity", "ou = [\"\"]"),
    ("identity", "subject = \"\""),
    ("identity", "subject = \"stats.registry.example\""),
    ("identity", "subject = \"cn=stats,o=Land Registry\""),
    ("identity", "subject = \"CN=stats, O=Land Registry\""),
    ("identity", "subject = \"CN=\""),
    ("identity", "san = [\"dns:not a host name\"]"),
    ("identity", "san = [\"email:nobody\"]"),
    ("identity", "san = [\"uri:no-scheme-here\"]"),
    ("identity", "san = [\"dns: portal.example\"]"),
    ("approval", "roles = [\"\"]"),
    ("approval", "roles = [\"Bad Role!\"]"),
    ("approval", "roles = [\"auditor\"]"),
];

fn case(slot: &str, line: &str) -> (String, usize) {
    match slot {
        "identity" => (
            policy(
                &format!("{line}\nrole = \"pusher\""),
                "roles = [\"reviewer\"]",
            ),
            2,
        ),
        _ => (policy("cn = \"stats\"", line), 6),
    }
}

/// Promise: anything that would match any client, or that no account or
/// certificate could ever satisfy, is an error at FILE:LINE:COL, under
/// `policy check` with and without `--strict` and at the daemon's load.
#[test]
fn every_vacuous_matcher_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (slot, line)) in VACUOUS.iter().enumerate() {
        let (text, at) = case(slot, line);
        let file = write(dir.path(), &format!("p{i}.toml"), &text);
        for strict in [false, true] {
            let r = check(&file, strict);
            assert!(!r.valid, "`{line}` passed check (strict {strict})");
            let d = r
                .diagnostics
                .iter()
                .find(|d| d.severity == Severity::Error && d.line == at)
                .unwrap_or_else(|| panic!("`{line}`: no error at line {at}:\n{}", r.render()));
            assert!(d.column >= 1 && !d.message.is_empty(), "{d}");
        }
        let e = load(&file)
            .err()
            .unwrap_or_else(|| panic!("`{line}` loaded"));
        assert!(
            e.diagnostics().iter().any(|d| d.line == at),
            "`{line}`: {e}"
        );
    }
}

/// Promise: an allow rule names who it allows. `identities = ["*"]` in an
/// allow rule would let any certificate of the CA push, so it is refused;
/// in a deny rule it stays "everyone".
#[test]
fn an_allow_rule_for_everyone_is_refused_a_deny_rule_is_not() {
    let text = policy("cn = \"stats\"", "roles = [\"reviewer\"]");
    let allow_all = text.replace("identities = [\"x\"]", "identities = [\"*\"]");
    let err = ferry_policy::parse_str(&allow_all, "p.toml").unwrap_err();
    let d = err.diagnostics().iter().find(|d| d.code == "allows-anyone");
    let d = d.unwrap_or_else(|| panic!("{err}"));
    assert_eq!((d.severity, d.line), (Severity::Error, 14), "{err}");
    let deny_all = format!(
        "{text}[[rule]]\nid = \"D\"\neffect = \"deny\"\nidentities = [\"*\"]\nchannels = [\"*\"]\nnames = [\"*.exe\"]\n"
    );
    ferry_policy::parse_str(&deny_all, "p.toml").unwrap();
}

fn explain(file: &Path, identity: IdentityArgs) -> (u8, String) {
    let mut out = Vec::new();
    let code = run_to(
        PolicyCommand::Explain {
            file: file.to_path_buf(),
            identity,
            channel: "out".into(),
            name: "stats.csv".into(),
            content_type: "text/csv".into(),
            size: 10,
            at: Some("2026-11-30T23:00:00+08:00".into()),
            json: false,
        },
        &mut out,
    )
    .unwrap();
    (code, String::from_utf8(out).unwrap())
}

/// Promise: `policy explain` never answers ALLOW for a client that no
/// identity matches: not for an anonymous request, not for any CN or SAN,
/// whatever vacuous matcher the policy tries.
#[test]
fn explain_never_allows_an_unmatched_client() {
    let dir = tempfile::tempdir().unwrap();
    let strangers = [
        IdentityArgs::default(),
        IdentityArgs {
            cn: Some("anyone".into()),
            san: vec!["dns:evil.example".into()],
            ..IdentityArgs::default()
        },
        IdentityArgs {
            cn: Some(String::new()),
            ou: vec![String::new()],
            subject: Some(String::new()),
            ..IdentityArgs::default()
        },
    ];
    let mut files: Vec<PathBuf> = VACUOUS
        .iter()
        .enumerate()
        .map(|(i, (slot, line))| write(dir.path(), &format!("v{i}.toml"), &case(slot, line).0))
        .collect();
    // And a valid policy: its identity matches `stats` only.
    let valid = write(
        dir.path(),
        "valid.toml",
        &policy("cn = \"stats\"", "roles = [\"reviewer\"]").replace("approval = \"two\"\n", ""),
    );
    files.push(valid.clone());
    for f in &files {
        for s in &strangers {
            let (code, out) = explain(f, s.clone());
            assert_ne!(code, 0, "{}: {s:?} allowed:\n{out}", f.display());
            assert!(!out.contains("ALLOW"), "{out}");
        }
    }
    // The valid policy does allow its own identity (the check can fail).
    let (code, out) = explain(
        &valid,
        IdentityArgs {
            cn: Some("stats".into()),
            ..IdentityArgs::default()
        },
    );
    assert_eq!(code, 0, "{out}");
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(st.success());
}

/// Runs `f` on another thread; panics if it does not return within
/// [`FIFO_LIMIT`] (a read blocked on a FIFO never would).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(FIFO_LIMIT)
        .unwrap_or_else(|_| panic!("{what}: still blocked after {FIFO_LIMIT:?}"))
}

/// Promise: a policy file, include, cases file or signature that is a
/// FIFO, a device or a directory is refused at once, with what it is.
#[test]
fn non_regular_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    mkfifo(&fifo);
    let good = policy("cn = \"stats\"", "roles = [\"reviewer\"]");

    // The main file.
    let f = fifo.clone();
    let r = bounded("check on a FIFO", move || check(&f, true));
    assert!(!r.valid);
    assert!(r.render().contains("FIFO"), "{}", r.render());

    // Includes: a FIFO, a device, a directory.
    for (target, kind) in [
        ("fifo.toml", "FIFO"),
        ("/dev/zero", "character device"),
        (".", "directory"),
    ] {
        let main = write(
            dir.path(),
            "main.toml",
            &format!("include = [\"{target}\"]\n{good}"),
        );
        let r = bounded("check with a non-regular include", move || {
            check(&main, true)
        });
        assert!(!r.valid);
        let d = r.diagnostics.iter().find(|d| d.code == "include-failed");
        let d = d.unwrap_or_else(|| panic!("{}", r.render()));
        assert_eq!((d.line, d.column), (1, 12), "{d}");
        assert!(d.message.contains(kind), "{d}");
    }

    // A `policy test` cases file and a signature.
    let main = write(dir.path(), "main.toml", &good);
    let (m, f) = (main.clone(), fifo.clone());
    let r = bounded("policy test with FIFO cases", move || {
        run_to(PolicyCommand::Test { file: m, cases: f }, &mut Vec::new())
    });
    assert!(r.unwrap_err().to_string().contains("FIFO"));
    let (_, public) = ferry_policy::sign::keygen(&dir.path().join("k")).unwrap();
    let public = ferry_policy::PublicKey::read(&public).unwrap();
    let (m, f) = (main.clone(), fifo.clone());
    let r = bounded("verify with a FIFO signature", move || {
        ferry_policy::sign::verify(&m, &f, &[public])
            .err()
            .map(|e| e.to_string())
    });
    assert!(r.unwrap_or_default().contains("FIFO"));
}
