//! ferryd and ferryctl: the I/O shell around ferry-protocol.
//!
//! The protocol crates hold no sockets, clocks or files; this crate owns
//! them. It is split into rooms, each a folder with one job, and a module
//! never imports the module that calls it (shared types sit in leaves:
//! `admin::protocol`, `ingress::shared`, `link::keys`, `state::meta`).
//! `docs/architecture.md` follows one package through them.

#![forbid(unsafe_code)]

/// The admin plane: request/response/status protocol (a leaf), the role
/// gate, the control socket and the admin HTTPS API.
pub mod admin;
/// `ferryctl` subcommands, one file each (benches in `cli/bench`).
pub mod cli;
/// `ferryd.toml`: loading, defaults and checks with located errors.
pub mod config;
/// The egress side: receive, verify, write, deliver, forward downstream.
pub mod egress;
mod error;
/// The one TLS server (ingest and admin APIs) and the one HTTPS client
/// (`ferryctl push` and the forwarder).
pub(crate) mod http;
/// The ingress side: wiring, admission, queue, spool intake, send loop,
/// the HTTPS ingest API (`ingest/`) and held packages (`holds/`).
pub mod ingress;
/// Policy verdicts and content inspection, for both sides.
pub mod inspection;
/// What both link ends share below the protocol: keys and epochs, UDP,
/// pacing.
pub mod link;
/// Running the daemon: audit trail, expiry warnings, metrics, hardening
/// plan.
pub mod ops;
/// What survives a restart: the redb store, the outbox, gap records,
/// stored package metadata.
pub mod state;
/// Two-sided test beds on one host, for tests, the demo and benches.
pub mod testkit;

pub use error::DaemonError;

/// Wall-clock time for the protocol (ms since the Unix epoch). The protocol
/// never reads a clock itself; the daemon hands it this. This and
/// [`now_utc`] are the only places the daemon reads the wall clock (a test
/// or a future simulated clock has one seam); intervals are measured with
/// `Instant`.
pub fn now_millis() -> ferry_protocol::Millis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    ferry_protocol::Millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Wall-clock time for calendar decisions (time windows, spool schedules,
/// certificate expiry, audit timestamps), from the same clock as
/// [`now_millis`].
pub fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Structured logs appended to `file` instead of stderr, without colour:
/// for the benches, which run both daemons in their own process and show
/// the terminal progress and a summary, not a line per package.
/// `RUST_LOG` filters them, default `info`.
pub fn init_logging_to_file(file: std::fs::File) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// Structured logs to stderr (journald captures them under systemd);
/// `RUST_LOG` filters them, default `info`.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
