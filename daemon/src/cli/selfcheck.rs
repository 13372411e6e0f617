//! `ferryctl selfcheck`: checks from the outside that the hardening
//! `ferryd` applies (`ops::hardening_plan`) is in force in the running
//! daemon. The paths whose permissions it judges come from the same list
//! the daemon gives Landlock. `selfcheck`
//! believes the kernel over the daemon: identity, capabilities,
//! no-new-privs, seccomp and dumpable are read from `/proc/PID`; only the
//! Landlock ABI (which `/proc` does not show) comes from the daemon's own
//! report.

use crate::admin::protocol;
use crate::admin::socket;
use crate::config::Config;
use crate::ops::hardening_plan::{absolute, needed_capabilities};
use ferry_hardening::{Capability, Report, StepState};
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// As it should be.
    Pass,
    /// Not provably right, not provably wrong (an unknown clock state, an
    /// older kernel's partial Landlock).
    Warn,
    /// Wrong: fix it (selfcheck exits non-zero).
    Fail,
}

/// One checked item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`uid`, `seccomp`, `perm:keys_dir`, …).
    pub item: String,
    /// Pass, warn or fail.
    pub verdict: Verdict,
    /// What was found, and for a failure what to do.
    pub detail: String,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Selfcheck {
    /// The daemon's process id.
    pub pid: u32,
    /// Every item, in a stable order.
    pub checks: Vec<Check>,
}

impl Selfcheck {
    /// True when any item failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }
}

/// Why selfcheck could not look at the daemon at all.
#[derive(Debug, thiserror::Error)]
pub enum SelfcheckError {
    /// The control socket did not answer.
    #[error("{0}")]
    Control(#[from] socket::ControlError),
    /// The daemon's status carries no hardening report.
    #[error("{socket}: the daemon's status has no hardening report (a ferryd older than selfcheck?); upgrade and restart it")]
    NoReport {
        /// The control socket asked.
        socket: PathBuf,
    },
    /// The daemon answered, but refused this caller.
    #[error("{socket}: ferryd refused this caller: {message}. selfcheck reads the daemon's status: with [admin] any administrator role may (run it as an account listed there), without [admin] only root and the service user")]
    Refused {
        /// The control socket asked.
        socket: PathBuf,
        /// What the daemon said.
        message: String,
    },
    /// `/proc/PID` could not be read.
    #[error("/proc/{pid}/status: {source}; run selfcheck as root (or the service user) in the daemon's PID namespace")]
    Proc {
        /// The daemon's pid.
        pid: u32,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Asks the running daemon for its report and checks it, `/proc/PID` and
/// the file permissions.
pub fn run(cfg: &Config, config_path: &Path) -> Result<Selfcheck, SelfcheckError> {
    let socket = cfg.control_socket();
    let status = socket::request(&socket, &protocol::Request::Status)?;
    // A refusal is an answer without a report: name it as what it is, on
    // the socket actually asked (`[admin] socket` when set).
    if let Some(e) = status.get("error").and_then(|e| e.as_str()) {
        return Err(SelfcheckError::Refused {
            socket,
            message: e.to_owned(),
        });
    }
    let report: Report = status
        .get("hardening")
        .cloned()
        .and_then(|h| serde_json::from_value(h).ok())
        .ok_or_else(|| SelfcheckError::NoReport {
            socket: socket.clone(),
        })?;
    let pid = report.pid;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|source| SelfcheckError::Proc { pid, source })?;
    let proc_owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .map(|m| m.uid())
        .map_err(|source| SelfcheckError::Proc { pid, source })?;
    let mut checks = inspect_process(&proc_status, proc_owner, &report, cfg);
    checks.extend(check_permissions(cfg, config_path, &proc_status));
    checks.push(check_user_namespace(
        std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok(),
        cfg,
    ));
    checks.push(check_clock());
    checks.extend(check_malware(&status));
    Ok(Selfcheck { pid, checks })
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

fn cap_mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

fn check(item: &str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        item: item.to_owned(),
        verdict,
        detail: detail.into(),
    }
}

/// Judges a process from its `/proc/PID/status` text, the owner of that
/// file and its own report.
pub fn inspect_process(
    proc_status: &str,
    proc_owner: u32,
    report: &Report,
    cfg: &Config,
) -> Vec<Check> {
    let mut out = Vec::new();
    let ids = |name: &str| -> Vec<u32> {
        field(proc_status, name)
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let uids = ids("Uid");
    let gids = ids("Gid");
    let user = cfg.hardening.user.as_deref().unwrap_or("(none configured)");
    out.push(if uids.is_empty() {
        check("uid", Verdict::Fail, "no Uid line in /proc status")
    } else if uids.contains(&0) {
        check(
            "uid",
            Verdict::Fail,
            format!("running as root (Uid {uids:?}); set `[hardening] user` (configured: {user}) or run the systemd unit, which sets User=ferry"),
        )
    } else {
        check("uid", Verdict::Pass, format!("Uid {uids:?} (user {user})"))
    });
    out.push(if gids.is_empty() || gids.contains(&0) {
        check(
            "gid",
            Verdict::Fail,
            format!("Gid {gids:?}: group root; drop privileges"),
        )
    } else {
        check("gid", Verdict::Pass, format!("Gid {gids:?}"))
    });

    let allowed = cap_mask(&needed_capabilities(cfg));
    for (name, what) in [
        ("CapEff", "effective"),
        ("CapPrm", "permitted"),
        ("CapBnd", "bounding"),
        ("CapAmb", "ambient"),
        ("CapInh", "inheritable"),
    ] {
        let allowed = if matches!(name, "CapAmb" | "CapInh") {
            0
        } else {
            allowed
        };
        let item = format!("capabilities:{what}");
        match field(proc_status, name).and_then(|v| u64::from_str_radix(v, 16).ok()) {
            None => out.push(check(&item, Verdict::Fail, format!("no {name} line in /proc status"))),
            Some(v) if v & !allowed == 0 => out.push(check(&item, Verdict::Pass, format!("{name} {v:016x}"))),
            Some(v) => out.push(check(
                &item,
                Verdict::Fail,
                format!("{name} {v:016x}: more than the configuration needs ({allowed:016x}); ferryd must drop privileges (or the unit must set CapabilityBoundingSet=)"),
            )),
        }
    }

    out.push(match field(proc_status, "NoNewPrivs") {
        Some("1") => check("no_new_privs", Verdict::Pass, "NoNewPrivs 1"),
        other => check(
            "no_new_privs",
            Verdict::Fail,
            format!(
                "NoNewPrivs {}; remove `no_new_privs = false`",
                other.unwrap_or("?")
            ),
        ),
    });

    let action = report.seccomp_action.as_deref().unwrap_or("none");
    out.push(match (field(proc_status, "Seccomp"), action) {
        (Some("2"), "log") => check(
            "seccomp",
            Verdict::Fail,
            "mode 2 but action `log` lets every call through; set seccomp_action = \"kill_process\"",
        ),
        (Some("2"), a) => check("seccomp", Verdict::Pass, format!("mode 2 (filter), calls off the list: {a}")),
        (m, _) => check(
            "seccomp",
            Verdict::Fail,
            format!("Seccomp {}: no filter; remove `seccomp = false`", m.unwrap_or("?")),
        ),
    });

    // A non-dumpable process's /proc/PID files belong to root (the
    // directory itself keeps the process's uid); for a process
    // running as root that proves nothing, so its own report is used.
    let dumpable_uid = uids.first().copied().unwrap_or(0);
    out.push(if dumpable_uid != 0 {
        if proc_owner == 0 {
            check("dumpable", Verdict::Pass, "0 (/proc entries owned by root)")
        } else {
            check(
                "dumpable",
                Verdict::Fail,
                "1: /proc entries owned by the service user; remove `forbid_core_dumps = false`",
            )
        }
    } else if report.not_dumpable {
        check(
            "dumpable",
            Verdict::Pass,
            "0 (as the daemon reports; it runs as root so /proc cannot tell)",
        )
    } else {
        check("dumpable", Verdict::Fail, "1 (as the daemon reports)")
    });
    out.push(if report.core_limit_zero {
        check("core_limit", Verdict::Pass, "RLIMIT_CORE 0")
    } else {
        check("core_limit", Verdict::Fail, "RLIMIT_CORE is not 0")
    });

    let ll = report.steps.get(ferry_hardening::steps::LANDLOCK);
    out.push(match (ll.map(|s| s.state), report.landlock_abi) {
        (Some(StepState::On), Some(abi)) => {
            let partial = report
                .landlock
                .as_ref()
                .is_some_and(|l| l.enforcement != "full");
            check(
                "landlock",
                if partial {
                    Verdict::Warn
                } else {
                    Verdict::Pass
                },
                format!(
                    "ABI {abi}{}",
                    if partial {
                        ", partial (older kernel)"
                    } else {
                        ""
                    }
                ),
            )
        }
        (Some(StepState::Off), _) => check(
            "landlock",
            Verdict::Fail,
            "switched off by `landlock = false`",
        ),
        (_, _) => check(
            "landlock",
            Verdict::Fail,
            ll.map_or("not reported".to_owned(), |s| s.detail.clone()),
        ),
    });

    for (name, step) in &report.steps {
        match step.state {
            StepState::Off => out.push(check(
                &format!("step:{name}"),
                Verdict::Fail,
                format!("switched off by configuration ({})", step.detail),
            )),
            StepState::Failed => out.push(check(
                &format!("step:{name}"),
                Verdict::Fail,
                step.detail.clone(),
            )),
            StepState::On | StepState::Unavailable => {}
        }
    }
    out
}

/// Permissions of the files that matter: nothing another user could
/// change, and nothing secret another user could read.
fn check_permissions(cfg: &Config, config_path: &Path, proc_status: &str) -> Vec<Check> {
    let daemon_uid: Option<u32> = field(proc_status, "Uid")
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok());
    let mut out = Vec::new();
    // (item, path, bits that must be clear, must the daemon own it)
    let mut items: Vec<(&str, PathBuf, u32, bool)> = vec![
        ("perm:config", absolute(config_path), 0o022, false),
        ("perm:keys_dir", cfg.paths.keys_dir.clone(), 0o077, true),
        ("perm:state_dir", cfg.paths.state_dir.clone(), 0o027, true),
    ];
    if let Some(p) = &cfg.paths.passphrase_file {
        items.push(("perm:passphrase_file", p.clone(), 0o077, true));
    }
    if let Some(a) = &cfg.audit {
        items.push(("perm:audit_dir", a.dir.clone(), 0o027, true));
    }
    if let Some(p) = &cfg.paths.spool_dir {
        items.push(("perm:spool_dir", p.clone(), 0o002, false));
    }
    if let Some(p) = &cfg.paths.outbox_dir {
        items.push(("perm:outbox_dir", p.clone(), 0o002, false));
    }
    if let Some(p) = &cfg.policy {
        items.push(("perm:policy", p.file.clone(), 0o022, false));
    }
    for (item, path, forbidden, owned) in items {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                out.push(check(
                    item,
                    Verdict::Fail,
                    format!("{}: {e}", path.display()),
                ));
                continue;
            }
        };
        let mode = meta.permissions().mode() & 0o7777;
        let mut problems = Vec::new();
        if mode & forbidden != 0 {
            problems.push(format!(
                "mode {mode:04o} allows too much (chmod {:04o})",
                mode & !forbidden
            ));
        }
        if owned && daemon_uid.is_some_and(|u| u != meta.uid()) {
            problems.push(format!(
                "owned by uid {}, not the daemon's uid {}",
                meta.uid(),
                daemon_uid.unwrap_or_default()
            ));
        }
        out.push(if problems.is_empty() {
            check(
                item,
                Verdict::Pass,
                format!("{} {mode:04o} uid {}", path.display(), meta.uid()),
            )
        } else {
            check(
                item,
                Verdict::Fail,
                format!("{}: {}", path.display(), problems.join("; ")),
            )
        });
    }
    out
}

/// Clock synchronization: `timedatectl` when systemd runs, else the
/// kernel's own flag, else unknown (a warning).
/// Whether the daemon's user namespace lets its administrators reach the
/// control socket as themselves (issue 14 B8: `PrivateUsers=yes` showed
/// every one of them as uid 65534).
fn check_user_namespace(uid_map: Option<String>, cfg: &Config) -> Check {
    let Some(map) = uid_map else {
        return check(
            "user_namespace",
            Verdict::Warn,
            "cannot read the daemon's /proc/PID/uid_map",
        );
    };
    match crate::admin::gate::userns_finding(&map, &crate::admin::gate::admin_accounts(cfg)) {
        Some(f) => check("user_namespace", Verdict::Fail, f),
        None => check(
            "user_namespace",
            Verdict::Pass,
            "every administrator reaches the control socket under its own uid",
        ),
    }
}

/// The malware engines as the daemon last probed them (once a minute,
/// from inside its sandbox, with its own permissions on the socket):
/// unreachable fails, signatures older than `max_signature_age_days` (or
/// of unknown age) warn. Nothing when no profile scans.
pub fn check_malware(status: &serde_json::Value) -> Vec<Check> {
    let Some(engines) = status
        .get("malware")
        .and_then(|m| m.get("engines"))
        .and_then(|e| serde_json::from_value::<Vec<protocol::EngineStatus>>(e.clone()).ok())
    else {
        return Vec::new();
    };
    engines
        .into_iter()
        .map(|e| {
            let item = format!("malware:{}", e.engine);
            let profiles = e.profiles.join(", ");
            if !e.reachable {
                return check(
                    &item,
                    Verdict::Fail,
                    format!(
                        "{} (profiles {profiles}): packages these profiles inspect are held or refused until it answers",
                        e.error.unwrap_or_else(|| format!("{} did not answer", e.socket))
                    ),
                );
            }
            let db = match (&e.database_version, &e.database_date, e.database_age_days) {
                (Some(v), Some(d), Some(age)) => format!("database {v} of {d} ({age} days old)"),
                _ => "no official database (custom signatures only)".to_owned(),
            };
            let found = format!(
                "{} at {}, {db}, max_signature_age_days {} (profiles {profiles})",
                e.version.unwrap_or_default(),
                e.socket,
                e.max_signature_age_days
            );
            match e.warning {
                Some(w) => check(&item, Verdict::Warn, format!("{found}: {w}")),
                None => check(&item, Verdict::Pass, found),
            }
        })
        .collect()
}

fn check_clock() -> Check {
    let td = std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(out) = td {
        if out.status.success() {
            match String::from_utf8_lossy(&out.stdout).trim() {
                "yes" => return check("clock", Verdict::Pass, "NTPSynchronized=yes (timedatectl)"),
                "no" => {
                    return check(
                        "clock",
                        Verdict::Fail,
                        "NTPSynchronized=no: epochs and certificate checks need a synchronized clock; configure NTP (systemd-timesyncd or chrony)",
                    )
                }
                _ => {}
            }
        }
    }
    match ferry_hardening::clock::kernel_clock_synchronized() {
        Some(true) => check(
            "clock",
            Verdict::Pass,
            "kernel clock synchronized (adjtimex)",
        ),
        Some(false) => check(
            "clock",
            Verdict::Warn,
            "unknown: timedatectl unavailable and the kernel marks the clock unsynchronized",
        ),
        None => check("clock", Verdict::Warn, "unknown: no time service answered"),
    }
}

/// Prints one line per item, failures last and loudest.
pub fn print_text(s: &Selfcheck) {
    println!("ferryd pid {}", s.pid);
    for c in &s.checks {
        let tag = match c.verdict {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        println!("  {tag}  {:<24} {}", c.item, c.detail);
    }
    let fails = s
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    let warns = s
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .count();
    println!(
        "{} checks: {} failed, {} warnings",
        s.checks.len(),
        fails,
        warns
    );
}

/// Writes `ferryctl`'s man pages (one per subcommand, `man/`) and shell
/// completions (`completions/`: bash, zsh, fish) under `out`, for the
/// Debian package; it is here, beside selfcheck, as the other piece of
/// installing ferry.
pub fn generate_docs(cmd: clap::Command, out: &Path) -> std::io::Result<()> {
    // The derive names the command after the package; pages and
    // completions must say what the user types.
    let cmd = cmd.name("ferryctl").bin_name("ferryctl");
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "ferryctl", &completions)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::hardening_plan::hardening_config;
    use ferry_hardening::SeccompAction;

    const EGRESS: &str = "[link]\nname = \"t\"\nrole = \"egress\"\nlisten = [\"127.0.0.1:7700\"]\n\n[paths]\nstate_dir = \"/var/lib/ferry\"\nkeys_dir = \"/etc/ferry/keys\"\noutbox_dir = \"/srv/ferry/out\"\n\n[hardening]\nuser = \"ferry\"\n";

    fn cfg(text: &str) -> Config {
        crate::config::parse(text, "/etc/ferry/ferryd.toml").unwrap()
    }

    #[test]
    fn low_ports_need_net_bind_service_and_nothing_else() {
        assert!(needed_capabilities(&cfg(EGRESS)).is_empty());
        let low = EGRESS.replace("127.0.0.1:7700", "127.0.0.1:700");
        assert_eq!(
            needed_capabilities(&cfg(&low)),
            vec![Capability::CAP_NET_BIND_SERVICE]
        );
    }

    #[test]
    fn plan_covers_the_configured_directories() {
        let c = cfg(EGRESS);
        let h = hardening_config(&c, Path::new("/etc/ferry/ferryd.toml"), vec![]);
        assert_eq!(h.user.as_deref(), Some("ferry"));
        assert!(h.read_write.contains(&PathBuf::from("/var/lib/ferry")));
        assert!(h.read_write.contains(&PathBuf::from("/etc/ferry/keys")));
        assert!(h.read_write.contains(&PathBuf::from("/srv/ferry/out")));
        assert!(h
            .read_only
            .contains(&PathBuf::from("/etc/ferry/ferryd.toml")));
        assert!(!h
            .read_only
            .iter()
            .any(|p| p == Path::new("/") || p == Path::new("/etc")));
        assert_eq!(h.seccomp_action, SeccompAction::KillProcess);
        assert!(h.keep_env.contains(&"FERRY_KEYS_PASSPHRASE".to_owned()));
    }

    fn report() -> Report {
        serde_json::from_value(serde_json::json!({
            "pid": 42, "uid": 999, "gid": 999, "user": "ferry", "capabilities": [],
            "landlock_abi": 5, "seccomp_action": "kill_process", "core_limit_zero": true,
            "not_dumpable": true, "no_new_privs": true, "umask_077": true,
            "steps": { "landlock": { "state": "on", "detail": "ABI 5, full enforcement" } },
            "disabled": [], "failures": [], "warnings": [],
            "landlock": { "enforcement": "full", "abi": 5, "read_only": [], "read_write": [], "skipped": [] },
            "seccomp": null, "fds_closed": 0, "environment_removed": []
        }))
        .unwrap()
    }

    const HARDENED: &str = "Name:\tferryd\nUid:\t999\t999\t999\t999\nGid:\t999\t999\t999\t999\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t2\n";

    fn verdict(checks: &[Check], item: &str) -> Verdict {
        checks
            .iter()
            .find(|c| c.item == item)
            .unwrap_or_else(|| panic!("no {item} in {checks:?}"))
            .verdict
    }

    #[test]
    fn a_hardened_process_passes_every_process_item() {
        let checks = inspect_process(HARDENED, 0, &report(), &cfg(EGRESS));
        for c in &checks {
            assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
        }
        assert_eq!(verdict(&checks, "landlock"), Verdict::Pass);
    }

    #[test]
    fn each_weakness_fails_its_item() {
        let c = cfg(EGRESS);
        let r = report();
        let root = HARDENED.replace("Uid:\t999\t999\t999\t999", "Uid:\t0\t0\t0\t0");
        assert_eq!(
            verdict(&inspect_process(&root, 0, &r, &c), "uid"),
            Verdict::Fail
        );
        let caps = HARDENED.replace("CapBnd:\t0000000000000000", "CapBnd:\t000001ffffffffff");
        assert_eq!(
            verdict(&inspect_process(&caps, 0, &r, &c), "capabilities:bounding"),
            Verdict::Fail
        );
        let nnp = HARDENED.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        assert_eq!(
            verdict(&inspect_process(&nnp, 0, &r, &c), "no_new_privs"),
            Verdict::Fail
        );
        let sc = HARDENED.replace("Seccomp:\t2", "Seccomp:\t0");
        assert_eq!(
            verdict(&inspect_process(&sc, 0, &r, &c), "seccomp"),
            Verdict::Fail
        );
        // /proc/PID owned by the service user: dumpable.
        assert_eq!(
            verdict(&inspect_process(HARDENED, 999, &r, &c), "dumpable"),
            Verdict::Fail
        );
        let mut off = r.clone();
        off.steps.insert(
            "landlock".into(),
            ferry_hardening::Step {
                state: StepState::Off,
                detail: "landlock = false".into(),
            },
        );
        off.landlock_abi = None;
        let checks = inspect_process(HARDENED, 0, &off, &c);
        assert_eq!(verdict(&checks, "landlock"), Verdict::Fail);
        assert_eq!(verdict(&checks, "step:landlock"), Verdict::Fail);
        let mut log = r;
        log.seccomp_action = Some("log".into());
        assert_eq!(
            verdict(&inspect_process(HARDENED, 0, &log, &c), "seccomp"),
            Verdict::Fail
        );
    }

    #[test]
    fn low_port_configuration_allows_exactly_net_bind_service() {
        let c = cfg(&EGRESS.replace("127.0.0.1:7700", "127.0.0.1:700"));
        let st = HARDENED
            .replace("CapEff:\t0000000000000000", "CapEff:\t0000000000000400")
            .replace("CapPrm:\t0000000000000000", "CapPrm:\t0000000000000400");
        assert_eq!(
            verdict(
                &inspect_process(&st, 0, &report(), &c),
                "capabilities:effective"
            ),
            Verdict::Pass
        );
        let amb = st.replace("CapAmb:\t0000000000000000", "CapAmb:\t0000000000000400");
        assert_eq!(
            verdict(
                &inspect_process(&amb, 0, &report(), &c),
                "capabilities:ambient"
            ),
            Verdict::Fail
        );
    }

    #[test]
    fn loose_permissions_fail() {
        let dir = tempfile::tempdir().unwrap();
        let text = EGRESS
            .replace(
                "/var/lib/ferry",
                &dir.path().join("state").display().to_string(),
            )
            .replace(
                "/etc/ferry/keys",
                &dir.path().join("keys").display().to_string(),
            )
            .replace(
                "/srv/ferry/out",
                &dir.path().join("out").display().to_string(),
            );
        let c = cfg(&text);
        let conf = dir.path().join("ferryd.toml");
        std::fs::write(&conf, &text).unwrap();
        for d in ["state", "keys", "out"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            std::fs::set_permissions(dir.path().join(d), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        }
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
        let me = nix::unistd::getuid().as_raw();
        let status = format!("Uid:\t{me}\t{me}\t{me}\t{me}\n");
        let checks = check_permissions(&c, &conf, &status);
        for c in &checks {
            assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
        }
        std::fs::set_permissions(
            dir.path().join("keys"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
        let checks = check_permissions(&c, &conf, &status);
        assert_eq!(verdict(&checks, "perm:keys_dir"), Verdict::Fail);
        assert_eq!(verdict(&checks, "perm:config"), Verdict::Fail);
        assert_eq!(verdict(&checks, "perm:state_dir"), Verdict::Pass);
        // Another owner than the daemon's user.
        let other = "Uid:\t4242\t4242\t4242\t4242\n";
        assert_eq!(
            verdict(&check_permissions(&c, &conf, other), "perm:state_dir"),
            Verdict::Fail
        );
    }

    /// Promise: selfcheck fails an unreachable malware engine, warns about
    /// old or unknown signatures, and passes a fresh one.
    #[test]
    fn malware_engines_are_judged_from_the_daemon_status() {
        let status = serde_json::json!({ "malware": { "engines": [
            { "engine": "clamd", "socket": "/run/clamav/clamd.ctl", "profiles": ["import"], "reachable": false,
              "error": "clamd is not reachable at /run/clamav/clamd.ctl: No such file", "max_signature_age_days": 7, "checked_unix_ms": 1 },
            { "engine": "clamd", "socket": "/b", "profiles": ["a"], "reachable": true, "version": "ClamAV 1.4.3",
              "database_version": 27000, "database_date": "Thu Dec  4 09:00:00 2026", "database_age_days": 9,
              "max_signature_age_days": 7, "warning": "signatures are 9 days old", "checked_unix_ms": 1 },
            { "engine": "clamd", "socket": "/c", "profiles": ["b"], "reachable": true, "version": "ClamAV 1.4.3",
              "database_version": 27000, "database_date": "Thu Dec  4 09:00:00 2026", "database_age_days": 1,
              "max_signature_age_days": 7, "checked_unix_ms": 1 }
        ], "scanned": 0, "detected": 0, "unavailable": 0, "held": 0, "unscannable": 0 } });
        let c = check_malware(&status);
        let v: Vec<Verdict> = c.iter().map(|c| c.verdict).collect();
        assert_eq!(v, vec![Verdict::Fail, Verdict::Warn, Verdict::Pass]);
        assert!(c[0].detail.contains("not reachable"), "{}", c[0].detail);
        assert!(c[1].detail.contains("9 days old"), "{}", c[1].detail);
        assert!(c[2].detail.contains("database 27000"), "{}", c[2].detail);
        assert!(check_malware(&serde_json::json!({})).is_empty());
    }
}
