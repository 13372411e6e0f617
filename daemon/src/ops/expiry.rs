//! Expiry warnings for what this host depends on: link keys (from the key
//! store, computed at load) and mTLS certificates and CRLs in
//! `paths.certs_dir`. They go to the log and to the status `warnings`
//! list, re-checked hourly, so an operator sees them 30 days ahead.

use crate::admin::protocol::{self, SharedStatus};
use crate::config::Config;
use std::time::{Duration, Instant};

/// How often certificates are re-read.
const CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// A window wide enough to list every certificate (a century).
const EVERYTHING_DAYS: u32 = 36_500;
/// Warning window, in days.
pub const WARNING_DAYS: u32 = 30;

/// Re-checks expiry now and then.
pub struct ExpiryWatch {
    key_warnings: Vec<String>,
    certs_dir: Option<std::path::PathBuf>,
    /// The ingest API's own certificate (it may live outside `certs_dir`).
    ingest_cert: Option<std::path::PathBuf>,
    last: Option<Instant>,
}

impl ExpiryWatch {
    /// Watches the configuration's certificate directory, with the key
    /// store's warnings computed at load.
    pub fn new(cfg: &Config, keys: &ferry_keys::LinkKeys) -> Self {
        Self {
            key_warnings: keys.expiry_warnings().to_vec(),
            certs_dir: cfg.paths.certs_dir.clone(),
            ingest_cert: cfg.ingest.as_ref().map(|i| i.cert.clone()),
            last: None,
        }
    }

    /// Publishes the warnings if the last check is older than an hour.
    pub fn poll(&mut self, status: &SharedStatus) {
        if self.last.is_some_and(|t| t.elapsed() < CHECK_INTERVAL) {
            return;
        }
        self.last = Some(Instant::now());
        let mut warnings = self.key_warnings.clone();
        if let Some(dir) = &self.certs_dir {
            match ferry_certs::expiring_in_dir(dir, WARNING_DAYS, crate::now_utc()) {
                Ok(notices) => warnings.extend(notices.iter().map(|n| n.to_string())),
                Err(e) => warnings.push(format!("certificate check failed: {e}")),
            }
        }
        // Every end date, for the metrics' expiry gauges (the warnings
        // above only list those within the window).
        let now = crate::now_utc();
        let mut not_after = std::collections::BTreeMap::new();
        let mut found = Vec::new();
        if let Some(dir) = &self.certs_dir {
            found.extend(
                ferry_certs::expiring_in_dir(dir, EVERYTHING_DAYS, now).unwrap_or_default(),
            );
        }
        if let Some(cert) = &self.ingest_cert {
            match ferry_certs::check_expiry_file(cert, EVERYTHING_DAYS, now) {
                Ok(n) => found.extend(n),
                Err(e) => warnings.push(format!("certificate check failed: {e}")),
            }
        }
        for n in found {
            let key = match &n.serial {
                Some(serial) => format!("{} ({serial})", n.path.display()),
                None => n.path.display().to_string(),
            };
            not_after.insert(key, n.ends.unix_timestamp());
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        protocol::update(status, |st| {
            st.warnings = warnings;
            st.cert_not_after = not_after;
        });
    }
}
