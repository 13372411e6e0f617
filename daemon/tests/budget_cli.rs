//! `ferryctl budget`: the loss budget a configuration sets and what it
//! costs, read from the file without a daemon; a budget out of range is
//! refused at its line and column; a budget switched off says so.

mod common;

use common::*;

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ferryd-ingress.toml")
}

#[test]
fn the_example_budget_is_shown_with_its_cost_below_the_target() {
    let out = ctl_ok(&["budget", "--config", &example().to_string_lossy(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let b = &v["loss_budget"];
    assert_eq!(b["loss_percent"].as_f64(), Some(5.0));
    assert_eq!(b["burst"].as_u64(), Some(8));
    let rows = b["sizes"].as_array().expect("sizes");
    assert_eq!(rows.len(), 4, "{b}");
    for r in rows {
        let bound = r["loss_bound"].as_f64().expect("bound");
        assert!(bound > 0.0 && bound < 1e-6, "{r}");
        // The budget never protects less than the fixed 10 % did.
        assert!(
            r["datagrams"].as_u64() >= r["datagrams_without_budget"].as_u64(),
            "{r}"
        );
        assert!(r["manifest_copies"].as_u64().unwrap_or(0) >= 2, "{r}");
    }
    let text = ctl_ok(&["budget", "--config", &example().to_string_lossy()]);
    assert!(text.contains("5 % loss, bursts of 8"), "{text}");
}

#[test]
fn a_budget_out_of_range_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::read_to_string(example()).expect("example");
    let bad = base.replace("loss_budget_percent = 5.0", "loss_budget_percent = 30.0");
    assert_ne!(bad, base, "the example names the budget");
    let path = dir.path().join("ferryd.toml");
    std::fs::write(&path, &bad).expect("write");
    let o = ctl(&["budget", "--config", &path.to_string_lossy()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line = bad
        .lines()
        .position(|l| l.starts_with("loss_budget_percent"))
        .expect("line")
        + 1;
    assert!(
        err.contains(&format!("ferryd.toml:{line}:")) && err.contains("loss_budget_percent"),
        "{err}"
    );

    let off = base.replace("loss_budget_percent = 5.0", "loss_budget_percent = 0");
    std::fs::write(&path, &off).expect("write");
    let text = ctl_ok(&["budget", "--config", &path.to_string_lossy()]);
    assert!(
        text.contains("off (fixed repair, nothing promised)"),
        "{text}"
    );
}
