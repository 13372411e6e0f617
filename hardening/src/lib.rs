//! Process hardening for `ferryd`, in the manner of Firecracker's jailer:
//! a few small calls, each auditable alone and each with a test that proves
//! it took effect in a real process.
//!
//! - [`fds::close_inherited_fds`], umask 077, [`environment::sanitize_environment`]
//! - [`privileges::drop_privileges`]: setgroups → setgid → setuid, only the
//!   needed capabilities kept, bounding and ambient sets emptied
//! - [`process::forbid_core_dumps`]: `RLIMIT_CORE` 0, not dumpable (after
//!   the last credential change, which resets it)
//! - [`process::set_no_new_privs`]
//! - [`filesystem::restrict_filesystem`]: Landlock, best effort by kernel
//! - [`seccomp::apply_seccomp`]: the allow-list, on all threads
//!
//! [`apply`] runs them in that order, before any thread exists, and
//! returns a [`Report`] of what is in force and what is off. A step is off
//! only when the configuration says so; `ferryd` logs every off step and
//! `ferryctl selfcheck` fails it. Also here: locked, non-dumpable pages for
//! secrets ([`memory`]) and the `sd_notify` writer ([`notify`]); and, as
//! the one crate where `unsafe` may live, SM4-CTR on the AES instructions
//! for the GM suite ([`sm4_simd`], [`ghash_simd`]: each one `unsafe` call
//! after CPU detection), and the write-back hint for large files
//! ([`writeback`]).
//!
//! This crate never decides *what* to allow: the daemon computes the paths,
//! capabilities and user from its configuration. It is the only crate
//! allowed `unsafe`, each use with a `// SAFETY:` line.

pub mod clock;
pub mod environment;
pub mod fds;
pub mod filesystem;
pub mod ghash_simd;
pub mod memory;
pub mod notify;
pub mod privileges;
pub mod process;
pub mod seccomp;
pub mod sm4_simd;
#[cfg(test)]
mod test_support;
pub mod writeback;

pub use caps::Capability;
pub use filesystem::LandlockStatus;
pub use seccomp::{SeccompAction, SeccompStatus};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// Why hardening could not be applied. The daemon refuses to start on
/// any of these rather than run less confined than configured.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// The configured service user does not exist (or is root).
    #[error("service user `{user}`: {detail}")]
    UnknownUser {
        /// The name configured.
        user: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The configured group does not exist.
    #[error("service group `{group}`: {detail}")]
    UnknownGroup {
        /// The name configured.
        group: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A step of the privilege drop failed.
    #[error("dropping privileges ({step}): {detail}; ferryd will not run with partly dropped privileges")]
    Privileges {
        /// The step.
        step: &'static str,
        /// The OS error.
        detail: String,
    },
    /// Landlock refused the ruleset (not: the kernel lacks Landlock, which
    /// is reported, not an error).
    #[error("Landlock: {0}; set `[hardening] landlock = false` only if this kernel cannot do it")]
    Landlock(String),
    /// The seccomp filter could not be built or installed.
    #[error("seccomp: {0}; set `[hardening] seccomp = false` only if this kernel cannot do it")]
    Seccomp(String),
    /// Inherited descriptors could not be listed.
    #[error("closing inherited file descriptors: {0}")]
    Fds(String),
}

/// What to apply. Every switch defaults to on in the daemon's
/// configuration; this struct only carries the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardeningConfig {
    /// Drop to `user` when started as root.
    pub drop_privileges: bool,
    /// The service user; when absent and started as root, the drop cannot
    /// happen and the report lists it as a failure.
    pub user: Option<String>,
    /// The group (default: the user's primary group).
    pub group: Option<String>,
    /// Capabilities to keep (e.g. `CAP_NET_BIND_SERVICE` for a port below
    /// 1024); normally none.
    pub keep_capabilities: Vec<Capability>,
    /// `RLIMIT_CORE` 0 and not dumpable.
    pub forbid_core_dumps: bool,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// Landlock filesystem confinement.
    pub landlock: bool,
    /// Paths only read.
    pub read_only: Vec<PathBuf>,
    /// Paths read and written (created if missing, mode 0700).
    pub read_write: Vec<PathBuf>,
    /// The seccomp allow-list.
    pub seccomp: bool,
    /// What a call off the list gets.
    pub seccomp_action: SeccompAction,
    /// Close descriptors inherited from the parent.
    pub close_inherited_fds: bool,
    /// Descriptors to keep open (e.g. the `sd_notify` socket).
    pub keep_fds: Vec<RawFd>,
    /// Strip the environment to `keep_env`.
    pub sanitize_environment: bool,
    /// Variables the daemon still needs.
    pub keep_env: Vec<String>,
}

/// The state of one hardening step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Applied and in force.
    On,
    /// Switched off by the configuration.
    Off,
    /// Not possible here (a kernel without Landlock; not started as root,
    /// so nothing to drop): logged, and judged by `selfcheck`.
    Unavailable,
    /// Attempted and failed (non-fatal steps only).
    Failed,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// In force, off, unavailable or failed.
    pub state: StepState,
    /// What exactly (the user, the ABI, the action, the error).
    pub detail: String,
}

/// Step names, as they appear in the report, the log and `selfcheck`.
pub mod steps {
    /// Closing inherited descriptors.
    pub const CLOSE_FDS: &str = "close_inherited_fds";
    /// Environment sanitizing.
    pub const ENVIRONMENT: &str = "sanitize_environment";
    /// Privilege drop.
    pub const PRIVILEGES: &str = "drop_privileges";
    /// No core dumps, not dumpable.
    pub const CORE_DUMPS: &str = "forbid_core_dumps";
    /// No new privileges.
    pub const NO_NEW_PRIVS: &str = "no_new_privs";
    /// Landlock.
    pub const LANDLOCK: &str = "landlock";
    /// Seccomp.
    pub const SECCOMP: &str = "seccomp";
    /// umask 077 (always on).
    pub const UMASK: &str = "umask_077";
}

/// What [`apply`] put in force, read back from the kernel where possible.
/// Serialized into `ferryd`'s status for `ferryctl selfcheck`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The daemon's process id.
    pub pid: u32,
    /// User id after the drop.
    pub uid: u32,
    /// Group id after the drop.
    pub gid: u32,
    /// The service user switched to, if any.
    pub user: Option<String>,
    /// Capabilities left (permitted or effective).
    pub capabilities: Vec<String>,
    /// Landlock ABI in force, if any.
    pub landlock_abi: Option<u32>,
    /// The seccomp action for calls off the list, if seccomp is on.
    pub seccomp_action: Option<String>,
    /// `RLIMIT_CORE` is 0 (read back).
    pub core_limit_zero: bool,
    /// Not dumpable (read back).
    pub not_dumpable: bool,
    /// No-new-privs is set (read back).
    pub no_new_privs: bool,
    /// The umask is 077.
    pub umask_077: bool,
    /// Every step by name.
    pub steps: BTreeMap<String, Step>,
    /// Steps the configuration switched off.
    pub disabled: Vec<String>,
    /// Steps that failed, with the error.
    pub failures: Vec<String>,
    /// Things in force only partly (an old kernel's Landlock, say).
    pub warnings: Vec<String>,
    /// Landlock details.
    pub landlock: Option<LandlockStatus>,
    /// Seccomp details.
    pub seccomp: Option<SeccompStatus>,
    /// Inherited descriptors closed.
    pub fds_closed: usize,
    /// Environment variables removed (names only).
    pub environment_removed: Vec<String>,
}

impl Report {
    fn set(&mut self, name: &str, state: StepState, detail: impl Into<String>) {
        let detail = detail.into();
        match state {
            StepState::Off => self.disabled.push(name.to_owned()),
            StepState::Failed => self.failures.push(format!("{name}: {detail}")),
            StepState::Unavailable => self.warnings.push(format!("{name}: {detail}")),
            StepState::On => {}
        }
        self.steps.insert(name.to_owned(), Step { state, detail });
    }
}

/// Applies everything `cfg` asks for, in order, on the calling thread,
/// which must be the only thread (Landlock and no-new-privs bind the
/// calling thread and those it creates later; credential changes must not
/// race other threads). Fatal problems (an unknown user, a failed drop, a
/// seccomp or Landlock error) are errors; a kernel without Landlock is a
/// warning in the report.
pub fn apply(cfg: &HardeningConfig) -> Result<Report, HardeningError> {
    let mut r = Report {
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        user: None,
        capabilities: Vec::new(),
        landlock_abi: None,
        seccomp_action: None,
        core_limit_zero: false,
        not_dumpable: false,
        no_new_privs: false,
        umask_077: false,
        steps: BTreeMap::new(),
        disabled: Vec::new(),
        failures: Vec::new(),
        warnings: Vec::new(),
        landlock: None,
        seccomp: None,
        fds_closed: 0,
        environment_removed: Vec::new(),
    };

    // Landlock (before ABI 8) and no-new-privs bind only the calling
    // thread and those it creates later: say so if others already exist.
    let threads = process::thread_count();
    if threads > 1 {
        r.warnings.push(format!(
            "{threads} threads existed before hardening; Landlock and no-new-privs cover only the calling thread and its later threads"
        ));
    }

    if cfg.close_inherited_fds {
        match fds::close_inherited_fds(&cfg.keep_fds) {
            Ok(n) => {
                r.fds_closed = n;
                r.set(steps::CLOSE_FDS, StepState::On, format!("{n} closed"));
            }
            Err(e) => r.set(steps::CLOSE_FDS, StepState::Failed, e.to_string()),
        }
    } else {
        r.set(
            steps::CLOSE_FDS,
            StepState::Off,
            "close_inherited_fds = false",
        );
    }

    process::set_umask_077();
    r.umask_077 = true;
    r.set(steps::UMASK, StepState::On, "0077");

    if cfg.sanitize_environment {
        let keep: Vec<&str> = cfg.keep_env.iter().map(String::as_str).collect();
        r.environment_removed = environment::sanitize_environment(&keep);
        let detail = format!("kept only {}", cfg.keep_env.join(", "));
        r.set(steps::ENVIRONMENT, StepState::On, detail);
    } else {
        r.set(
            steps::ENVIRONMENT,
            StepState::Off,
            "sanitize_environment = false",
        );
    }

    let root = nix::unistd::geteuid().is_root() || nix::unistd::getuid().is_root();
    if !cfg.drop_privileges {
        r.set(steps::PRIVILEGES, StepState::Off, "drop_privileges = false");
    } else {
        match (&cfg.user, root) {
            (Some(user), true) => {
                let target = privileges::resolve(user, cfg.group.as_deref())?;
                let id = privileges::drop_privileges(&target, &cfg.keep_capabilities)?;
                r.user = Some(user.clone());
                let kept = if id.kept_capabilities.is_empty() {
                    "no capabilities".to_owned()
                } else {
                    id.kept_capabilities.join(", ")
                };
                r.set(
                    steps::PRIVILEGES,
                    StepState::On,
                    format!("uid {} gid {} ({user}), {kept}", id.uid, id.gid),
                );
            }
            (None, true) => r.set(
                steps::PRIVILEGES,
                StepState::Failed,
                "running as root and no `[hardening] user` is configured; set user = \"ferry\"",
            ),
            (_, false) => {
                // Started unprivileged (systemd's User=): nothing to drop.
                let id = privileges::trim_capabilities(&cfg.keep_capabilities)?;
                r.set(
                    steps::PRIVILEGES,
                    StepState::Unavailable,
                    format!("not started as root; running as uid {}", id.uid),
                );
            }
        }
    }

    // After the last credential change: setuid resets "dumpable".
    if cfg.forbid_core_dumps {
        match process::forbid_core_dumps() {
            Ok(()) => r.set(
                steps::CORE_DUMPS,
                StepState::On,
                "RLIMIT_CORE 0, not dumpable",
            ),
            Err(e) => r.set(steps::CORE_DUMPS, StepState::Failed, e),
        }
    } else {
        r.set(
            steps::CORE_DUMPS,
            StepState::Off,
            "forbid_core_dumps = false",
        );
    }

    if cfg.no_new_privs {
        match process::set_no_new_privs() {
            Ok(()) => r.set(steps::NO_NEW_PRIVS, StepState::On, "PR_SET_NO_NEW_PRIVS 1"),
            Err(e) => r.set(steps::NO_NEW_PRIVS, StepState::Failed, e),
        }
    } else {
        r.set(steps::NO_NEW_PRIVS, StepState::Off, "no_new_privs = false");
    }

    if cfg.landlock {
        // Directories the daemon writes must exist for a rule to attach;
        // create them now, as the service user, private.
        for dir in &cfg.read_write {
            if !dir.exists() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let ll = filesystem::restrict_filesystem(&cfg.read_only, &cfg.read_write)?;
        if ll.enforced() {
            let abi = ll.abi.map_or("?".to_owned(), |a| a.to_string());
            let detail = format!("ABI {abi}, {} enforcement", ll.enforcement);
            r.landlock_abi = ll.abi;
            if ll.enforcement == "full" {
                r.set(steps::LANDLOCK, StepState::On, detail);
            } else {
                r.set(steps::LANDLOCK, StepState::On, detail.clone());
                r.warnings
                    .push(format!("landlock: {detail} (older kernel)"));
            }
        } else {
            r.set(
                steps::LANDLOCK,
                StepState::Unavailable,
                "this kernel has no Landlock (or it is disabled at boot): the filesystem is not confined",
            );
        }
        for p in &ll.skipped {
            r.warnings.push(format!(
                "landlock: {} does not exist; no rule for it",
                p.display()
            ));
        }
        r.landlock = Some(ll);
    } else {
        r.set(steps::LANDLOCK, StepState::Off, "landlock = false");
    }

    // Last: nothing after it may need a call off the list.
    if cfg.seccomp {
        let st = seccomp::apply_seccomp(&seccomp::ferryd_profile(), cfg.seccomp_action)?;
        let detail = format!(
            "{} calls allowed, others: {}",
            st.allowed_syscalls, st.action
        );
        r.seccomp_action = Some(st.action.clone());
        if cfg.seccomp_action == SeccompAction::Log {
            r.warnings.push(
                "seccomp: action `log` lets every call through (for finding missing calls only)"
                    .to_owned(),
            );
        }
        r.set(steps::SECCOMP, StepState::On, detail);
        r.seccomp = Some(st);
    } else {
        r.set(steps::SECCOMP, StepState::Off, "seccomp = false");
    }

    // Read back what the kernel says, not what we asked for.
    r.uid = nix::unistd::getuid().as_raw();
    r.gid = nix::unistd::getgid().as_raw();
    r.capabilities = process::current_capabilities();
    r.not_dumpable = nix::sys::prctl::get_dumpable().is_ok_and(|d| !d);
    r.no_new_privs = nix::sys::prctl::get_no_new_privs().unwrap_or(false);
    r.core_limit_zero = process::core_limit_is_zero();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{child, is_root, status_field, Role};

    fn config(rw: PathBuf, ro: PathBuf) -> HardeningConfig {
        HardeningConfig {
            drop_privileges: true,
            user: Some("nobody".into()),
            group: None,
            keep_capabilities: Vec::new(),
            forbid_core_dumps: true,
            no_new_privs: true,
            landlock: true,
            // Reading back /proc/self/status as ferryd's selfcheck does.
            read_only: vec![ro, PathBuf::from("/proc/self")],
            read_write: vec![rw],
            seccomp: true,
            seccomp_action: SeccompAction::Errno,
            close_inherited_fds: true,
            keep_fds: Vec::new(),
            sanitize_environment: true,
            keep_env: vec!["RUST_LOG".into()],
        }
    }

    /// Everything at once, as ferryd does it, read back from the kernel.
    #[test]
    fn apply_as_root_puts_every_step_in_force() {
        if !is_root() {
            eprintln!("skipped: the full sequence drops privileges, which needs root");
            return;
        }
        match child("tests::apply_as_root_puts_every_step_in_force") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                let dir = tempfile::tempdir().unwrap();
                let rw = dir.path().join("state");
                let ro = dir.path().join("etc");
                std::fs::create_dir(&ro).unwrap();
                // The service user must be able to reach its directories.
                let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
                std::fs::set_permissions(
                    dir.path(),
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .unwrap();
                std::fs::create_dir(&rw).unwrap();
                nix::unistd::chown(&rw, Some(nobody.uid), Some(nobody.gid)).unwrap();
                let r = apply(&config(rw.clone(), ro)).unwrap();
                assert!(r.failures.is_empty(), "{:?}", r.failures);
                assert!(r.disabled.is_empty(), "{:?}", r.disabled);
                assert_eq!(r.uid, nobody.uid.as_raw());
                assert!(r.capabilities.is_empty(), "{:?}", r.capabilities);
                assert!(r.not_dumpable && r.no_new_privs && r.core_limit_zero && r.umask_077);
                assert_eq!(r.seccomp_action.as_deref(), Some("errno"));
                if filesystem::kernel_abi().is_some() {
                    assert_eq!(r.steps[steps::LANDLOCK].state, StepState::On);
                    assert!(r.landlock_abi.is_some());
                }
                assert_eq!(status_field("NoNewPrivs"), "1");
                assert_eq!(status_field("Seccomp"), "2");
                assert_eq!(status_field("CapEff"), "0000000000000000");
                assert_eq!(status_field("CapBnd"), "0000000000000000");
                assert!(!nix::sys::prctl::get_dumpable().unwrap());
                // umask 077: a new file is private.
                std::fs::write(rw.join("f"), b"x").unwrap();
                let mode = std::fs::metadata(rw.join("f")).unwrap();
                assert_eq!(
                    std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
                    0o600
                );
            }
        }
    }

    /// A step switched off by configuration is reported as off, by name.
    #[test]
    fn switched_off_steps_are_reported() {
        match child("tests::switched_off_steps_are_reported") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                let cfg = HardeningConfig {
                    drop_privileges: false,
                    forbid_core_dumps: false,
                    no_new_privs: false,
                    landlock: false,
                    seccomp: false,
                    close_inherited_fds: false,
                    sanitize_environment: false,
                    ..config(PathBuf::from("/nonexistent"), PathBuf::from("/nonexistent"))
                };
                let r = apply(&cfg).unwrap();
                let mut off = r.disabled.clone();
                off.sort();
                assert_eq!(
                    off,
                    vec![
                        steps::CLOSE_FDS,
                        steps::PRIVILEGES,
                        steps::CORE_DUMPS,
                        steps::LANDLOCK,
                        steps::NO_NEW_PRIVS,
                        steps::ENVIRONMENT,
                        steps::SECCOMP,
                    ]
                );
                assert_eq!(r.steps[steps::SECCOMP].state, StepState::Off);
                assert_eq!(status_field("Seccomp"), "0");
            }
        }
    }
}
