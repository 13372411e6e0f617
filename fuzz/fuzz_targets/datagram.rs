//! Everything a datagram from the one-way link reaches, fed with arbitrary
//! bytes: the parser, and a receiver.
//!
//! Each input is used twice:
//! 1. as one raw datagram, to `wire::parse` and to a fresh receiver: it
//!    must be dropped and counted, never panic, never authenticate;
//! 2. if its first byte has the top bit set, the rest is a script that
//!    drives a fresh receiver through a genuine sender's stream (three
//!    packages, two sends each): deliver, drop, corrupt-and-re-MAC a
//!    datagram, inject an arbitrary datagram under the valid MAC key, or
//!    let time pass. Re-MACing stands for a sender bug or a stolen epoch
//!    key: it reaches the code behind the MAC check (manifest decoding,
//!    geometry checks, FEC decoding, decryption). Whatever the script
//!    does, a package reported complete must be byte-identical to what was
//!    sent (the signature and the AEAD make anything else a bug), the
//!    event contract must hold, and once every timer has run nothing may
//!    stay buffered.
//!
//! Keys and the sender's stream are made once per process; the receiver
//! is rebuilt for every input, so every crash reproduces from its input.
#![no_main]

use ferry_protocol::epoch::{EpochChain, EpochSchedule};
use ferry_suites::intl::{self, IntlLink, IntlOpenKeys, IntlSealKeys};
use ferry_protocol::suite::{
    CryptoError, LinkCrypto, OpenKeys, PayloadCipher, Secret32, DATAGRAM_TAG_LEN,
};
use ferry_protocol::{
    wire, Event, Millis, PackageId, PackageMeta, Receiver, ReceiverConfig, ReplayWindow, Sender,
    SenderConfig, Transmit,
};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

const LINK: &str = "fuzz-link";
/// Simulated wall clock at the start of the stream (epoch 0 begins here).
const START: Millis = Millis(1_800_000_000_000);
/// The largest datagram any receiver accepts (MAX_MTU - 28).
const MAX_LEN: usize = wire::MAX_MTU - wire::IP_UDP_OVERHEAD;

fn schedule() -> EpochSchedule {
    EpochSchedule {
        origin_unix_s: START.0 / 1000,
        length_s: 3600,
    }
}

struct Fixture {
    open: IntlOpenKeys,
    epoch0: Secret32,
    /// Plaintext of each package, indexed by sequence number.
    payloads: Vec<Vec<u8>>,
    /// The sender's output: (ms since START when produced, datagram).
    stream: Vec<(u64, Vec<u8>)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(make_fixture)
}

fn make_fixture() -> Fixture {
    let (seed, sig_pub) = intl::generate_signing_key().expect("signing key");
    let (agr, agr_pub) = intl::generate_agreement_key().expect("agreement key");
    let (epoch0, _) = intl::generate_agreement_key().expect("random epoch secret");
    let seal = IntlSealKeys::new(&seed, "sig-1".into(), agr_pub, "agr-1".into()).expect("seal");
    let open = IntlOpenKeys::new(&agr, "agr-1".into(), sig_pub, "sig-1".into()).expect("open");

    // Small geometry so a short stream has several blocks and chunks: MTU
    // 1280 (1204-byte symbols), 4 source symbols per block, 1000-byte
    // chunks, and every package sent twice.
    let mut cfg = SenderConfig::new(LINK, schedule());
    cfg.mtu = wire::MIN_MTU;
    cfg.block_symbols = 4;
    cfg.chunk_size = 1000;
    cfg.redundancy = 2;
    cfg.redundancy_spacing_ms = 200;
    let chain = EpochChain::new(&IntlLink, 0, epoch0.clone(), 1);
    let mut sender = Sender::new(cfg, Box::new(seal), chain).expect("sender");

    let payloads: Vec<Vec<u8>> = [6000usize, 0, 1300]
        .iter()
        .enumerate()
        .map(|(p, n)| (0..*n).map(|i| (i * 7 + p * 13) as u8).collect())
        .collect();
    let mut now = START;
    for (seq, p) in payloads.iter().enumerate() {
        sender
            .enqueue(now, seq as u64, meta(seq as u64, p))
            .expect("enqueue");
    }
    let mut stream = Vec::new();
    let mut buf = vec![0u8; sender.max_datagram_len()];
    loop {
        match sender.poll_transmit(now, &mut buf).expect("transmit") {
            Transmit::Datagram(n) => stream.push((now.since(START), buf[..n].to_vec())),
            Transmit::NeedPayload { seq, offset, len } => {
                let o = offset as usize;
                sender
                    .provide_payload(seq, offset, &payloads[seq as usize][o..o + len])
                    .expect("provide");
            }
            Transmit::Idle if sender.queued() == 0 => break,
            Transmit::Idle => now = sender.poll_timeout().max(now.plus(1)),
        }
    }
    // A last heartbeat saying the sender is done with every package.
    now = sender.poll_timeout().max(now.plus(1));
    if let Ok(Transmit::Datagram(n)) = sender.poll_transmit(now, &mut buf) {
        stream.push((now.since(START), buf[..n].to_vec()));
    }
    Fixture {
        open,
        epoch0,
        payloads,
        stream,
    }
}

fn meta(seq: u64, data: &[u8]) -> PackageMeta {
    let mut d = IntlLink.new_digest();
    d.update(data);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seq.to_be_bytes());
    PackageMeta {
        id: PackageId(id),
        channel: "fuzz".into(),
        size: data.len() as u64,
        digest: d.finish(),
        file_name: format!("p{seq}.bin"),
        content_type: "application/octet-stream".into(),
        sender_identity: "CN=fuzz".into(),
        created_unix_ms: START.0,
        inspection: None,
    }
}

/// The fixture's open keys, shared by every receiver (`IntlOpenKeys` is not
/// `Clone`, and rebuilding it costs a scalar multiplication per input).
struct SharedKeys(&'static IntlOpenKeys);

impl OpenKeys for SharedKeys {
    fn link(&self) -> &dyn LinkCrypto {
        self.0.link()
    }
    fn sender_key_id(&self) -> &str {
        self.0.sender_key_id()
    }
    fn recipient_key_id(&self) -> &str {
        self.0.recipient_key_id()
    }
    fn verify(&self, key_id: &str, msg: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        self.0.verify(key_id, msg, signature)
    }
    fn open_package(
        &self,
        recipient_key_id: &str,
        epoch_secret: &Secret32,
        ephemeral: &[u8],
        context: &[u8],
    ) -> Result<Box<dyn PayloadCipher>, CryptoError> {
        self.0
            .open_package(recipient_key_id, epoch_secret, ephemeral, context)
    }
}

impl Fixture {
    fn receiver(&'static self) -> Receiver {
        let mut cfg = ReceiverConfig::new(LINK, schedule());
        // Accept the largest datagrams, so the whole input reaches it.
        cfg.mtu = wire::MAX_MTU;
        cfg.max_buffer_bytes = 4 << 20;
        cfg.max_packages_in_flight = 8;
        let chain = EpochChain::new(&IntlLink, 0, self.epoch0.clone(), 1);
        Receiver::new(
            cfg,
            Box::new(SharedKeys(&self.open)),
            chain,
            ReplayWindow::new(),
        )
    }
}

/// Recomputes the tag of `d` under the receiver's key for the epoch the
/// datagram claims (when the receiver holds one).
fn retag(rx: &Receiver, d: &mut [u8]) {
    if d.len() < wire::COMMON_HEADER_LEN + DATAGRAM_TAG_LEN {
        return;
    }
    let epoch = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
    if let Some(mac) = rx.epochs().mac(epoch) {
        let n = d.len() - DATAGRAM_TAG_LEN;
        let tag = mac.tag(&d[..n]);
        d[n..].copy_from_slice(&tag);
    }
}

/// What the egress daemon would stage, checked against the event contract.
#[derive(Default)]
struct Staging {
    open: BTreeMap<u64, Vec<u8>>,
    completed: BTreeSet<u64>,
}

impl Staging {
    fn drain(&mut self, rx: &mut Receiver, fx: &Fixture) {
        while let Some(e) = rx.poll_event() {
            match e {
                Event::PackageStarted { seq, .. } => {
                    self.open.insert(seq, Vec::new());
                }
                Event::PackageData { seq, offset, data } => {
                    let s = self
                        .open
                        .get_mut(&seq)
                        .expect("PackageData without PackageStarted");
                    assert_eq!(s.len() as u64, offset, "PackageData out of order");
                    s.extend_from_slice(&data);
                }
                Event::PackageComplete { seq, manifest } => {
                    let s = self
                        .open
                        .remove(&seq)
                        .expect("PackageComplete without PackageStarted");
                    assert!(self.completed.insert(seq), "seq {seq} completed twice");
                    let want = fx.payloads.get(seq as usize).expect("seq was sent");
                    assert_eq!(manifest.meta.size, want.len() as u64);
                    assert!(s == *want, "seq {seq} delivered with different bytes");
                }
                Event::PackageFailed { seq, .. } => {
                    self.open.remove(&seq);
                }
                Event::Gap { first, last } => assert!(first <= last, "empty gap"),
                Event::LinkUp
                | Event::LinkDown { .. }
                | Event::Heartbeat(_)
                | Event::HeartbeatReplayed { .. }
                | Event::RetiredFormat { .. } => {}
            }
        }
    }
}

struct Script<'a> {
    b: &'a [u8],
}

impl<'a> Script<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }
    fn u16(&mut self) -> u16 {
        let hi = self.u8().unwrap_or(0);
        let lo = self.u8().unwrap_or(0);
        u16::from_be_bytes([hi, lo])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (x, rest) = self.b.split_at(n.min(self.b.len()));
        self.b = rest;
        x
    }
}

fn run_script(fx: &'static Fixture, script: &[u8]) {
    let mut rx = fx.receiver();
    let mut staging = Staging::default();
    let mut s = Script { b: script };
    let mut clock: u64 = 0;
    let mut next = 0usize;
    let mut delivered = 0u64;

    // Datagram `i` of the stream goes out no earlier than the sender made it.
    let at = |clock: &mut u64, i: usize| {
        *clock = (*clock).max(fx.stream[i].0);
        START.plus(*clock)
    };

    while let Some(op) = s.u8() {
        if op & 0x04 != 0 {
            clock += u64::from(op >> 3) * 50;
            rx.handle_timeout(START.plus(clock));
        }
        match op & 0x03 {
            // Deliver the next datagram of the stream.
            0 if next < fx.stream.len() => {
                let now = at(&mut clock, next);
                rx.handle_datagram(now, &fx.stream[next].1);
                next += 1;
                delivered += 1;
            }
            // Lose it.
            1 => next += 1,
            // Flip bits in its authenticated part and re-MAC it.
            2 if next < fx.stream.len() => {
                let now = at(&mut clock, next);
                let mut d = fx.stream[next].1.clone();
                let pos = usize::from(s.u16()) % (d.len() - DATAGRAM_TAG_LEN);
                d[pos] ^= s.u8().unwrap_or(1).max(1);
                retag(&rx, &mut d);
                rx.handle_datagram(now, &d);
                next += 1;
                delivered += 1;
            }
            // Inject arbitrary bytes on this link, under the valid MAC key.
            3 => {
                let len = usize::from(s.u16()) % (MAX_LEN + 1);
                let mut d = s.take(len).to_vec();
                if d.len() >= 8 {
                    d[4..8].copy_from_slice(&wire::link_id(LINK).to_be_bytes());
                }
                retag(&rx, &mut d);
                rx.handle_datagram(START.plus(clock), &d);
                delivered += 1;
            }
            _ => {}
        }
        staging.drain(&mut rx, fx);
    }
    // The rest of the stream arrives untouched.
    while next < fx.stream.len() {
        let now = at(&mut clock, next);
        rx.handle_datagram(now, &fx.stream[next].1);
        next += 1;
        delivered += 1;
        staging.drain(&mut rx, fx);
    }
    // Let every timer run out.
    for _ in 0..3 {
        clock += 20_000;
        rx.handle_timeout(START.plus(clock));
        staging.drain(&mut rx, fx);
    }

    let st = rx.stats();
    assert_eq!(st.datagrams, delivered);
    assert_eq!(
        st.malformed + st.other_link + st.stale_epoch + st.forged + st.authenticated,
        st.datagrams,
        "every datagram is either dropped before the MAC or authenticated: {st:?}"
    );
    assert!(
        st.duplicate + st.too_old + st.late + st.inconsistent <= st.authenticated,
        "a datagram counted twice: {st:?}"
    );
    assert_eq!(rx.in_flight(), 0, "a package outlived every timer");
    assert_eq!(
        st.buffered_bytes, 0,
        "bytes still held after every timer ran"
    );
}

fuzz_target!(|data: &[u8]| {
    let _ = wire::parse(data, MAX_LEN);

    let fx = fixture();
    let mut rx = fx.receiver();
    rx.handle_datagram(START, data);
    let st = rx.stats();
    assert_eq!(st.authenticated, 0, "an unkeyed input authenticated");
    assert_eq!(
        st.malformed + st.other_link + st.stale_epoch + st.forged,
        1,
        "a raw datagram is dropped and counted exactly once: {st:?}"
    );
    // The one event a raw datagram may raise: the notice that this link's
    // datagrams come in a retired suite format (an unauthenticated header
    // byte, reported once).
    assert!(matches!(
        rx.poll_event(),
        None | Some(Event::RetiredFormat { .. })
    ));
    assert!(rx.poll_event().is_none());

    if let Some((&mode, script)) = data.split_first() {
        if mode & 0x80 != 0 {
            run_script(fx, script);
        }
    }
});
