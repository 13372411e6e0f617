//! A simulated one-way link for deterministic protocol tests: a sender and
//! a receiver joined by a seeded network that drops, reorders, duplicates
//! and corrupts datagrams. No sockets, no clocks.
#![allow(dead_code)]

use ferry_protocol::epoch::{EpochChain, EpochSchedule};
use ferry_protocol::receiver::FailReason;
use ferry_protocol::suite::{LinkCrypto, Secret32};
use ferry_protocol::{
    Event, Millis, PackageId, PackageMeta, Receiver, ReceiverConfig, ReplayWindow, Sender,
    SenderConfig, Transmit,
};
use ferry_suites::intl::{self, IntlLink, IntlOpenKeys, IntlSealKeys};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

pub const START: Millis = Millis(1_800_000_000_000);
pub const LINK: &str = "sim-link";

pub fn schedule() -> EpochSchedule {
    EpochSchedule {
        origin_unix_s: 1_700_000_000,
        length_s: 3600,
    }
}

pub struct Keys {
    pub seed: Secret32,
    pub sig_pub: [u8; 32],
    pub agr: Secret32,
    pub agr_pub: [u8; 32],
    pub epoch0: Secret32,
}

impl Keys {
    pub fn seal(&self) -> IntlSealKeys {
        IntlSealKeys::new(&self.seed, "sig-1".into(), self.agr_pub, "agr-1".into()).expect("seal")
    }
    pub fn open(&self) -> IntlOpenKeys {
        IntlOpenKeys::new(&self.agr, "agr-1".into(), self.sig_pub, "sig-1".into()).expect("open")
    }
}

pub fn keys() -> Keys {
    let (seed, sig_pub) = intl::generate_signing_key().expect("signing key");
    let (agr, agr_pub) = intl::generate_agreement_key().expect("agreement key");
    Keys {
        seed,
        sig_pub,
        agr,
        agr_pub,
        epoch0: Secret32(rand::random()),
    }
}

/// The chain both sides start from at `START`.
pub fn chain(secret: &Secret32) -> EpochChain {
    let link = IntlLink;
    let mut c = EpochChain::new(&link, 0, secret.clone(), 1);
    c.advance_to(&link, schedule().epoch_at(START));
    c
}

pub fn digest(data: &[u8]) -> Vec<u8> {
    let mut d = IntlLink.new_digest();
    d.update(data);
    d.finish()
}

pub fn meta(i: u64, data: &[u8]) -> PackageMeta {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_be_bytes());
    PackageMeta {
        id: PackageId(id),
        channel: "stats".into(),
        size: data.len() as u64,
        digest: digest(data),
        file_name: format!("file-{i}.bin"),
        content_type: "application/octet-stream".into(),
        sender_identity: "CN=test".into(),
        created_unix_ms: START.0,
        inspection: None,
    }
}

/// Deterministic payload bytes.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Net {
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    pub seed: u64,
    /// Datagrams `a..b` (counted from the first sent) are all lost: an
    /// outage in the middle of a send.
    pub outage: Option<(u64, u64)>,
}

/// Compares a delivery with the original without printing megabytes on
/// failure.
pub fn exact(got: Option<&Vec<u8>>, want: &[u8]) -> bool {
    got.is_some_and(|g| g.as_slice() == want)
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub delivered: BTreeMap<u64, Vec<u8>>,
    pub failed: Vec<(u64, FailReason)>,
    pub gaps: Vec<(u64, u64)>,
    pub events: usize,
    pub link_up: usize,
    pub link_down: usize,
}

/// Everything on the egress side of the simulation: receiver plus the
/// staging the daemon would do, asserting the event contract as it goes.
pub struct Egress {
    pub receiver: Receiver,
    staging: BTreeMap<u64, Vec<u8>>,
    pub outcome: Outcome,
}

impl Egress {
    pub fn new(keys: &Keys, window: ReplayWindow) -> Egress {
        Egress::with_mtu(keys, window, 1500)
    }

    pub fn with_mtu(keys: &Keys, window: ReplayWindow, mtu: usize) -> Egress {
        let mut cfg = ReceiverConfig::new(LINK, schedule());
        cfg.mtu = mtu;
        cfg.max_buffer_bytes = 64 << 20;
        Egress {
            receiver: Receiver::new(cfg, Box::new(keys.open()), chain(&keys.epoch0), window),
            staging: BTreeMap::new(),
            outcome: Outcome::default(),
        }
    }

    /// An egress side whose receiver holds at most `max_buffer_bytes`,
    /// with `store` for the blocks that must wait.
    pub fn bounded(
        keys: &Keys,
        max_buffer_bytes: usize,
        store: Option<Box<dyn ferry_protocol::BlockStore>>,
    ) -> Egress {
        let mut cfg = ReceiverConfig::new(LINK, schedule());
        cfg.max_buffer_bytes = max_buffer_bytes;
        let mut receiver = Receiver::new(
            cfg,
            Box::new(keys.open()),
            chain(&keys.epoch0),
            ReplayWindow::new(),
        );
        if let Some(store) = store {
            receiver = receiver.with_block_store(store);
        }
        Egress {
            receiver,
            staging: BTreeMap::new(),
            outcome: Outcome::default(),
        }
    }

    pub fn drain(&mut self) {
        while let Some(e) = self.receiver.poll_event() {
            self.outcome.events += 1;
            match e {
                Event::PackageStarted { seq, .. } => {
                    self.staging.insert(seq, Vec::new());
                }
                Event::PackageData { seq, offset, data } => {
                    let s = self.staging.get_mut(&seq).expect("data only after start");
                    assert_eq!(s.len() as u64, offset, "data arrives in order");
                    s.extend_from_slice(&data);
                }
                Event::PackageComplete { seq, manifest } => {
                    let s = self.staging.remove(&seq).expect("staged");
                    assert_eq!(s.len() as u64, manifest.meta.size);
                    assert!(
                        self.outcome.delivered.insert(seq, s).is_none(),
                        "seq {seq} delivered twice"
                    );
                }
                Event::PackageFailed { seq, reason, .. } => {
                    self.staging.remove(&seq);
                    self.outcome.failed.push((seq, reason));
                }
                Event::Gap { first, last } => self.outcome.gaps.push((first, last)),
                Event::LinkUp => self.outcome.link_up += 1,
                Event::LinkDown { .. } => self.outcome.link_down += 1,
                Event::Heartbeat(_)
                | Event::HeartbeatReplayed { .. }
                | Event::RetiredFormat { .. } => {}
            }
        }
    }
}

pub fn sender(keys: &Keys, cfg: SenderConfig) -> Sender {
    Sender::new(cfg, Box::new(keys.seal()), chain(&keys.epoch0)).expect("sender")
}

pub fn sender_config() -> SenderConfig {
    let mut c = SenderConfig::new(LINK, schedule());
    c.block_symbols = 256;
    c
}

/// Runs `packages` (enqueued at seqs `first_seq..`) through a lossy
/// simulated link. Every datagram that leaves the sender is also passed to
/// `tap` (for replay tests). Time advances 1 ms per 100 datagrams.
pub fn run(
    sender: &mut Sender,
    egress: &mut Egress,
    first_seq: u64,
    packages: &[Vec<u8>],
    net: Net,
    tap: &mut dyn FnMut(&[u8]),
) {
    let mut by_seq = BTreeMap::new();
    for (i, p) in packages.iter().enumerate() {
        let seq = first_seq + i as u64;
        sender.enqueue(START, seq, meta(seq, p)).expect("enqueue");
        by_seq.insert(seq, p.as_slice());
    }
    pump(sender, egress, &by_seq, net, tap);
}

/// Runs what is queued in `sender` (payloads by sequence number) through
/// a lossy simulated link, as [`run`] does.
pub fn pump(
    sender: &mut Sender,
    egress: &mut Egress,
    payloads: &BTreeMap<u64, &[u8]>,
    net: Net,
    tap: &mut dyn FnMut(&[u8]),
) {
    let mut rng = StdRng::seed_from_u64(net.seed);
    let mut now = START;
    let mut buf = vec![0u8; sender.max_datagram_len()];
    let mut held: VecDeque<(u32, Vec<u8>)> = VecDeque::new();
    let mut produced: u64 = 0;
    let mut idle_rounds = 0;
    loop {
        match sender.poll_transmit(now, &mut buf).expect("transmit") {
            Transmit::Datagram(n) => {
                produced += 1;
                if produced.is_multiple_of(100) {
                    now = now.plus(1);
                }
                let d = buf[..n].to_vec();
                tap(&d);
                if net
                    .outage
                    .is_some_and(|(a, b)| (a..b).contains(&(produced - 1)))
                {
                    continue;
                }
                deliver(&mut rng, net, d, &mut held, egress, now);
            }
            Transmit::NeedPayload { seq, offset, len } => {
                let p = payloads[&seq];
                let o = offset as usize;
                sender
                    .provide_payload(seq, offset, &p[o..o + len])
                    .expect("provide");
            }
            Transmit::Idle => {
                // Flush reordered datagrams, let timers run.
                while let Some((_, d)) = held.pop_front() {
                    egress.receiver.handle_datagram(now, &d);
                }
                if sender.queued() == 0 {
                    idle_rounds += 1;
                }
                now = sender.poll_timeout().max(now.plus(1));
                egress.receiver.handle_timeout(now);
                egress.drain();
                if idle_rounds > 8 && egress.receiver.in_flight() == 0 {
                    break;
                }
            }
        }
        egress.drain();
    }
    // Long enough for every timer (idle timeout, gap checks) to fire.
    for _ in 0..20 {
        now = now.plus(1000);
        let mut tmp = vec![0u8; sender.max_datagram_len()];
        if let Ok(Transmit::Datagram(n)) = sender.poll_transmit(now, &mut tmp) {
            egress.receiver.handle_datagram(now, &tmp[..n]);
        }
        egress.receiver.handle_timeout(now);
        egress.drain();
    }
}

fn deliver(
    rng: &mut StdRng,
    net: Net,
    mut d: Vec<u8>,
    held: &mut VecDeque<(u32, Vec<u8>)>,
    egress: &mut Egress,
    now: Millis,
) {
    if rng.gen_bool(net.loss) {
        return;
    }
    if rng.gen_bool(net.corrupt) {
        let i = rng.gen_range(0..d.len());
        d[i] ^= 1 << rng.gen_range(0..8);
    }
    let copies = if rng.gen_bool(net.duplicate) { 2 } else { 1 };
    for _ in 0..copies {
        if rng.gen_bool(net.reorder) {
            held.push_back((rng.gen_range(1..64), d.clone()));
        } else {
            egress.receiver.handle_datagram(now, &d);
        }
    }
    // Release held datagrams whose delay ran out.
    let mut i = 0;
    while i < held.len() {
        if held[i].0 == 0 {
            if let Some((_, x)) = held.remove(i) {
                egress.receiver.handle_datagram(now, &x);
            }
        } else {
            held[i].0 -= 1;
            i += 1;
        }
    }
}
