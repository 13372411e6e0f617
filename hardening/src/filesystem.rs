//! Filesystem confinement with Landlock: read-only access to what the
//! daemon only reads (configuration, certificates, the policy), read-write
//! access to what it writes (state, keys' epoch file, spool, outbox,
//! audit), and nothing else — no other file can be read, written,
//! created, removed or executed, whatever the process's user may do.
//!
//! Best effort across kernels: the ruleset asks for every right this
//! crate knows and the kernel enforces the ones it supports; on a kernel
//! without Landlock nothing is enforced and the status says so, for the
//! caller to log and `selfcheck` to flag.
// The workspace denies unsafe code; this module is one of hardening's three
// exceptions: a Landlock ABI probe syscall has no safe wrapper. Each block has a SAFETY line.
#![allow(unsafe_code)]

use crate::HardeningError;
use landlock::{
    Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};
use std::path::{Path, PathBuf};

/// The newest ABI whose filesystem rights ferry asks for. ABI 6 adds only
/// IPC scoping, which would cut `sd_notify` to an abstract socket.
const REQUESTED_ABI: ABI = ABI::V5;
/// [`REQUESTED_ABI`] as the kernel numbers it.
const REQUESTED_ABI_NUMBER: u32 = 5;

/// What Landlock put in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LandlockStatus {
    /// `full`, `partial` (an older kernel: some rights unenforced) or
    /// `none` (no Landlock in this kernel, or disabled at boot).
    pub enforcement: String,
    /// The Landlock ABI version in force, when any.
    pub abi: Option<u32>,
    /// Paths granted read-only access.
    pub read_only: Vec<PathBuf>,
    /// Paths granted read-write access.
    pub read_write: Vec<PathBuf>,
    /// Paths asked for that did not exist and got no rule.
    pub skipped: Vec<PathBuf>,
}

impl LandlockStatus {
    /// True when the kernel enforces the ruleset (fully or partly).
    pub fn enforced(&self) -> bool {
        self.enforcement != "none"
    }
}

/// The Landlock ABI the running kernel offers, if any (without
/// restricting anything).
pub fn kernel_abi() -> Option<u32> {
    // SAFETY: landlock_create_ruleset with a null attribute, size 0 and the
    // VERSION flag only returns the ABI number; it reads no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    u32::try_from(v).ok().filter(|&v| v > 0)
}

/// Restricts this thread (and the threads and children it creates later)
/// to `read_only` and `read_write`. Missing paths get no rule (and are
/// listed in `skipped`): a rule needs an existing file to attach to. Call
/// it before any other thread exists.
pub fn restrict_filesystem(
    read_only: &[PathBuf],
    read_write: &[PathBuf],
) -> Result<LandlockStatus, HardeningError> {
    let err = |e: landlock::RulesetError| HardeningError::Landlock(e.to_string());
    let mut status = LandlockStatus {
        enforcement: "none".into(),
        abi: None,
        read_only: Vec::new(),
        read_write: Vec::new(),
        skipped: Vec::new(),
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(REQUESTED_ABI))
        .map_err(err)?
        .create()
        .map_err(err)?;
    let read = AccessFs::from_read(REQUESTED_ABI);
    // Execute is never granted: ferryd runs no program.
    let write = AccessFs::from_all(REQUESTED_ABI) & !AccessFs::Execute;
    for (paths, access, granted) in [
        (read_only, read, &mut status.read_only),
        (read_write, write, &mut status.read_write),
    ] {
        for p in paths {
            match open_path(p) {
                Some(fd) => {
                    // A file (not a directory) only takes file rights.
                    let access = if fd.is_dir {
                        access
                    } else {
                        access & file_rights()
                    };
                    ruleset = ruleset
                        .add_rule(landlock::PathBeneath::new(fd.fd, access))
                        .map_err(err)?;
                    granted.push(p.clone());
                }
                None => status.skipped.push(p.clone()),
            }
        }
    }
    let r = ruleset.restrict_self().map_err(err)?;
    status.enforcement = match r.ruleset {
        RulesetStatus::FullyEnforced => "full",
        RulesetStatus::PartiallyEnforced => "partial",
        RulesetStatus::NotEnforced => "none",
    }
    .into();
    if status.enforced() {
        status.abi = kernel_abi().map(|k| k.min(REQUESTED_ABI_NUMBER));
    }
    Ok(status)
}

fn file_rights() -> landlock::BitFlags<AccessFs> {
    AccessFs::from_file(REQUESTED_ABI)
}

struct Opened {
    fd: landlock::PathFd,
    is_dir: bool,
}

fn open_path(p: &Path) -> Option<Opened> {
    let meta = std::fs::metadata(p).ok()?;
    let fd = landlock::PathFd::new(p).ok()?;
    Some(Opened {
        fd,
        is_dir: meta.is_dir(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{child, Role};
    use std::io::ErrorKind;

    /// Inside the read-write directory everything works; the read-only
    /// directory can be read but not written; anything else can be
    /// neither read nor written (EACCES).
    #[test]
    fn writes_outside_the_allowed_directories_fail() {
        if kernel_abi().is_none() {
            eprintln!("skipped: this kernel has no Landlock");
            return;
        }
        match child("filesystem::tests::writes_outside_the_allowed_directories_fail") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                let dir = tempfile::tempdir().unwrap();
                let (ro, rw, other) = (
                    dir.path().join("ro"),
                    dir.path().join("rw"),
                    dir.path().join("other"),
                );
                for d in [&ro, &rw, &other] {
                    std::fs::create_dir(d).unwrap();
                }
                std::fs::write(ro.join("config"), b"c").unwrap();
                std::fs::write(other.join("secret"), b"s").unwrap();
                let missing = dir.path().join("missing");
                let st =
                    restrict_filesystem(&[ro.clone(), missing.clone()], std::slice::from_ref(&rw))
                        .unwrap();
                assert_eq!(st.enforcement, "full");
                assert_eq!(st.abi, kernel_abi().map(|k| k.min(REQUESTED_ABI_NUMBER)));
                assert_eq!(st.skipped, vec![missing]);

                std::fs::write(rw.join("state"), b"x").unwrap();
                std::fs::create_dir(rw.join("sub")).unwrap();
                std::fs::rename(rw.join("state"), rw.join("sub/state")).unwrap();
                std::fs::remove_file(rw.join("sub/state")).unwrap();
                assert_eq!(std::fs::read(ro.join("config")).unwrap(), b"c");

                let denied = |r: std::io::Result<()>, what: &str| {
                    let e = r.expect_err(what);
                    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{what}: {e}");
                };
                denied(std::fs::write(ro.join("new"), b"x"), "create in ro");
                denied(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(ro.join("config"))
                        .map(drop),
                    "append in ro",
                );
                denied(std::fs::write(other.join("new"), b"x"), "create elsewhere");
                denied(
                    std::fs::read(other.join("secret")).map(drop),
                    "read elsewhere",
                );
                denied(
                    std::fs::write("/tmp/ferry-landlock-escape", b"x"),
                    "write /tmp",
                );
                denied(std::fs::read("/etc/hostname").map(drop), "read /etc");
                denied(
                    std::fs::rename(rw.join("sub"), other.join("moved")),
                    "move out of rw",
                );
            }
        }
    }
}
