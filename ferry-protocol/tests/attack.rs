//! Attacks on the link's promises, run the way a hostile wire would:
//! captured datagrams replayed later, a receiver restarted in between.
//! Sans-IO, so every run is deterministic.
//!
//! Promises pinned here (docs/ferry-protocol.md, "Heartbeats"):
//! - only a fresh heartbeat (authenticated, sender time later than every
//!   heartbeat seen, across restarts) is evidence of a live link; a replayed
//!   one is counted and reported, never taken as life;
//! - a resend under a new sequence number names, signed, the sequence
//!   number it was first sent under, so the egress side can close the gap;
//! - datagrams of this link in a retired suite format (docs/keys.md, "GM
//!   format 1") are dropped before the MAC and named once, never read.

mod common;

use common::*;
use ferry_protocol::wire::{self, Body};
use ferry_protocol::{Event, Millis, ReplayWindow, Transmit};

/// Sends one package and keeps a copy of every datagram that left.
fn captured_run() -> (Keys, Egress, Vec<Vec<u8>>) {
    let k = keys();
    let mut s = sender(&k, sender_config());
    let mut e = Egress::new(&k, ReplayWindow::new());
    let mut tape = Vec::new();
    run(
        &mut s,
        &mut e,
        0,
        &[payload(1, 5000)],
        Net::default(),
        &mut |d| tape.push(d.to_vec()),
    );
    (k, e, tape)
}

fn is_heartbeat(d: &[u8]) -> bool {
    matches!(
        wire::parse(d, usize::MAX).map(|p| p.body),
        Ok(Body::Heartbeat(_))
    )
}

/// Feeds `tape` at `now` and returns (link-up events, replay events).
fn replay(e: &mut Egress, tape: &[Vec<u8>], now: Millis) -> (usize, usize) {
    for d in tape {
        e.receiver.handle_datagram(now, d);
    }
    e.receiver.handle_timeout(now);
    let (mut up, mut replayed) = (0, 0);
    while let Some(ev) = e.receiver.poll_event() {
        match ev {
            Event::LinkUp => up += 1,
            Event::HeartbeatReplayed {
                sender_time_ms,
                newest_seen_ms,
            } => {
                assert!(sender_time_ms <= newest_seen_ms);
                replayed += 1;
            }
            Event::Heartbeat(_) => panic!("a replayed heartbeat was reported as fresh"),
            _ => {}
        }
    }
    (up, replayed)
}

/// Promise: a replayed heartbeat (or any replayed datagram) is counted as a
/// replay, never as life — the link stays down while the sender is silent.
#[test]
fn replayed_capture_while_sender_is_down_is_not_life() {
    let (_k, mut e, tape) = captured_run();
    let heartbeats = tape.iter().filter(|d| is_heartbeat(d)).count();
    assert!(heartbeats >= 2, "the capture holds heartbeats");
    assert_eq!(e.outcome.link_up, 1);
    // The sender goes silent: the link goes down.
    let quiet = START.plus(60_000);
    e.receiver.handle_timeout(quiet);
    e.drain();
    assert_eq!(e.outcome.link_down, 1);
    let fresh_before = e.receiver.stats().heartbeats;
    // The attacker replays the whole capture, twice.
    let (up, replayed) = replay(&mut e, &tape, quiet.plus(10));
    let (up2, replayed2) = replay(&mut e, &tape, quiet.plus(20));
    assert_eq!(up + up2, 0, "a replay brought the link up");
    assert_eq!(replayed + replayed2, 2 * heartbeats);
    let st = e.receiver.stats();
    assert_eq!(st.heartbeats_replayed, 2 * heartbeats as u64);
    assert_eq!(st.heartbeats, fresh_before, "no replay counted as fresh");
    // Still down after the link-down period: nothing reset the silence.
    e.receiver.handle_timeout(quiet.plus(10_000));
    assert!(e.receiver.poll_event().is_none(), "no new link state");
}

/// Promise: freshness survives a receiver restart when the caller persists
/// `newest_heartbeat_ms` (the daemon does, in its state store).
#[test]
fn heartbeat_freshness_survives_receiver_restart() {
    let (k, e, tape) = captured_run();
    let newest = e.receiver.newest_heartbeat_ms().expect("heartbeats seen");
    // Restarted receiver resumed from the persisted value.
    let mut restarted = Egress::new(&k, e.receiver.replay_window().clone());
    restarted.receiver.resume_heartbeats_after(newest);
    let (up, replayed) = replay(&mut restarted, &tape, START.plus(60_000));
    assert_eq!(up, 0, "replay after restart taken as life");
    assert!(replayed >= 2);
    // The same replay against a receiver that forgot (what persisting
    // prevents) would be life: shows the test can fail.
    let mut amnesiac = Egress::new(&k, e.receiver.replay_window().clone());
    let (up, _) = replay_allowing_fresh(&mut amnesiac, &tape, START.plus(60_000));
    assert_eq!(up, 1);
}

fn replay_allowing_fresh(e: &mut Egress, tape: &[Vec<u8>], now: Millis) -> (usize, usize) {
    for d in tape {
        e.receiver.handle_datagram(now, d);
    }
    let mut up = 0;
    while let Some(ev) = e.receiver.poll_event() {
        if ev == Event::LinkUp {
            up += 1;
        }
    }
    (up, 0)
}

/// Promise: a fresh heartbeat after a replay storm still brings the link
/// up (replays do not poison freshness).
#[test]
fn fresh_heartbeat_after_replays_brings_link_up() {
    let k = keys();
    let mut s = sender(&k, sender_config());
    let mut e = Egress::new(&k, ReplayWindow::new());
    let mut tape = Vec::new();
    run(
        &mut s,
        &mut e,
        0,
        &[payload(2, 100)],
        Net::default(),
        &mut |d| tape.push(d.to_vec()),
    );
    let quiet = START.plus(120_000);
    e.receiver.handle_timeout(quiet);
    let _ = replay(&mut e, &tape, quiet.plus(1));
    let mut buf = vec![0u8; s.max_datagram_len()];
    let later = quiet.plus(2000);
    let Ok(Transmit::Datagram(n)) = s.poll_transmit(later, &mut buf) else {
        panic!("the sender owes a heartbeat");
    };
    e.receiver.handle_datagram(later, &buf[..n]);
    let mut up = 0;
    while let Some(ev) = e.receiver.poll_event() {
        if ev == Event::LinkUp {
            up += 1;
        }
    }
    assert_eq!(up, 1);
}

/// Promise: a resend under a new sequence number carries, signed, the
/// sequence number it was first sent under.
#[test]
fn resend_names_its_first_sequence_number() {
    let k = keys();
    let mut s = sender(&k, sender_config());
    let mut e = Egress::new(&k, ReplayWindow::new());
    let data = payload(3, 3000);
    s.enqueue_resend(START, 7, meta(7, &data), Some(3))
        .expect("enqueue");
    let mut buf = vec![0u8; s.max_datagram_len()];
    let mut now = START;
    let mut first_seq = None;
    for _ in 0..10_000 {
        match s.poll_transmit(now, &mut buf).expect("transmit") {
            Transmit::Datagram(n) => e.receiver.handle_datagram(now, &buf[..n]),
            Transmit::NeedPayload { seq, offset, len } => {
                let o = offset as usize;
                s.provide_payload(seq, offset, &data[o..o + len])
                    .expect("provide");
            }
            Transmit::Idle => now = now.plus(100),
        }
        while let Some(ev) = e.receiver.poll_event() {
            if let Event::PackageComplete { manifest, .. } = ev {
                first_seq = Some(manifest.first_seq);
            }
        }
        if first_seq.is_some() {
            break;
        }
    }
    assert_eq!(first_seq, Some(Some(3)));
}

/// Promise: the network duplicating the newest heartbeat (UDP may) is a
/// duplicate datagram, not an attack: no replay event (so no alarm), no
/// second life, counted with the other duplicates.
#[test]
fn a_copy_of_the_newest_heartbeat_is_a_duplicate_not_a_replay() {
    let (k, _e, tape) = captured_run();
    let heartbeat = tape
        .iter()
        .find(|d| is_heartbeat(d))
        .expect("the capture holds heartbeats")
        .clone();
    // A receiver that has seen nothing: the heartbeat is fresh once, then
    // arrives again as the network's copy.
    let mut e = Egress::new(&k, ReplayWindow::new());
    e.receiver.handle_datagram(START.plus(10), &heartbeat);
    e.drain();
    let before = e.receiver.stats();
    assert_eq!(before.heartbeats, 1, "the first copy is life");
    let (up, replayed) = replay(&mut e, &[heartbeat], START.plus(20));
    let after = e.receiver.stats();
    assert_eq!((up, replayed), (0, 0), "the copy raised an event");
    assert_eq!(after.heartbeats_replayed, before.heartbeats_replayed);
    assert_eq!(after.heartbeats, before.heartbeats, "a copy is not life");
    assert_eq!(
        after.duplicate,
        before.duplicate + 1,
        "counted as a duplicate"
    );
}

/// Promise: a datagram of this link whose suite byte names a retired
/// format is dropped before any other work (counted `other_link`) and the
/// receiver says once what it is and what to do; another link's datagrams
/// with that byte raise nothing.
#[test]
fn a_retired_suite_format_is_dropped_and_named_once() {
    let (k, _, tape) = captured_run();
    // 1: intl format 1 (HMAC-SHA256 tags); 2: GM format 1.
    for retired in [1u8, 2] {
        let mut e = Egress::new(&k, ReplayWindow::new());
        let old: Vec<Vec<u8>> = tape
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d[2] = retired;
                d
            })
            .collect();
        let mut foreign = old[0].clone();
        foreign[4] ^= 0xff; // another link id
        e.receiver.handle_datagram(Millis(1), &foreign);
        assert!(e.receiver.poll_event().is_none(), "not this link's");
        for d in &old {
            e.receiver.handle_datagram(Millis(1), d);
        }
        let st = e.receiver.stats();
        assert_eq!(st.other_link, old.len() as u64 + 1);
        assert_eq!(st.authenticated, 0);
        let mut named = 0;
        while let Some(ev) = e.receiver.poll_event() {
            match ev {
                Event::RetiredFormat { suite_byte, what } => {
                    assert_eq!(suite_byte, retired);
                    assert!(
                        what.contains("upgrade ferryd on the ingress side"),
                        "{what}"
                    );
                    named += 1;
                }
                other => panic!("a retired-format datagram was read: {other:?}"),
            }
        }
        assert_eq!(
            named, 1,
            "byte {retired}: named once, not once per datagram"
        );
    }
}
