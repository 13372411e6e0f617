//! The intl suite's format 2 datagram authenticator (GHASH then AES-256)
//! under attack through the protocol's real sender and receiver: the
//! must-show test of the wire version that replaced truncated HMAC-SHA256.
//! (The intl suite's link behaviour under loss is in ferry-protocol's own
//! tests, which run on it.)

use ferry_protocol::epoch::EpochChain;
use ferry_protocol::suite::{LinkCrypto, Secret32};
use ferry_protocol::{
    PackageId, PackageMeta, Receiver, ReceiverConfig, ReplayWindow, Sender, SenderConfig,
};
use ferry_suites::intl::{self, IntlLink, IntlOpenKeys, IntlSealKeys};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::START;

const LINK: &str = "intl-sim-link";

fn chain(secret: &Secret32) -> EpochChain {
    common::chain(&IntlLink, secret)
}

/// The promise of GM format 2's test, for intl format 2: forged,
/// bit-flipped and replayed datagrams of every kind are refused at the tag,
/// or earlier at the parser, before any work.
#[test]
fn intl_format_2_refuses_forged_bit_flipped_and_replayed_datagrams_before_any_work() {
    let (seed, sig_pub) = intl::generate_signing_key().expect("signing key");
    let (agr, agr_pub) = intl::generate_agreement_key().expect("agreement key");
    let epoch0 = Secret32(rand::random());
    let seal = IntlSealKeys::new(&seed, "sig-1".into(), agr_pub, "agr-1".into()).expect("seal");

    let mut rng = StdRng::seed_from_u64(9);
    let data: Vec<u8> = (0..300_000).map(|_| rng.gen()).collect();
    let mut digest = IntlLink.new_digest();
    digest.update(&data);
    let meta = PackageMeta {
        id: PackageId([7; 16]),
        channel: "stats".into(),
        size: data.len() as u64,
        digest: digest.finish(),
        file_name: "file-0.bin".into(),
        content_type: "application/octet-stream".into(),
        sender_identity: "CN=test".into(),
        created_unix_ms: START.0,
        inspection: None,
    };
    let mut config = SenderConfig::new(LINK, common::schedule());
    config.block_symbols = 256;
    config.repair_overhead_percent = 15.0;
    let sender = Sender::new(config, Box::new(seal), chain(&epoch0)).expect("sender");
    let wire = common::capture(sender, meta, &data);
    assert!(
        wire.iter().all(|d| d[2] == 4),
        "intl format 2 is suite byte 4 on the wire"
    );

    common::datagram_tag_attack(&wire, &data, || {
        let open =
            IntlOpenKeys::new(&agr, "agr-1".into(), sig_pub, "sig-1".into()).expect("open keys");
        let mut cfg = ReceiverConfig::new(LINK, common::schedule());
        cfg.max_buffer_bytes = 64 << 20;
        Receiver::new(cfg, Box::new(open), chain(&epoch0), ReplayWindow::new())
    });
}
