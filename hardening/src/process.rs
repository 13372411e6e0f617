//! Process-wide measures: no core dumps, no ptrace by other processes of
//! the same user, no privilege gain through exec, a private umask. Each is
//! a small call of its own for [`crate::apply`]; [`apply_baseline`] does
//! all four for tools that need no configuration.

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::{umask, Mode};

/// What [`apply_baseline`] put in force, for the log and status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Baseline {
    /// `RLIMIT_CORE` is 0.
    pub core_limit_zero: bool,
    /// `PR_SET_DUMPABLE` is 0: no core dumps, no ptrace attach by
    /// same-user processes, `/proc/PID/mem` closed to them.
    pub not_dumpable: bool,
    /// `PR_SET_NO_NEW_PRIVS`: exec can never gain privileges.
    pub no_new_privs: bool,
    /// The umask is 077.
    pub umask_077: bool,
    /// Steps that failed, with the OS error.
    pub failures: Vec<String>,
}

/// Sets the umask to 077: files and directories the daemon creates are
/// private to its user unless it sets a mode on purpose.
pub fn set_umask_077() {
    umask(Mode::from_bits_truncate(0o077));
}

/// `RLIMIT_CORE` 0 (soft and hard) and `PR_SET_DUMPABLE` 0: no core file,
/// no ptrace attach or `/proc/PID/mem` by same-user processes. Must come
/// after the last credential change, which resets "dumpable".
pub fn forbid_core_dumps() -> Result<(), String> {
    // Already 0 (systemd's LimitCORE=0, whose unit may also forbid
    // setrlimit itself): nothing to lower.
    if !core_limit_is_zero() {
        setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("RLIMIT_CORE=0: {e}"))?;
    }
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE=0: {e}"))
}

/// `PR_SET_NO_NEW_PRIVS`: no execve can ever gain privileges (setuid
/// bits, file capabilities). Inherited by threads created afterwards.
pub fn set_no_new_privs() -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))
}

/// Threads in this process, from `/proc/self/status` (1 when unknown).
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Whether both core-size limits are 0.
pub fn core_limit_is_zero() -> bool {
    nix::sys::resource::getrlimit(Resource::RLIMIT_CORE).is_ok_and(|l| l == (0, 0))
}

/// Capabilities in the permitted or effective set, by name.
pub fn current_capabilities() -> Vec<String> {
    let mut v: Vec<String> = [caps::CapSet::Permitted, caps::CapSet::Effective]
        .into_iter()
        .filter_map(|set| caps::read(None, set).ok())
        .flatten()
        .map(|c| c.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Applies the baseline, on the main thread before any other thread
/// starts (no-new-privs is inherited only by threads made afterwards). A
/// failing step is reported, not fatal: the caller
/// logs it loudly (and a later `selfcheck` reports it as failed).
pub fn apply_baseline() -> Baseline {
    let mut b = Baseline::default();
    match setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        Ok(()) => b.core_limit_zero = true,
        Err(e) => b.failures.push(format!("RLIMIT_CORE=0: {e}")),
    }
    // Dumpable must be cleared after the last credential change (a
    // setuid resets it); ferryd changes no credentials after this.
    match nix::sys::prctl::set_dumpable(false) {
        Ok(()) => b.not_dumpable = true,
        Err(e) => b.failures.push(format!("PR_SET_DUMPABLE=0: {e}")),
    }
    match nix::sys::prctl::set_no_new_privs() {
        Ok(()) => b.no_new_privs = true,
        Err(e) => b.failures.push(format!("PR_SET_NO_NEW_PRIVS: {e}")),
    }
    umask(Mode::from_bits_truncate(0o077));
    b.umask_077 = true;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in a child process (the measures are irreversible) and reads
    /// the effect back from /proc, the way `selfcheck` will.
    #[test]
    fn baseline_takes_effect() {
        if std::env::var_os("FERRY_HARDENING_CHILD").is_some() {
            let b = apply_baseline();
            assert!(b.failures.is_empty(), "{:?}", b.failures);
            // No-new-privs is per thread (inherited by threads and children
            // made later), so ferryd applies it on its main thread first.
            let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
            assert!(status.contains("NoNewPrivs:\t1"), "{status}");
            assert!(!nix::sys::prctl::get_dumpable().expect("get_dumpable"));
            let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
            let core = limits
                .lines()
                .find(|l| l.starts_with("Max core file size"))
                .expect("core line");
            assert!(
                core.split_whitespace().filter(|w| *w == "0").count() >= 2,
                "{core}"
            );
            return;
        }
        let exe = std::env::current_exe().expect("exe");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "process::tests::baseline_takes_effect",
                "--nocapture",
            ])
            .env("FERRY_HARDENING_CHILD", "1")
            .output()
            .expect("child");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
