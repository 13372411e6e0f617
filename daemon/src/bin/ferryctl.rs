//! `ferryctl`: the administrator's command line for ferry.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ferry_daemon::admin::{protocol, socket};
use ferry_daemon::cli::{
    bench, certs as certs_cli, demo, keys as keys_cli, selfcheck, systemd_dropin,
};
use ferry_daemon::config;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "ferry administration")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Key files of one side of a link.
    #[command(subcommand)]
    Keys(keys_cli::KeysCmd),
    /// The site CA and mTLS certificates.
    #[command(subcommand)]
    Certs(certs_cli::CertsCmd),
    /// The tamper-evident audit log: init, verify, query, export, tail, trace.
    Audit(AuditArgs),
    /// The policy file: check, explain, test, sign, verify, reload.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Reviewers: packages held for approval (list, show, approve, reject).
    #[command(subcommand)]
    Approvals(ferry_daemon::cli::approvals::ApprovalsCmd),
    /// System administrator: stop or start a channel on the ingress side.
    #[command(subcommand)]
    Channel(ferry_daemon::cli::approvals::ChannelCmd),
    /// System administrator: packages waiting for a downstream HTTPS
    /// endpoint on the egress side.
    #[command(subcommand)]
    Forward(ferry_daemon::cli::approvals::ForwardCmd),
    /// Egress side: acknowledge gaps that will never come (audited).
    #[command(subcommand)]
    Gaps(ferry_daemon::cli::approvals::GapsCmd),
    /// Show a running daemon's status.
    Status {
        /// The daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ingress side: send retained packages again (new sequence numbers,
    /// same package ids; the egress side delivers each id once).
    Resend {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Package ids (hex) to resend.
        #[arg(long = "package")]
        packages: Vec<String>,
        /// Inclusive sequence range `A..B` (as printed in gap reports).
        #[arg(long)]
        seq: Option<String>,
    },
    /// Push files to an ingress side's HTTPS ingest API with a client
    /// certificate (one package per file).
    Push(ferry_daemon::cli::push::PushArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Start both sides on loopback with fresh keys, send packages, show
    /// them delivered, and clean up.
    Demo {
        /// Keep both sides' state in this directory instead of deleting it.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// What hardening is in force in a running ferryd (user,
    /// capabilities, seccomp, Landlock, dumpable, no_new_privs, file
    /// permissions, clock sync): pass/fail per item, exit 1 on any fail.
    Selfcheck {
        /// The daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the `IPAddressAllow=` drop-in for `ferryd@NAME.service` from
    /// the configuration: the link peers, plus what `--allow` names (the
    /// ingress host seen from the egress side, the ingest API's clients).
    SystemdDropin {
        /// The daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// An address or prefix to admit (repeatable), e.g. 10.1.0.0/16.
        #[arg(long)]
        allow: Vec<String>,
    },
    /// Run a content profile on a file: verdict and findings. Exit 0 pass
    /// or masked, 1 review or reject, 2 usage, policy or profile errors.
    Inspect(ferry_daemon::cli::inspect::InspectArgs),
    /// Write the man pages and shell completions (used when packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory (man/ and completions/ are made in it).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `ferryctl audit`: the tool could not run (files, keys, I/O, the daemon
/// unreachable); 0 and 1 are verify's intact and tampered.
const AUDIT_EXIT_COULD_NOT_RUN: u8 = 2;
/// `ferryctl audit --via`: the daemon refused the caller (no auditor role);
/// nothing of the log was shown.
const AUDIT_EXIT_REFUSED: u8 = 3;

#[derive(clap::Args)]
struct AuditArgs {
    /// The configuration of the running `ferryd` that writes this log: the
    /// use of the audit tools is then recorded through it (the tools
    /// cannot open a log the daemon holds).
    #[arg(long, global = true)]
    via: Option<PathBuf>,
    #[command(subcommand)]
    cmd: ferry_audit::cli::AuditCommand,
}

#[derive(Subcommand)]
// Parsed once per run; boxing a clap-flattened variant is not supported.
#[allow(clippy::large_enum_variant)]
enum PolicyCmd {
    #[command(flatten)]
    Tool(ferry_policy::cli::PolicyCommand),
    /// Ask a running ingress `ferryd` to reload its policy (as SIGHUP does);
    /// prints the new hash, or why the old policy stays in force.
    Reload {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Move data through a real UDP loopback link with the whole pipeline.
    Link(bench::LinkArgs),
    /// Push small packages over mTLS from several keep-alive clients to
    /// the ingest API and time them until delivered in the egress outbox.
    E2e(ferry_daemon::cli::bench::e2e::E2eArgs),
}

fn main() -> std::process::ExitCode {
    ferry_daemon::init_logging("text");
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferryctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.cmd {
        Cmd::Keys(cmd) => return keys_cli::run(cmd),
        Cmd::Certs(cmd) => return certs_cli::run(cmd),
        Cmd::Audit(cmd) => {
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
                            return Ok(std::process::ExitCode::from(AUDIT_EXIT_COULD_NOT_RUN));
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
            return Ok(match result {
                Ok(code) => code,
                Err(e @ ferry_audit::AuditError::Refused(_)) => {
                    eprintln!("ferryctl: {e}");
                    std::process::ExitCode::from(AUDIT_EXIT_REFUSED)
                }
                Err(e) => {
                    eprintln!("ferryctl: {e}");
                    std::process::ExitCode::from(AUDIT_EXIT_COULD_NOT_RUN)
                }
            });
        }
        // `check` reads what ferryd will read (dirty-word lists), through
        // ferryd's own loader.
        Cmd::Policy(PolicyCmd::Tool(cmd)) => {
            return Ok(ferry_policy::cli::run_with(
                cmd,
                &ferry_daemon::inspection::policy_gate::DaemonLoad,
            )?)
        }
        Cmd::Approvals(cmd) => return ferry_daemon::cli::approvals::run(cmd),
        Cmd::Channel(cmd) => return ferry_daemon::cli::approvals::run_channel(cmd),
        Cmd::Forward(cmd) => return ferry_daemon::cli::approvals::run_forward(cmd),
        Cmd::Gaps(cmd) => return ferry_daemon::cli::approvals::run_gaps(cmd),
        Cmd::Policy(PolicyCmd::Reload { config }) => {
            let cfg = config::load(&config)?;
            let v = socket::request(&cfg.control_socket(), &protocol::Request::ReloadPolicy)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            if v.get("error").is_some() {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Cmd::Status { config, json } => {
            let cfg = config::load(&config)?;
            let v = socket::request(&cfg.control_socket(), &protocol::Request::Status)?;
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                bail!("{e}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&v);
            }
            let alarms = v
                .get("alarms")
                .and_then(|a| a.as_array())
                .map_or(0, |a| a.len());
            if alarms > 0 {
                return Ok(std::process::ExitCode::from(2));
            }
        }
        Cmd::Resend {
            config,
            packages,
            seq,
        } => {
            let cfg = config::load(&config)?;
            let seq_range = match seq {
                None => None,
                Some(s) => {
                    let (a, b) = s.split_once("..").unwrap_or((&s, &s));
                    let a: u64 = a
                        .trim()
                        .parse()
                        .with_context(|| format!("bad --seq `{s}`: use A..B"))?;
                    let b: u64 = b
                        .trim()
                        .parse()
                        .with_context(|| format!("bad --seq `{s}`: use A..B"))?;
                    if b < a {
                        bail!("bad --seq `{s}`: the range is empty");
                    }
                    Some((a, b))
                }
            };
            if packages.is_empty() && seq_range.is_none() {
                bail!("name what to resend: --package ID (repeatable) or --seq A..B");
            }
            let v = socket::request(
                &cfg.control_socket(),
                &protocol::Request::Resend {
                    packages,
                    seq_range,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            if v.get("error").is_some() {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Cmd::Bench(BenchCmd::Link(args)) => bench::link(&args)?,
        Cmd::Bench(BenchCmd::E2e(args)) => ferry_daemon::cli::bench::e2e::e2e(&args)?,
        Cmd::Push(args) => {
            return Ok(std::process::ExitCode::from(ferry_daemon::cli::push::run(
                &args,
            )))
        }
        Cmd::Demo { keep } => demo::run(keep.as_deref())?,
        Cmd::Inspect(args) => return Ok(ferry_daemon::cli::inspect::run(&args)),
        Cmd::Selfcheck { config, json } => {
            let cfg = config::load(&config)?;
            let result = selfcheck::run(&cfg, &config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                selfcheck::print_text(&result);
            }
            if result.failed() {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Cmd::SystemdDropin { config, allow } => {
            let cfg = config::load(&config)?;
            print!("{}", systemd_dropin::render(&cfg, &config, &allow)?);
        }
        Cmd::GenerateDocs { out } => {
            selfcheck::generate_docs(<Cli as clap::CommandFactory>::command(), &out)?
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_status(v: &serde_json::Value) {
    let get = |k: &str| {
        v.get(k)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    println!("{} side of link {}", get("role"), get("link"));
    let fields: &[&str] = if get("role") == "egress" {
        &[
            "epoch",
            "link_up",
            "sender_next_seq",
            "delivered",
            "delivered_bytes",
            "rejected",
            "failed",
            "duplicates_suppressed",
        ]
    } else {
        &[
            "epoch",
            "queued",
            "awaiting_approval",
            "awaiting_window",
            "taken",
            "sent",
            "resent",
            "rejected",
            "datagrams_sent",
            "send_errors",
            "retained",
        ]
    };
    if let Some(r) = v.get("admin_roles").and_then(|r| r.as_str()) {
        println!("  {:<22} {r}", "admin roles");
    }
    for k in fields {
        if let Some(x) = v.get(k) {
            println!("  {k:<22} {x}");
        }
    }
    if let (Some(t), Some(now)) = (
        v.get("last_heartbeat_unix_ms").and_then(|t| t.as_u64()),
        v.get("updated_unix_ms").and_then(|t| t.as_u64()),
    ) {
        let age = now.saturating_sub(t) as f64 / 1000.0;
        println!("  {:<22} {age:.1} s ago", "last heartbeat");
    }
    if let Some(ch) = v
        .get("channels")
        .and_then(|c| c.as_object())
        .filter(|c| !c.is_empty())
    {
        println!("  channels:");
        for (name, c) in ch {
            let n = |k: &str| c.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            if v.get("role").and_then(|r| r.as_str()) == Some("egress") {
                println!(
                    "    {name:<20} delivered {} ({} bytes)",
                    n("delivered"),
                    n("delivered_bytes")
                );
            } else {
                println!(
                    "    {name:<20} accepted {}, rejected {}, sent {} ({} bytes)",
                    n("accepted"),
                    n("rejected"),
                    n("sent"),
                    n("sent_bytes")
                );
            }
        }
    }
    if let Some(d) = v
        .get("downstream")
        .and_then(|d| d.as_object())
        .filter(|d| !d.is_empty())
    {
        println!("  downstream:");
        for (url, e) in d {
            let n = |k: &str| e.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            print!(
                "    {url}  waiting {}, parked {}, forwarded {}",
                n("waiting"),
                n("parked"),
                n("forwarded")
            );
            match e.get("last_error").and_then(|x| x.as_str()) {
                Some(err) if n("consecutive_failures") > 0 => {
                    println!(", failing ({} attempts): {err}", n("consecutive_failures"))
                }
                _ => println!(),
            }
        }
    }
    if let Some(g) = v
        .get("gaps")
        .and_then(|g| g.as_array())
        .filter(|g| !g.is_empty())
    {
        println!(
            "  gaps (resend these):   {}",
            serde_json::Value::Array(g.clone())
        );
    }
    if let Some(w) = v.get("warnings").and_then(|w| w.as_array()) {
        for x in w {
            println!("  WARNING: {}", x.as_str().unwrap_or_default());
        }
    }
    if let Some(a) = v
        .get("alarms")
        .and_then(|a| a.as_array())
        .filter(|a| !a.is_empty())
    {
        for x in a {
            println!("  ALARM: {}", x.as_str().unwrap_or_default());
        }
    }
}
