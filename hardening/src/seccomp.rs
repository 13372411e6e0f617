//! The seccomp allow-list: the system calls `ferryd` makes, as data, and
//! the filter that lets only those through, on every thread.
//!
//! How the list was found and how to regenerate it: run ferryd's
//! end-to-end tests under `strace -f` and count what the `ferryd`
//! processes call (`hardening/tools/ferryd-syscalls.py` does the
//! counting and names the calls missing here); then add the close
//! relatives glibc may pick instead on another version or architecture
//! (`open`/`openat`, `stat`/`newfstatat`/`statx`, `poll`/`ppoll`,
//! `epoll_wait`/`epoll_pwait`, …). The procedure is in
//! `docs/operations.md`, "Installing and hardening".
//!
//! What is deliberately absent: `execve`/`execveat`, `fork`/`vfork`,
//! `ptrace`, `mount`, `bpf`, `perf_event_open`, `kexec_*`, `*_module`,
//! `keyctl`, `add_key`, `setuid` and friends, `chroot`, `pivot_root`,
//! `unshare`/`setns`, `io_uring_*`, `userfaultfd`, `process_vm_*`,
//! `personality`. `clone` is allowed only with `CLONE_THREAD` (a thread,
//! never a process), and `clone3`, whose flags live in memory a filter
//! cannot read, fails with `ENOSYS` so that glibc falls back to `clone`.

use crate::HardeningError;
use seccompiler::{
    BpfProgram, SeccompAction as Action, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// What happens to a call that is not on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompAction {
    /// The whole process is killed (SIGSYS, core dump suppressed): the
    /// default, so that an exploited daemon cannot try again.
    KillProcess,
    /// The call fails with `EPERM` and the daemon goes on (it logs the
    /// error it gets); for sites that prefer availability.
    Errno,
    /// The call is allowed and logged by the kernel (audit log /
    /// `dmesg`): only to find what a new version calls, never in
    /// production (`selfcheck` fails it).
    Log,
}

impl SeccompAction {
    /// The configuration word for the action.
    pub fn name(self) -> &'static str {
        match self {
            SeccompAction::KillProcess => "kill_process",
            SeccompAction::Errno => "errno",
            SeccompAction::Log => "log",
        }
    }

    fn to_seccompiler(self) -> Action {
        match self {
            SeccompAction::KillProcess => Action::KillProcess,
            SeccompAction::Errno => Action::Errno(libc::EPERM as u32),
            SeccompAction::Log => Action::Log,
        }
    }
}

/// Which arguments a listed call may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// Any.
    Any,
    /// Argument `index` (0-based) is one of `values`.
    OneOf {
        /// Argument position.
        index: u8,
        /// Accepted values.
        values: &'static [u64],
    },
    /// Argument `index` has every bit of `bits` set.
    AllBitsSet {
        /// Argument position.
        index: u8,
        /// Bits that must be set.
        bits: u64,
    },
}

/// One allowed system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    /// Its name, as strace prints it.
    pub name: &'static str,
    /// Its number on this architecture.
    pub nr: i64,
    /// Argument restrictions.
    pub args: Args,
}

/// Calls allowed with any arguments, by name.
macro_rules! any {
    ($($name:ident),* $(,)?) => {
        [$(Syscall { name: stringify!($name), nr: sys::$name, args: Args::Any }),*]
    };
}

/// `libc::SYS_*` under their plain names, so the list reads like strace.
#[allow(non_upper_case_globals)]
mod sys {
    macro_rules! nr {
        ($($name:ident => $c:ident),* $(,)?) => { $(pub const $name: i64 = libc::$c as i64;)* };
    }
    nr! {
        read => SYS_read, write => SYS_write, readv => SYS_readv, writev => SYS_writev,
        pread64 => SYS_pread64, pwrite64 => SYS_pwrite64, preadv => SYS_preadv,
        pwritev => SYS_pwritev, lseek => SYS_lseek, close => SYS_close,
        openat => SYS_openat, newfstatat => SYS_newfstatat, fstat => SYS_fstat,
        statx => SYS_statx, statfs => SYS_statfs, fstatfs => SYS_fstatfs,
        fsync => SYS_fsync, fdatasync => SYS_fdatasync, sync_file_range => SYS_sync_file_range,
        syncfs => SYS_syncfs,
        fcntl => SYS_fcntl, flock => SYS_flock, ftruncate => SYS_ftruncate,
        fallocate => SYS_fallocate, renameat => SYS_renameat, renameat2 => SYS_renameat2,
        unlinkat => SYS_unlinkat, mkdirat => SYS_mkdirat, linkat => SYS_linkat,
        getdents64 => SYS_getdents64, fchmod => SYS_fchmod, fchmodat => SYS_fchmodat,
        faccessat => SYS_faccessat, faccessat2 => SYS_faccessat2, readlinkat => SYS_readlinkat,
        getcwd => SYS_getcwd, umask => SYS_umask, copy_file_range => SYS_copy_file_range,
        sendfile => SYS_sendfile, dup => SYS_dup, dup3 => SYS_dup3, pipe2 => SYS_pipe2,
        mmap => SYS_mmap, munmap => SYS_munmap, mprotect => SYS_mprotect, mremap => SYS_mremap,
        brk => SYS_brk, madvise => SYS_madvise, mlock => SYS_mlock, mlock2 => SYS_mlock2,
        munlock => SYS_munlock, msync => SYS_msync, membarrier => SYS_membarrier,
        futex => SYS_futex, set_robust_list => SYS_set_robust_list,
        get_robust_list => SYS_get_robust_list, rseq => SYS_rseq,
        set_tid_address => SYS_set_tid_address, gettid => SYS_gettid, getpid => SYS_getpid,
        getppid => SYS_getppid, tgkill => SYS_tgkill, sched_getaffinity => SYS_sched_getaffinity,
        sched_yield => SYS_sched_yield, exit => SYS_exit, exit_group => SYS_exit_group,
        clone => SYS_clone, clone3 => SYS_clone3,
        rt_sigaction => SYS_rt_sigaction, rt_sigprocmask => SYS_rt_sigprocmask,
        rt_sigreturn => SYS_rt_sigreturn, sigaltstack => SYS_sigaltstack,
        restart_syscall => SYS_restart_syscall,
        clock_gettime => SYS_clock_gettime, clock_getres => SYS_clock_getres,
        clock_nanosleep => SYS_clock_nanosleep, nanosleep => SYS_nanosleep,
        gettimeofday => SYS_gettimeofday,
        ppoll => SYS_ppoll, epoll_create1 => SYS_epoll_create1, epoll_ctl => SYS_epoll_ctl,
        epoll_pwait => SYS_epoll_pwait, epoll_pwait2 => SYS_epoll_pwait2,
        eventfd2 => SYS_eventfd2, inotify_init1 => SYS_inotify_init1,
        inotify_add_watch => SYS_inotify_add_watch,
        socket => SYS_socket, bind => SYS_bind, listen => SYS_listen, accept4 => SYS_accept4,
        connect => SYS_connect, getsockname => SYS_getsockname, getpeername => SYS_getpeername,
        getsockopt => SYS_getsockopt, setsockopt => SYS_setsockopt, sendto => SYS_sendto,
        recvfrom => SYS_recvfrom, sendmsg => SYS_sendmsg, recvmsg => SYS_recvmsg,
        sendmmsg => SYS_sendmmsg, recvmmsg => SYS_recvmmsg, shutdown => SYS_shutdown,
        getrandom => SYS_getrandom, prlimit64 => SYS_prlimit64, sysinfo => SYS_sysinfo,
        uname => SYS_uname, prctl => SYS_prctl, ioctl => SYS_ioctl,
        getuid => SYS_getuid, geteuid => SYS_geteuid, getgid => SYS_getgid,
        getegid => SYS_getegid, getresuid => SYS_getresuid, getresgid => SYS_getresgid,
        capget => SYS_capget,
    }
    // The legacy calls that x86-64 glibc still uses and newer
    // architectures (aarch64, riscv64) never had.
    #[cfg(target_arch = "x86_64")]
    nr! {
        open => SYS_open, stat => SYS_stat, lstat => SYS_lstat, access => SYS_access,
        rename => SYS_rename, unlink => SYS_unlink, mkdir => SYS_mkdir, rmdir => SYS_rmdir,
        chmod => SYS_chmod, readlink => SYS_readlink, link => SYS_link, poll => SYS_poll,
        select => SYS_select, epoll_wait => SYS_epoll_wait, getrlimit => SYS_getrlimit,
        accept => SYS_accept, pipe => SYS_pipe, dup2 => SYS_dup2,
    }
}

/// `ioctl` requests ferryd (through std, tokio and the terminal check of
/// the logger) makes: non-blocking and close-on-exec flags, bytes
/// readable, and "is this a terminal". (The request type is `c_ulong` on
/// glibc and `c_int` on musl, hence the casts.)
#[allow(clippy::unnecessary_cast)]
const IOCTLS: &[u64] = &[
    libc::FIONBIO as u64,
    libc::FIOCLEX as u64,
    libc::FIONCLEX as u64,
    libc::FIONREAD as u64,
    libc::TCGETS as u64,
    libc::TIOCGWINSZ as u64,
];

/// `prctl` options used after hardening: thread names, and reading back
/// what is in force.
const PRCTLS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    libc::PR_GET_DUMPABLE as u64,
    libc::PR_GET_NO_NEW_PRIVS as u64,
    libc::PR_CAPBSET_READ as u64,
    libc::PR_GET_SECCOMP as u64,
];

/// Address families ferryd opens sockets in: UDP and TCP over IPv4/IPv6,
/// and Unix sockets for the control socket and `sd_notify`.
const SOCKET_DOMAINS: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
];

/// The allow-list for `ferryd`, on the architecture this was built for.
pub fn ferryd_profile() -> Vec<Syscall> {
    let mut v: Vec<Syscall> = any![
        // Files and directories (state, spool, outbox, audit, keys).
        read,
        write,
        readv,
        writev,
        pread64,
        pwrite64,
        preadv,
        pwritev,
        lseek,
        close,
        openat,
        newfstatat,
        fstat,
        statx,
        statfs,
        fstatfs,
        fsync,
        fdatasync,
        sync_file_range,
        syncfs,
        fcntl,
        flock,
        ftruncate,
        fallocate,
        renameat,
        renameat2,
        unlinkat,
        mkdirat,
        linkat,
        getdents64,
        fchmod,
        fchmodat,
        faccessat,
        faccessat2,
        readlinkat,
        getcwd,
        umask,
        copy_file_range,
        sendfile,
        dup,
        dup3,
        pipe2,
        // Memory (allocator, locked key pages).
        mmap,
        munmap,
        mprotect,
        mremap,
        brk,
        madvise,
        mlock,
        mlock2,
        munlock,
        msync,
        membarrier,
        // Threads, signals, time.
        futex,
        set_robust_list,
        get_robust_list,
        rseq,
        set_tid_address,
        gettid,
        getpid,
        getppid,
        tgkill,
        sched_getaffinity,
        sched_yield,
        exit,
        exit_group,
        clone3,
        rt_sigaction,
        rt_sigprocmask,
        rt_sigreturn,
        sigaltstack,
        restart_syscall,
        clock_gettime,
        clock_getres,
        clock_nanosleep,
        nanosleep,
        gettimeofday,
        // Waiting for I/O (std, mio/tokio).
        ppoll,
        epoll_create1,
        epoll_ctl,
        epoll_pwait,
        epoll_pwait2,
        eventfd2,
        // The spool intake's watch for files renamed in.
        inotify_init1,
        inotify_add_watch,
        // Sockets: the link (UDP), ingest (TCP), control and notify (Unix).
        bind,
        listen,
        accept4,
        connect,
        getsockname,
        getpeername,
        getsockopt,
        setsockopt,
        sendto,
        recvfrom,
        sendmsg,
        recvmsg,
        sendmmsg,
        recvmmsg,
        shutdown,
        // Randomness, limits, identity read-back.
        getrandom,
        prlimit64,
        sysinfo,
        uname,
        getuid,
        geteuid,
        getgid,
        getegid,
        getresuid,
        getresgid,
        capget,
    ]
    .to_vec();
    #[cfg(target_arch = "x86_64")]
    v.extend(any![
        open, stat, lstat, access, rename, unlink, mkdir, rmdir, chmod, readlink, link, poll,
        select, epoll_wait, getrlimit, accept, pipe, dup2,
    ]);
    v.push(Syscall {
        name: "clone",
        nr: sys::clone,
        // Threads only: a new process could exec what Landlock forbids
        // reading only because exec is also forbidden; keep both locks.
        args: Args::AllBitsSet {
            index: 0,
            bits: libc::CLONE_THREAD as u64,
        },
    });
    v.push(Syscall {
        name: "ioctl",
        nr: sys::ioctl,
        args: Args::OneOf {
            index: 1,
            values: IOCTLS,
        },
    });
    v.push(Syscall {
        name: "prctl",
        nr: sys::prctl,
        args: Args::OneOf {
            index: 0,
            values: PRCTLS,
        },
    });
    v.push(Syscall {
        name: "socket",
        nr: sys::socket,
        args: Args::OneOf {
            index: 0,
            values: SOCKET_DOMAINS,
        },
    });
    v
}

/// What [`apply_seccomp`] put in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeccompStatus {
    /// The action for calls off the list.
    pub action: String,
    /// How many calls are on the list.
    pub allowed_syscalls: usize,
    /// Filters installed (the allow-list and the `clone3` → `ENOSYS` one).
    pub filters: u32,
    /// Installed on every thread of the process at once (TSYNC).
    pub all_threads: bool,
}

fn arch() -> Result<TargetArch, HardeningError> {
    std::env::consts::ARCH.try_into().map_err(|_| {
        HardeningError::Seccomp(format!(
            "no seccomp support for architecture {}",
            std::env::consts::ARCH
        ))
    })
}

fn rules(args: Args) -> Result<Vec<SeccompRule>, HardeningError> {
    let err = |e: seccompiler::BackendError| HardeningError::Seccomp(e.to_string());
    let cond = |index: u8, op, value| {
        SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(err)
    };
    match args {
        Args::Any => Ok(Vec::new()),
        Args::OneOf { index, values } => values
            .iter()
            .map(|&v| {
                // ioctl request numbers and prctl options are 32-bit in
                // the kernel; compare the low word so that sign
                // extension by a caller does not matter.
                let c = SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)
                    .map_err(err)?;
                SeccompRule::new(vec![c]).map_err(err)
            })
            .collect(),
        Args::AllBitsSet { index, bits } => Ok(vec![SeccompRule::new(vec![cond(
            index,
            SeccompCmpOp::MaskedEq(bits),
            bits,
        )?])
        .map_err(err)?]),
    }
}

/// Compiles `profile` into the two BPF programs [`apply_seccomp`]
/// installs: the allow-list, and the `clone3` → `ENOSYS` filter.
pub fn compile(
    profile: &[Syscall],
    action: SeccompAction,
) -> Result<(BpfProgram, BpfProgram), HardeningError> {
    let err = |e: seccompiler::BackendError| HardeningError::Seccomp(e.to_string());
    let arch = arch()?;
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for s in profile {
        let mut r = rules(s.args)?;
        match map.get_mut(&s.nr) {
            // The same call listed twice: any of its rule sets allows it;
            // an unconditional entry wins.
            Some(existing) if existing.is_empty() => {}
            Some(existing) => {
                if r.is_empty() {
                    existing.clear();
                } else {
                    existing.append(&mut r);
                }
            }
            None => {
                map.insert(s.nr, r);
            }
        }
    }
    let allow =
        SeccompFilter::new(map, action.to_seccompiler(), Action::Allow, arch).map_err(err)?;
    let allow: BpfProgram = allow.try_into().map_err(err)?;
    let clone3 = SeccompFilter::new(
        [(sys::clone3, Vec::new())].into_iter().collect(),
        Action::Allow,
        Action::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    let clone3: BpfProgram = clone3.try_into().map_err(err)?;
    Ok((allow, clone3))
}

/// Installs the allow-list on every thread of the process (TSYNC) with
/// `action` for anything else. Sets no-new-privs first (the kernel
/// requires it of an unprivileged process). Call it last: nothing that
/// needs a forbidden call (Landlock setup, credential changes) may come
/// after it.
pub fn apply_seccomp(
    profile: &[Syscall],
    action: SeccompAction,
) -> Result<SeccompStatus, HardeningError> {
    let (allow, clone3) = compile(profile, action)?;
    let err = |e: seccompiler::Error| HardeningError::Seccomp(e.to_string());
    // clone3 first: the allow-list may forbid what installing the second
    // filter needs on some kernel (it does not today, but order is free).
    seccompiler::apply_filter_all_threads(&clone3).map_err(err)?;
    seccompiler::apply_filter_all_threads(&allow).map_err(err)?;
    let mut names: Vec<&str> = profile.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    Ok(SeccompStatus {
        action: action.name().to_owned(),
        allowed_syscalls: names.len(),
        filters: 2,
        all_threads: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{child, Role};
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn profile_compiles_and_leaves_out_process_creation() {
        let p = ferryd_profile();
        compile(&p, SeccompAction::KillProcess).unwrap();
        let names: Vec<&str> = p.iter().map(|s| s.name).collect();
        for forbidden in [
            "execve",
            "execveat",
            "fork",
            "vfork",
            "ptrace",
            "mount",
            "bpf",
            "setuid",
            "setresuid",
            "unshare",
            "setns",
            "chroot",
            "io_uring_setup",
            "personality",
            "process_vm_readv",
            "kexec_load",
            "init_module",
            "keyctl",
            "seccomp",
        ] {
            assert!(!names.contains(&forbidden), "{forbidden} is on the list");
        }
        let clone = p.iter().find(|s| s.name == "clone").unwrap();
        assert!(matches!(clone.args, Args::AllBitsSet { .. }));
    }

    /// With `errno`, a call off the list fails with EPERM and the process
    /// goes on: threads still start (clone3 → ENOSYS → clone with
    /// CLONE_THREAD), but no process can be spawned.
    #[test]
    fn forbidden_call_fails_with_eperm() {
        match child("seccomp::tests::forbidden_call_fails_with_eperm") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                let st = apply_seccomp(&ferryd_profile(), SeccompAction::Errno).unwrap();
                assert_eq!(st.action, "errno");
                assert_eq!(crate::test_support::status_field("Seccomp"), "2");
                // getsid is not on the list.
                assert_eq!(nix::unistd::getsid(None), Err(nix::errno::Errno::EPERM));
                let t = std::thread::spawn(|| 7).join().unwrap();
                assert_eq!(t, 7);
                let spawn = std::process::Command::new("/bin/true").status();
                assert!(spawn.is_err(), "a process was spawned: {spawn:?}");
                // What is allowed still works.
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("f"), b"ok").unwrap();
            }
        }
    }

    /// With `kill_process` (the default), the first call off the list
    /// kills the whole process with SIGSYS.
    #[test]
    fn forbidden_call_kills_the_process() {
        match child("seccomp::tests::forbidden_call_kills_the_process") {
            Role::Parent(out) => {
                assert!(
                    out.stdout.contains("filter installed"),
                    "{}{}",
                    out.stdout,
                    out.stderr
                );
                assert_eq!(
                    out.status.signal(),
                    Some(libc::SIGSYS),
                    "{:?}\n{}{}",
                    out.status,
                    out.stdout,
                    out.stderr
                );
            }
            Role::Child => {
                apply_seccomp(&ferryd_profile(), SeccompAction::KillProcess).unwrap();
                println!("filter installed");
                let _ = nix::unistd::getsid(None);
                println!("still alive after a forbidden call");
            }
        }
    }
}
