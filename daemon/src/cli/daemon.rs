//! `ferryctl status`, `ferryctl resend` and `ferryctl policy reload`: one
//! request each to a running ferryd's control socket, and its answer shown.

use crate::admin::{protocol, socket};
use crate::config;
use anyhow::{bail, Context};
use std::path::Path;

/// `ferryctl policy reload`: fails when the daemon kept the old policy.
pub fn reload_policy(config: &Path) -> anyhow::Result<std::process::ExitCode> {
    let cfg = config::load(config)?;
    let v = socket::request(&cfg.control_socket(), &protocol::Request::ReloadPolicy)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    if v.get("error").is_some() {
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `ferryctl status`: exits 2 when the daemon shows alarms.
pub fn status(config: &Path, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let cfg = config::load(config)?;
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
    Ok(std::process::ExitCode::SUCCESS)
}

/// What the YARA scans came to.
fn print_yara(v: &serde_json::Value) {
    let Some(y) = v
        .get("yara")
        .filter(|y| y.is_object())
        .and_then(|y| serde_json::from_value::<protocol::YaraCounts>(y.clone()).ok())
    else {
        return;
    };
    println!(
        "  {:<22} {} scanned, {} matched a rule, {} timed out and {} not scannable (refused)",
        "yara scans", y.scanned, y.matched, y.timeout, y.unscannable
    );
}

/// The malware engines (as last probed) and what the scans came to.
fn print_malware(v: &serde_json::Value) {
    let Some(m) = v
        .get("malware")
        .filter(|m| m.is_object())
        .and_then(|m| serde_json::from_value::<protocol::MalwareStatus>(m.clone()).ok())
    else {
        return;
    };
    println!(
        "  {:<22} {} scanned, {} refused as malware, {} not scanned ({} held, none passed), {} too large",
        "malware scans", m.scanned, m.detected, m.unavailable, m.held, m.unscannable
    );
    for e in &m.engines {
        let state = if e.reachable {
            let db = match (&e.database_version, &e.database_date, e.database_age_days) {
                (Some(v), Some(d), Some(age)) => format!("database {v} of {d}, {age} days old"),
                _ => "custom signatures only, database age unknown".to_owned(),
            };
            format!(
                "{} reachable, {db}",
                e.version.as_deref().unwrap_or("clamd")
            )
        } else {
            format!("UNREACHABLE: {}", e.error.as_deref().unwrap_or("no answer"))
        };
        println!("  {:<22} {} ({state})", "malware engine", e.socket);
        if let Some(w) = &e.warning {
            println!("  WARNING: {w}");
        }
    }
}

/// The egress receive spool and the rate this side sustains, with the
/// command that paces the ingress side to it.
fn print_receive(v: &serde_json::Value) {
    let Some(r) = v.get("receive").filter(|r| r.is_object()) else {
        return;
    };
    let n = |k: &str| r.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    println!(
        "  {:<22} {} bytes waiting (peak {}, {} through the disk, {} datagrams dropped, limit {})",
        "receive spool",
        n("backlog_bytes"),
        n("peak_backlog_bytes"),
        n("spilled_bytes"),
        n("dropped_datagrams"),
        n("spool_limit_bytes")
    );
    println!(
        "  {:<22} {} datagrams dropped by the kernel before ferryd read them; {} waits for the spool's disk",
        "receive socket",
        n("kernel_dropped_datagrams"),
        n("receive_waits")
    );
    println!(
        "  {:<22} {}",
        "udp gro",
        if r.get("udp_gro").and_then(|x| x.as_bool()) == Some(true) {
            format!(
                "on, {} messages carried several datagrams",
                n("udp_gro_messages")
            )
        } else {
            "off (one datagram per message)".to_string()
        }
    );
    match (
        r.get("sustained_bytes_per_s").and_then(|x| x.as_u64()),
        r.get("suggested_rate_bytes_per_s").and_then(|x| x.as_u64()),
    ) {
        (Some(s), Some(rate)) => {
            println!(
                "  {:<22} {:.1} MB/s of datagrams while busy",
                "sustains",
                s as f64 / 1e6
            );
            println!(
                "  {:<22} on the ingress host: ferryctl link set-rate --config <its ferryd.toml> {rate}",
                "pace the ingress"
            );
        }
        _ => println!(
            "  {:<22} not measured yet (needs 32 MiB received)",
            "sustains"
        ),
    }
}

/// `ferryctl link set-rate`: writes `[link] rate_bytes_per_s` into an
/// ingress configuration, keeping every comment and the file's mode, after
/// checking the result loads; the daemon applies it at its next start.
pub fn set_rate(config_path: &Path, rate: u64) -> anyhow::Result<std::process::ExitCode> {
    let cfg = config::load(config_path)?;
    if cfg.link.role != config::Role::Ingress {
        bail!(
            "{} is an egress configuration: the rate paces the sender, so set it in the ingress side's configuration",
            config_path.display()
        );
    }
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let Some(link) = doc.get_mut("link").and_then(|l| l.as_table_like_mut()) else {
        bail!("{} has no [link] table", config_path.display());
    };
    let rate_value = i64::try_from(rate).context("the rate is too large")?;
    let old = link
        .get("rate_bytes_per_s")
        .and_then(|v| v.as_integer())
        .map(|v| v.to_string());
    match link
        .get_mut("rate_bytes_per_s")
        .and_then(|v| v.as_value_mut())
    {
        // Keeps the comment after the value.
        Some(v) => {
            let decor = v.decor().clone();
            *v = toml_edit::Value::from(rate_value);
            *v.decor_mut() = decor;
        }
        None => {
            link.insert("rate_bytes_per_s", toml_edit::value(rate_value));
        }
    }
    let new_text = doc.to_string();
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferryd-set-rate")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, new_text.as_bytes())?;
    tmp.as_file().sync_all()?;
    // The new file must load as the daemon will load it (relative paths
    // resolve from the same directory).
    config::load(tmp.path()).context("the changed configuration does not load; nothing changed")?;
    let mode = std::fs::metadata(config_path)?.permissions();
    std::fs::set_permissions(tmp.path(), mode)?;
    tmp.persist(config_path)
        .with_context(|| format!("replacing {}", config_path.display()))?;
    println!(
        "{}: [link] rate_bytes_per_s = {rate} (was {}); restart the ingress ferryd to apply it",
        config_path.display(),
        old.as_deref().unwrap_or("the default")
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `ferryctl budget`: the loss budget a configuration sets and its cost.
pub fn budget(config: &Path, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let cfg = config::load(config)?;
    let status = crate::link::keys::budget_status(&cfg);
    let v = serde_json::json!({ "loss_budget": status });
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "link {} (mtu {}, blocks of at most {} symbols)",
            cfg.link.name, cfg.link.mtu, cfg.link.block_symbols
        );
        print_budget(&v);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `ferryctl resend`: retained packages by id, or a sequence range `A..B`.
pub fn resend(
    config: &Path,
    packages: Vec<String>,
    seq: Option<String>,
) -> anyhow::Result<std::process::ExitCode> {
    let cfg = config::load(config)?;
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
    Ok(std::process::ExitCode::SUCCESS)
}

/// The loss budget line and its cost per package size.
fn print_budget(v: &serde_json::Value) {
    let Some(b) = v.get("loss_budget").filter(|b| !b.is_null()) else {
        println!(
            "  {:<22} off (fixed repair, nothing promised)",
            "loss budget"
        );
        return;
    };
    let f = |k: &str| b.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    println!(
        "  {:<22} {} % loss, bursts of {}: each package lost with probability < {:e}",
        "loss budget",
        f("loss_percent"),
        f("burst"),
        f("target_package_loss")
    );
    for row in b
        .get("sizes")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        let n = |k: &str| row.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        println!(
            "    {:>10} B: {} datagrams ({} manifest copies, {} bytes on the wire; {} without the budget)",
            n("bytes"),
            n("datagrams"),
            n("manifest_copies"),
            n("wire_bytes"),
            n("datagrams_without_budget")
        );
    }
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
            "outbox_direct_bytes",
            "bundles_received",
            "bundles_refused",
            "bundles_staged_on_disk",
            "rejected",
            "failed",
            "duplicates_suppressed",
            "signatures_applied",
            "signatures_refused",
        ]
    } else {
        &[
            "epoch",
            "queued",
            "awaiting_approval",
            "awaiting_window",
            "taken",
            "spool_retakes",
            "sent",
            "bundles_sent",
            "bundled_packages",
            "resent",
            "rejected",
            "datagrams_sent",
            "udp_messages_sent",
            "udp_gso_segments",
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
    print_budget(v);
    print_receive(v);
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
    print_malware(v);
    print_yara(v);
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
