//! kill -9 during appends from several threads: nothing acknowledged is
//! lost, the torn tail is recovered, and the log verifies.

use ferry_audit::{
    init, verify, Actor, AuditLog, AuditOptions, AuditRecord, EventKind, Outcome, Role, VerifyKey,
};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "FERRY_AUDIT_CRASH_CHILD_DIR";

fn opts() -> AuditOptions {
    AuditOptions {
        max_segment_bytes: 64 * 1024,
        seal_every_records: 50,
        min_free_bytes_accept: 0,
        min_free_bytes_audit: 0,
        ..AuditOptions::default()
    }
}

/// The child: appends from 4 threads forever, printing each acknowledged seq.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only runs when spawned by the parent test
    };
    let log = std::sync::Arc::new(AuditLog::open(std::path::Path::new(&dir), opts()).unwrap());
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            let out = out.clone();
            std::thread::spawn(move || loop {
                let r = AuditRecord::new(
                    EventKind::PackageSent,
                    Actor::new(format!("t{t}"), Role::System),
                    Outcome::Success,
                )
                .package(format!("pkg-{t}"));
                let seq = log.append(r).unwrap();
                let mut o = out.lock().unwrap();
                writeln!(o, "{seq}").unwrap();
                o.flush().unwrap();
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let vk: VerifyKey = init(&dir, &t.path().join("verify.key")).unwrap();
    for round in 0..3 {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = 0u64;
        let mut lines = BufReader::new(stdout).lines();
        let start = Instant::now();
        let target = 300 + round * 100;
        let mut n = 0;
        while let Some(Ok(l)) = lines.next() {
            if let Ok(s) = l.trim().parse::<u64>() {
                acked = acked.max(s);
                n += 1;
            }
            if n >= target || start.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        // Acks printed between our last read and the kill: drain them.
        for l in lines.map_while(Result::ok) {
            if let Ok(s) = l.trim().parse::<u64>() {
                acked = acked.max(s);
            }
        }
        assert!(acked > 0, "child acknowledged nothing");
        let log = AuditLog::open(&dir, opts()).unwrap();
        let h = log.health();
        assert!(
            h.durable_seq >= acked,
            "round {round}: log ends at {} but seq {acked} was acknowledged",
            h.durable_seq
        );
        log.close().unwrap();
        let rep = verify(&dir, &vk, Some(&dir.join("checkpoints.jsonl"))).unwrap();
        assert!(rep.intact(), "round {round}: {rep}");
        assert!(rep.last_seq.unwrap() >= acked);
    }
}
