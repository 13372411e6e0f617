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
    // Before any thread or secret exists: no core dumps, no ptrace by
    // same-user processes, no privilege gain through exec, umask 077.
    let baseline = ferry_hardening::process::apply_baseline();
    let args = Args::parse();
    ferry_daemon::init_logging(&args.log_format);
    for f in &baseline.failures {
        tracing::warn!("hardening baseline step failed: {f}");
    }
    match run(&args, &baseline) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ferryd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, baseline: &ferry_hardening::process::Baseline) -> anyhow::Result<()> {
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
    let hardening = serde_json::to_value(baseline).ok();
    control::update(&status, |s| s.hardening = hardening);
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
