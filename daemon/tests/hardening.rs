//! Hardening of a running `ferryd`, read back from the kernel the way an
//! operator (and `ferryctl selfcheck`) does: `/proc/PID/status` for
//! identity, capabilities, no-new-privs and seccomp, the owner of
//! `/proc/PID/status` for "dumpable"; plus the sd_notify protocol and the
//! systemd unit's exposure score. Tests that need root say so and skip.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The service user the root tests drop to: present on every Debian
/// system, owns nothing that matters.
const SERVICE_USER: &str = "nobody";

fn proc_field(pid: u32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let owner = (
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    nix::unistd::chown(path, owner.0, owner.1).expect("chown");
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&e.expect("entry").path(), uid, gid);
        }
    }
}

fn append(config: &Path, text: &str) {
    let mut c = std::fs::read_to_string(config).expect("config");
    c.push_str(text);
    std::fs::write(config, c).expect("write config");
}

fn wait_status(config: &Path, role: &str) -> serde_json::Value {
    let mut st = serde_json::Value::Null;
    wait_for(Duration::from_secs(20), &format!("{role} status"), || {
        st = status(config).unwrap_or_default();
        st["role"] == role
    });
    st
}

fn selfcheck(config: &Path) -> (std::process::ExitStatus, serde_json::Value) {
    let out = Command::new(ferryctl())
        .args(["selfcheck", "--json", "--config"])
        .arg(config)
        .output()
        .expect("ferryctl selfcheck");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "selfcheck output is not JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status, v)
}

fn verdicts(v: &serde_json::Value) -> Vec<(String, String)> {
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["item"].as_str().unwrap_or_default().to_owned(),
                c["verdict"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Started as root with `[hardening] user`, both sides end up as the
/// service user with no capability in any set, no-new-privs, a seccomp
/// filter, not dumpable and Landlock in force; they still carry a file
/// across; and `ferryctl selfcheck` passes every item but possibly the
/// clock (unknown on a machine without a time service).
#[test]
fn root_ferryd_drops_privileges_and_is_confined() {
    if !is_root() {
        skip("starting ferryd as root and dropping to a service user needs root");
        return;
    }
    let user = nix::unistd::User::from_name(SERVICE_USER)
        .expect("user db")
        .expect("user nobody");
    let dir = tempfile::tempdir().expect("tempdir");
    // The service user must be able to reach its directories.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let tb = testbed(dir.path(), |_| {});
    for side in ["ingress", "egress"] {
        let config = tb.root.join(side).join("ferryd.toml");
        append(
            &config,
            &format!("\n[hardening]\nuser = \"{SERVICE_USER}\"\n"),
        );
        chown_tree(&tb.root.join(side), user.uid.as_raw(), user.gid.as_raw());
        // The configuration stays root's: the daemon only reads it.
        nix::unistd::chown(&config, Some(nix::unistd::Uid::from_raw(0)), None).expect("chown");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    let est = wait_status(&tb.egress_config, "egress");
    wait_status(&tb.ingress_config, "ingress");

    let data = content(7, 300_000);
    ferry_daemon::testkit::spool_file(&tb.spool, "confined.bin", &data).expect("spool");
    let delivered = tb.outbox.join("confined.bin");
    wait_for(
        Duration::from_secs(30),
        "delivery by confined daemons",
        || std::fs::read(&delivered).is_ok_and(|d| d == data),
    );

    let uid = user.uid.as_raw().to_string();
    let gid = user.gid.as_raw().to_string();
    for d in [&egress, &ingress] {
        let pid = d.child.id();
        let four = |v: &str| vec![v.to_owned(); 4];
        let ids = |f: &str| {
            proc_field(pid, f)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("Uid"), four(&uid), "{}", d.log_text());
        assert_eq!(ids("Gid"), four(&gid));
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(proc_field(pid, set), "0000000000000000", "{set}");
        }
        assert_eq!(proc_field(pid, "NoNewPrivs"), "1");
        assert_eq!(proc_field(pid, "Seccomp"), "2");
        // Not dumpable: the kernel hands the files under /proc/PID to root.
        let owner = std::fs::metadata(format!("/proc/{pid}/status"))
            .expect("proc")
            .uid();
        assert_eq!(
            owner, 0,
            "/proc/{pid}/status belongs to uid {owner}: dumpable"
        );
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .expect("core line");
        assert_eq!(
            core.split_whitespace().filter(|w| *w == "0").count(),
            2,
            "{core}"
        );
        // Every thread, not only the main one, is filtered.
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
            let t = t.expect("task").path();
            let s = std::fs::read_to_string(t.join("status")).unwrap_or_default();
            if !s.is_empty() {
                assert!(s.contains("Seccomp:\t2"), "{}: {s}", t.display());
                assert!(s.contains("NoNewPrivs:\t1"), "{}", t.display());
            }
        }
    }
    let h = &est["hardening"];
    assert_eq!(h["failures"], serde_json::json!([]), "{h}");
    assert_eq!(h["disabled"], serde_json::json!([]), "{h}");
    assert_eq!(h["uid"], user.uid.as_raw(), "{h}");
    assert_eq!(h["seccomp_action"], "kill_process", "{h}");
    // Hardening ran while ferryd had a single thread.
    assert!(
        !h["warnings"].to_string().contains("threads existed"),
        "{h}"
    );
    if h["steps"]["landlock"]["state"] == "on" {
        assert!(h["landlock_abi"].as_u64().is_some_and(|a| a >= 1), "{h}");
    } else {
        eprintln!(
            "note: this kernel has no Landlock: {}",
            h["steps"]["landlock"]
        );
    }

    let (code, v) = selfcheck(&tb.egress_config);
    for (item, verdict) in verdicts(&v) {
        if item == "clock" {
            assert_ne!(verdict, "fail", "{v}");
        } else {
            assert_eq!(verdict, "pass", "{item}: {v}");
        }
    }
    assert!(code.success(), "{v}");
    ingress.stop();
    egress.stop();
}

/// Started unprivileged the way systemd's `User=ferry` with
/// `CapabilityBoundingSet=` starts it (here with setpriv): nothing to
/// drop, everything else in force, and the report says "unavailable"
/// for the drop rather than failing.
#[test]
fn unprivileged_start_like_systemd_user_is_hardened() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        skip("needs root and setpriv to start ferryd as another user");
        return;
    }
    let user = nix::unistd::User::from_name(SERVICE_USER)
        .expect("user db")
        .expect("user nobody");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let tb = testbed(dir.path(), |_| {});
    append(
        &tb.egress_config,
        &format!("\n[hardening]\nuser = \"{SERVICE_USER}\"\n"),
    );
    chown_tree(
        &tb.root.join("egress"),
        user.uid.as_raw(),
        user.gid.as_raw(),
    );
    let (uid, gid) = (user.uid.as_raw().to_string(), user.gid.as_raw().to_string());
    let reuid = format!("--reuid={uid}");
    let regid = format!("--regid={gid}");
    let egress = Daemon::start_with(
        &tb.egress_config,
        &[
            "/usr/bin/setpriv",
            &reuid,
            &regid,
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ],
    );
    let pid_of_setpriv = egress.child.id();
    let st = wait_status(&tb.egress_config, "egress");
    // setpriv execs ferryd in place: same pid.
    let pid = st["hardening"]["pid"].as_u64().expect("pid") as u32;
    assert_eq!(pid, pid_of_setpriv);
    assert_eq!(proc_field(pid, "Seccomp"), "2");
    assert_eq!(proc_field(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_field(pid, "CapEff"), "0000000000000000");
    let h = &st["hardening"];
    assert_eq!(h["failures"], serde_json::json!([]), "{h}");
    assert_eq!(h["steps"]["drop_privileges"]["state"], "unavailable", "{h}");
    assert_eq!(h["not_dumpable"], true, "{h}");
    let (code, v) = selfcheck(&tb.egress_config);
    for (item, verdict) in verdicts(&v) {
        if item != "clock" {
            assert_eq!(verdict, "pass", "{item}: {v}");
        }
    }
    assert!(code.success(), "{v}");
    egress.stop();
}

/// Without `[hardening] user`, a root-started ferryd keeps every other
/// step (seccomp, no-new-privs, not dumpable, umask) but cannot drop
/// privileges: the status says so, and selfcheck fails on uid 0.
#[test]
fn without_a_service_user_root_is_reported_not_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let egress = Daemon::start(&tb.egress_config);
    let pid = egress.child.id();
    let st = wait_status(&tb.egress_config, "egress");
    assert_eq!(proc_field(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_field(pid, "Seccomp"), "2");
    assert_eq!(proc_field(pid, "Umask"), "0077");
    let h = &st["hardening"];
    assert_eq!(h["not_dumpable"], true, "{st}");
    assert_eq!(h["core_limit_zero"], true, "{st}");
    let failures = h["failures"].as_array().expect("failures");
    if is_root() {
        assert_eq!(failures.len(), 1, "{h}");
        assert!(
            failures[0]
                .as_str()
                .is_some_and(|f| f.starts_with("drop_privileges")),
            "{h}"
        );
        assert!(egress.log_text().contains("HARDENING STEP FAILED"));
        let (code, v) = selfcheck(&tb.egress_config);
        assert!(!code.success(), "{v}");
        assert!(verdicts(&v).contains(&("uid".into(), "fail".into())), "{v}");
    } else {
        assert!(failures.is_empty(), "{h}");
    }
    egress.stop();
}

/// A step switched off in the configuration is off in the kernel, logged
/// at warn level, listed in the status and failed by selfcheck.
#[test]
fn switched_off_steps_are_loud() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    append(
        &tb.egress_config,
        "\n[hardening]\nseccomp = false\nno_new_privs = false\ndrop_privileges = false\n",
    );
    let egress = Daemon::start(&tb.egress_config);
    let pid = egress.child.id();
    let st = wait_status(&tb.egress_config, "egress");
    assert_eq!(proc_field(pid, "Seccomp"), "0");
    let disabled = &st["hardening"]["disabled"];
    for step in ["seccomp", "drop_privileges", "no_new_privs"] {
        assert!(
            disabled
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == step)),
            "{step} not listed as off: {st}"
        );
    }
    let log = egress.log_text();
    assert!(
        log.contains("WARN") && log.contains("HARDENING STEP OFF"),
        "{log}"
    );
    let (code, v) = selfcheck(&tb.egress_config);
    assert!(!code.success(), "{v}");
    let vs = verdicts(&v);
    assert!(vs.contains(&("seccomp".into(), "fail".into())), "{v}");
    assert!(vs.contains(&("step:seccomp".into(), "fail".into())), "{v}");
    egress.stop();
}

/// Under systemd's `Type=notify`: READY=1 once serving, WATCHDOG=1 within
/// the watchdog interval, STOPPING=1 on SIGTERM; all on a datagram socket
/// named by NOTIFY_SOCKET, which ferryd keeps open through hardening.
#[test]
fn sd_notify_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind notify");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let log = std::fs::File::create(dir.path().join("notify-egress.log")).expect("log");
    let child = Command::new(ferryd())
        .arg("--config")
        .arg(&tb.egress_config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ferryd");
    // Killed on any exit from this test, a failed assertion included.
    let mut daemon = Daemon {
        child,
        config: tb.egress_config.clone(),
        log: dir.path().join("notify-egress.log"),
    };
    let mut messages: Vec<String> = Vec::new();
    let recv_until = |what: &str, limit: Duration, messages: &mut Vec<String>| {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                if messages.last().is_some_and(|m| m.contains(what)) {
                    return;
                }
            }
        }
        panic!("no {what} within {limit:?}; got {messages:?}");
    };
    recv_until("READY=1", Duration::from_secs(20), &mut messages);
    assert!(
        messages[0].contains("STATUS=egress side of link"),
        "{messages:?}"
    );
    // Half the 2 s interval, with slack for a loaded machine.
    recv_until("WATCHDOG=1", Duration::from_secs(3), &mut messages);
    recv_until("WATCHDOG=1", Duration::from_secs(3), &mut messages);
    // NOTIFY_SOCKET is not left in the environment for anything later
    // (the kernel's copy in /proc/PID/environ is the exec-time block,
    // readable only by root once the daemon is not dumpable).
    let st = status(&tb.egress_config).expect("status");
    let removed = &st["hardening"]["environment_removed"];
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC"] {
        assert!(
            removed
                .as_array()
                .is_some_and(|r| r.iter().any(|v| v == var)),
            "{var} kept: {st}"
        );
    }
    ferry_daemon::cli::demo::stop_child(&mut daemon.child, Duration::from_secs(10));
    recv_until("STOPPING=1", Duration::from_secs(5), &mut messages);
}

/// The systemd unit: `systemd-analyze security --offline=yes` exposure at
/// most 1.5 (1.2 without `PrivateUsers=`, see the test above) and
/// `systemd-analyze verify` clean. verify checks that
/// ExecStart's binary exists, so the test verifies a copy of the unit
/// whose ExecStart points at the freshly built ferryd (the shipped unit
/// names /usr/bin/ferryd, which the package installs); `--man=no` because
/// the man page is only installed by the package (the packaging test runs
/// verify with the man check after `dpkg -i`).
#[test]
fn systemd_unit_exposure_at_most_1_5_and_verify_clean() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        skip("systemd-analyze is not installed");
        return;
    };
    let help = Command::new(&analyze)
        .args(["security", "--help"])
        .output()
        .expect("systemd-analyze");
    if !String::from_utf8_lossy(&help.stdout).contains("--offline") {
        skip("this systemd-analyze has no --offline (systemd < 250)");
        return;
    }
    let unit_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/ferryd@.service");
    let text = std::fs::read_to_string(&unit_src).expect("unit");
    assert!(
        text.contains("ExecStart=/usr/bin/ferryd "),
        "ExecStart moved?"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("ferryd@release-1.service");
    std::fs::write(
        &unit,
        text.replace(
            "ExecStart=/usr/bin/ferryd ",
            &format!("ExecStart={} ", ferryd().display()),
        ),
    )
    .expect("write unit");

    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let score: f64 = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{report}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("exposure of ferryd@.service: {score}");
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{report}");

    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "verify:\n{said}"
    );
}

/// Promise (issue 14 B8): the shipped unit and the peer-credential roles
/// work together. `PrivateUsers=` puts ferryd in a user namespace where
/// only root and the service user are mapped, so every administrator
/// would reach the control socket as uid 65534 and be refused everything;
/// the unit must not set it (in any spelling systemd takes as true).
#[test]
fn the_unit_does_not_hide_administrators_in_a_user_namespace() {
    let unit_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/ferryd@.service");
    let text = std::fs::read_to_string(&unit_src).expect("unit");
    let mut service = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            service = line == "[Service]";
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !service || line.starts_with('#') || key.trim() != "PrivateUsers" {
            continue;
        }
        let value = value.trim().to_ascii_lowercase();
        assert!(
            matches!(value.as_str(), "" | "no" | "false" | "0" | "off"),
            "the unit sets `{line}`: administrators would reach the control socket as uid 65534"
        );
    }
}

/// sysusers.d and tmpfiles.d files apply cleanly to an empty root: the
/// user exists afterwards and the key directory is private to it.
#[test]
fn sysusers_and_tmpfiles_apply_to_an_empty_root() {
    let tools = ["/usr/bin/systemd-sysusers", "/usr/bin/systemd-tmpfiles"];
    if tools.iter().any(|t| !Path::new(t).exists()) {
        skip("systemd-sysusers / systemd-tmpfiles are not installed");
        return;
    }
    if !is_root() {
        skip("systemd-tmpfiles --root chowns, which needs root");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("etc")).expect("etc");
    let sysd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let run = |tool: &str, args: &[&str], file: &str| {
        let out = Command::new(tool)
            .arg(format!("--root={}", root.path().display()))
            .args(args)
            .arg(sysd.join(file))
            .output()
            .expect(tool);
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(tools[0], &[], "ferry.sysusers");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("ferry:"))
        .unwrap_or_else(|| panic!("no ferry user:\n{passwd}"));
    assert!(line.ends_with(":/usr/sbin/nologin"), "{line}");
    run(tools[1], &["--create"], "ferry.tmpfiles");
    let keys = std::fs::metadata(root.path().join("etc/ferry/keys")).expect("keys dir");
    assert_eq!(keys.permissions().mode() & 0o777, 0o700);
    let creds = std::fs::metadata(root.path().join("etc/ferry/credentials")).expect("creds");
    assert_eq!(
        (creds.uid(), creds.permissions().mode() & 0o777),
        (0, 0o700)
    );
}
