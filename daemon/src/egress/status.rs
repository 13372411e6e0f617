//! What the egress side shows an operator: its status snapshot, the gap
//! list and its alarms. A leaf the receive thread and the writer both use.

use crate::admin::protocol::{self, SharedStatus};
use crate::config::Config;
use crate::now_millis;
use crate::state::gaps::{self, GapBook};
use ferry_protocol::receiver::ReceiverStats;

/// Gap ranges shown in the status (all of them stay in the gap book).
pub(crate) const MAX_GAPS_SHOWN: usize = 32;

/// Prefix of the alarm replayed heartbeats raise.
pub(crate) const REPLAY_ALARM_PREFIX: &str = "link replay:";

/// Prefix of the alarm a package refused on this side raises.
pub(crate) const REFUSED_ALARM_PREFIX: &str = "egress refused:";

/// Shows the gap book in the status: the oldest ranges, the count of open
/// numbers, and the alarm while any is open.
pub(crate) fn show_gaps(status: &SharedStatus, book: &GapBook) {
    let shown: Vec<(u64, u64)> = book
        .ranges()
        .take(MAX_GAPS_SHOWN)
        .map(|g| (g.first, g.last))
        .collect();
    let open = book.seqs_open();
    let alarm = book.alarm();
    protocol::update(status, |s| {
        s.gaps = shown;
        s.gap_seqs_open = open;
        s.alarms.retain(|a| !a.starts_with(gaps::GAP_ALARM_PREFIX));
        if let Some(a) = alarm {
            s.alarms.push(a);
        }
    });
}

pub(crate) fn alarm(status: &SharedStatus, msg: &str) {
    tracing::error!("{msg}");
    protocol::update(status, |s| {
        if !s.alarms.iter().any(|a| a == msg) {
            s.alarms.push(msg.to_string());
        }
    });
}

pub(crate) fn publish(status: &SharedStatus, cfg: &Config, stats: ReceiverStats, epoch: u32) {
    protocol::update(status, |s| {
        s.updated_unix_ms = now_millis().0;
        s.epoch = epoch;
        s.receiver = Some(stats_json(&stats));
    });
    let snap = protocol::snapshot(status);
    if let Err(e) = protocol::write_status_file(&cfg.paths.state_dir, &snap) {
        tracing::warn!(error = %e, "could not write status.json");
    }
}

pub(crate) fn stats_json(s: &ReceiverStats) -> serde_json::Value {
    serde_json::json!({
        "datagrams": s.datagrams,
        "authenticated": s.authenticated,
        "malformed": s.malformed,
        "other_link": s.other_link,
        "stale_epoch": s.stale_epoch,
        "forged": s.forged,
        "duplicate": s.duplicate,
        "too_old": s.too_old,
        "late": s.late,
        "inconsistent": s.inconsistent,
        "blocks_decoded": s.blocks_decoded,
        "blocks_repaired": s.blocks_repaired,
        "packages_complete": s.packages_complete,
        "packages_failed": s.packages_failed,
        "heartbeats": s.heartbeats,
        "heartbeats_replayed": s.heartbeats_replayed,
        "buffered_bytes": s.buffered_bytes,
    })
}
