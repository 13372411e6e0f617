//! Key and epoch setup both sides share: the link keys from the key
//! store, the epoch schedule and chain, and the sender's protocol settings.
//! Egress needs the same keys and epochs as ingress, so neither side owns
//! them.

use crate::admin::protocol::{BudgetRow, BudgetStatus};
use crate::config::Config;
use crate::config::SuiteName;
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
    s.loss_budget = loss_budget(cfg);
    s.heartbeat_interval_ms = l.heartbeat_interval_ms;
    s.redundancy = l.redundancy;
    s.redundancy_spacing_ms = l.redundancy_spacing_ms;
    s
}

/// The link's loss budget (None when `loss_budget_percent = 0`).
pub fn loss_budget(cfg: &Config) -> Option<ferry_protocol::LossBudget> {
    let l = &cfg.link;
    (l.loss_budget_percent > 0.0).then_some(ferry_protocol::LossBudget {
        loss: l.loss_budget_percent / 100.0,
        burst: l.loss_budget_burst,
    })
}

/// Sizes the status shows the budget's cost for.
const BUDGET_STATUS_SIZES: [u64; 4] = [300, 64 << 10, 1 << 20, 1 << 30];

/// The budget in force and its cost per package size, for `ferryctl
/// status` (None without a budget).
pub fn budget_status(cfg: &Config) -> Option<BudgetStatus> {
    use ferry_protocol::budget::{Planner, TARGET_PACKAGE_LOSS};
    let budget = loss_budget(cfg)?;
    let l = &cfg.link;
    let symbol = ferry_protocol::wire::symbol_size(l.mtu);
    let datagram = ferry_protocol::wire::max_datagram_len(l.mtu) as u64;
    // Bytes a sealed chunk adds: the AES-GCM tag, or SM4-CTR's HMAC-SM3.
    let chunk_tag = match l.suite {
        SuiteName::Intl => 16,
        SuiteName::Gm => 32,
    };
    let chunk = ferry_protocol::sender::DEFAULT_CHUNK_SIZE;
    let mut with = Planner::new(
        Some(budget),
        l.repair_overhead_percent,
        symbol,
        l.block_symbols,
    );
    let mut without = Planner::new(None, l.repair_overhead_percent, symbol, l.block_symbols);
    let sizes = BUDGET_STATUS_SIZES
        .iter()
        .filter_map(|&bytes| {
            let sealed = ferry_protocol::manifest::sealed_len(bytes, chunk, chunk_tag);
            let plan = with.plan(sealed).ok()?;
            let fixed = without.plan(sealed).ok()?;
            Some(BudgetRow {
                bytes,
                datagrams: plan.datagrams(),
                manifest_copies: plan.manifest_copies,
                wire_bytes: plan.datagrams() * datagram,
                loss_bound: plan.loss_bound,
                datagrams_without_budget: fixed.datagrams(),
            })
        })
        .collect();
    Some(BudgetStatus {
        loss_percent: l.loss_budget_percent,
        burst: l.loss_budget_burst,
        target_package_loss: TARGET_PACKAGE_LOSS,
        sizes,
    })
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
