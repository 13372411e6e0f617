//! `ferryctl approvals` (the reviewers' commands) and `ferryctl channel`
//! (the system administrator's stop/start), over the ingress `ferryd`'s
//! control socket; the admin plane decides who may use which.

use crate::admin::protocol::Request;
use crate::admin::socket;
use crate::config;
use std::path::PathBuf;

/// `ferryctl approvals …`.
#[derive(clap::Subcommand)]
pub enum ApprovalsCmd {
    /// Packages held for approval.
    List {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One held package: metadata, why it is held, approvals so far and a
    /// preview of text content.
    Show {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Package id (hex).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held package (it is queued once enough distinct
    /// reviewers have approved).
    Approve {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Package id (hex).
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Reject a held package: it is deleted and never sent.
    Reject {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Package id (hex).
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// Runs the command; exit 1 when the daemon refused or failed it.
pub fn run(cmd: ApprovalsCmd) -> anyhow::Result<std::process::ExitCode> {
    let (cfg_path, req, json) = match cmd {
        ApprovalsCmd::List { config, json } => (config, Request::ApprovalsList, json),
        ApprovalsCmd::Show { config, id, json } => {
            (config, Request::ApprovalsShow { package: id }, json)
        }
        ApprovalsCmd::Approve { config, id, reason } => (
            config,
            Request::Approve {
                package: id,
                reason,
            },
            false,
        ),
        ApprovalsCmd::Reject { config, id, reason } => (
            config,
            Request::Reject {
                package: id,
                reason,
            },
            false,
        ),
    };
    let cfg = config::load(&cfg_path)?;
    let list = matches!(req, Request::ApprovalsList);
    let show = matches!(req, Request::ApprovalsShow { .. });
    let v = socket::request(&cfg.control_socket(), &req)?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        eprintln!("ferryctl: {e}");
        return Ok(std::process::ExitCode::FAILURE);
    }
    if json || !(list || show) {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if list {
        print_list(&v);
    } else {
        print_show(&v);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn field(v: &serde_json::Value, k: &str) -> String {
    match v.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(x) => x.to_string(),
    }
}

fn print_list(v: &serde_json::Value) {
    let held = v.get("held").and_then(|h| h.as_array());
    match held {
        Some(h) if !h.is_empty() => {
            println!(
                "{:<32}  {:<16}  {:<24}  {:>10}  held for",
                "package", "channel", "file", "bytes"
            );
            for p in h {
                // Only `awaiting_approval` is the reviewers' to decide; the
                // others are shown so nobody wonders where they went.
                let held_for = match p.get("state").and_then(|s| s.as_str()) {
                    Some("awaiting_window") => {
                        format!("time window, until {}", field(p, "hold_until"))
                    }
                    Some("channel_stopped") => "stopped channel".to_owned(),
                    _ => format!(
                        "approval, {} of {}",
                        field(p, "approvals"),
                        field(p, "needed")
                    ),
                };
                println!(
                    "{:<32}  {:<16}  {:<24}  {:>10}  {held_for}",
                    field(p, "package_id"),
                    field(p, "channel"),
                    field(p, "file_name"),
                    field(p, "size"),
                );
            }
        }
        _ => println!("no package is awaiting approval"),
    }
}

fn print_show(v: &serde_json::Value) {
    for k in [
        "package_id",
        "channel",
        "file_name",
        "content_type",
        "submitter",
        "size",
        "state",
        "hold_until",
        "requirement",
    ] {
        println!("{k:<14} {}", field(v, k));
    }
    println!(
        "{:<14} {} of {}",
        "approvals",
        field(v, "approvals"),
        field(v, "needed")
    );
    if let Some(marks) = v.get("approval_marks").and_then(|m| m.as_array()) {
        for m in marks {
            println!("  by {}: {}", field(m, "by"), field(m, "reason"));
        }
    }
    if let Some(r) = v.get("reasons").and_then(|r| r.as_array()) {
        for x in r {
            println!("held because   {}", x.as_str().unwrap_or_default());
        }
    }
    println!("--- preview ---");
    println!(
        "{}",
        v.get("preview").and_then(|p| p.as_str()).unwrap_or("")
    );
}

/// `ferryctl channel …`.
#[derive(clap::Subcommand)]
pub enum ChannelCmd {
    /// Stop a channel: pushes get 503, its spool is not collected, and its
    /// queued packages are held (not sent) until it is started again.
    Stop {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The channel.
        channel: String,
        /// Why (recorded, shown in status and to refused pushers).
        #[arg(long)]
        reason: String,
    },
    /// Start a stopped channel; its held packages are queued again.
    Start {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The channel.
        channel: String,
    },
}

/// `ferryctl forward …`.
#[derive(clap::Subcommand)]
pub enum ForwardCmd {
    /// Send again the packages a downstream endpoint refused (all, or
    /// one with --package), and retry every endpoint now rather than after
    /// its back-off. Waiting packages show in `ferryctl status`.
    Retry {
        /// The egress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this package (hex id).
        #[arg(long)]
        package: Option<String>,
    },
}

/// `ferryctl gaps …`.
#[derive(clap::Subcommand)]
pub enum GapsCmd {
    /// Acknowledge that missing sequence numbers (as listed under "gaps"
    /// in `ferryctl status` on the egress side) will never come: they
    /// leave the list and the alarm. Audited with the reason. Prefer
    /// `ferryctl resend --seq A..B` on the ingress side while it retains
    /// the packages.
    Ack {
        /// The egress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Inclusive range `A..B` (or one number).
        range: String,
        /// Why they will never come (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// Runs `ferryctl gaps`; exit 1 when the daemon refused or failed it.
pub fn run_gaps(cmd: GapsCmd) -> anyhow::Result<std::process::ExitCode> {
    let GapsCmd::Ack {
        config,
        range,
        reason,
    } = cmd;
    let (a, b) = range.split_once("..").unwrap_or((&range, &range));
    let parse = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| anyhow::anyhow!("bad range `{range}`: use A..B with sequence numbers as listed under \"gaps\" in `ferryctl status`"))
    };
    let (first, last) = (parse(a)?, parse(b)?);
    if last < first || reason.trim().is_empty() {
        anyhow::bail!("give a range A..B with A ≤ B and a non-empty --reason");
    }
    ask(
        &config,
        &Request::GapAck {
            first,
            last,
            reason,
        },
    )
}

/// Runs `ferryctl forward`; exit 1 when the daemon refused or failed it.
pub fn run_forward(cmd: ForwardCmd) -> anyhow::Result<std::process::ExitCode> {
    let ForwardCmd::Retry { config, package } = cmd;
    ask(&config, &Request::ForwardRetry { package })
}

/// Runs the command; exit 1 when the daemon refused or failed it.
pub fn run_channel(cmd: ChannelCmd) -> anyhow::Result<std::process::ExitCode> {
    let (cfg_path, req) = match cmd {
        ChannelCmd::Stop {
            config,
            channel,
            reason,
        } => (config, Request::ChannelStop { channel, reason }),
        ChannelCmd::Start { config, channel } => (config, Request::ChannelStart { channel }),
    };
    ask(&cfg_path, &req)
}

/// Sends one request to the daemon of `cfg_path` and prints its answer.
fn ask(cfg_path: &std::path::Path, req: &Request) -> anyhow::Result<std::process::ExitCode> {
    let cfg = config::load(cfg_path)?;
    let v = socket::request(&cfg.control_socket(), req)?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        eprintln!("ferryctl: {e}");
        return Ok(std::process::ExitCode::FAILURE);
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(std::process::ExitCode::SUCCESS)
}
