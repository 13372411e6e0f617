//! Leaving root: supplementary groups, then group, then user, keeping only
//! the capabilities the configuration needs (none unless a port below 1024
//! is bound) and emptying the bounding and ambient sets, so that nothing the
//! process runs later can get root's powers back.
//!
//! The order matters: `setgroups` and `setgid` need privileges that
//! `setuid` gives up, and the bounding set can only be trimmed while
//! `CAP_SETPCAP` is still effective.

use crate::HardeningError;
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{getgid, getuid, Gid, Group, Uid, User};

/// The identity the process ended up with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// Real, effective and saved user id (all equal after a drop).
    pub uid: u32,
    /// Real, effective and saved group id.
    pub gid: u32,
    /// Whether privileges were actually dropped (false when the process
    /// was not started as root: there was nothing to drop).
    pub dropped: bool,
    /// Capabilities left in the permitted and effective sets.
    pub kept_capabilities: Vec<String>,
    /// Whether the bounding set holds nothing beyond `kept_capabilities`.
    pub bounding_set_cleared: bool,
}

/// The user and group to run as, looked up before anything is changed so
/// that a typo fails the start instead of leaving a half-dropped process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// User name as configured.
    pub user: String,
    /// Its uid.
    pub uid: Uid,
    /// Group to switch to (the user's primary group unless configured).
    pub gid: Gid,
}

/// Resolves `user` (and `group`, default: the user's primary group)
/// through the system's user database. Must run before Landlock closes
/// `/etc`.
pub fn resolve(user: &str, group: Option<&str>) -> Result<Target, HardeningError> {
    let u = User::from_name(user)
        .map_err(|e| HardeningError::UnknownUser {
            user: user.to_owned(),
            detail: e.to_string(),
        })?
        .ok_or_else(|| HardeningError::UnknownUser {
            user: user.to_owned(),
            detail: "no such user; create it (the package's sysusers.d file does: `systemd-sysusers`) or set `[hardening] user`".to_owned(),
        })?;
    let gid = match group {
        None => u.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| HardeningError::UnknownGroup {
                    group: g.to_owned(),
                    detail: e.to_string(),
                })?
                .ok_or_else(|| HardeningError::UnknownGroup {
                    group: g.to_owned(),
                    detail: "no such group; create it or remove `[hardening] group`".to_owned(),
                })?
                .gid
        }
    };
    if u.uid.is_root() {
        return Err(HardeningError::UnknownUser {
            user: user.to_owned(),
            detail: "this is root (uid 0); name an unprivileged service user such as `ferry`"
                .to_owned(),
        });
    }
    Ok(Target {
        user: user.to_owned(),
        uid: u.uid,
        gid,
    })
}

/// Switches to `target` when running as root, keeping exactly `keep` of
/// the capabilities; when not root, only does [`trim_capabilities`].
///
/// Must run before any thread exists: credentials are per thread on
/// Linux and glibc's broadcast to other threads is not something to rely
/// on in a security step.
pub fn drop_privileges(target: &Target, keep: &[Capability]) -> Result<Identity, HardeningError> {
    let step = |what: &'static str| {
        move |e: caps::errors::CapsError| HardeningError::Privileges {
            step: what,
            detail: e.to_string(),
        }
    };
    let nix_step = |what: &'static str| {
        move |e: nix::Error| HardeningError::Privileges {
            step: what,
            detail: e.to_string(),
        }
    };
    let keep_set: CapsHashSet = keep.iter().copied().collect();
    if !getuid().is_root() && !nix::unistd::geteuid().is_root() {
        return trim_capabilities(keep);
    }
    // Keep the permitted set across setuid only when some capability is
    // needed; otherwise the kernel empties it for us.
    if !keep_set.is_empty() {
        nix::sys::prctl::set_keepcaps(true).map_err(nix_step("PR_SET_KEEPCAPS 1"))?;
    }
    // Trim the bounding set while CAP_SETPCAP is still effective: after
    // this no execve can ever regain a dropped capability.
    for cap in caps::all() {
        if keep_set.contains(&cap) {
            continue;
        }
        // Capabilities newer than the running kernel are not in its
        // bounding set at all.
        if let Ok(true) = caps::has_cap(None, CapSet::Bounding, cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(step("clear the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(step("clear ambient capabilities"))?;
    caps::clear(None, CapSet::Inheritable).map_err(step("clear inheritable capabilities"))?;
    nix::unistd::setgroups(&[target.gid]).map_err(nix_step("setgroups"))?;
    nix::unistd::setresgid(target.gid, target.gid, target.gid).map_err(nix_step("setresgid"))?;
    nix::unistd::setresuid(target.uid, target.uid, target.uid).map_err(nix_step("setresuid"))?;
    if !keep_set.is_empty() {
        // setuid cleared the effective set; raise exactly what is kept.
        caps::set(None, CapSet::Permitted, &keep_set).map_err(step("set permitted"))?;
        caps::set(None, CapSet::Effective, &keep_set).map_err(step("set effective"))?;
        nix::sys::prctl::set_keepcaps(false).map_err(nix_step("PR_SET_KEEPCAPS 0"))?;
    }
    // Prove it: getting root back must be impossible.
    if nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err(HardeningError::Privileges {
            step: "verify",
            detail: "setresuid(0) succeeded after the drop".to_owned(),
        });
    }
    identity(true)
}

/// For a process not started as root (systemd's `User=`): no identity to
/// change, but capabilities it was handed beyond `keep` go (dropping needs
/// no privilege; the bounding set only with `CAP_SETPCAP`), and so do
/// the ambient and inheritable sets.
pub fn trim_capabilities(keep: &[Capability]) -> Result<Identity, HardeningError> {
    let step = |what: &'static str| {
        move |e: caps::errors::CapsError| HardeningError::Privileges {
            step: what,
            detail: e.to_string(),
        }
    };
    let keep_set: CapsHashSet = keep.iter().copied().collect();
    // Change nothing that is already right: a unit's SystemCallFilter=
    // (~@privileged) refuses capset even when it would be a no-op.
    let read = |set| caps::read(None, set).map_err(step("read capabilities"));
    if !read(CapSet::Ambient)?.is_empty() {
        caps::clear(None, CapSet::Ambient).map_err(step("clear ambient capabilities"))?;
    }
    let permitted = read(CapSet::Permitted)?;
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::all() {
            if !keep_set.contains(&cap)
                && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
            {
                caps::drop(None, CapSet::Bounding, cap).map_err(step("clear the bounding set"))?;
            }
        }
    }
    let want: CapsHashSet = permitted.intersection(&keep_set).copied().collect();
    if want != permitted
        || !read(CapSet::Inheritable)?.is_empty()
        || read(CapSet::Effective)? != want
    {
        caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
            .map_err(step("clear inheritable capabilities"))?;
        caps::set(None, CapSet::Effective, &want).map_err(step("set effective"))?;
        caps::set(None, CapSet::Permitted, &want).map_err(step("set permitted"))?;
    }
    identity(false)
}

fn identity(dropped: bool) -> Result<Identity, HardeningError> {
    let read = |set| {
        caps::read(None, set).map_err(|e| HardeningError::Privileges {
            step: "read capabilities",
            detail: e.to_string(),
        })
    };
    let effective = read(CapSet::Effective)?;
    let permitted = read(CapSet::Permitted)?;
    let bounding = read(CapSet::Bounding)?;
    let mut kept: Vec<String> = permitted.union(&effective).map(|c| c.to_string()).collect();
    kept.sort();
    Ok(Identity {
        uid: getuid().as_raw(),
        gid: getgid().as_raw(),
        dropped,
        bounding_set_cleared: bounding.is_subset(&permitted),
        kept_capabilities: kept,
    })
}

/// Parses a capability name as written in configuration or reports
/// (`CAP_NET_BIND_SERVICE` or `net_bind_service`).
pub fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{child, is_root, status_field, Role};

    #[test]
    fn capability_names_parse() {
        assert_eq!(
            parse_capability("net_bind_service"),
            Some(Capability::CAP_NET_BIND_SERVICE)
        );
        assert_eq!(
            parse_capability("CAP_NET_BIND_SERVICE"),
            Some(Capability::CAP_NET_BIND_SERVICE)
        );
        assert_eq!(parse_capability("cap_fly"), None);
    }

    #[test]
    fn unknown_and_root_users_are_refused() {
        let e = resolve("ferry-no-such-user-x", None).unwrap_err();
        assert!(e.to_string().contains("no such user"), "{e}");
        let e = resolve("root", None).unwrap_err();
        assert!(e.to_string().contains("uid 0"), "{e}");
        let e = resolve("nobody", Some("ferry-no-such-group-x")).unwrap_err();
        assert!(e.to_string().contains("no such group"), "{e}");
    }

    /// Root drops to `nobody`: every uid and gid changes, every
    /// capability set (bounding included) is empty, root cannot be had
    /// back, and a root-only file is out of reach.
    #[test]
    fn drop_to_nobody_leaves_no_capabilities() {
        if !is_root() {
            eprintln!("skipped: dropping privileges needs root");
            return;
        }
        match child("privileges::tests::drop_to_nobody_leaves_no_capabilities") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                let target = resolve("nobody", None).unwrap();
                let id = drop_privileges(&target, &[]).unwrap();
                assert!(id.dropped);
                assert!(id.kept_capabilities.is_empty(), "{id:?}");
                assert!(id.bounding_set_cleared);
                let uid = target.uid.as_raw().to_string();
                let gid = target.gid.as_raw().to_string();
                let ids = |f: &str| {
                    status_field(f)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                };
                assert_eq!(ids("Uid"), vec![uid.clone(), uid.clone(), uid.clone(), uid]);
                assert_eq!(
                    ids("Gid"),
                    vec![gid.clone(), gid.clone(), gid.clone(), gid.clone()]
                );
                assert_eq!(status_field("Groups"), gid);
                for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                    assert_eq!(status_field(set), "0000000000000000", "{set}");
                }
                assert!(nix::unistd::setuid(Uid::from_raw(0)).is_err());
                let e = std::fs::read("/etc/shadow").unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
            }
        }
    }

    /// A configuration that binds a port below 1024 keeps exactly
    /// CAP_NET_BIND_SERVICE (bit 10), and it works.
    #[test]
    fn kept_capability_is_the_only_one_and_works() {
        if !is_root() {
            eprintln!("skipped: dropping privileges needs root");
            return;
        }
        match child("privileges::tests::kept_capability_is_the_only_one_and_works") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                let target = resolve("nobody", None).unwrap();
                let id = drop_privileges(&target, &[Capability::CAP_NET_BIND_SERVICE]).unwrap();
                assert_eq!(
                    id.kept_capabilities,
                    vec!["CAP_NET_BIND_SERVICE".to_owned()]
                );
                for set in ["CapPrm", "CapEff", "CapBnd"] {
                    assert_eq!(status_field(set), "0000000000000400", "{set}");
                }
                assert_eq!(status_field("CapAmb"), "0000000000000000");
                // Some port below 1024 on loopback is free.
                let bound =
                    (600u16..1000).any(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
                assert!(
                    bound,
                    "no low port could be bound with CAP_NET_BIND_SERVICE"
                );
            }
        }
    }

    /// A process that starts unprivileged but with capabilities (a unit
    /// with AmbientCapabilities=, say) keeps only the needed one.
    #[test]
    fn unprivileged_start_trims_extra_capabilities() {
        if !is_root() {
            eprintln!("skipped: setting up a non-root process with capabilities needs root");
            return;
        }
        match child("privileges::tests::unprivileged_start_trims_extra_capabilities") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                // Become nobody but keep every permitted capability.
                nix::sys::prctl::set_keepcaps(true).unwrap();
                let nobody = resolve("nobody", None).unwrap();
                nix::unistd::setresuid(nobody.uid, nobody.uid, nobody.uid).unwrap();
                assert_ne!(status_field("CapPrm"), "0000000000000000");
                let id = trim_capabilities(&[Capability::CAP_NET_BIND_SERVICE]).unwrap();
                assert!(!id.dropped);
                assert_eq!(status_field("CapPrm"), "0000000000000400");
                assert_eq!(status_field("CapEff"), "0000000000000400");
                assert_eq!(status_field("CapAmb"), "0000000000000000");
            }
        }
    }
}
