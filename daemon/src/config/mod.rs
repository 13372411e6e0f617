//! The daemon's TOML configuration (`ferryd.toml`): paths, the link, the
//! planes and limits of one side. What may cross, and when, is the policy's
//! business (`ferry-policy`, loaded by `inspection::policy_gate`).
//!
//! An operator edits this file by hand on a hardened host, often with no one
//! to ask, so every refusal names the file, line and column, shows the line,
//! and says what to change. Values are checked here, once, so the rest of the
//! daemon can trust them.
//!
//! A file travels one way through the room:
//! - `raw`: the file as written, every key optional and spanned (serde);
//! - `check`: the one place that refuses, fills in defaults and resolves
//!   paths, turning raw into model;
//! - `model`: the checked `Config` and its sections, and the defaults;
//! - `error`: `ConfigError` and the located rendering of a refusal.
//!
//! This file reads the file (`load`) and names what the rest of the daemon
//! may use.

mod check;
mod error;
mod model;
mod raw;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use crate::config::error::ConfigError;
pub use crate::config::model::{
    AdminApiSection, AdminPrincipal, AdminSection, AuditSection, Config, ConnectionLimits,
    DownstreamSection, HardeningSection, IngestSection, LinkSection, MetricsSection, PathsSection,
    PolicySection, RetentionSection, Role, SeccompActionName, SignaturesSection, SuiteName,
};
pub(crate) use crate::config::model::{
    DEFAULT_BUNDLE_LINGER_MS, DEFAULT_BUNDLE_MAX_PACKAGES, DEFAULT_DOWNSTREAM_ALARM_AFTER_S,
    DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS, DEFAULT_DOWNSTREAM_RETRY_MAX_MS,
    DEFAULT_LOSS_BUDGET_PERCENT, DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MTU, DEFAULT_RATE_BYTES_PER_S,
    DEFAULT_REDUNDANCY, DEFAULT_REFUSAL_ALARM_PER_MINUTE, DEFAULT_REPAIR_OVERHEAD_PERCENT,
    DEFAULT_SOCKET_BUFFER_BYTES,
};

/// Largest `ferryd.toml` read (a few KiB in practice; a larger file is a
/// wrong path).
pub(crate) const CONFIG_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and checks the configuration file at `path`. Relative paths inside
/// it resolve against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Only a regular file (a FIFO named by mistake must not hang the start).
    let text = ferry_regular_file::read_regular_string(path, CONFIG_MAX_BYTES).map_err(io)?;
    // Absolute, so that the daemon's later working directory does not matter.
    let absolute = std::path::absolute(path).map_err(io)?;
    let base = absolute.parent().unwrap_or(Path::new("/"));
    crate::config::check::parse_with_base(&text, &path.display().to_string(), base)
}

/// Checks configuration text. `origin` names it in messages; relative paths
/// resolve against `origin`'s directory.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let base = Path::new(origin).parent().unwrap_or(Path::new(""));
    crate::config::check::parse_with_base(text, origin, base)
}
