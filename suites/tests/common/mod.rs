//! What the suites' link tests share: the receiver's events gathered into
//! delivered and failed packages, one send captured from a sender, and the
//! must-show attack on a suite's datagram authenticator.
#![allow(dead_code)]

use ferry_protocol::epoch::{EpochChain, EpochSchedule};
use ferry_protocol::receiver::FailReason;
use ferry_protocol::suite::{LinkCrypto, Secret32, SuiteId};
use ferry_protocol::{Event, Millis, PackageMeta, Receiver, Sender, Transmit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

pub const START: Millis = Millis(1_800_000_000_000);
/// Bounds the simulation loops so a stuck state machine fails the test
/// instead of hanging it.
pub const MAX_STEPS: u64 = 2_000_000;

/// Hour-long epochs from a fixed origin.
pub fn schedule() -> EpochSchedule {
    EpochSchedule {
        origin_unix_s: 1_700_000_000,
        length_s: 3600,
    }
}

/// The epoch chain both sides start from at [`START`], from `secret` as
/// epoch 0.
pub fn chain(link: &dyn LinkCrypto, secret: &Secret32) -> EpochChain {
    let mut c = EpochChain::new(link, 0, secret.clone(), 1);
    c.advance_to(link, schedule().epoch_at(START));
    c
}

/// What came out of a receiver: packages by sequence number, and failures.
#[derive(Default)]
pub struct Outcome {
    pub delivered: BTreeMap<u64, Vec<u8>>,
    pub failed: Vec<(u64, FailReason)>,
}

/// Takes every pending event of `r`: data into `staging`, complete
/// packages into `out.delivered` (never twice), failures into `out.failed`.
pub fn drain(r: &mut Receiver, staging: &mut BTreeMap<u64, Vec<u8>>, out: &mut Outcome) {
    while let Some(e) = r.poll_event() {
        match e {
            Event::PackageStarted { seq, .. } => {
                staging.insert(seq, Vec::new());
            }
            Event::PackageData { seq, offset, data } => {
                let s = staging.get_mut(&seq).expect("data only after start");
                assert_eq!(s.len() as u64, offset, "data arrives in order");
                s.extend_from_slice(&data);
            }
            Event::PackageComplete { seq, manifest } => {
                let s = staging.remove(&seq).expect("staged");
                assert_eq!(s.len() as u64, manifest.meta.size);
                assert!(out.delivered.insert(seq, s).is_none(), "delivered twice");
            }
            Event::PackageFailed { seq, reason, .. } => {
                staging.remove(&seq);
                out.failed.push((seq, reason));
            }
            _ => {}
        }
    }
}

/// Every datagram `s` puts on the wire for one send of `data` (sequence
/// number 0, described by `meta`), in order, the heartbeat that opens it
/// included.
pub fn capture(mut s: Sender, meta: PackageMeta, data: &[u8]) -> Vec<Vec<u8>> {
    s.enqueue(START, 0, meta).expect("enqueue");
    let mut buf = vec![0u8; s.max_datagram_len()];
    let mut out = Vec::new();
    for _ in 0..MAX_STEPS {
        match s.poll_transmit(START, &mut buf).expect("transmit") {
            Transmit::Datagram(n) => out.push(buf[..n].to_vec()),
            Transmit::NeedPayload { seq, offset, len } => {
                let o = offset as usize;
                s.provide_payload(seq, offset, &data[o..o + len])
                    .expect("provide");
            }
            Transmit::Idle => return out,
        }
    }
    panic!("the send did not end");
}

/// The must-show attack on a suite's datagram authenticator, on `wire`
/// (one captured send of `data`) against receivers from `new_receiver`
/// that hold the right keys: every bit of a manifest, a data and a
/// heartbeat datagram flipped; random tags; random symbols behind valid
/// headers; tags moved between datagrams; the whole send replayed twice.
/// Each forgery is refused at the tag, or earlier at the parser, before
/// any work: nothing authenticates, no package state, no buffered symbol,
/// no package event; a replayed package is not delivered again.
pub fn datagram_tag_attack(
    wire: &[Vec<u8>],
    data: &[u8],
    mut new_receiver: impl FnMut() -> Receiver,
) {
    // One datagram of each kind: 1 manifest, 2 data, 3 heartbeat.
    let of_kind = |k: u8| wire.iter().find(|d| d[1] == k).expect("kind sent").clone();
    let samples = [of_kind(1), of_kind(2), of_kind(3)];

    let untouched = |r: &mut Receiver, what: &str| {
        let st = r.stats();
        assert_eq!(st.authenticated, 0, "{what}: {st:?}");
        assert_eq!(
            st.forged + st.malformed + st.other_link + st.stale_epoch,
            st.datagrams,
            "{what}: every datagram refused at the parser or the tag: {st:?}"
        );
        assert_eq!((st.buffered_bytes, st.blocks_stored), (0, 0), "{what}");
        assert_eq!(r.in_flight(), 0, "{what}: no package state");
        // The one event allowed is the operator's alarm for a retired
        // format (a flipped suite byte that names one, e.g. GM's 3 to 2
        // or 1): no package event.
        while let Some(e) = r.poll_event() {
            assert!(
                matches!(e, Event::RetiredFormat { suite_byte, .. }
                    if SuiteId::retired(suite_byte).is_some()),
                "{what}: {e:?}"
            );
        }
    };

    // Every single bit of each kind flipped.
    let mut r = new_receiver();
    let mut flips = 0u64;
    for d in &samples {
        for bit in 0..d.len() * 8 {
            let mut f = d.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            r.handle_datagram(START, &f);
            flips += 1;
        }
    }
    assert_eq!(r.stats().datagrams, flips);
    untouched(&mut r, "bit flips");
    assert!(r.stats().forged > flips / 2, "most flips reach the tag");

    // Forged: each kind with a random tag; data datagrams with a random
    // symbol and tag behind a valid header; and tags moved between data
    // datagrams of the same length. All parse; none authenticates.
    let mut r = new_receiver();
    let mut rng = StdRng::seed_from_u64(7);
    let mut forged = 0u64;
    for d in &samples {
        for _ in 0..500 {
            let mut f = d.clone();
            let n = f.len();
            rng.fill(&mut f[n - 16..]);
            r.handle_datagram(START, &f);
            forged += 1;
        }
    }
    let data_dgs: Vec<&Vec<u8>> = wire.iter().filter(|d| d[1] == 2).collect();
    for d in data_dgs.iter().take(500) {
        let mut f = d.to_vec();
        rng.fill(&mut f[ferry_protocol::wire::DATA_HEADER_LEN..]);
        r.handle_datagram(START, &f);
        forged += 1;
    }
    for pair in data_dgs.windows(2).take(500) {
        if pair[0].len() == pair[1].len() {
            let mut f = pair[0].clone();
            let n = f.len();
            f[n - 16..].copy_from_slice(&pair[1][n - 16..]);
            r.handle_datagram(START, &f);
            forged += 1;
        }
    }
    untouched(&mut r, "forgeries");
    assert_eq!(r.stats().forged, forged, "{:?}", r.stats());

    // Replayed: the whole send delivered once, then played again, twice.
    let mut r = new_receiver();
    let mut out = Outcome::default();
    let mut staging = BTreeMap::new();
    for d in wire {
        r.handle_datagram(START, d);
    }
    drain(&mut r, &mut staging, &mut out);
    assert_eq!(out.delivered.len(), 1);
    assert!(out.delivered[&0] == data);
    let before = r.stats();
    for _ in 0..2 {
        for d in wire {
            r.handle_datagram(START.plus(1), d);
        }
        drain(&mut r, &mut staging, &mut out);
    }
    let st = r.stats();
    assert_eq!(out.delivered.len(), 1, "a replay is never delivered again");
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(st.packages_complete, before.packages_complete);
    assert_eq!(
        st.blocks_decoded, before.blocks_decoded,
        "no decoding for a replay"
    );
    assert_eq!(r.in_flight(), 0, "no package state for a replay");
    assert_eq!(st.buffered_bytes, 0);
}
