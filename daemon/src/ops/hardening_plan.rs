//! What hardening `ferryd` applies, derived from its configuration: the
//! capabilities it keeps and the paths Landlock opens. `ferryctl selfcheck`
//! judges the same paths' permissions from this one list.

use crate::config::{Config, SeccompActionName};
use ferry_hardening::{Capability, HardeningConfig, SeccompAction};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
/// Environment variables ferryd still reads after start-up: the log
/// filter, and the key-store passphrase sources (see `ferry_keys`).
pub const KEEP_ENV: &[&str] = &[
    "RUST_LOG",
    "RUST_BACKTRACE",
    "CREDENTIALS_DIRECTORY",
    ferry_keys::PASSPHRASE_ENV,
];

/// Ports below this need `CAP_NET_BIND_SERVICE`.
pub(crate) const PRIVILEGED_PORT_LIMIT: u16 = 1024;

/// The capabilities the configuration needs: `CAP_NET_BIND_SERVICE` when
/// any socket it binds has a port below 1024, otherwise none.
pub fn needed_capabilities(cfg: &Config) -> Vec<Capability> {
    let mut ports: Vec<u16> = cfg.link.listen.iter().map(|a| a.port()).collect();
    ports.push(cfg.link.bind.port());
    if let Some(i) = &cfg.ingest {
        ports.push(i.listen.port());
    }
    if ports.iter().any(|&p| p != 0 && p < PRIVILEGED_PORT_LIMIT) {
        vec![Capability::CAP_NET_BIND_SERVICE]
    } else {
        Vec::new()
    }
}

/// Paths ferryd only reads: the configuration, passphrase, certificates,
/// policy (its directory, so a `.sig` written later is readable too) and
/// ingest TLS files, the systemd credentials, OpenSSL's configuration (the
/// GM suite loads it lazily), and its own `/proc` entries.
pub fn read_only_paths(cfg: &Config, config_path: &Path) -> Vec<PathBuf> {
    let mut v = vec![absolute(config_path)];
    v.extend(cfg.paths.passphrase_file.clone());
    v.extend(cfg.paths.certs_dir.clone());
    if let Some(p) = &cfg.policy {
        v.push(parent_or_self(&p.file));
        v.extend(p.signers.iter().cloned());
        // Dirty-word lists the policy names now (a reload naming lists in
        // a new directory needs a restart, or `extra_read_paths`).
        v.extend(crate::inspection::content::list_dirs(&p.file));
        // The pseudonym key directory: a rotated key is read at reload.
        v.extend(p.pseudonym_keys.clone());
    }
    if let Some(i) = &cfg.ingest {
        v.push(i.cert.clone());
        v.push(i.key.clone());
        v.extend(i.client_ca.iter().cloned());
        // CRLs are replaced by the CA's tooling: allow the directory.
        v.extend(i.crl.iter().map(|c| parent_or_self(c)));
    }
    if let Some(a) = &cfg.admin_api {
        v.push(a.cert.clone());
        v.push(a.key.clone());
        v.extend(a.client_ca.iter().cloned());
        v.extend(a.crl.iter().map(|c| parent_or_self(c)));
    }
    if let Some(d) = &cfg.downstream {
        // Read again after a failed attempt, so a renewed certificate is
        // picked up: allow the directories the CA's tooling writes into.
        v.extend(
            [&d.ca, &d.cert, &d.key]
                .into_iter()
                .map(|p| parent_or_self(p)),
        );
        // Downstream endpoints may be named by DNS: the resolver reads
        // these (missing ones are skipped).
        v.extend(
            [
                "/etc/hosts",
                "/etc/resolv.conf",
                "/etc/nsswitch.conf",
                "/etc/host.conf",
                "/etc/gai.conf",
            ]
            .into_iter()
            .map(PathBuf::from),
        );
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        v.push(PathBuf::from(dir));
    }
    v.extend(
        [
            "/etc/ssl",
            "/usr/lib/ssl",
            "/proc/self",
            "/proc/sys/kernel/hostname",
        ]
        .into_iter()
        .map(PathBuf::from),
    );
    v.extend(cfg.hardening.extra_read_paths.iter().cloned());
    v
}

/// Paths ferryd writes: state (queue, store, control socket, status),
/// keys (the epoch ratchet is saved there), spool, outbox, audit log.
pub fn read_write_paths(cfg: &Config) -> Vec<PathBuf> {
    let mut v = vec![cfg.paths.state_dir.clone(), cfg.paths.keys_dir.clone()];
    v.extend(cfg.paths.spool_dir.clone());
    v.extend(cfg.paths.outbox_dir.clone());
    if let Some(a) = &cfg.audit {
        v.push(a.dir.clone());
    }
    // The admin socket is created (and removed) there.
    if let Some(dir) = cfg
        .admin
        .as_ref()
        .and_then(|a| a.socket.as_deref())
        .and_then(Path::parent)
    {
        v.push(dir.to_path_buf());
    }
    v.extend(cfg.hardening.extra_write_paths.iter().cloned());
    v
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub(crate) fn parent_or_self(p: &Path) -> PathBuf {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty() && *d != Path::new("/"))
        .map_or_else(|| p.to_path_buf(), Path::to_path_buf)
}

/// The hardening ferryd applies for `cfg`. `keep_fds` are descriptors
/// opened before hardening that must survive it (the `sd_notify` socket).
pub fn hardening_config(cfg: &Config, config_path: &Path, keep_fds: Vec<RawFd>) -> HardeningConfig {
    let h = &cfg.hardening;
    HardeningConfig {
        drop_privileges: h.drop_privileges,
        user: h.user.clone(),
        group: h.group.clone(),
        keep_capabilities: needed_capabilities(cfg),
        forbid_core_dumps: h.forbid_core_dumps,
        no_new_privs: h.no_new_privs,
        landlock: h.landlock,
        read_only: read_only_paths(cfg, config_path),
        read_write: read_write_paths(cfg),
        seccomp: h.seccomp,
        seccomp_action: match h.seccomp_action {
            SeccompActionName::KillProcess => SeccompAction::KillProcess,
            SeccompActionName::Errno => SeccompAction::Errno,
            SeccompActionName::Log => SeccompAction::Log,
        },
        close_inherited_fds: h.close_inherited_fds,
        keep_fds,
        sanitize_environment: h.sanitize_environment,
        keep_env: KEEP_ENV.iter().map(|s| (*s).to_owned()).collect(),
    }
}
