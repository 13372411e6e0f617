//! `ferryctl demo`: both sides of a link as real `ferryd` processes on
//! loopback, fresh keys, a small land-resources data set pushed through the
//! spool, shown delivered with its metadata, then cleaned up. Exits non-zero
//! unless every step did what it says.

use crate::control;
use crate::testbed::{self, TestbedOptions};
use crate::DaemonError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SAMPLES: &[(&str, &str)] = &[
    (
        "landuse-stats-2026.csv",
        "county,arable_ha,forest_ha,construction_ha\nA county,10234.5,30211.0,5120.2\nB county,8012.1,41200.7,3311.9\n",
    ),
    (
        "geological-catalogue.json",
        "{\"catalogue\":\"public geological survey index\",\"entries\":[{\"id\":\"G-001\",\"title\":\"1:200000 regional map\"}]}\n",
    ),
    (
        "planning-notice.txt",
        "Public notice: draft land-use plan for 2026-2035 open for comment until 31 December.\n",
    ),
];

struct Daemon {
    child: Child,
    name: &'static str,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// Stops a `ferryd` child the way an operator would: SIGTERM, then
/// SIGKILL if it has not exited within `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn ferryd_path() -> Result<PathBuf, DaemonError> {
    let me = std::env::current_exe().map_err(DaemonError::io(Path::new("current_exe")))?;
    let p = me.with_file_name("ferryd");
    if p.exists() {
        Ok(p)
    } else {
        Err(DaemonError::Config(format!(
            "ferryd not found next to ferryctl ({}); build both binaries (`cargo build --release`)",
            p.display()
        )))
    }
}

fn start(config: &Path, name: &'static str, log: &Path) -> Result<Daemon, DaemonError> {
    let log = std::fs::File::create(log).map_err(DaemonError::io(log))?;
    let child = Command::new(ferryd_path()?)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(DaemonError::io(config))?;
    Ok(Daemon { child, name })
}

/// Runs the demo; with `keep`, leaves everything in that directory.
pub fn run(keep: Option<&Path>) -> Result<(), DaemonError> {
    let tmp;
    let root = match keep {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(false)
            {
                return Err(DaemonError::Config(format!(
                    "{} is not empty; give --keep a new directory",
                    d.display()
                )));
            }
            d.to_path_buf()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ferry-demo-")
                .tempdir()
                .map_err(DaemonError::io(Path::new("temp dir")))?;
            tmp.path().to_path_buf()
        }
    };
    println!(
        "1. generating keys for both sides and pairing them in {}",
        root.display()
    );
    let tb = testbed::create(&root, &TestbedOptions::loopback("demo")?)?;
    println!("2. starting the egress and the ingress ferryd on loopback");
    let mut egress = start(&tb.egress_config, "egress", &root.join("egress/ferryd.log"))?;
    let mut ingress = start(
        &tb.ingress_config,
        "ingress",
        &root.join("ingress/ferryd.log"),
    )?;
    println!("3. dropping {} files into the ingress spool", SAMPLES.len());
    for (name, body) in SAMPLES {
        testbed::spool_file(&tb.spool, name, body.as_bytes())?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delivered = 0;
    while Instant::now() < deadline {
        for d in [&mut egress, &mut ingress] {
            if let Ok(Some(code)) = d.child.try_wait() {
                return Err(DaemonError::Config(format!(
                    "the {} ferryd exited ({code}); see {}/{}/ferryd.log",
                    d.name,
                    root.display(),
                    d.name
                )));
            }
        }
        delivered = SAMPLES
            .iter()
            .filter(|(n, _)| tb.outbox.join(n).exists())
            .count();
        if delivered == SAMPLES.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if delivered != SAMPLES.len() {
        return Err(DaemonError::Config(format!(
            "only {delivered} of {} files delivered within 30 s; see the logs under {}",
            SAMPLES.len(),
            root.display()
        )));
    }
    println!("4. delivered on the egress side, byte for byte:");
    for (name, body) in SAMPLES {
        let got = std::fs::read(tb.outbox.join(name)).map_err(DaemonError::io(&tb.outbox))?;
        if got != body.as_bytes() {
            return Err(DaemonError::Config(format!(
                "{name} differs from what was sent"
            )));
        }
        let side = tb.outbox.join(format!("{name}.ferry.json"));
        let meta: serde_json::Value = std::fs::read(&side)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                DaemonError::Config(format!("{} missing or unreadable", side.display()))
            })?;
        println!(
            "   {name:<28} {:>4} bytes  package {}  seq {}",
            got.len(),
            meta["package_id"].as_str().unwrap_or("?"),
            meta["seq"]
        );
    }
    std::thread::sleep(Duration::from_millis(1200));
    let egress_cfg = crate::config::load(&tb.egress_config)?;
    let status = control::request(&egress_cfg.control_socket(), &control::Request::Status)?;
    println!(
        "5. egress status: link_up={} delivered={} failed={} gaps={}",
        status["link_up"], status["delivered"], status["failed"], status["gaps"]
    );
    drop(ingress);
    drop(egress);
    match keep {
        Some(d) => println!("6. both sides stopped; state kept in {}", d.display()),
        None => println!("6. both sides stopped; temporary directory removed"),
    }
    println!("demo passed");
    Ok(())
}
