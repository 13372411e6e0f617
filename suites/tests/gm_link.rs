//! The GM suite through the protocol's sender and receiver state machines
//! over a simulated, seeded, lossy one-way link (no sockets, no clocks):
//! SM2-signed manifests carrying SM2-encrypted package keys, SM4-GCM
//! chunks, GHASH-then-SM4 datagram tags (format 2), SM3 digests, and an initial
//! epoch secret from GM pairing.

use ferry_protocol::epoch::EpochChain;
use ferry_protocol::receiver::FailReason;
use ferry_protocol::suite::{LinkCrypto, Secret32};
use ferry_protocol::{
    PackageId, PackageMeta, Receiver, ReceiverConfig, ReplayWindow, Sender, SenderConfig, Transmit,
};
use ferry_suites::gm::{self, GmLink, GmOpenKeys, GmSealKeys, DEFAULT_DISTINGUISHING_ID};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use zeroize::Zeroizing;

mod common;
use common::{drain, Outcome, MAX_STEPS, START};

const LINK: &str = "gm-sim-link";

fn chain(secret: &Secret32) -> EpochChain {
    common::chain(&GmLink, secret)
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
    let mut c = SenderConfig::new(LINK, common::schedule());
    c.block_symbols = 256;
    c.repair_overhead_percent = 15.0;
    c
}

fn receiver(keys: &Keys, epoch0: &Secret32) -> Receiver {
    let mut cfg = ReceiverConfig::new(LINK, common::schedule());
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
    let sender =
        Sender::new(sender_config(), Box::new(keys.seal()), chain(&keys.epoch0)).expect("sender");
    let wire = common::capture(sender, meta(0, &data), &data);
    common::datagram_tag_attack(&wire, &data, || receiver(&keys, &egress_e0));
}
