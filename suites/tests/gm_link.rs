//! The GM suite through the protocol's sender and receiver state machines
//! over a simulated, seeded, lossy one-way link (no sockets, no clocks):
//! SM2-signed manifests carrying SM2-encrypted package keys, SM4-GCM
//! chunks, GHASH-then-SM4 datagram tags (format 2), SM3 digests, and an initial
//! epoch secret from GM pairing.

use ferry_protocol::epoch::{EpochChain, EpochSchedule};
use ferry_protocol::receiver::FailReason;
use ferry_protocol::suite::{LinkCrypto, Secret32};
use ferry_protocol::{
    Event, Millis, PackageId, PackageMeta, Receiver, ReceiverConfig, ReplayWindow, Sender,
    SenderConfig, Transmit,
};
use ferry_suites::gm::{self, GmLink, GmOpenKeys, GmSealKeys, DEFAULT_DISTINGUISHING_ID};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use zeroize::Zeroizing;

const START: Millis = Millis(1_800_000_000_000);
const LINK: &str = "gm-sim-link";
/// Bounds the simulation loop so a stuck state machine fails the test
/// instead of hanging it.
const MAX_STEPS: u64 = 2_000_000;

fn schedule() -> EpochSchedule {
    EpochSchedule {
        origin_unix_s: 1_700_000_000,
        length_s: 3600,
    }
}

fn chain(secret: &Secret32) -> EpochChain {
    let mut c = EpochChain::new(&GmLink, 0, secret.clone(), 1);
    c.advance_to(&GmLink, schedule().epoch_at(START));
    c
}

struct Keys {
    sig: (Zeroizing<Vec<u8>>, Vec<u8>),
    enc: (Zeroizing<Vec<u8>>, Vec<u8>),
    epoch0: Secret32,
}

impl Keys {
    /// Fresh keys; E(0) from a GM pairing of two one-time keys, computed
    /// independently on each side.
    fn new() -> (Keys, Secret32) {
        let (ingress_pairing, ingress_pairing_pub) = gm::generate_sm2().expect("pairing");
        let (egress_pairing, egress_pairing_pub) = gm::generate_sm2().expect("pairing");
        let ingress_e0 =
            gm::pairing_secret(&ingress_pairing, &egress_pairing_pub, LINK).expect("pair");
        let egress_e0 =
            gm::pairing_secret(&egress_pairing, &ingress_pairing_pub, LINK).expect("pair");
        (
            Keys {
                sig: gm::generate_sm2().expect("sig"),
                enc: gm::generate_sm2().expect("enc"),
                epoch0: ingress_e0,
            },
            egress_e0,
        )
    }

    fn seal(&self) -> GmSealKeys {
        GmSealKeys::new(
            "sig-1".into(),
            &self.sig.0,
            "enc-1".into(),
            &self.enc.1,
            DEFAULT_DISTINGUISHING_ID,
        )
        .expect("seal keys")
    }

    fn open(&self) -> GmOpenKeys {
        GmOpenKeys::new(
            vec![("sig-1".into(), self.sig.1.clone())],
            vec![("enc-1".into(), self.enc.0.clone())],
            DEFAULT_DISTINGUISHING_ID,
        )
        .expect("open keys")
    }
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

fn meta(seq: u64, data: &[u8]) -> PackageMeta {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seq.to_be_bytes());
    let mut d = GmLink.new_digest();
    d.update(data);
    PackageMeta {
        id: PackageId(id),
        channel: "stats".into(),
        size: data.len() as u64,
        digest: d.finish(),
        file_name: format!("file-{seq}.bin"),
        content_type: "application/octet-stream".into(),
        sender_identity: "CN=test".into(),
        created_unix_ms: START.0,
        inspection: None,
    }
}

#[derive(Clone, Copy)]
struct Net {
    loss: f64,
    reorder: f64,
    duplicate: f64,
    corrupt: f64,
    seed: u64,
}

#[derive(Default)]
struct Outcome {
    delivered: BTreeMap<u64, Vec<u8>>,
    failed: Vec<(u64, FailReason)>,
}

fn drain(r: &mut Receiver, staging: &mut BTreeMap<u64, Vec<u8>>, out: &mut Outcome) {
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

/// Sends `packages` from `sender` to `receiver` through `net`.
fn run(sender: &mut Sender, receiver: &mut Receiver, packages: &[Vec<u8>], net: Net) -> Outcome {
    let mut rng = StdRng::seed_from_u64(net.seed);
    let mut now = START;
    for (seq, p) in packages.iter().enumerate() {
        sender
            .enqueue(now, seq as u64, meta(seq as u64, p))
            .expect("enqueue (the SM2 manifest fits one datagram)");
    }
    let mut out = Outcome::default();
    let mut staging = BTreeMap::new();
    let mut buf = vec![0u8; sender.max_datagram_len()];
    let mut held: VecDeque<Vec<u8>> = VecDeque::new();
    let mut produced = 0u64;
    let mut idle_rounds = 0;
    for _ in 0..MAX_STEPS {
        match sender.poll_transmit(now, &mut buf).expect("transmit") {
            Transmit::Datagram(n) => {
                produced += 1;
                if produced.is_multiple_of(100) {
                    now = now.plus(1);
                }
                let mut d = buf[..n].to_vec();
                if rng.gen_bool(net.loss) {
                    continue;
                }
                if rng.gen_bool(net.corrupt) {
                    let i = rng.gen_range(0..d.len());
                    d[i] ^= 1 << rng.gen_range(0..8);
                }
                let copies = if rng.gen_bool(net.duplicate) { 2 } else { 1 };
                for _ in 0..copies {
                    if rng.gen_bool(net.reorder) {
                        held.push_back(d.clone());
                    } else {
                        receiver.handle_datagram(now, &d);
                    }
                }
                if held.len() > 32 {
                    let i = rng.gen_range(0..held.len());
                    if let Some(x) = held.remove(i) {
                        receiver.handle_datagram(now, &x);
                    }
                }
            }
            Transmit::NeedPayload { seq, offset, len } => {
                let p = &packages[seq as usize];
                let o = offset as usize;
                sender
                    .provide_payload(seq, offset, &p[o..o + len])
                    .expect("provide");
            }
            Transmit::Idle => {
                while let Some(d) = held.pop_front() {
                    receiver.handle_datagram(now, &d);
                }
                if sender.queued() == 0 {
                    idle_rounds += 1;
                }
                now = sender.poll_timeout().max(now.plus(1));
                receiver.handle_timeout(now);
                drain(receiver, &mut staging, &mut out);
                if idle_rounds > 8 && receiver.in_flight() == 0 {
                    break;
                }
            }
        }
        drain(receiver, &mut staging, &mut out);
    }
    for _ in 0..20 {
        now = now.plus(1000);
        receiver.handle_timeout(now);
        drain(receiver, &mut staging, &mut out);
    }
    out
}

fn sender_config() -> SenderConfig {
    let mut c = SenderConfig::new(LINK, schedule());
    c.block_symbols = 256;
    c.repair_overhead_percent = 15.0;
    c
}

fn receiver(keys: &Keys, epoch0: &Secret32) -> Receiver {
    let mut cfg = ReceiverConfig::new(LINK, schedule());
    cfg.max_buffer_bytes = 64 << 20;
    Receiver::new(
        cfg,
        Box::new(keys.open()),
        chain(epoch0),
        ReplayWindow::new(),
    )
}

#[test]
fn gm_link_delivers_packages_intact_through_loss_reorder_duplication_and_corruption() {
    gm::ensure_available().expect("OpenSSL with SM algorithms");
    let (keys, egress_e0) = Keys::new();
    assert_eq!(keys.epoch0, egress_e0, "both sides pair to the same E(0)");
    let packages: Vec<Vec<u8>> = [0usize, 1, 65_535, 65_536, 65_537, 1_000_000, 3_000_000]
        .iter()
        .enumerate()
        .map(|(i, n)| payload(i as u64, *n))
        .collect();
    let mut s =
        Sender::new(sender_config(), Box::new(keys.seal()), chain(&keys.epoch0)).expect("sender");
    let mut r = receiver(&keys, &egress_e0);
    let net = Net {
        loss: 0.03,
        reorder: 0.03,
        duplicate: 0.02,
        corrupt: 0.01,
        seed: 11,
    };
    let out = run(&mut s, &mut r, &packages, net);
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.delivered.len(), packages.len());
    for (seq, p) in packages.iter().enumerate() {
        let got = out.delivered.get(&(seq as u64)).expect("delivered");
        assert!(got == p, "package {seq} differs");
    }
    let st = r.stats();
    assert!(
        st.forged > 0,
        "corrupted datagrams fail the GHASH-then-SM4 tag"
    );
    assert_eq!(st.buffered_bytes, 0);
}

#[test]
fn gm_link_refuses_packages_from_an_unknown_signer() {
    let (keys, egress_e0) = Keys::new();
    let (impostor, _) = Keys::new();
    // Same ids, same epoch secret, but the egress side trusts other keys.
    let mut s =
        Sender::new(sender_config(), Box::new(keys.seal()), chain(&keys.epoch0)).expect("sender");
    let mut r = receiver(&impostor, &egress_e0);
    let packages = vec![payload(1, 100_000)];
    let net = Net {
        loss: 0.0,
        reorder: 0.0,
        duplicate: 0.0,
        corrupt: 0.0,
        seed: 1,
    };
    let out = run(&mut s, &mut r, &packages, net);
    assert!(out.delivered.is_empty());
    assert_eq!(out.failed.len(), 1, "{:?}", out.failed);
    assert_eq!(out.failed[0].1, FailReason::BadSignature);
}

#[test]
fn gm_link_datagrams_under_another_epoch_secret_are_forged() {
    let (keys, _) = Keys::new();
    let mut s =
        Sender::new(sender_config(), Box::new(keys.seal()), chain(&keys.epoch0)).expect("sender");
    // The egress side paired with someone else.
    let mut r = receiver(&keys, &Secret32([0x42; 32]));
    let packages = vec![payload(2, 50_000)];
    let net = Net {
        loss: 0.0,
        reorder: 0.0,
        duplicate: 0.0,
        corrupt: 0.0,
        seed: 2,
    };
    let out = run(&mut s, &mut r, &packages, net);
    assert!(out.delivered.is_empty());
    let st = r.stats();
    assert!(st.forged > 0, "every datagram fails its tag");
}

/// Every datagram one send of `data` puts on the wire, in order (the
/// heartbeat that opens it included).
fn capture(keys: &Keys, data: &[u8]) -> Vec<Vec<u8>> {
    let mut s =
        Sender::new(sender_config(), Box::new(keys.seal()), chain(&keys.epoch0)).expect("sender");
    s.enqueue(START, 0, meta(0, data)).expect("enqueue");
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

/// The must-show attack on format 2's datagram authenticator (GHASH then
/// SM4, the wire version that replaced HMAC-SM3): forged, bit-flipped and
/// replayed datagrams of every kind are refused at the tag, or earlier at
/// the parser, before any work: nothing authenticates, no package state,
/// no buffered symbol, no event; a replayed package is not delivered again.
#[test]
fn gm_format_2_refuses_forged_bit_flipped_and_replayed_datagrams_before_any_work() {
    gm::ensure_available().expect("OpenSSL with SM algorithms");
    let (keys, egress_e0) = Keys::new();
    let data = payload(9, 300_000);
    let wire = capture(&keys, &data);
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
        // format (a flip of the suite byte from 3 to 2): no package event.
        while let Some(e) = r.poll_event() {
            assert!(
                matches!(e, Event::RetiredFormat { suite_byte: 2, .. }),
                "{what}: {e:?}"
            );
        }
    };

    // Every single bit of each kind flipped.
    let mut r = receiver(&keys, &egress_e0);
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
    let mut r = receiver(&keys, &egress_e0);
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
    let mut r = receiver(&keys, &egress_e0);
    let mut out = Outcome::default();
    let mut staging = BTreeMap::new();
    for d in &wire {
        r.handle_datagram(START, d);
    }
    drain(&mut r, &mut staging, &mut out);
    assert_eq!(out.delivered.len(), 1);
    assert!(out.delivered[&0] == data);
    let before = r.stats();
    for _ in 0..2 {
        for d in &wire {
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
