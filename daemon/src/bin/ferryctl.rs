//! `ferryctl`: the administrator's command line for ferry.

use clap::{Parser, Subcommand};
use ferry_daemon::cli::audit::AuditArgs;
use ferry_daemon::cli::{
    audit, bench, certs as certs_cli, daemon, demo, keys as keys_cli, selfcheck, systemd_dropin,
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
    /// Egress side: apply the ClamAV signature packages of the
    /// [signatures] channel to the local clamd (verified first).
    #[command(subcommand)]
    Signatures(ferry_daemon::cli::signatures::SignaturesCmd),
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
    /// The link's loss budget and what it costs per package size, from a
    /// configuration file (no daemon needed).
    Budget {
        /// A daemon configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The link's settings.
    #[command(subcommand)]
    Link(LinkCmd),
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
        /// As root, when the reviewer accounts cannot reach it (under
        /// /root, say), the state goes to /var/tmp/ferry-demo-* and this
        /// directory becomes a link to it.
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

#[derive(Subcommand)]
// Parsed once per run; boxing a clap-flattened variant is not supported.
#[allow(clippy::large_enum_variant)]
enum PolicyCmd {
    #[command(flatten)]
    Tool(ferry_policy::cli::PolicyCommand),
    /// Ask a running `ferryd`, either side, to reload its policy (as SIGHUP
    /// does on the ingress side; on the egress side this is the only way);
    /// prints the new hash, or why the old policy stays in force.
    Reload {
        /// The daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum LinkCmd {
    /// Set the ingress pacing (`[link] rate_bytes_per_s`) in a
    /// configuration file, comments kept; use the rate the egress side's
    /// `ferryctl status` suggests. Applied at the daemon's next start.
    SetRate {
        /// The ingress daemon's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Bytes per second of datagrams (0 = unpaced).
        rate: u64,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Move data through a real UDP loopback link with the whole pipeline.
    Link(bench::LinkArgs),
    /// Push small packages over mTLS from several keep-alive clients to
    /// the ingest API and time them until delivered in the egress outbox.
    E2e(ferry_daemon::cli::bench::e2e::E2eArgs),
    /// As root: two real ferryd in two network namespaces over a veth
    /// pair with nftables loss, one package with the shipped defaults,
    /// against plain UDP measured in the same run.
    Netns(ferry_daemon::cli::bench::netns::NetnsArgs),
    /// Inspect a generated mixed corpus (CSV, JSON, text, zip, tar.gz)
    /// under a profile that scans with clamd, and without the scan.
    Scan(ferry_daemon::cli::bench::scan::ScanArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The benches run both daemons in this process: their logs go to a
    // file the bench names (bench::log_to_file), not to the terminal.
    if !matches!(cli.cmd, Cmd::Bench(_)) {
        ferry_daemon::init_logging("text");
    }
    match run(cli) {
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
        Cmd::Audit(cmd) => return Ok(audit::run(cmd)),
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
        Cmd::Signatures(cmd) => return ferry_daemon::cli::signatures::run(cmd),
        Cmd::Gaps(cmd) => return ferry_daemon::cli::approvals::run_gaps(cmd),
        Cmd::Policy(PolicyCmd::Reload { config }) => return daemon::reload_policy(&config),
        Cmd::Status { config, json } => return daemon::status(&config, json),
        Cmd::Budget { config, json } => return daemon::budget(&config, json),
        Cmd::Link(LinkCmd::SetRate { config, rate }) => return daemon::set_rate(&config, rate),
        Cmd::Resend {
            config,
            packages,
            seq,
        } => return daemon::resend(&config, packages, seq),
        Cmd::Bench(BenchCmd::Link(args)) => bench::link(&args)?,
        Cmd::Bench(BenchCmd::E2e(args)) => ferry_daemon::cli::bench::e2e::e2e(&args)?,
        Cmd::Bench(BenchCmd::Netns(args)) => ferry_daemon::cli::bench::netns::netns(&args)?,
        Cmd::Bench(BenchCmd::Scan(args)) => ferry_daemon::cli::bench::scan::scan(&args)?,
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
