//! `ferryd`: one side of a ferry link (ingress or egress, from the config).

use anyhow::Context;
use clap::Parser;
use ferry_daemon::admin::protocol;
use ferry_daemon::ops::hardening_plan;
use ferry_daemon::{config, egress, ingress};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let mut cfg = config::load(&args.config)?;
    // Before Landlock hides /etc/passwd.
    cfg.resolve_admin().map_err(anyhow::Error::msg)?;
    ferry_daemon::admin::gate::remember_accounts();
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
    // Hardening, before any thread or secret exists (the configuration
    // holds none): the sd_notify socket is opened first and kept.
    let notifier = ferry_hardening::notify::Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "NOTIFY_SOCKET is set but cannot be reached; systemd will not hear READY=1");
        None
    });
    let watchdog = ferry_hardening::notify::watchdog_interval();
    let keep_fds = notifier.iter().map(|n| n.fd()).collect();
    let plan = hardening_plan::hardening_config(&cfg, &args.config, keep_fds);
    let report = ferry_hardening::apply(&plan).context("hardening ferryd")?;
    log_hardening(&report);
    let status = protocol::SharedStatus::default();
    let hardening = serde_json::to_value(&report).ok();
    protocol::update(&status, |s| s.hardening = hardening);
    let notify = notifier
        .map(|n| {
            let (status, shutdown) = (status.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("ferry-notify".into())
                .spawn(move || notify_loop(&n, &status, &shutdown, watchdog))
        })
        .transpose()
        .context("starting the sd_notify thread")?;
    tracing::info!(link = %cfg.link.name, role = ?cfg.link.role, "ferryd starting");
    let result = match cfg.link.role {
        config::Role::Ingress => ingress::run(cfg, shutdown.clone(), status),
        config::Role::Egress => egress::run(
            cfg,
            shutdown.clone(),
            status,
            egress::EgressOptions::default(),
        ),
    };
    shutdown.store(true, Ordering::Relaxed);
    if let Some(t) = notify {
        let _ = t.join();
    }
    result?;
    tracing::info!("ferryd stopped");
    Ok(())
}

/// Every step that is off or failed, loudly; a summary of the rest.
fn log_hardening(r: &ferry_hardening::Report) {
    for name in &r.disabled {
        let detail = r.steps.get(name).map_or("", |s| s.detail.as_str());
        tracing::warn!(step = %name, "HARDENING STEP OFF by configuration ({detail}): this ferryd is less protected; `ferryctl selfcheck` fails it");
    }
    for f in &r.failures {
        tracing::error!("HARDENING STEP FAILED: {f}");
    }
    for w in &r.warnings {
        tracing::warn!("hardening: {w}");
    }
    tracing::info!(
        uid = r.uid,
        gid = r.gid,
        capabilities = ?r.capabilities,
        landlock_abi = ?r.landlock_abi,
        seccomp = ?r.seccomp_action,
        no_new_privs = r.no_new_privs,
        not_dumpable = r.not_dumpable,
        "hardening in force"
    );
}

/// systemd notification: `READY=1` once the main loop has published its
/// first status, then `WATCHDOG=1` at half the watchdog interval for as
/// long as the main loop keeps publishing (every second); a stalled loop
/// stops the pings and systemd restarts the service.
fn notify_loop(
    n: &ferry_hardening::notify::Notifier,
    status: &protocol::SharedStatus,
    shutdown: &AtomicBool,
    watchdog: Option<Duration>,
) {
    const TICK: Duration = Duration::from_millis(250);
    let mut ready = false;
    let mut last_update = 0u64;
    let mut last_change = Instant::now();
    let mut last_ping: Option<Instant> = None;
    while !shutdown.load(Ordering::Relaxed) {
        let snap = protocol::snapshot(status);
        if snap.updated_unix_ms != last_update {
            last_update = snap.updated_unix_ms;
            last_change = Instant::now();
        }
        if !ready && snap.updated_unix_ms != 0 {
            let msg = format!("READY=1\nSTATUS={} side of link {}", snap.role, snap.link);
            if let Err(e) = n.notify(&msg) {
                tracing::warn!(error = %e, "sd_notify READY=1 failed");
            }
            ready = true;
        }
        if let (true, Some(w)) = (ready, watchdog) {
            let due = last_ping.is_none_or(|t| t.elapsed() >= w / 2);
            if due && last_change.elapsed() < w {
                if let Err(e) = n.notify("WATCHDOG=1") {
                    tracing::warn!(error = %e, "sd_notify WATCHDOG=1 failed");
                }
                last_ping = Some(Instant::now());
            }
        }
        std::thread::sleep(TICK);
    }
    let _ = n.notify("STOPPING=1");
}
