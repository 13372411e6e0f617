//! `ferryctl bench netns` as an operator runs it: a small package across
//! two network namespaces at 1 % loss, with the shipped defaults. Pins what
//! the command promises (delivered intact, nothing lost, nothing flowing
//! back, both daemons' peak memory read), never its speed. Needs root;
//! skips otherwise.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// Generous for a debug build on a busy 2-core machine; it bounds a hang,
/// it measures nothing.
const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn bench_netns_delivers_a_package_one_way_and_reports_its_figures() {
    if !root_or_skip("ferryctl bench netns (network namespaces)") {
        return;
    }
    let before = bench_namespaces();
    let run = ctl_within(
        &[
            "bench", "netns", "--size", "8388608", "--loss", "1", "--json",
        ],
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(v["delivered"], serde_json::json!(true), "{v}");
    assert_eq!(v["lost_packages"].as_u64(), Some(0), "{v}");
    assert_eq!(v["reverse_packets"].as_u64(), Some(0), "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(8_388_608), "{v}");
    assert_eq!(v["loss_percent"].as_f64(), Some(1.0), "{v}");
    // The shipped defaults, since the command line gave none: the rate the
    // example ingress configuration ships with (the daemon's default).
    let example = include_str!("../../examples/ferryd-ingress.toml");
    let shipped = example
        .lines()
        .find_map(|l| l.trim().strip_prefix("rate_bytes_per_s = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("examples/ferryd-ingress.toml sets rate_bytes_per_s");
    assert_eq!(v["rate_bytes_per_s"].as_u64(), Some(shipped), "{v}");
    assert_eq!(v["repair_percent"].as_f64(), Some(10.0), "{v}");
    // A daemon's peak resident set: more than a few MiB (keys, sockets,
    // buffers), far less than the machine.
    for side in ["ingress_peak_rss_bytes", "egress_peak_rss_bytes"] {
        let rss = v[side].as_u64().unwrap_or(0);
        assert!(
            (4 << 20..8 << 30).contains(&rss),
            "{side} = {rss} is not a plausible peak RSS: {v}"
        );
    }
    // Figures present (their values are the machine's, not asserted).
    for key in [
        "mb_per_s",
        "link_mb_per_s",
        "loopback_udp_mb_per_s",
        "ratio_to_udp",
        "fec_overhead",
    ] {
        assert!(v[key].is_number(), "{key} missing: {v}");
    }
    assert!(
        v["wire_dropped"].as_u64().unwrap_or(0) > 0,
        "1 % of about 6,000 datagrams dropped: {v}"
    );
    assert!(
        !v["work_dir"].is_string(),
        "the work directory is kept only with --keep: {v}"
    );
    // Nothing left behind: no bench namespace of a process that is gone
    // (another bench running meanwhile has its own, with a live pid).
    let leftovers: Vec<String> = bench_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n))
        .filter(|n| {
            let pid = n.rsplit('-').next().unwrap_or("");
            !Path::new(&format!("/proc/{pid}")).exists()
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "namespaces left behind: {leftovers:?}"
    );
}

/// `ferry-bench-*` network namespaces that exist now.
fn bench_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("ferry-bench-"))
        .map(str::to_owned)
        .collect()
}
