//! `ferryd`: one side of a ferry link (ingress or egress, from the config).

use anyhow::Context;
use clap::Parser;
use ferry_daemon::{config, control, egress, ingress};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(version, about = "ferry daemon: one side of a one-way ferry link")]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    ferry_daemon::init_logging(&args.log_format);
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ferryd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let cfg = config::load(&args.config)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.clone()).context("installing signal handler")?;
    }
    // SIGHUP means "reload the policy" on the ingress side; elsewhere it is
    // ignored rather than left to its default (terminate).
    signal_hook::flag::register(
        signal_hook::consts::SIGHUP,
        Arc::new(AtomicBool::new(false)),
    )
    .context("installing SIGHUP handler")?;
    let status = control::SharedStatus::default();
    tracing::info!(link = %cfg.link.name, role = ?cfg.link.role, "ferryd starting");
    match cfg.link.role {
        config::Role::Ingress => ingress::run(cfg, shutdown, status)?,
        config::Role::Egress => {
            egress::run(cfg, shutdown, status, egress::EgressOptions::default())?
        }
    }
    tracing::info!("ferryd stopped");
    Ok(())
}
