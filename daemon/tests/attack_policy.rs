//! The policy boundary of the daemon, attacked the way an operator's
//! mistakes and the host would attack it:
//! - `ferryctl policy check --strict` reads what `ferryd` reads (the
//!   dirty-word lists) through `ferryd`'s own loader, so a policy that
//!   `ferryd` refuses fails the check, located (the documented procedure
//!   check, test, sign, reload must not end in a policy that will not load);
//! - a FIFO given to `ferryctl inspect` or named as a dirty-word list is
//!   refused at once;
//! - the daemon refuses a policy whose matchers would match anyone;
//! - time zones never come from the host: a reload inside the Landlock
//!   sandbox names zones never used before and still loads, and a
//!   tampered `/usr/share/zoneinfo` (`TZDIR`) changes no decision.

mod common;

use common::*;
use ferry_daemon::config::PolicySection;
use ferry_daemon::inspection::policy_gate::PolicyGate;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every command here answers at once; this bounds a hang.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);

/// `ferryctl` as the `&str` [`run_bin`] takes.
const FERRYCTL: &str = env!("CARGO_BIN_EXE_ferryctl");

/// Runs ferryctl, killing it (and failing) if it does not finish in time.
fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    run_bin(FERRYCTL, args, env)
}

/// Runs `exe`, killing it (and failing) if it does not finish in time: a
/// reader blocked on a FIFO shows as this failure, not as a hung test.
fn run_bin(exe: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(exe);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_within(&mut c, COMMAND_LIMIT)
}

/// A policy whose profile `strict` reads the dirty-word list `list`; the
/// list entry is on line 2, column 45.
fn policy_with_list(list: &Path) -> String {
    format!(
        r#"[profile.strict]
dirty_words = {{ action = "reject", lists = ["{}"] }}

[identity.stats]
cn = "stats"

[channel.out]
direction = "import"
link = "import-1"
profile = "strict"

[[rule]]
id = "R1"
effect = "allow"
identities = ["stats"]
channels = ["out"]
"#,
        list.display()
    )
}

fn gate(file: &Path) -> Result<PolicyGate, String> {
    PolicyGate::load(&PolicySection {
        file: file.to_path_buf(),
        signers: Vec::new(),
        pseudonym_keys: None,
    })
    .map_err(|e| e.to_string())
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success());
}

/// Promise: `policy check --strict` refuses, at the list entry, every
/// policy whose dirty-word list ferryd cannot load (missing, invalid, a
/// FIFO), and accepts the same policy once the list is good; ferryd's
/// load agrees each time.
#[test]
fn strict_check_loads_the_lists_ferryd_loads_and_agrees_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.txt");
    mkfifo(&fifo);
    let invalid = dir.path().join("invalid.txt");
    std::fs::write(&invalid, "秘密\nx\n").unwrap(); // a one-letter word
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "秘密\n绝密\n").unwrap();
    let cases = [
        (dir.path().join("missing.txt"), Some("cannot read")),
        (invalid.clone(), Some("single letter")),
        (fifo.clone(), Some("FIFO")),
        (dir.path().to_path_buf(), Some("directory")),
        (good.clone(), None),
    ];
    for (list, refused) in cases {
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, policy_with_list(&list)).unwrap();
        let out = run(&["policy", "check", "--strict", path_str(&file)], &[]);
        let daemon = gate(&file);
        match refused {
            Some(why) => {
                assert_eq!(out.status.code(), Some(1), "{}", text(&out));
                let at = format!("{}:2:45: ferryd would refuse this policy", file.display());
                assert!(text(&out).contains(&at), "{list:?}: {}", text(&out));
                assert!(text(&out).contains(why), "{list:?}: {}", text(&out));
                let e = daemon
                    .err()
                    .unwrap_or_else(|| panic!("ferryd loaded {list:?}"));
                assert!(e.contains(why), "{e}");
                // Without --strict the check still says it, as a warning.
                let out = run(&["policy", "check", path_str(&file)], &[]);
                assert!(
                    text(&out).contains("warning: ferryd would refuse"),
                    "{}",
                    text(&out)
                );
            }
            None => {
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                assert!(daemon.is_ok(), "{:?}", daemon.err());
            }
        }
    }
}

/// Promise: `ferryctl inspect` given a FIFO (or a directory) as its input
/// refuses it at once with what it is, instead of blocking forever.
#[test]
fn inspect_refuses_a_fifo_input_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "秘密\n").unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_with_list(&good)).unwrap();
    let fifo = dir.path().join("in.csv");
    mkfifo(&fifo);
    for (input, kind) in [(fifo.as_path(), "FIFO"), (dir.path(), "directory")] {
        let out = run(
            &[
                "inspect",
                "--policy",
                path_str(&policy),
                "--profile",
                "strict",
                "--name",
                "in.csv",
                path_str(input),
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(kind), "{}", text(&out));
    }
}

/// Promise: ferryd refuses to load a policy whose identity matches every
/// client (an empty matcher list), as `policy check` does.
#[test]
fn ferryd_refuses_a_vacuous_identity() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "秘密\n").unwrap();
    let file = dir.path().join("policy.toml");
    for vacuous in ["ou = []", "san = []", "cn = \"\"", "subject = \"stats\""] {
        let p = policy_with_list(&good).replace("cn = \"stats\"", vacuous);
        std::fs::write(&file, p).unwrap();
        let e = gate(&file)
            .err()
            .unwrap_or_else(|| panic!("ferryd loaded `{vacuous}`"));
        assert!(e.contains(&format!("{}:5:", file.display())), "{e}");
        let out = run(&["policy", "check", path_str(&file)], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }
}

/// A policy with a window in `zone` (22:00-06:00 every day) on channel
/// `out`, allowed for `stats`.
fn policy_in_zone(zone: &str) -> String {
    format!(
        r#"[policy]
time_zone = "{zone}"

[window.night]
from = "22:00"
to = "06:00"

[identity.stats]
cn = "stats"

[channel.out]
direction = "release"
link = "release-1"
windows = ["night"]

[[rule]]
id = "R1"
effect = "allow"
identities = ["stats"]
channels = ["out"]
"#
    )
}

/// Promise: decisions never depend on the host's time-zone files. A
/// `TZDIR` whose `Asia/Shanghai` is really UTC would move the window by
/// eight hours if anything read it; the decision stays the bundled one.
#[test]
fn a_tampered_host_zoneinfo_changes_no_decision() {
    let utc = Path::new("/usr/share/zoneinfo/Etc/UTC");
    if !utc.is_file() {
        eprintln!("SKIPPED: no /usr/share/zoneinfo/Etc/UTC to build a tampered TZDIR from");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tzdir = dir.path().join("zoneinfo");
    std::fs::create_dir_all(tzdir.join("Asia")).unwrap();
    std::fs::create_dir_all(tzdir.join("Etc")).unwrap();
    std::fs::copy(utc, tzdir.join("Asia/Shanghai")).unwrap();
    std::fs::copy(utc, tzdir.join("Etc/UTC")).unwrap();
    std::fs::copy(utc, tzdir.join("UTC")).unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy_in_zone("Asia/Shanghai")).unwrap();
    // 23:30 in Shanghai: inside the window; 15:30 UTC would be outside.
    let args = [
        "policy",
        "explain",
        path_str(&file),
        "--cn",
        "stats",
        "--channel",
        "out",
        "--name",
        "a.csv",
        "--size",
        "10",
        "--at",
        "2026-11-30T23:30:00+08:00",
    ];
    for env in [&[][..], &[("TZDIR", tzdir.as_path())][..]] {
        let out = run(&args, env);
        assert_eq!(out.status.code(), Some(0), "{env:?}: {}", text(&out));
    }
}

/// The child-process marker: the Landlock test re-runs itself in a child,
/// since Landlock cannot be lifted.
const CHILD: &str = "FERRY_ATTACK_POLICY_CHILD";

/// Promise: a policy reload inside ferryd's Landlock sandbox (policy
/// directory and lists readable, nothing else) succeeds however long after
/// start, naming zones never looked up before the sandbox: nothing is read
/// lazily from `/usr/share/zoneinfo` (there is no zone cache to expire).
#[test]
fn reload_inside_landlock_reads_no_zone_files() {
    let Some(abi) = ferry_hardening::filesystem::kernel_abi() else {
        eprintln!("SKIPPED: this kernel has no Landlock");
        return;
    };
    let name = "reload_inside_landlock_reads_no_zone_files";
    if std::env::var(CHILD).as_deref() != Ok(name) {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new(exe);
        c.args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let deadline = Instant::now() + COMMAND_LIMIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("child still running after {COMMAND_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "landlock ABI {abi}: {}", text(&out));
        return;
    }
    // The child: start as ferryd does (policy loaded, zones used), then
    // the sandbox, then reloads naming zones never used before.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy_in_zone("UTC")).unwrap();
    let gate = gate(&file).unwrap();
    // A thread started before the sandbox is not confined by it: it
    // stands for the administrator editing the policy.
    let (edit_tx, edit_rx) = std::sync::mpsc::channel::<String>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let editor_file: PathBuf = file.clone();
    std::thread::spawn(move || {
        for text in edit_rx {
            std::fs::write(&editor_file, text).unwrap();
            done_tx.send(()).unwrap();
        }
    });
    let st =
        ferry_hardening::filesystem::restrict_filesystem(&[dir.path().to_path_buf()], &[]).unwrap();
    assert_ne!(st.enforcement, "none", "{st:?}");
    assert!(
        std::fs::read_dir("/usr/share/zoneinfo").is_err(),
        "the sandbox lets this thread read /usr/share/zoneinfo: the test would prove nothing"
    );
    for zone in [
        "Asia/Shanghai",
        "America/Argentina/Ushuaia",
        "Pacific/Chatham",
    ] {
        edit_tx.send(policy_in_zone(zone)).unwrap();
        done_rx.recv_timeout(COMMAND_LIMIT).unwrap();
        let hash = gate
            .reload()
            .unwrap_or_else(|e| panic!("reload with {zone}: {e}"));
        assert_eq!(hash, gate.current().hash());
    }
}

/// Promise (the class of C11, beyond the policy): every file an operator
/// names to ferry — `ferryd.toml`, a certificate or CRL, a peer's public
/// key bundle, the audit verify key — is read only if it is a regular
/// file; a FIFO in its place is refused at once, naming what it is,
/// instead of hanging the daemon or the tool.
#[test]
fn every_operator_file_refuses_a_fifo_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("named.pipe");
    mkfifo(&fifo);
    let keys = dir.path().join("keys");
    let audit = dir.path().join("audit");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long test passphrase\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let vk = dir.path().join("verify.key");
    for setup in [
        vec![
            "keys",
            "init",
            "--dir",
            path_str(&keys),
            "--link",
            "l",
            "--side",
            "egress",
            "--kdf-target-ms",
            "10",
            "--passphrase-file",
            path_str(&pass),
        ],
        vec![
            "audit",
            "init",
            "--dir",
            path_str(&audit),
            "--verify-key-out",
            path_str(&vk),
        ],
    ] {
        let out = run(&setup, &[]);
        assert!(out.status.success(), "{setup:?}: {}", text(&out));
    }
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            env!("CARGO_BIN_EXE_ferryd"),
            vec!["--config", path_str(&fifo)],
        ),
        (FERRYCTL, vec!["certs", "show", path_str(&fifo)]),
        (
            FERRYCTL,
            vec![
                "keys",
                "import-peer",
                "--dir",
                path_str(&keys),
                path_str(&fifo),
            ],
        ),
        (
            FERRYCTL,
            vec![
                "audit",
                "verify",
                "--dir",
                path_str(&audit),
                "--key",
                path_str(&fifo),
            ],
        ),
    ];
    for (exe, args) in cases {
        let out = run_bin(exe, &args, &[]);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("FIFO") || text(&out).contains("not a regular file"),
            "{args:?} does not say what the path is: {}",
            text(&out)
        );
    }
}
