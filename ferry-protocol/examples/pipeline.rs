//! In-memory ceiling of the protocol: seal + FEC + MAC on one side,
//! authenticate + decode + decrypt + digest on the other, no sockets.
//! `cargo run --release -p ferry-protocol --example pipeline -- [MIB] [LOSS%]`

use ferry_protocol::epoch::{EpochChain, EpochSchedule};
use ferry_protocol::suite::{LinkCrypto, Secret32};
use ferry_protocol::{
    Event, Millis, PackageId, PackageMeta, Receiver, ReceiverConfig, ReplayWindow, Sender,
    SenderConfig, Transmit,
};
use ferry_suites::intl::{self, IntlLink, IntlOpenKeys, IntlSealKeys};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let loss: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let size = mib << 20;
    let data: Vec<u8> = (0..size)
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    let mut d = IntlLink.new_digest();
    d.update(&data);
    let digest = d.finish();
    let (seed, sig_pub) = intl::generate_signing_key()?;
    let (agr, agr_pub) = intl::generate_agreement_key()?;
    let sched = EpochSchedule {
        origin_unix_s: 1_767_225_600,
        length_s: 3600,
    };
    let now = Millis(1_800_000_000_000);
    let chain = || {
        let mut c = EpochChain::new(&IntlLink, 0, Secret32([7; 32]), 1);
        c.advance_to(&IntlLink, sched.epoch_at(now));
        c
    };
    let mut s = Sender::new(
        SenderConfig::new("bench", sched),
        Box::new(IntlSealKeys::new(&seed, "s".into(), agr_pub, "a".into())?),
        chain(),
    )?;
    let mut r = Receiver::new(
        ReceiverConfig::new("bench", sched),
        Box::new(IntlOpenKeys::new(&agr, "a".into(), sig_pub, "s".into())?),
        chain(),
        ReplayWindow::new(),
    );
    s.enqueue(
        now,
        1,
        PackageMeta {
            id: PackageId([1; 16]),
            channel: "c".into(),
            size: size as u64,
            digest,
            file_name: "f".into(),
            content_type: "x".into(),
            sender_identity: "i".into(),
            created_unix_ms: 0,
            inspection: None,
        },
    )?;
    let mut buf = vec![0u8; s.max_datagram_len()];
    let mut dgs: Vec<Vec<u8>> = Vec::new();
    let t = Instant::now();
    loop {
        match s.poll_transmit(now, &mut buf)? {
            Transmit::Datagram(n) => dgs.push(buf[..n].to_vec()),
            Transmit::NeedPayload {
                seq: _,
                offset,
                len,
            } => {
                let o = offset as usize;
                s.provide_payload(1, offset, &data[o..o + len])?;
            }
            Transmit::Idle => break,
        }
    }
    let send = t.elapsed();
    let mut x: u64 = 88172645463325252;
    let t = Instant::now();
    let mut got = 0usize;
    let mut ok = false;
    for dg in &dgs {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 100_000) as f64 / 1000.0 < loss {
            continue;
        }
        r.handle_datagram(now, dg);
        while let Some(e) = r.poll_event() {
            match e {
                Event::PackageData { data, .. } => got += data.len(),
                Event::PackageComplete { .. } => ok = true,
                Event::PackageFailed { reason, .. } => println!("failed: {reason}"),
                _ => {}
            }
        }
    }
    let recv = t.elapsed();
    let mbs = |d: Duration| size as f64 / d.as_secs_f64() / 1e6;
    println!("{mib} MiB, {} datagrams, loss {loss}%: sender {:.0} MB/s, receiver {:.0} MB/s, complete={ok} bytes={got}", dgs.len(), mbs(send), mbs(recv));
    Ok(())
}
