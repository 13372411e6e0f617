//! ferryd and ferryctl: the I/O shell around ferry-protocol.

#![forbid(unsafe_code)]

pub mod config;
pub mod outbox;
pub mod pacer;
pub mod policy_gate;
pub mod store;
pub mod udp;

pub(crate) mod accept;
pub mod admin;
pub mod admin_api;
pub mod approvals;
pub mod approvals_cli;
pub mod audit_trail;
pub mod bench;
pub mod bench_e2e;
pub mod certs_cli;
pub mod content;
pub mod control;
pub mod demo;
pub mod egress;
mod error;
pub mod expiry;
pub mod forward;
pub mod gaps;
pub(crate) mod https_server;
pub mod ingest;
pub mod ingress;
pub mod inspect_cli;
pub mod keys_cli;
pub mod metrics;
pub mod push;
pub mod selfcheck;
pub mod spool;
pub mod systemd_dropin;
pub mod testbed;
pub mod window_holds;

pub use error::DaemonError;

/// Wall-clock time for the protocol (ms since the Unix epoch). The protocol
/// never reads a clock itself; this is the one place the daemon does.
pub fn now_millis() -> ferry_protocol::Millis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    ferry_protocol::Millis(u64::try_from(ms).unwrap_or(u64::MAX))
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
