//! Hardening is irreversible, so each test that applies a step runs it in
//! a child process: the test binary again, filtered to that one test,
//! with a marker in the environment telling it that it is the child.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const MARKER: &str = "FERRY_HARDENING_CHILD";
const CHILD_LIMIT: Duration = Duration::from_secs(30);

/// What a test is, in this process.
pub enum Role {
    /// The parent: the child ran (or was killed); here is how it ended.
    Parent(ChildOutcome),
    /// This process is the child: apply the step and assert.
    Child,
}

/// How the child ended and what it printed.
pub struct ChildOutcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ChildOutcome {
    /// Panics with the child's output unless it passed.
    pub fn assert_passed(&self) {
        assert!(
            self.status.success(),
            "child {:?}\n{}{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs the test named `name` (its full path, e.g.
/// `seccomp::tests::forbidden_call_fails`) in a child, or says that this
/// process is that child.
pub fn child(name: &str) -> Role {
    if std::env::var(MARKER).as_deref() == Ok(name) {
        return Role::Child;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut c = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(MARKER, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child test");
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(s) = c.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("child test {name} did not finish within {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = c.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Role::Parent(ChildOutcome {
        status,
        stdout,
        stderr,
    })
}

/// Whether the tests run as root (the privilege-drop tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A field of `/proc/thread-self/status` (the calling thread's view:
/// no-new-privs and Landlock are per thread).
pub fn status_field(name: &str) -> String {
    let text = std::fs::read_to_string("/proc/thread-self/status").expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name} in status:\n{text}"))
}
