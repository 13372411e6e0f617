//! Shared pieces of the end-to-end tests: a generated two-sided link in a
//! temporary directory, real `ferryd` processes, and bounded waits.
#![allow(dead_code)]

use ferry_daemon::testkit::{self, Testbed, TestbedOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn ferryd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferryd"))
}

pub fn ferryctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferryctl"))
}

/// How long a daemon may take to start listening (generous: a busy
/// machine starts slowly; it bounds a failure, it measures nothing).
pub const LISTEN_LIMIT: Duration = Duration::from_secs(30);

/// A running `ferryd`, killed (SIGKILL) when dropped unless stopped first.
pub struct Daemon {
    pub child: Child,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with(config, &[])
    }

    /// Starts it and waits until it answers on its control socket: an
    /// egress side has then bound its link sockets, so nothing an ingress
    /// side sends afterwards is lost to a closed port.
    pub fn start_ready(config: &Path) -> Daemon {
        let mut d = Daemon::start(config);
        wait_for(Duration::from_secs(30), "ferryd ready", || {
            assert!(d.alive(), "ferryd exited:\n{}", d.log_text());
            status(config).is_some()
        });
        d
    }

    /// `prefix` runs the daemon under another command (e.g. `ip netns exec NS`).
    pub fn start_with(config: &Path, prefix: &[&str]) -> Daemon {
        let log = config.with_extension("log");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = if prefix.is_empty() {
            Command::new(ferryd())
        } else {
            let mut c = Command::new(prefix[0]);
            c.args(&prefix[1..]).arg(ferryd());
            c
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn ferryd");
        Daemon {
            child,
            config: config.to_path_buf(),
            log,
        }
    }

    /// Waits until every one of `ports` on 127.0.0.1 accepts a connection
    /// (`what` names them in the failure); fails with the log if the daemon
    /// exits first.
    pub fn wait_listening(&mut self, ports: &[u16], what: &str) {
        wait_for(LISTEN_LIMIT, what, || {
            assert!(self.alive(), "ferryd exited:\n{}", self.log_text());
            ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        ferry_daemon::cli::demo::stop_child(&mut self.child, Duration::from_secs(10));
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's peak resident set (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test (a timed-out wait, a wrong file) shows what each
        // daemon said: on a CI machine that log is the only witness.
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(LOG_TAIL_LINES).collect();
            eprintln!(
                "---- last {} lines of {} (config {}) ----",
                tail.len(),
                self.log.display(),
                self.config.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Lines of a daemon's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

pub fn testbed(dir: &Path, f: impl FnOnce(&mut TestbedOptions)) -> Testbed {
    let mut o = TestbedOptions::loopback("e2e").expect("options");
    f(&mut o);
    testkit::create(dir, &o).expect("testbed")
}

/// A link paced at `rate` bytes/s with one package per send, so that
/// packages wait in the ingress queue (for a test that stops a channel
/// or closes a window on them). The loss budget is off: loopback loses
/// nothing, and such tests time their pacing for the fixed repair.
pub fn one_by_one_slow_testbed(dir: &Path, rate: u64) -> Testbed {
    let tb = testbed(dir, |o| {
        o.rate_bytes_per_s = rate;
        o.loss_budget_percent = 0.0;
    });
    // Bundled, a burst would be handed to the sender at once and none
    // left queued.
    link_keys(&tb.ingress_config, "bundle_max_packages = 1");
    tb
}

/// Waits until `f` is true or `limit` passes; panics with `what` on timeout.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Deterministic file content.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Data files (not sidecars, not staging) in an outbox.
pub fn outbox_files(outbox: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(outbox)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && !n.ends_with(".ferry.json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Status of a running daemon through `ferryctl status --json`.
pub fn status(config: &Path) -> Option<serde_json::Value> {
    let out = Command::new(ferryctl())
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `ferryctl ARGS`: its output, whatever its exit status.
pub fn ctl(args: &[&str]) -> Output {
    Command::new(ferryctl())
        .args(args)
        .output()
        .expect("spawn ferryctl")
}

/// `field` of each package `ferryctl approvals list --json` shows held
/// on the ingress side of `config` that `pick` selects (nothing while the
/// command fails).
pub fn held_field(
    config: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
    field: &str,
) -> Vec<String> {
    let o = ctl(&["approvals", "list", "--config", config, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v["held"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|h| pick(h))
                .filter_map(|h| h[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `ferryctl ARGS`, which must succeed; its standard output. On failure the
/// panic shows both streams.
pub fn ctl_ok(args: &[&str]) -> String {
    let o = ctl(args);
    assert!(o.status.success(), "ferryctl {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `ferryctl ARGS` run as `uid` with primary group `gid` and no
/// supplementary groups (through `setpriv`, so the caller must be root),
/// killed by `timeout` if it runs past [`CTL_AS_LIMIT_S`].
pub fn ctl_as(uid: u32, gid: u32, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(CTL_AS_LIMIT_S.to_string())
        .arg("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(ferryctl())
        .args(args)
        .output()
        .expect("setpriv ferryctl")
}

/// Longest a [`ctl_as`] run may take, in seconds.
pub const CTL_AS_LIMIT_S: u64 = 120;

/// True when the test may act as other accounts (root and `setpriv`);
/// otherwise records a skip and returns false.
pub fn setpriv_or_skip(what: &str) -> bool {
    if !root_or_skip(what) {
        return false;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        skip("setpriv (util-linux) is not installed");
        return false;
    }
    true
}

/// Standard output then standard error, for assertion messages and for
/// looking for words wherever the command put them.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A finished command: its exit code and both streams.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdin empty, both streams read while it runs, so a chatty
/// command cannot fill a pipe and stall), killing it and failing the test
/// after `limit`: a command that hangs shows as this failure, not as a hung
/// test.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    }
}

/// Runs `ferryctl ARGS` through [`run_within`].
pub fn ctl_within(args: &[&str], limit: Duration) -> Run {
    let o = run_within(Command::new(ferryctl()).args(args), limit);
    Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Where skipped tests are listed, one line each, so that a run can say how
/// many did not run (`.ci/run` prints the count after `cargo test`).
pub const SKIPPED_LIST: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/ferry-skipped-tests.txt");

/// Says loudly that the running test is skipped and why, and appends
/// `TEST-BINARY::TEST: WHY` to [`SKIPPED_LIST`]. The caller returns next.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    let why = why.replace('\n', " ");
    let line = format!("{}::{test}: {why}", env!("CARGO_CRATE_NAME"));
    eprintln!("skipped (loudly): {line}");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(SKIPPED_LIST)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("could not list the skip in {SKIPPED_LIST}: {e}");
    }
}

/// True when the test may go on as root; otherwise records a skip for
/// `what` ("acting as other uids (setpriv)") and returns false.
pub fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(&format!("{what} needs root"));
    false
}

/// A loopback TCP port that was free a moment ago, outside the range the
/// kernel hands out to other tests' clients.
pub fn free_tcp_port() -> u16 {
    ferry_daemon::testkit::free_port(ferry_daemon::testkit::Proto::Tcp).expect("free port")
}

/// A site CA made with `ferryctl certs` in `ca`, issuing server and client
/// certificates.
#[derive(Clone)]
pub struct SiteCa {
    pub dir: PathBuf,
}

impl SiteCa {
    pub fn init(dir: &Path) -> SiteCa {
        ctl_ok(&["certs", "init-ca", "--dir", path_str(dir)]);
        SiteCa {
            dir: dir.to_path_buf(),
        }
    }

    /// A CA already made in `dir`.
    pub fn at(dir: &Path) -> SiteCa {
        SiteCa {
            dir: dir.to_path_buf(),
        }
    }

    /// `ca.crt`.
    pub fn crt(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `out/NAME.crt` and `.key` for 127.0.0.1.
    pub fn server(&self, out: &Path, name: &str) {
        ctl_ok(&[
            "certs",
            "issue-server",
            "--ca",
            path_str(&self.dir),
            "--out",
            path_str(out),
            "--name",
            name,
            "--ip",
            "127.0.0.1",
        ]);
    }

    /// `out/NAME.crt` and `.key` carrying `role`.
    pub fn client(&self, out: &Path, name: &str, role: &str) {
        ctl_ok(&[
            "certs",
            "issue-client",
            "--ca",
            path_str(&self.dir),
            "--out",
            path_str(out),
            "--name",
            name,
            "--role",
            role,
        ]);
    }
}

/// A path as the `&str` a command line takes (the tests make only UTF-8 paths).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Appends `text` to a configuration file.
pub fn append_config(config: &Path, text: &str) {
    let cfg = std::fs::read_to_string(config).expect("config");
    std::fs::write(config, format!("{cfg}\n{text}")).expect("config");
}

/// An `[ingest]` section on `port` with the server certificate
/// `tls/ingest.crt` (next to the configuration) and `ca` for clients.
pub fn ingest_section(port: u16, ca: &SiteCa, extra: &str) -> String {
    format!(
        "[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmin_free_bytes = 0\n{extra}",
        path_str(&ca.crt())
    )
}

/// `curl` to `https://127.0.0.1:PORT{path}` trusting `ca`, with the
/// certificate `dir/WHO.crt` (or none) and `extra` arguments: the HTTP
/// code ("000" when there was no answer) and the body.
pub fn curl_https(
    ca: &SiteCa,
    port: u16,
    path: &str,
    client: Option<(&Path, &str)>,
    extra: &[&str],
) -> (String, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(ca.crt());
    if let Some((dir, who)) = client {
        c.arg("--cert")
            .arg(dir.join(format!("{who}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{who}.key")));
    }
    let out = c
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = t.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().to_owned(), body.to_owned())
}

/// Adds `lines` to the `[link]` section of `config` (it comes right
/// before `[paths]` in the testbed's files).
pub fn link_keys(config: &Path, lines: &str) {
    let text = std::fs::read_to_string(config).expect("config");
    std::fs::write(
        config,
        text.replacen("\n[paths]", &format!("{lines}\n\n[paths]"), 1),
    )
    .expect("config");
}

/// Sets up an audit log for `config` and returns its directory.
pub fn with_audit(root: &Path, config: &Path, name: &str) -> PathBuf {
    let dir = root.join(format!("audit-{name}"));
    let key = root.join(format!("{name}.verify"));
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&dir),
        "--verify-key-out",
        path_str(&key),
    ]);
    append_config(
        config,
        &format!("\n[audit]\ndir = \"{}\"\n", path_str(&dir)),
    );
    dir
}

pub fn audit_records(dir: &Path, event: &str) -> Vec<serde_json::Value> {
    let text = ctl_ok(&[
        "audit",
        "query",
        "--dir",
        path_str(dir),
        "--event",
        event,
        "--json",
    ]);
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| match v {
            serde_json::Value::Array(a) => a,
            other => vec![other],
        })
        .collect()
}

/// Puts `name` into `spool` the way a careless writer does: 128 MiB
/// renamed in, then 1 s more of appends (about 4 MB, a write every
/// millisecond), so the intake is still taking it (digest, fsync) when
/// the appends land. Returns the whole content written.
pub fn spool_growing_file(spool: &Path, name: &str) -> Vec<u8> {
    let mut whole = content(3, 128 << 20);
    let tmp = spool.join(format!(".{name}"));
    let mut f = std::fs::File::create(&tmp).expect("create");
    f.write_all(&whole).expect("write");
    std::fs::rename(&tmp, spool.join(name)).expect("rename");
    let until = Instant::now() + Duration::from_secs(1);
    let mut n = 0u64;
    while Instant::now() < until {
        let piece = content(1000 + n, 4096);
        f.write_all(&piece).expect("append");
        whole.extend_from_slice(&piece);
        n += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    whole
}
