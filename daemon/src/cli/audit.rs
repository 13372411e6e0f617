//! `ferryctl audit`: the audit crate's tools, and with `--via` the same
//! tools with each use recorded through the running ferryd that holds the
//! log.

use crate::admin::{protocol, socket};
use crate::config;
use std::path::PathBuf;

/// `ferryctl audit`: the tool could not run (files, keys, I/O, the daemon
/// unreachable); 0 and 1 are verify's intact and tampered.
pub const AUDIT_EXIT_COULD_NOT_RUN: u8 = 2;
/// `ferryctl audit --via`: the daemon refused the caller (no auditor role);
/// nothing of the log was shown.
pub const AUDIT_EXIT_REFUSED: u8 = 3;

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The configuration of the running `ferryd` that writes this log: the
    /// use of the audit tools is then recorded through it (the tools
    /// cannot open a log the daemon holds).
    #[arg(long, global = true)]
    pub via: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: ferry_audit::cli::AuditCommand,
}

/// Runs `ferryctl audit`; the exit code is the tool's.
pub fn run(cmd: AuditArgs) -> std::process::ExitCode {
    // Who runs the audit tool is itself audited: the local user.
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| "unknown".to_owned(), |u| u.name);
    let actor = format!("{name} (uid {uid})");
    let result = match cmd.via {
        None => ferry_audit::cli::run(cmd.cmd, &actor),
        Some(via) => {
            let cfg = match config::load(&via) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferryctl: {e:#}");
                    return std::process::ExitCode::from(AUDIT_EXIT_COULD_NOT_RUN);
                }
            };
            let socket = cfg.control_socket();
            let recorder = move |_: &std::path::Path, record: ferry_audit::AuditRecord| {
                let v = socket::request(&socket, &protocol::Request::AuditNote { record })
                    .map_err(|e| ferry_audit::AuditError::NotAudited(e.to_string()))?;
                match v.get("error").and_then(|e| e.as_str()) {
                    Some(e) if v.get("refused").and_then(|r| r.as_bool()) == Some(true) => {
                        Err(ferry_audit::AuditError::Refused(e.to_owned()))
                    }
                    Some(e) => Err(ferry_audit::AuditError::NotAudited(e.to_owned())),
                    None => Ok(()),
                }
            };
            ferry_audit::cli::run_with(cmd.cmd, &actor, &recorder)
        }
    };
    // 1 is "tampered" (verify): a tool that could not run, or was
    // refused, must not exit with it.
    match result {
        Ok(code) => code,
        Err(e @ ferry_audit::AuditError::Refused(_)) => {
            eprintln!("ferryctl: {e}");
            std::process::ExitCode::from(AUDIT_EXIT_REFUSED)
        }
        Err(e) => {
            eprintln!("ferryctl: {e}");
            std::process::ExitCode::from(AUDIT_EXIT_COULD_NOT_RUN)
        }
    }
}
