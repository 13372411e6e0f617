//! Key and epoch setup both sides share: the link keys from the key
//! store, the epoch schedule and chain, and the sender's protocol settings.
//! Egress needs the same keys and epochs as ingress, so neither side owns
//! them.

use crate::config::Config;
use crate::{now_millis, DaemonError};
use ferry_protocol::epoch::{EpochChain, EpochSchedule};
use ferry_protocol::SenderConfig;

/// Builds the protocol sender configuration from the daemon's.
pub fn sender_config(cfg: &Config) -> SenderConfig {
    let l = &cfg.link;
    let mut s = SenderConfig::new(&l.name, schedule(cfg));
    s.mtu = l.mtu;
    s.block_symbols = l.block_symbols;
    s.repair_overhead_percent = l.repair_overhead_percent;
    s.heartbeat_interval_ms = l.heartbeat_interval_ms;
    s.redundancy = l.redundancy;
    s.redundancy_spacing_ms = l.redundancy_spacing_ms;
    s
}

/// The epoch schedule from the configuration.
pub fn schedule(cfg: &Config) -> EpochSchedule {
    EpochSchedule {
        origin_unix_s: cfg.link.epoch_origin_unix_s,
        length_s: cfg.link.epoch_length_s,
    }
}

/// The link's epoch chain, restored from the key directory's state and
/// moved to the epoch in force now.
pub fn epoch_chain(cfg: &Config, keys: &ferry_keys::LinkKeys) -> EpochChain {
    let link = keys.link_crypto();
    let mut chain = EpochChain::new(
        link,
        keys.epoch.0,
        keys.epoch.1.clone(),
        cfg.link.epoch_grace,
    );
    chain.advance_to(link, schedule(cfg).epoch_at(now_millis()));
    chain.prepare_lookahead(link);
    chain
}

/// Loads the key directory named by the configuration, with the
/// passphrase from its configured source, and checks that it is the link,
/// side and suite the configuration says.
pub fn load_keys(cfg: &Config) -> Result<ferry_keys::LinkKeys, DaemonError> {
    let passphrase = ferry_keys::Passphrase::resolve(cfg.paths.passphrase_file.as_deref())?;
    let keys = ferry_keys::load(&cfg.paths.keys_dir, &passphrase)?;
    let want_side = match cfg.link.role {
        crate::config::Role::Ingress => ferry_keys::Side::Ingress,
        crate::config::Role::Egress => ferry_keys::Side::Egress,
    };
    let want_suite = match cfg.link.suite {
        crate::config::SuiteName::Intl => ferry_keys::Suite::Intl,
        crate::config::SuiteName::Gm => ferry_keys::Suite::Gm,
    };
    let dir = cfg.paths.keys_dir.display();
    if keys.side() != want_side || keys.suite() != want_suite || keys.link() != cfg.link.name {
        return Err(DaemonError::Config(format!(
            "{dir}: the key directory is for link `{}`, side {}, suite {}, but the configuration says link `{}`, role {}, suite {}; point `keys_dir` at the right directory or fix `[link]`",
            keys.link(),
            keys.side().name(),
            keys.suite().name(),
            cfg.link.name,
            want_side.name(),
            want_suite.name()
        )));
    }
    Ok(keys)
}
