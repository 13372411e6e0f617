//! The receive thread's work: datagrams into the protocol receiver, its
//! events handed to the writer, and the link's health watched (heartbeats,
//! replays). It does nothing slow, so a slow disk never makes it miss
//! datagrams.

use crate::admin::protocol::{self, SharedStatus};
use crate::egress::status::{alarm, show_gaps, REPLAY_ALARM_PREFIX};
use crate::egress::writer::Write;
use crate::now_millis;
use crate::ops::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome};
use crate::state::gaps::GapBook;
use crate::state::store::StateStore;
use ferry_protocol::{Event, Receiver};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

/// Datagrams per recvmmsg batch.
pub(crate) const BATCH: usize = 64;

/// At most one audit record and one warning per this many ms about
/// replayed heartbeats (a replay flood must not flood the audit log); each
/// carries the count since the previous one.
pub(crate) const REPLAY_REPORT_INTERVAL_MS: u64 = 60_000;

/// What the receive thread keeps about the link beyond the protocol: the
/// durable gap book and the replayed-heartbeat reporting.
pub(crate) struct LinkWatch {
    pub(crate) gaps: Arc<Mutex<GapBook>>,
    pub(crate) store: Arc<StateStore>,
    pub(crate) replays_unreported: u64,
    pub(crate) last_replay_report: Option<u64>,
}

impl LinkWatch {
    /// Records a reported gap durably (kept until delivered or
    /// acknowledged), audits it, and raises the gap alarm.
    fn gap(&mut self, status: &SharedStatus, audit: &AuditTrail, first: u64, last: u64) {
        let Ok(mut book) = self.gaps.lock() else {
            return;
        };
        let new = book.open(first, last, now_millis().0);
        if new == 0 {
            // Reported again (after a restart): already in the book.
            return;
        }
        if let Err(e) = book.save(&self.store) {
            alarm(status, &format!("state store: {e}"));
        }
        protocol::update(status, |s| s.gap_seqs_total += new);
        show_gaps(status, &book);
        tracing::warn!(
            first,
            last,
            "sequence numbers missing: resend them from the ingress side (`ferryctl resend --seq {first}..{last}`)"
        );
        audit.note(
            AuditRecord::new(EventKind::LinkGap, Actor::system(), Outcome::Failure)
                .reason(format!(
                    "sequence numbers {first}..{last} missing; resend them from the ingress side"
                ))
                .detail("action", "opened")
                .detail("first", first.to_string())
                .detail("last", last.to_string()),
        );
    }

    /// A replayed heartbeat: counted at once, alarmed, and logged and
    /// audited at most once per [`REPLAY_REPORT_INTERVAL_MS`] with the
    /// count since the last report.
    fn replay(
        &mut self,
        status: &SharedStatus,
        audit: &AuditTrail,
        sender_time_ms: u64,
        newest_seen_ms: u64,
    ) {
        self.replays_unreported += 1;
        let now = now_millis().0;
        let total = {
            let mut t = 0;
            protocol::update(status, |s| {
                s.heartbeats_replayed += 1;
                t = s.heartbeats_replayed;
            });
            t
        };
        let due = self
            .last_replay_report
            .is_none_or(|l| now.saturating_sub(l) >= REPLAY_REPORT_INTERVAL_MS);
        if !due {
            return;
        }
        self.last_replay_report = Some(now);
        let n = std::mem::take(&mut self.replays_unreported);
        let why = format!(
            "{n} authenticated heartbeat(s) older than the newest seen (sender time {sender_time_ms} ms ≤ {newest_seen_ms} ms) were refused as replays, not taken as life"
        );
        tracing::warn!(
            "{why}: someone replays captured link traffic, or the ingress clock was stepped back"
        );
        let msg = format!(
            "{REPLAY_ALARM_PREFIX} {total} replayed heartbeat(s) refused since start: someone on the link replays captured datagrams, or the ingress host's clock was stepped back (check it); the link state shown comes from fresh heartbeats only"
        );
        protocol::update(status, |s| {
            s.alarms.retain(|a| !a.starts_with(REPLAY_ALARM_PREFIX));
            s.alarms.push(msg);
        });
        audit.note(
            AuditRecord::new(EventKind::LinkReplay, Actor::system(), Outcome::Refused)
                .reason(why)
                .detail("count", n.to_string())
                .detail("sender_time_ms", sender_time_ms.to_string())
                .detail("newest_seen_ms", newest_seen_ms.to_string()),
        );
    }
}

/// Moves protocol events to the writer and the status. Returns false when
/// the writer is gone.
pub(crate) fn drain(
    receiver: &mut Receiver,
    tx: &SyncSender<Write>,
    status: &SharedStatus,
    audit: &AuditTrail,
    link: &mut LinkWatch,
) -> bool {
    while let Some(ev) = receiver.poll_event() {
        let msg = match ev {
            Event::PackageStarted {
                seq,
                attempt,
                manifest,
            } => {
                tracing::debug!(seq, attempt, package = %manifest.meta.id, "package started");
                Write::Start {
                    seq,
                    attempt,
                    bundle_size: manifest.bundle_from_seq.map(|_| manifest.meta.size),
                }
            }
            Event::PackageData { seq, data, .. } => Write::Data { seq, data },
            Event::PackageComplete { seq, manifest } => Write::Complete {
                seq,
                manifest,
                replay: receiver.replay_window().to_bytes(),
            },
            Event::PackageFailed {
                seq,
                attempt,
                id,
                reason,
            } => {
                let id = id.map(|i| i.to_hex()).unwrap_or_else(|| "unknown".into());
                tracing::warn!(seq, attempt, package = %id, reason = %reason, "package send failed");
                protocol::update(status, |s| s.failed += 1);
                audit.note(
                    AuditRecord::new(EventKind::PackageFailed, Actor::system(), Outcome::Failure)
                        .package(id.clone())
                        .reason(reason.to_string())
                        .detail("seq", seq.to_string())
                        .detail("send", attempt.to_string()),
                );
                Write::Failed { seq }
            }
            Event::Gap { first, last } => {
                link.gap(status, audit, first, last);
                continue;
            }
            Event::LinkUp => {
                tracing::info!("link up");
                protocol::update(status, |s| s.link_up = true);
                continue;
            }
            Event::LinkDown { silent_ms } => {
                tracing::warn!(silent_ms, "link down: no fresh heartbeat received");
                protocol::update(status, |s| s.link_up = false);
                continue;
            }
            Event::Heartbeat(hb) => {
                protocol::update(status, |s| {
                    s.sender_next_seq = Some(hb.next_seq);
                    s.last_heartbeat_unix_ms = Some(now_millis().0);
                });
                Write::Heartbeat {
                    sender_time_ms: hb.sender_time_ms,
                }
            }
            Event::HeartbeatReplayed {
                sender_time_ms,
                newest_seen_ms,
            } => {
                link.replay(status, audit, sender_time_ms, newest_seen_ms);
                continue;
            }
            Event::RetiredFormat { suite_byte, what } => {
                let msg = format!(
                    "datagrams of this link arrive with suite byte {suite_byte}, the retired {what}; they are dropped (counted as other_link)"
                );
                tracing::error!(suite_byte, "{msg}");
                audit.note(
                    AuditRecord::new(EventKind::LinkFormat, Actor::system(), Outcome::Refused)
                        .reason(msg.clone())
                        .detail("suite_byte", suite_byte.to_string()),
                );
                protocol::update(status, |s| s.alarms.push(msg));
                continue;
            }
        };
        if tx.send(msg).is_err() {
            return false;
        }
    }
    true
}
