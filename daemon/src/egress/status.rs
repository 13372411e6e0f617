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

/// Prefix of the alarm a full or failing receive spool raises.
pub(crate) const SPOOL_ALARM_PREFIX: &str = "receive spool:";

/// At most one `link.overrun` audit record per this many ms (a flood
/// must not flood the audit log); each carries the count since the last.
pub(crate) const OVERRUN_REPORT_INTERVAL_MS: u64 = 60_000;

/// Prefix of the warning datagrams the kernel dropped at the socket raise.
pub(crate) const SOCKET_DROP_WARNING_PREFIX: &str = "receive socket:";

/// What has been audited of the spool's drops and the kernel's.
#[derive(Debug, Default)]
pub(crate) struct OverrunReport {
    reported: u64,
    last: Option<u64>,
    reason: Option<String>,
    kernel_reported: u64,
    kernel_last: Option<u64>,
    /// The kernel's count as last read (it only grows).
    kernel_seen: u64,
}

impl OverrunReport {
    /// The next reports are due at once.
    pub(crate) fn flush(&mut self) {
        self.last = None;
        self.kernel_last = None;
    }
}

/// Bytes seen before the sustained rate is first estimated (and per
/// later estimate), so a few small packages do not make a figure.
const CAPACITY_SAMPLE_BYTES: u64 = 32 << 20;

/// Measures the datagram bytes per second the processing thread handles
/// while busy (time waiting for datagrams is not counted), so the figure
/// is what this host sustains, whatever the sender sends.
#[derive(Debug, Default)]
pub(crate) struct Capacity {
    bytes: u64,
    busy: std::time::Duration,
    estimate: Option<u64>,
}

impl Capacity {
    pub(crate) fn record(&mut self, bytes: u64, busy: std::time::Duration) {
        self.bytes += bytes;
        self.busy += busy;
        if self.bytes >= CAPACITY_SAMPLE_BYTES && !self.busy.is_zero() {
            let rate = (self.bytes as f64 / self.busy.as_secs_f64()) as u64;
            // Half the old figure, half the new: steady, and recent.
            self.estimate = Some(self.estimate.map_or(rate, |e| e / 2 + rate / 2));
            self.bytes = 0;
            self.busy = std::time::Duration::ZERO;
        }
    }

    pub(crate) fn estimate(&self) -> Option<u64> {
        self.estimate
    }
}

/// The ingress rate a sustained rate suggests: 80 %, in whole MB/s.
pub(crate) fn suggested_rate(sustained: u64) -> u64 {
    sustained / 5 * 4 / 1_000_000 * 1_000_000
}

/// Shows the receive spool and the sustained rate; a spool that dropped
/// datagrams (or whose file failed) raises the alarm, which stays until
/// the daemon restarts (the drops are counted in the status). Datagrams
/// the kernel dropped at the socket (`kernel_dropped`, since start) raise
/// a warning: the FEC may have repaired them, and a package it could not
/// repair raises its own alarm.
///
/// What the receive sockets report beside the spool.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SocketFigures {
    /// Datagrams the kernel dropped at the sockets (`None`: unreadable).
    pub(crate) kernel_dropped: Option<u64>,
    /// Whether the sockets receive with UDP GRO.
    pub(crate) gro: bool,
    /// Messages that carried more than one datagram.
    pub(crate) gro_messages: u64,
}

/// Drops are audited (`link.overrun`) at most once per
/// [`OVERRUN_REPORT_INTERVAL_MS`] for each place, with the count since the
/// last record.
#[allow(clippy::too_many_arguments)]
pub(crate) fn show_spool(
    status: &SharedStatus,
    spool: &crate::egress::spool::Spool,
    socket: SocketFigures,
    limit: u64,
    capacity: &Capacity,
    overrun: &mut OverrunReport,
    audit: &crate::ops::audit_trail::AuditTrail,
) {
    use crate::ops::audit_trail::{Actor, AuditRecord, EventKind, Outcome};
    let (st, error) = spool.stats();
    if let Some(e) = &error {
        let msg = format!("{SPOOL_ALARM_PREFIX} {e}");
        tracing::error!("{msg}");
        protocol::update(status, |s| {
            s.alarms.retain(|a| !a.starts_with(SPOOL_ALARM_PREFIX));
            s.alarms.push(msg);
        });
        overrun.reason = Some(e.clone());
    }
    let now = now_millis().0;
    let new = st.dropped_datagrams - overrun.reported;
    let due = overrun
        .last
        .is_none_or(|l| now.saturating_sub(l) >= OVERRUN_REPORT_INTERVAL_MS);
    if new > 0 && due {
        overrun.last = Some(now);
        overrun.reported = st.dropped_datagrams;
        let mut r = AuditRecord::new(EventKind::LinkOverrun, Actor::system(), Outcome::Failure)
            .reason(
                overrun
                    .reason
                    .clone()
                    .unwrap_or_else(|| "receive spool full: datagrams dropped".into()),
            )
            .detail("count", new.to_string())
            .detail("total", st.dropped_datagrams.to_string())
            .detail("spool_limit_bytes", limit.to_string());
        if let Some(rate) = capacity.estimate().map(suggested_rate) {
            r = r.detail("suggested_rate_bytes_per_s", rate.to_string());
        }
        audit.note(r);
    }
    overrun.kernel_seen = overrun.kernel_seen.max(socket.kernel_dropped.unwrap_or(0));
    let kernel = overrun.kernel_seen;
    let kernel_new = kernel.saturating_sub(overrun.kernel_reported);
    let kernel_due = overrun
        .kernel_last
        .is_none_or(|l| now.saturating_sub(l) >= OVERRUN_REPORT_INTERVAL_MS);
    let kernel_warning = (kernel > 0).then(|| {
        format!(
            "{SOCKET_DROP_WARNING_PREFIX} the kernel dropped {kernel} datagrams before ferryd read them (this host was too busy for the socket buffer): raise socket_buffer_bytes, or lower the ingress rate_bytes_per_s; the FEC repairs some, and a package it could not repair fails (audited, re-sent by the self-healing re-send)"
        )
    });
    if kernel_new > 0 && kernel_due {
        overrun.kernel_last = Some(now);
        overrun.kernel_reported = kernel;
        if let Some(w) = &kernel_warning {
            tracing::warn!("{w}");
        }
        audit.note(
            AuditRecord::new(EventKind::LinkOverrun, Actor::system(), Outcome::Failure)
                .reason("the kernel dropped datagrams at the receive socket".to_string())
                .detail("place", "socket")
                .detail("count", kernel_new.to_string())
                .detail("total", kernel.to_string()),
        );
    }
    let sustained = capacity.estimate();
    protocol::update(status, |s| {
        s.warnings
            .retain(|w| !w.starts_with(SOCKET_DROP_WARNING_PREFIX));
        if let Some(w) = kernel_warning {
            s.warnings.push(w);
        }
        s.receive = Some(protocol::ReceiveStatus {
            backlog_bytes: st.backlog_bytes,
            peak_backlog_bytes: st.peak_backlog_bytes,
            spilled_bytes: st.spilled_bytes,
            dropped_datagrams: st.dropped_datagrams,
            kernel_dropped_datagrams: kernel,
            receive_waits: st.receive_waits,
            udp_gro: socket.gro,
            udp_gro_messages: socket.gro_messages,
            spool_limit_bytes: limit,
            sustained_bytes_per_s: sustained,
            suggested_rate_bytes_per_s: sustained.map(suggested_rate),
        });
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
        "blocks_stored": s.blocks_stored,
        "store_errors": s.store_errors,
    })
}
