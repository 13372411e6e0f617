//! The file as written. The raw layer mirrors the file: every key optional
//! and spanned, so that defaults, required keys and range checks are decided
//! in one place (`check`) and each refusal can point at the key or value it
//! is about.

use crate::config::model::{Role, SeccompActionName, SuiteName};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) link: Option<Spanned<RawLink>>,
    pub(crate) paths: Option<Spanned<RawPaths>>,
    pub(crate) retention: Option<Spanned<RawRetention>>,
    pub(crate) ingest: Option<Spanned<RawIngest>>,
    pub(crate) policy: Option<Spanned<RawPolicy>>,
    pub(crate) audit: Option<Spanned<RawAudit>>,
    pub(crate) hardening: Option<Spanned<RawHardening>>,
    pub(crate) metrics: Option<Spanned<RawMetrics>>,
    pub(crate) admin: Option<Spanned<RawAdmin>>,
    pub(crate) downstream: Option<Spanned<RawDownstream>>,
    pub(crate) admin_api: Option<Spanned<RawAdminApi>>,
    pub(crate) signatures: Option<Spanned<RawSignatures>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignatures {
    pub(crate) channel: Option<Spanned<String>>,
    pub(crate) database_dir: Option<Spanned<String>>,
    pub(crate) socket: Option<Spanned<String>>,
    pub(crate) clamscan: Option<Spanned<String>>,
    pub(crate) sigtool: Option<Spanned<String>>,
    pub(crate) allow_unsigned: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdminApi {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) client_ca: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) crl: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) trust_reload_interval_s: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDownstream {
    pub(crate) ca: Option<Spanned<String>>,
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) timeout_s: Option<Spanned<i64>>,
    pub(crate) retry_initial_ms: Option<Spanned<i64>>,
    pub(crate) retry_max_ms: Option<Spanned<i64>>,
    pub(crate) alarm_after_s: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) socket: Option<Spanned<String>>,
    pub(crate) sysadmin: Option<Vec<Spanned<String>>>,
    pub(crate) secadmin: Option<Vec<Spanned<String>>>,
    pub(crate) auditor: Option<Vec<Spanned<String>>>,
    pub(crate) reviewer: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHardening {
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) group: Option<Spanned<String>>,
    pub(crate) drop_privileges: Option<Spanned<bool>>,
    pub(crate) forbid_core_dumps: Option<Spanned<bool>>,
    pub(crate) no_new_privs: Option<Spanned<bool>>,
    pub(crate) landlock: Option<Spanned<bool>>,
    pub(crate) extra_read_paths: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) extra_write_paths: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) seccomp: Option<Spanned<bool>>,
    pub(crate) seccomp_action: Option<Spanned<SeccompActionName>>,
    pub(crate) close_inherited_fds: Option<Spanned<bool>>,
    pub(crate) sanitize_environment: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) dir: Option<Spanned<String>>,
    pub(crate) min_free_bytes_accept: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub(crate) file: Option<Spanned<String>>,
    pub(crate) signers: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) pseudonym_keys: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngest {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) client_ca: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) crl: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) max_package_bytes: Option<Spanned<i64>>,
    pub(crate) min_free_bytes: Option<Spanned<i64>>,
    pub(crate) max_queued_packages: Option<Spanned<i64>>,
    pub(crate) handshake_timeout_s: Option<Spanned<i64>>,
    pub(crate) header_timeout_s: Option<Spanned<i64>>,
    pub(crate) idle_timeout_s: Option<Spanned<i64>>,
    pub(crate) body_idle_timeout_s: Option<Spanned<i64>>,
    pub(crate) min_body_bytes_per_s: Option<Spanned<i64>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
    pub(crate) max_connections_per_identity: Option<Spanned<i64>>,
    pub(crate) max_handshakes_per_address: Option<Spanned<i64>>,
    pub(crate) trust_reload_interval_s: Option<Spanned<i64>>,
    pub(crate) refusal_alarm_per_minute: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) role: Option<Spanned<Role>>,
    pub(crate) suite: Option<Spanned<SuiteName>>,
    pub(crate) mtu: Option<Spanned<i64>>,
    pub(crate) peer: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) bind: Option<Spanned<String>>,
    pub(crate) listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) rate_bytes_per_s: Option<Spanned<i64>>,
    pub(crate) socket_buffer_bytes: Option<Spanned<i64>>,
    pub(crate) heartbeat_interval_ms: Option<Spanned<i64>>,
    pub(crate) link_down_after_ms: Option<Spanned<i64>>,
    pub(crate) epoch_length_s: Option<Spanned<i64>>,
    pub(crate) epoch_origin_unix_s: Option<Spanned<i64>>,
    pub(crate) epoch_grace: Option<Spanned<i64>>,
    pub(crate) repair_overhead_percent: Option<Spanned<f64>>,
    pub(crate) loss_budget_percent: Option<Spanned<f64>>,
    pub(crate) loss_budget_burst: Option<Spanned<i64>>,
    pub(crate) udp_gso_segments: Option<Spanned<i64>>,
    pub(crate) udp_gro: Option<Spanned<bool>>,
    pub(crate) block_symbols: Option<Spanned<i64>>,
    pub(crate) redundancy: Option<Spanned<i64>>,
    pub(crate) redundancy_spacing_ms: Option<Spanned<i64>>,
    pub(crate) max_buffer_bytes: Option<Spanned<i64>>,
    pub(crate) receive_spool_bytes: Option<Spanned<i64>>,
    pub(crate) package_idle_timeout_ms: Option<Spanned<i64>>,
    pub(crate) ledger_max_age_s: Option<Spanned<i64>>,
    pub(crate) heal_resend_after_ms: Option<Spanned<i64>>,
    pub(crate) heal_resend_max_bytes_per_s: Option<Spanned<i64>>,
    pub(crate) bundle_max_packages: Option<Spanned<i64>>,
    pub(crate) bundle_max_bytes: Option<Spanned<i64>>,
    pub(crate) bundle_linger_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPaths {
    pub(crate) state_dir: Option<Spanned<String>>,
    pub(crate) keys_dir: Option<Spanned<String>>,
    pub(crate) passphrase_file: Option<Spanned<String>>,
    pub(crate) certs_dir: Option<Spanned<String>>,
    pub(crate) spool_dir: Option<Spanned<String>>,
    pub(crate) outbox_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub(crate) max_bytes: Option<Spanned<i64>>,
    pub(crate) max_age_s: Option<Spanned<i64>>,
}
