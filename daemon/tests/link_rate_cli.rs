//! `ferryctl link set-rate`: the ingress pacing written into a
//! configuration without losing its comments or mode, checked by loading
//! the result before it replaces the file; an egress configuration, a
//! rate that cannot be written and a broken file are refused and leave the
//! file as it was.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn set_rate_rewrites_only_the_rate_and_keeps_comments_and_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let cfg = &tb.ingress_config;
    let before = std::fs::read_to_string(cfg).expect("config");
    let with_comment = before.replace(
        "rate_bytes_per_s = 100000000",
        "rate_bytes_per_s = 100000000 # set by the site survey\n# the wire is a 1 GbE diode",
    );
    assert_ne!(with_comment, before, "the testbed writes the default rate");
    std::fs::write(cfg, &with_comment).expect("write");
    std::fs::set_permissions(cfg, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    let out = ctl_ok(&["link", "set-rate", "--config", path_str(cfg), "169000000"]);
    assert!(
        out.contains("rate_bytes_per_s = 169000000 (was 100000000)"),
        "{out}"
    );
    assert!(out.contains("restart"), "{out}");
    let after = std::fs::read_to_string(cfg).expect("config");
    assert_eq!(
        after,
        with_comment.replace("= 100000000 #", "= 169000000 #"),
        "only the value changed"
    );
    let mode = std::fs::metadata(cfg).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let budget = ctl_ok(&["budget", "--config", path_str(cfg), "--json"]);
    assert!(
        budget.contains("loss_budget"),
        "the file still loads: {budget}"
    );
    // No temporary file left beside it.
    let names: Vec<String> = std::fs::read_dir(cfg.parent().expect("dir"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".ferryd-set-rate")),
        "{names:?}"
    );
}

#[test]
fn set_rate_refuses_an_egress_configuration_and_bad_values_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let egress_before = std::fs::read(&tb.egress_config).expect("egress");
    let out = ctl(&[
        "link",
        "set-rate",
        "--config",
        path_str(&tb.egress_config),
        "1000",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("egress configuration"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(&tb.egress_config).expect("egress"),
        egress_before
    );

    let ingress_before = std::fs::read(&tb.ingress_config).expect("ingress");
    for bad in ["fast", "-5", "18446744073709551615"] {
        let out = ctl(&[
            "link",
            "set-rate",
            "--config",
            path_str(&tb.ingress_config),
            bad,
        ]);
        assert!(!out.status.success(), "{bad} refused");
        assert_eq!(
            std::fs::read(&tb.ingress_config).expect("ingress"),
            ingress_before,
            "{bad}: unchanged"
        );
    }
    // A configuration that does not load is not touched either.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[link]\nrole = \"ingress\"\nmtu = 12\n").expect("write");
    let out = ctl(&["link", "set-rate", "--config", path_str(&broken), "1000"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("broken.toml"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&broken).expect("broken"),
        "[link]\nrole = \"ingress\"\nmtu = 12\n"
    );
}
