//! ferryd and ferryctl: the I/O shell around ferry-protocol.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod egress;
mod error;
pub mod http;
pub mod ingress;
pub mod inspection;
pub mod link;
pub mod ops;
pub mod state;
pub mod testkit;

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
