//! `GET /metrics` in the Prometheus text exposition format (0.0.4), on a
//! listener of its own so a scraper never shares a port, a thread or a
//! certificate with the ingest API.
//!
//! Everything is rendered from the status snapshot the daemon already
//! publishes every second: the metrics cannot disagree with `ferryctl
//! status`, and serving them takes no lock the send or receive loop waits
//! on for longer than a clone. The server is deliberately small: one
//! request per connection, a bounded request head, short timeouts, and one
//! connection at a time (a scraper every few seconds is the only client).

use crate::admin::protocol::{self, SharedStatus, Status};
use crate::DaemonError;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest request head read (request line and headers).
const MAX_HEAD_BYTES: u64 = 8192;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the endpoint; binding happens before this returns, so a bad or
/// busy address stops `ferryd` at start.
pub fn spawn(
    listen: SocketAddr,
    status: SharedStatus,
    shutdown: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let where_ = || Path::new("[metrics] listen").to_path_buf();
    let listener = TcpListener::bind(listen).map_err(DaemonError::io(&where_()))?;
    listener
        .set_nonblocking(true)
        .map_err(DaemonError::io(&where_()))?;
    tracing::info!(%listen, "metrics endpoint listening (GET /metrics)");
    std::thread::Builder::new()
        .name("ferry-metrics".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        if let Err(e) = answer(stream, &status) {
                            tracing::debug!(%peer, error = %e, "metrics request failed");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .map_err(DaemonError::io(&where_()))
}

fn answer(stream: TcpStream, status: &SharedStatus) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new((&stream).take(MAX_HEAD_BYTES));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the rest of the head so the client is not reset mid-send.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&protocol::snapshot(status), crate::now_millis().0),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only /metrics is served here\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "use GET /metrics\n".to_owned(),
        ),
    };
    let mut w = &stream;
    write!(
        w,
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(body.as_bytes())?;
    w.flush()
}

/// A label value escaped as the exposition format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out {
    text: String,
    side: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` are added after `side`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.text, "{name}{{side=\"{}\"", label(&self.side));
        for (k, v) in labels {
            let _ = write!(self.text, ",{k}=\"{}\"", label(v));
        }
        let _ = writeln!(self.text, "}} {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Reads a counter from the protocol's JSON counters (absent = 0).
fn counter(v: &Option<serde_json::Value>, key: &str) -> u64 {
    v.as_ref()
        .and_then(|v| v.get(key))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// The whole exposition for one snapshot, `now_ms` for the ages.
pub fn render(s: &Status, now_ms: u64) -> String {
    let mut o = Out {
        text: String::new(),
        side: s.role.clone(),
    };
    o.family(
        "ferry_packages_total",
        "counter",
        "Packages by channel and outcome (ingress: accepted, rejected, sent; egress: delivered, rejected).",
    );
    for (ch, c) in &s.channels {
        let side_outcomes: &[(&str, u64)] = if s.role == "egress" {
            &[("delivered", c.delivered), ("rejected", c.rejected)]
        } else {
            &[
                ("accepted", c.accepted),
                ("rejected", c.rejected),
                ("sent", c.sent),
            ]
        };
        for (outcome, n) in side_outcomes {
            o.sample(
                "ferry_packages_total",
                &[("channel", ch), ("outcome", outcome)],
                n,
            );
        }
    }
    o.family(
        "ferry_bytes_total",
        "counter",
        "Package bytes by channel and outcome.",
    );
    for (ch, c) in &s.channels {
        let side_outcomes: &[(&str, u64)] = if s.role == "egress" {
            &[("delivered", c.delivered_bytes)]
        } else {
            &[("accepted", c.accepted_bytes), ("sent", c.sent_bytes)]
        };
        for (outcome, n) in side_outcomes {
            o.sample(
                "ferry_bytes_total",
                &[("channel", ch), ("outcome", outcome)],
                n,
            );
        }
    }
    o.single(
        "ferry_up",
        "gauge",
        "1 while the daemon publishes its status.",
        1,
    );
    o.single("ferry_key_epoch", "gauge", "Current key epoch.", s.epoch);
    o.single(
        "ferry_alarms",
        "gauge",
        "Conditions that need an operator (see ferryctl status).",
        s.alarms.len(),
    );
    o.single(
        "ferry_warnings",
        "gauge",
        "Things to act on soon (keys or certificates near expiry).",
        s.warnings.len(),
    );
    if let Some(m) = &s.malware {
        o.family(
            "ferry_malware_scans_total",
            "counter",
            "Packages by what their malware scan came to (clean, found, unavailable: never passed, of which held; unscannable: too large).",
        );
        for (outcome, n) in [
            ("clean", m.scanned.saturating_sub(m.detected)),
            ("found", m.detected),
            ("unavailable", m.unavailable),
            ("held", m.held),
            ("unscannable", m.unscannable),
        ] {
            o.sample("ferry_malware_scans_total", &[("outcome", outcome)], n);
        }
        o.family(
            "ferry_malware_engine_up",
            "gauge",
            "1 when the malware engine answered its last probe (once a minute).",
        );
        for e in &m.engines {
            o.sample(
                "ferry_malware_engine_up",
                &[("socket", &e.socket)],
                u8::from(e.reachable),
            );
        }
        o.family(
            "ferry_malware_database_age_days",
            "gauge",
            "Age of the engine's signature database in days (absent when unknown: custom signatures only).",
        );
        for e in &m.engines {
            if let Some(age) = e.database_age_days {
                o.sample(
                    "ferry_malware_database_age_days",
                    &[("socket", &e.socket)],
                    age,
                );
            }
        }
    }
    if let Some(y) = &s.yara {
        o.family(
            "ferry_yara_scans_total",
            "counter",
            "Packages by what their YARA scan came to (clean, matched: refused or held; timeout and unscannable: refused, never passed).",
        );
        for (outcome, n) in [
            ("clean", y.scanned.saturating_sub(y.matched)),
            ("matched", y.matched),
            ("timeout", y.timeout),
            ("unscannable", y.unscannable),
        ] {
            o.sample("ferry_yara_scans_total", &[("outcome", outcome)], n);
        }
    }
    let failed_steps = s
        .hardening
        .as_ref()
        .and_then(|h| h.get("failures"))
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    let off_steps = s
        .hardening
        .as_ref()
        .and_then(|h| h.get("disabled"))
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    o.single(
        "ferry_hardening_steps_off",
        "gauge",
        "Hardening steps switched off by configuration or failed (0 expected).",
        failed_steps + off_steps,
    );
    o.family(
        "ferry_certificate_not_after_seconds",
        "gauge",
        "notAfter (CRLs: nextUpdate) of the certificates this host depends on, Unix time.",
    );
    for (file, t) in &s.cert_not_after {
        o.sample("ferry_certificate_not_after_seconds", &[("file", file)], t);
    }
    if s.role == "egress" {
        o.single(
            "ferry_link_up",
            "gauge",
            "1 while fresh heartbeats arrive within link_down_after_ms.",
            u8::from(s.link_up),
        );
        if let Some(t) = s.last_heartbeat_unix_ms {
            o.single(
                "ferry_link_heartbeat_age_seconds",
                "gauge",
                "Seconds since the last fresh heartbeat.",
                format!("{:.3}", now_ms.saturating_sub(t) as f64 / 1000.0),
            );
        }
        o.single(
            "ferry_gap_sequence_numbers_total",
            "counter",
            "Sequence numbers reported missing (resend them from the ingress side).",
            s.gap_seqs_total,
        );
        o.single(
            "ferry_gap_sequence_numbers_open",
            "gauge",
            "Sequence numbers missing and not yet delivered nor acknowledged (see ferryctl status).",
            s.gap_seqs_open,
        );
        o.single(
            "ferry_heartbeats_replayed_total",
            "counter",
            "Authenticated heartbeats refused as not fresh (replayed capture, or the ingress clock stepped back).",
            s.heartbeats_replayed,
        );
        if let Some(r) = &s.receive {
            o.single(
                "ferry_receive_spool_backlog_bytes",
                "gauge",
                "Datagram bytes received and waiting to be processed (memory and disk).",
                r.backlog_bytes,
            );
            o.single(
                "ferry_receive_spool_spilled_bytes_total",
                "counter",
                "Datagram bytes that waited on disk because the processing fell behind.",
                r.spilled_bytes,
            );
            o.single(
                "ferry_receive_spool_dropped_datagrams_total",
                "counter",
                "Datagrams dropped because the receive spool was full (lower the ingress rate).",
                r.dropped_datagrams,
            );
            o.single(
                "ferry_receive_socket_dropped_datagrams_total",
                "counter",
                "Datagrams the kernel dropped at the receive socket before ferryd read them (a host too busy; raise socket_buffer_bytes or lower the ingress rate).",
                r.kernel_dropped_datagrams,
            );
            o.single(
                "ferry_receive_spool_waits_total",
                "counter",
                "Times the receive thread found the spool's memory full and waited for the disk (the socket buffer held what came meanwhile).",
                r.receive_waits,
            );
            o.single(
                "ferry_udp_gro",
                "gauge",
                "Egress: 1 when the link sockets receive with UDP GRO (a super-packet as one message), 0 when off or refused.",
                u64::from(r.udp_gro),
            );
            o.single(
                "ferry_udp_gro_messages_total",
                "counter",
                "Egress: UDP messages that carried more than one datagram (GRO).",
                r.udp_gro_messages,
            );
            if let Some(v) = r.sustained_bytes_per_s {
                o.single(
                    "ferry_receive_sustained_bytes_per_second",
                    "gauge",
                    "Datagram bytes per second this side processes while busy.",
                    v,
                );
            }
            if let Some(v) = r.suggested_rate_bytes_per_s {
                o.single(
                    "ferry_receive_suggested_ingress_rate_bytes_per_second",
                    "gauge",
                    "The ingress rate_bytes_per_s this side suggests (80 % of the sustained rate).",
                    v,
                );
            }
        }
        o.single(
            "ferry_delivery_failures_total",
            "counter",
            "Package sends that could not be completed or delivered.",
            s.failed,
        );
        o.single(
            "ferry_duplicates_suppressed_total",
            "counter",
            "Packages received again and not delivered a second time.",
            s.duplicates_suppressed,
        );
        o.single(
            "ferry_bundles_received_total",
            "counter",
            "Bundles received whole and taken apart into their packages (each package counted as delivered, suppressed or refused on its own).",
            s.bundles_received,
        );
        o.single(
            "ferry_bundles_refused_total",
            "counter",
            "Bundles refused whole: a member table that does not parse or does not match the signed sequence range (audited, alarmed, its numbers opened as gaps).",
            s.bundles_refused,
        );
        o.single(
            "ferry_bundles_staged_on_disk_total",
            "counter",
            "Bundles gathered in a staging file instead of memory, because the bundles in memory already took their bound (an eighth of max_buffer_bytes).",
            s.bundles_staged_on_disk,
        );
        o.single(
            "ferry_outbox_direct_bytes_total",
            "counter",
            "Bytes of staged packages written with O_DIRECT (past a package's first 8 MiB); stays 0 where the outbox filesystem refuses O_DIRECT.",
            s.outbox_direct_bytes,
        );
        o.single(
            "ferry_signatures_applied_total",
            "counter",
            "ClamAV signature files from the [signatures] channel verified and put into clamd's database.",
            s.signatures_applied,
        );
        o.single(
            "ferry_signatures_refused_total",
            "counter",
            "ClamAV signature files from the [signatures] channel refused (nothing of them used).",
            s.signatures_refused,
        );
        o.family(
            "ferry_datagrams_total",
            "counter",
            "Datagrams received, by what became of them.",
        );
        for key in [
            "authenticated",
            "malformed",
            "other_link",
            "stale_epoch",
            "forged",
            "duplicate",
            "too_old",
            "late",
            "inconsistent",
        ] {
            o.sample(
                "ferry_datagrams_total",
                &[("result", key)],
                counter(&s.receiver, key),
            );
        }
        o.single(
            "ferry_forged_datagrams_total",
            "counter",
            "Datagrams that failed authentication (someone on the link, or a key mismatch).",
            counter(&s.receiver, "forged"),
        );
        o.single(
            "ferry_fec_blocks_repaired_total",
            "counter",
            "FEC blocks that needed repair symbols to decode.",
            counter(&s.receiver, "blocks_repaired"),
        );
        o.single(
            "ferry_receive_buffered_bytes",
            "gauge",
            "Bytes held in reassembly.",
            counter(&s.receiver, "buffered_bytes"),
        );
        o.family(
            "ferry_downstream_waiting",
            "gauge",
            "Packages verified and waiting for their downstream HTTPS endpoint.",
        );
        for (url, d) in &s.downstream {
            o.sample(
                "ferry_downstream_waiting",
                &[("destination", url)],
                d.waiting,
            );
        }
        o.family(
            "ferry_downstream_parked",
            "gauge",
            "Packages a downstream endpoint refused outright, waiting for `ferryctl forward retry`.",
        );
        for (url, d) in &s.downstream {
            o.sample("ferry_downstream_parked", &[("destination", url)], d.parked);
        }
        o.family(
            "ferry_downstream_consecutive_failures",
            "gauge",
            "Failed attempts in a row at a downstream endpoint (0 when it works).",
        );
        for (url, d) in &s.downstream {
            o.sample(
                "ferry_downstream_consecutive_failures",
                &[("destination", url)],
                u64::from(d.consecutive_failures),
            );
        }
    } else {
        o.family(
            "ferry_channel_stopped",
            "gauge",
            "1 for each channel the system administrator stopped.",
        );
        for ch in s.stopped_channels.keys() {
            o.sample("ferry_channel_stopped", &[("channel", ch)], 1);
        }
        o.single(
            "ferry_awaiting_approval",
            "gauge",
            "Packages held for approval.",
            s.awaiting_approval,
        );
        o.single(
            "ferry_awaiting_window",
            "gauge",
            "Accepted packages held until their channel's time window opens.",
            s.awaiting_window,
        );
        o.single(
            "ferry_queue_depth",
            "gauge",
            "Packages waiting to be sent.",
            s.queued,
        );
        o.single(
            "ferry_retained_packages",
            "gauge",
            "Sent copies kept for resends.",
            s.retained,
        );
        o.single(
            "ferry_retained_bytes",
            "gauge",
            "Bytes of the sent copies kept.",
            s.retained_bytes,
        );
        o.single(
            "ferry_bundles_sent_total",
            "counter",
            "Bundles whose sends completed (two or more small packages under one signed manifest).",
            s.bundles_sent,
        );
        o.single(
            "ferry_bundled_packages_total",
            "counter",
            "Packages that crossed in a bundle (also counted one by one in ferry_packages_total with outcome sent).",
            s.bundled_packages,
        );
        o.single(
            "ferry_resent_total",
            "counter",
            "Packages resent on operator request.",
            s.resent,
        );
        o.single(
            "ferry_heal_resent_total",
            "counter",
            "Packages sent once more by the self-healing re-send.",
            s.heal_resent,
        );
        o.single(
            "ferry_heal_skipped_total",
            "counter",
            "Packages the self-healing re-send skipped (over its budget for its whole 60 s window, or out of it).",
            s.heal_skipped,
        );
        o.single(
            "ferry_datagrams_sent_total",
            "counter",
            "Datagrams sent on the link.",
            s.datagrams_sent,
        );
        o.single(
            "ferry_spool_retakes_total",
            "counter",
            "Ingress: spool files that changed while they were taken (their writer was not done), put back into the spool to settle.",
            s.spool_retakes,
        );
        o.single(
            "ferry_udp_messages_sent_total",
            "counter",
            "UDP messages the sent datagrams went in: one per datagram without GSO, one per super-packet with it.",
            s.udp_messages_sent,
        );
        o.single(
            "ferry_udp_gso_segments",
            "gauge",
            "Datagrams per UDP GSO message now (1: off, or the kernel refused GSO).",
            s.udp_gso_segments,
        );
        o.single(
            "ferry_fec_repair_datagrams_total",
            "counter",
            "Repair (FEC) datagrams among them.",
            counter(&s.sender, "repair_datagrams"),
        );
        o.single(
            "ferry_send_errors_total",
            "counter",
            "Transient send errors survived.",
            s.send_errors,
        );
        o.single(
            "ferry_send_dropped_total",
            "counter",
            "Datagrams dropped after transient errors.",
            s.send_dropped,
        );
    }
    if !s.client_refusals.is_empty() {
        o.family(
            "ferry_client_refusals_total",
            "counter",
            "Clients refused by the ingest API and the spool intake, by reason.",
        );
        for (reason, n) in &s.client_refusals {
            o.sample("ferry_client_refusals_total", &[("reason", reason)], n);
        }
    }
    let admin = crate::admin::gate::refusal_counts();
    if !admin.is_empty() {
        o.family(
            "ferry_admin_refusals_total",
            "counter",
            "Admin-plane refusals (control socket and admin API: roles, bad requests, connections), by plane and reason.",
        );
        for ((plane, reason), n) in &admin {
            o.sample(
                "ferry_admin_refusals_total",
                &[("plane", plane), ("reason", reason)],
                n,
            );
        }
    }
    o.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::protocol::ChannelCounters;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn malware_scans_and_engines_are_exposed() {
        let s = Status {
            role: "ingress".into(),
            malware: Some(crate::admin::protocol::MalwareStatus {
                engines: vec![crate::admin::protocol::EngineStatus {
                    socket: "/run/clamav/clamd.ctl".into(),
                    reachable: true,
                    database_age_days: Some(3),
                    ..Default::default()
                }],
                scanned: 5,
                detected: 2,
                unavailable: 1,
                held: 1,
                unscannable: 0,
            }),
            ..Status::default()
        };
        let t = render(&s, 0);
        for (series, v) in [
            (
                r#"ferry_malware_scans_total{side="ingress",outcome="clean"}"#,
                3.0,
            ),
            (
                r#"ferry_malware_scans_total{side="ingress",outcome="found"}"#,
                2.0,
            ),
            (
                r#"ferry_malware_scans_total{side="ingress",outcome="unavailable"}"#,
                1.0,
            ),
            (
                r#"ferry_malware_engine_up{side="ingress",socket="/run/clamav/clamd.ctl"}"#,
                1.0,
            ),
            (
                r#"ferry_malware_database_age_days{side="ingress",socket="/run/clamav/clamd.ctl"}"#,
                3.0,
            ),
        ] {
            assert_eq!(value(&t, series), Some(v), "{series}\n{t}");
        }
    }

    #[test]
    fn yara_scans_are_exposed_by_outcome() {
        let s = Status {
            role: "ingress".into(),
            yara: Some(crate::admin::protocol::YaraCounts {
                scanned: 7,
                matched: 2,
                timeout: 1,
                unscannable: 3,
            }),
            ..Status::default()
        };
        let t = render(&s, 0);
        for (outcome, v) in [
            ("clean", 5.0),
            ("matched", 2.0),
            ("timeout", 1.0),
            ("unscannable", 3.0),
        ] {
            let series = format!(r#"ferry_yara_scans_total{{side="ingress",outcome="{outcome}"}}"#);
            assert_eq!(value(&t, &series), Some(v), "{series}\n{t}");
        }
    }

    #[test]
    fn egress_exposition_has_channels_heartbeat_and_forgeries() {
        let mut s = Status {
            role: "egress".into(),
            link_up: true,
            last_heartbeat_unix_ms: Some(10_000),
            gap_seqs_total: 7,
            receiver: Some(serde_json::json!({ "forged": 3, "blocks_repaired": 11 })),
            ..Status::default()
        };
        s.channels.insert(
            "public \"stats\"".into(),
            ChannelCounters {
                delivered: 2,
                delivered_bytes: 2048,
                ..ChannelCounters::default()
            },
        );
        s.cert_not_after
            .insert("/etc/ferry/ca.crt".into(), 1_900_000_000);
        let t = render(&s, 12_500);
        assert_eq!(
            value(
                &t,
                r#"ferry_packages_total{side="egress",channel="public \"stats\"",outcome="delivered"}"#
            ),
            Some(2.0),
            "{t}"
        );
        assert_eq!(
            value(&t, r#"ferry_link_heartbeat_age_seconds{side="egress"}"#),
            Some(2.5)
        );
        assert_eq!(
            value(&t, r#"ferry_forged_datagrams_total{side="egress"}"#),
            Some(3.0)
        );
        assert_eq!(
            value(&t, r#"ferry_fec_blocks_repaired_total{side="egress"}"#),
            Some(11.0)
        );
        assert_eq!(
            value(&t, r#"ferry_gap_sequence_numbers_total{side="egress"}"#),
            Some(7.0)
        );
        assert_eq!(
            value(
                &t,
                r#"ferry_certificate_not_after_seconds{side="egress",file="/etc/ferry/ca.crt"}"#
            ),
            Some(1_900_000_000.0)
        );
        assert!(!t.contains("ferry_queue_depth"), "{t}");
        // Every sample line belongs to a family announced before it.
        let mut declared = std::collections::HashSet::new();
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or("").to_owned());
            } else if !l.starts_with('#') {
                let name = l.split('{').next().unwrap_or("");
                assert!(declared.contains(name), "undeclared {name}");
            }
        }
    }

    #[test]
    fn ingress_exposition_has_queue_and_outcomes() {
        let mut s = Status {
            role: "ingress".into(),
            queued: 5,
            ..Status::default()
        };
        s.channels.insert(
            "c".into(),
            ChannelCounters {
                accepted: 4,
                rejected: 1,
                sent: 3,
                accepted_bytes: 400,
                sent_bytes: 300,
                ..ChannelCounters::default()
            },
        );
        let t = render(&s, 0);
        assert_eq!(value(&t, r#"ferry_queue_depth{side="ingress"}"#), Some(5.0));
        for (outcome, n) in [("accepted", 4.0), ("rejected", 1.0), ("sent", 3.0)] {
            let series = format!(
                r#"ferry_packages_total{{side="ingress",channel="c",outcome="{outcome}"}}"#
            );
            assert_eq!(value(&t, &series), Some(n), "{series} in {t}");
        }
        assert!(!t.contains("ferry_link_up"), "{t}");
    }
}
