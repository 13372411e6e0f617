//! End to end through `parse` and `load`: the located refusals and the
//! values and defaults the checker produces.

use super::model::DEFAULT_DOWNSTREAM_TIMEOUT_S;
use super::*;
use ferry_common::did_you_mean::suggest;
use std::net::SocketAddr;
use std::path::PathBuf;

const INGRESS: &str = r#"# ingress side
[link]
name = "demo"
role = "ingress"
peer = ["127.0.0.1:7700", "127.0.0.1:7701"]
mtu = 9000
rate_bytes_per_s = 100000000

[paths]
state_dir = "state"
keys_dir = "/etc/ferry/keys"
spool_dir = "spool"

[retention]
max_bytes = 1000
"#;

const EGRESS: &str = r#"[link]
name = "demo"
role = "egress"
suite = "gm"
listen = ["127.0.0.1:7700", "[::1]:7701"]
heartbeat_interval_ms = 200
link_down_after_ms = 1000

[paths]
state_dir = "/var/lib/ferry"
keys_dir = "keys"
outbox_dir = "/srv/ferry/in"
"#;

/// Parses `text` expecting a refusal; returns (line, column, message).
fn refused(text: &str) -> (usize, usize, String) {
    match parse(text, "/etc/ferry/ferryd.toml") {
        Err(ConfigError::Invalid {
            line,
            column,
            message,
            ..
        }) => (line, column, message),
        other => panic!("expected a located error, got {other:?}"),
    }
}

#[test]
fn valid_ingress_file_with_defaults() {
    let c = parse(INGRESS, "/etc/ferry/ferryd.toml").unwrap();
    assert_eq!(c.link.name, "demo");
    assert_eq!(c.link.role, Role::Ingress);
    assert_eq!(c.link.suite, SuiteName::Intl);
    assert_eq!(c.link.mtu, 9000);
    assert_eq!(c.link.max_datagram_len(), 8972);
    assert_eq!(
        c.link.peer,
        vec![
            "127.0.0.1:7700".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:7701".parse().unwrap()
        ]
    );
    assert_eq!(c.link.bind, "0.0.0.0:0".parse::<SocketAddr>().unwrap());
    assert!(c.link.listen.is_empty());
    assert_eq!(c.link.rate_bytes_per_s, 100_000_000);
    assert_eq!(c.link.socket_buffer_bytes, 8_388_608);
    assert_eq!(c.link.heartbeat_interval_ms, 1000);
    assert_eq!(c.link.link_down_after_ms, 3500);
    assert_eq!(c.link.epoch_length_s, 3600);
    assert_eq!(c.link.epoch_origin_unix_s, 1_767_225_600);
    assert_eq!(c.link.epoch_grace, 1);
    assert_eq!(c.link.repair_overhead_percent, 10.0);
    assert_eq!(c.link.loss_budget_percent, 5.0);
    assert_eq!(c.link.loss_budget_burst, 8);
    assert_eq!(c.link.udp_gso_segments, 8, "GSO defaults to the burst");
    assert_eq!(c.link.block_symbols, 1024);
    assert_eq!(c.link.redundancy, 1);
    assert_eq!(c.link.redundancy_spacing_ms, 1000);
    assert_eq!(c.link.max_buffer_bytes, 268_435_456);
    assert_eq!(c.link.package_idle_timeout_ms, 5000);
    assert_eq!(c.paths.state_dir, PathBuf::from("/etc/ferry/state"));
    assert_eq!(c.paths.keys_dir, PathBuf::from("/etc/ferry/keys"));
    assert_eq!(c.paths.spool_dir, Some(PathBuf::from("/etc/ferry/spool")));
    assert_eq!(c.paths.outbox_dir, None);
    assert_eq!(c.retention.max_bytes, 1000);
    assert_eq!(c.retention.max_age_s, 604_800);
}

#[test]
fn valid_egress_file() {
    let c = parse(EGRESS, "/etc/ferry/ferryd.toml").unwrap();
    assert_eq!(c.link.role, Role::Egress);
    assert_eq!(c.link.suite, SuiteName::Gm);
    assert_eq!(
        c.link.listen,
        vec![
            "127.0.0.1:7700".parse::<SocketAddr>().unwrap(),
            "[::1]:7701".parse().unwrap()
        ]
    );
    assert!(c.link.peer.is_empty());
    assert_eq!(c.link.heartbeat_interval_ms, 200);
    assert_eq!(c.link.link_down_after_ms, 1000);
    assert_eq!(c.paths.keys_dir, PathBuf::from("/etc/ferry/keys"));
    assert_eq!(c.paths.outbox_dir, Some(PathBuf::from("/srv/ferry/in")));
    assert_eq!(c.paths.spool_dir, None);
    assert_eq!(c.retention.max_bytes, 1 << 30);
    assert_eq!(
        c.link.receive_spool_bytes,
        4 << 30,
        "the documented default"
    );
}

#[test]
fn the_default_pacing_is_100_mb_per_s_and_the_spool_size_is_checked() {
    let text = INGRESS.replace("rate_bytes_per_s = 100000000\n", "");
    let c = parse(&text, "/etc/ferry/ferryd.toml").unwrap();
    assert_eq!(c.link.rate_bytes_per_s, 100_000_000);
    let text = EGRESS.replace("[paths]", "receive_spool_bytes = 0\n\n[paths]");
    let c = parse(&text, "/etc/ferry/ferryd.toml").unwrap();
    assert_eq!(c.link.receive_spool_bytes, 0, "memory only");
    let text = EGRESS.replace("[paths]", "receive_spool_bytes = -1\n\n[paths]");
    let (_, col, msg) = refused(&text);
    assert_eq!(col, 23);
    assert!(msg.contains("receive_spool_bytes"), "{msg}");
}

#[test]
fn unknown_key_points_at_key_and_suggests() {
    let text = INGRESS.replace("mtu = 9000", "mut = 9000");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (6, 1));
    assert_eq!(msg, "unknown key `mut`, did you mean `mtu`?");
}

#[test]
fn unknown_table_suggests() {
    let text = INGRESS.replace("[retention]", "[retension]");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (14, 2));
    assert_eq!(msg, "unknown key `retension`, did you mean `retention`?");
}

#[test]
fn unknown_key_without_close_match_lists_allowed_keys() {
    let text = INGRESS.replace("[retention]\n", "[retention]\nzzzz = 1\n");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (15, 1));
    assert!(
        msg.contains("remove it") && msg.contains("max_age_s"),
        "{msg}"
    );
}

#[test]
fn wrong_type_points_at_value() {
    let text = INGRESS.replace("mtu = 9000", "mtu = \"large\"");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (6, 7));
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn bad_role_value_suggests() {
    let text = INGRESS.replace("role = \"ingress\"", "role = \"ingres\"");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (4, 8));
    assert_eq!(msg, "unknown value \"ingres\", did you mean `ingress`?");
}

#[test]
fn missing_required_key_points_at_table_header() {
    let text = INGRESS.replace("name = \"demo\"\n", "");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (2, 1));
    assert!(msg.starts_with("missing key `name` in `[link]`"), "{msg}");

    let text = INGRESS.replace("keys_dir = \"/etc/ferry/keys\"\n", "");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (9, 1));
    assert!(msg.starts_with("missing key `keys_dir`"), "{msg}");
}

#[test]
fn missing_table_points_at_file_start() {
    let text = &INGRESS[..INGRESS.find("[paths]").unwrap()];
    let (line, col, msg) = refused(text);
    assert_eq!((line, col), (1, 1));
    assert!(msg.starts_with("missing table `[paths]`"), "{msg}");
}

#[test]
fn mtu_out_of_range_points_at_value() {
    let text = INGRESS.replace("mtu = 9000", "mtu = 1000");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (6, 7));
    assert_eq!(msg, "`mtu` must be between 1280 and 9216 (bytes), got 1000");
}

#[test]
fn other_ranges_are_checked() {
    for (from, to, key) in [
        (
            "mtu = 9000",
            "mtu = 9000\nblock_symbols = 0",
            "block_symbols",
        ),
        ("mtu = 9000", "mtu = 9000\nredundancy = 9", "redundancy"),
        (
            "mtu = 9000",
            "mtu = 9000\nepoch_length_s = 59",
            "epoch_length_s",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nrepair_overhead_percent = 0.0",
            "repair_overhead_percent",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nrepair_overhead_percent = 150",
            "repair_overhead_percent",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nloss_budget_percent = 25.0",
            "loss_budget_percent",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nloss_budget_percent = -1.0",
            "loss_budget_percent",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nloss_budget_burst = 0",
            "loss_budget_burst",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nloss_budget_burst = 33",
            "loss_budget_burst",
        ),
        ("mtu = 9000", "mtu = 9000\nepoch_grace = -1", "epoch_grace"),
        (
            "mtu = 9000",
            "mtu = 9000\npackage_idle_timeout_ms = 0",
            "package_idle_timeout_ms",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nsocket_buffer_bytes = 100",
            "socket_buffer_bytes",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nudp_gso_segments = 0",
            "udp_gso_segments",
        ),
        (
            "mtu = 9000",
            "mtu = 9000\nudp_gso_segments = 9",
            "udp_gso_segments",
        ),
        ("name = \"demo\"", "name = \"de mo\"", "name"),
    ] {
        let (line, col, msg) = refused(&INGRESS.replace(from, to));
        assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
        let expected_line = if key == "name" { 3 } else { 7 };
        assert_eq!(line, expected_line, "{key}: {msg}");
        assert!(col > 1, "{key}: column points at the value");
    }
}

#[test]
fn udp_gro_is_on_by_default_for_the_egress_and_refused_elsewhere() {
    assert!(
        parse(EGRESS, "/etc/ferry/ferryd.toml")
            .unwrap()
            .link
            .udp_gro
    );
    let off = EGRESS.replace(
        "link_down_after_ms = 1000",
        "link_down_after_ms = 1000\nudp_gro = false",
    );
    assert!(!parse(&off, "/etc/ferry/ferryd.toml").unwrap().link.udp_gro);
    let wrong = EGRESS.replace(
        "link_down_after_ms = 1000",
        "link_down_after_ms = 1000\nudp_gro = 1",
    );
    let (line, col, msg) = refused(&wrong);
    assert_eq!((line, col), (8, 11), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");
    let ingress = INGRESS.replace("mtu = 9000", "mtu = 9000\nudp_gro = true");
    let (line, _, msg) = refused(&ingress);
    assert_eq!(line, 7, "{msg}");
    assert!(
        msg.contains("`udp_gro` applies to the egress role only"),
        "{msg}"
    );
}

#[test]
fn udp_gso_segments_follow_the_loss_budget() {
    let with = |extra: &str| INGRESS.replace("mtu = 9000", &format!("mtu = 9000\n{extra}"));
    for (extra, want) in [
        ("loss_budget_burst = 3", 3),
        ("loss_budget_burst = 16\nudp_gso_segments = 16", 16),
        // Without a budget nothing spreads a lost super-packet: GSO is off.
        ("loss_budget_percent = 0.0", 1),
        ("loss_budget_percent = 0.0\nudp_gso_segments = 1", 1),
    ] {
        let c = parse(&with(extra), "/etc/ferry/ferryd.toml").unwrap();
        assert_eq!(c.link.udp_gso_segments, want, "{extra}");
    }
    // Each refusal points at the key and says what to do.
    for (extra, line, says) in [
        (
            "loss_budget_percent = 0.0\nudp_gso_segments = 2",
            8,
            "needs a loss budget",
        ),
        ("udp_gso_segments = 9", 7, "raise `loss_budget_burst` to 9"),
    ] {
        let (at, _, msg) = refused(&with(extra));
        assert_eq!(at, line, "{msg}");
        assert!(msg.contains(says), "{msg}");
    }
}

#[test]
fn role_specific_missing_keys() {
    let text = EGRESS.replace("outbox_dir = \"/srv/ferry/in\"\n", "");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (9, 1));
    assert!(
        msg.starts_with("missing key `outbox_dir` in `[paths]`"),
        "{msg}"
    );

    let text = INGRESS.replace("peer = [\"127.0.0.1:7700\", \"127.0.0.1:7701\"]\n", "");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (2, 1));
    assert!(msg.starts_with("missing key `peer` in `[link]`"), "{msg}");

    let text = INGRESS.replace("spool_dir = \"spool\"\n", "");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (9, 1));
    assert!(msg.starts_with("missing key `spool_dir`"), "{msg}");
}

#[test]
fn keys_of_the_other_role_are_refused() {
    let text = INGRESS.replace("mtu = 9000", "listen = [\"127.0.0.1:1\"]");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (6, 1));
    assert!(msg.contains("egress role only"), "{msg}");

    let text = EGRESS.replace("[paths]\n", "[paths]\nspool_dir = \"x\"\n");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (10, 1));
    assert!(msg.contains("ingress role only"), "{msg}");
}

#[test]
fn link_down_must_exceed_heartbeat() {
    let text = EGRESS.replace("link_down_after_ms = 1000", "link_down_after_ms = 200");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (7, 22));
    assert!(
        msg.contains("greater than `heartbeat_interval_ms` (200)"),
        "{msg}"
    );

    let text = INGRESS.replace("mtu = 9000", "heartbeat_interval_ms = 5000");
    let (line, col, _) = refused(&text);
    assert_eq!((line, col), (6, 25));
}

#[test]
fn invalid_address_points_at_the_element() {
    let text = INGRESS.replace("\"127.0.0.1:7701\"", "\"egress.example:7701\"");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (5, 27));
    assert!(msg.contains("not an IP address with a port"), "{msg}");

    let text = INGRESS.replace("\"127.0.0.1:7701\"", "\"0.0.0.0:7701\"");
    let (_, _, msg) = refused(&text);
    assert!(msg.contains("unspecified"), "{msg}");

    let text = EGRESS.replace("\"[::1]:7701\"", "\"[::1]:0\"");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (5, 29));
    assert!(msg.contains("port 0"), "{msg}");
}

#[test]
fn ipv6_peer_needs_an_ipv6_bind() {
    let text = INGRESS.replace("\"127.0.0.1:7701\"", "\"[::1]:7701\"");
    let (line, col, msg) = refused(&text);
    assert_eq!((line, col), (5, 27));
    assert!(msg.contains("bind = \"[::]:0\""), "{msg}");
    let text = text.replace("mtu = 9000", "bind = \"[::]:0\"");
    let c = parse(&text, "/etc/ferry/ferryd.toml").unwrap();
    assert_eq!(c.link.peer[1], "[::1]:7701".parse::<SocketAddr>().unwrap());
}

/// The layout `testbed` writes (and the end-to-end tests use).
#[test]
fn testbed_style_files_parse() {
    let common = "name = \"t\"\nsuite = \"intl\"\nmtu = 1500\nsocket_buffer_bytes = 33554432\nrepair_overhead_percent = 10.0\nredundancy = 1\nredundancy_spacing_ms = 200\nheartbeat_interval_ms = 200\nlink_down_after_ms = 1000\nmax_buffer_bytes = 268435456\n";
    let ingress = format!("[link]\nrole = \"ingress\"\n{common}peer = [\"127.0.0.1:7700\"]\nbind = \"127.0.0.1:0\"\nrate_bytes_per_s = 0\n\n[paths]\nstate_dir = \"state\"\nkeys_dir = \"keys\"\nspool_dir = \"spool\"\n");
    let egress = format!("[link]\nrole = \"egress\"\n{common}listen = [\"127.0.0.1:7700\"]\n\n[paths]\nstate_dir = \"state\"\nkeys_dir = \"keys\"\noutbox_dir = \"outbox\"\n");
    let i = parse(&ingress, "/tb/ingress/ferryd.toml").unwrap();
    assert_eq!(i.link.bind, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
    assert_eq!(i.paths.spool_dir, Some(PathBuf::from("/tb/ingress/spool")));
    let e = parse(&egress, "/tb/egress/ferryd.toml").unwrap();
    assert_eq!(e.paths.outbox_dir, Some(PathBuf::from("/tb/egress/outbox")));
    assert_eq!(e.link.socket_buffer_bytes, 32 << 20);
}

#[test]
fn syntax_error_is_located() {
    let text = INGRESS.replace("[paths]", "[paths");
    let (line, _, _) = refused(&text);
    assert_eq!(line, 9);
}

#[test]
fn display_shows_line_and_caret() {
    let text = INGRESS.replace("mtu = 9000", "mut = 9000");
    let e = parse(&text, "ferryd.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "ferryd.toml:6:1: unknown key `mut`, did you mean `mtu`?\n  |\n6 | mut = 9000\n  | ^^^"
    );
    assert_eq!(e.position(), Some((6, 1)));
}

#[test]
fn columns_count_characters() {
    let text = INGRESS
        .replace("# ingress side", "# 入口 side")
        .replace("name = \"demo\"", "name = \"数据\"");
    let (line, col, _) = refused(&text);
    assert_eq!((line, col), (3, 8));
}

#[test]
fn load_resolves_relative_paths_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferryd.toml");
    std::fs::write(&file, INGRESS).unwrap();
    let c = load(&file).unwrap();
    assert_eq!(c.paths.state_dir, dir.path().join("state"));
    assert_eq!(c.paths.spool_dir, Some(dir.path().join("spool")));

    let missing = dir.path().join("nope.toml");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn downstream_section() {
    let c = parse(
        &format!("{EGRESS}\n[downstream]\nca = \"tls/ca.crt\"\ncert = \"tls/c.crt\"\nkey = \"/k/c.key\"\nretry_max_ms = 60000\n"),
        "/etc/ferry/ferryd.toml",
    )
    .unwrap();
    let d = c.downstream.unwrap();
    assert_eq!(d.ca, Path::new("/etc/ferry/tls/ca.crt"));
    assert_eq!(d.key, Path::new("/k/c.key"));
    assert_eq!(d.retry_max_ms, 60_000);
    assert_eq!(d.retry_initial_ms, DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS);
    assert_eq!(d.timeout_s, DEFAULT_DOWNSTREAM_TIMEOUT_S);
    let (line, _, msg) = refused(&format!(
        "{EGRESS}\n[downstream]\nca = \"a\"\ncert = \"b\"\n"
    ));
    assert_eq!(line, 14);
    assert!(
        msg.starts_with("missing key `key` in `[downstream]`"),
        "{msg}"
    );
    let (line, col, msg) = refused(&format!(
        "{EGRESS}\n[downstream]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\nretry_initial_ms = 5000\nretry_max_ms = 1000\n"
    ));
    assert_eq!((line, col), (19, 16));
    assert!(msg.contains("below `retry_initial_ms`"), "{msg}");
    let (_, _, msg) = refused(&format!(
        "{INGRESS}\n[downstream]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n"
    ));
    assert!(msg.contains("egress role only"), "{msg}");
}

#[test]
fn admin_api_section() {
    let api = "\n[admin_api]\nlisten = \"127.0.0.1:9443\"\ncert = \"tls/a.crt\"\nkey = \"tls/a.key\"\nclient_ca = [\"tls/ca.crt\"]\n";
    let c = parse(
        &format!("{EGRESS}\n[admin]\nsysadmin = [\"uid:5001\"]\n{api}"),
        "/etc/ferry/ferryd.toml",
    )
    .unwrap();
    let a = c.admin_api.unwrap();
    assert_eq!(a.listen.to_string(), "127.0.0.1:9443");
    assert_eq!(a.client_ca, vec![PathBuf::from("/etc/ferry/tls/ca.crt")]);
    let (_, _, msg) = refused(&format!("{EGRESS}{api}"));
    assert!(msg.contains("`[admin_api]` needs `[admin]`"), "{msg}");
    let (_, _, msg) = refused(&format!(
        "{EGRESS}\n[admin]\nsysadmin = [\"uid:5001\"]\n\n[admin_api]\nlisten = \"127.0.0.1:9443\"\ncert = \"a\"\nkey = \"b\"\n"
    ));
    assert!(
        msg.starts_with("missing key `client_ca` in `[admin_api]`"),
        "{msg}"
    );
}

#[test]
fn metrics_section() {
    let c = parse(
        &format!("{EGRESS}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"),
        "/etc/ferry/ferryd.toml",
    )
    .unwrap();
    assert_eq!(
        c.metrics.map(|m| m.listen.to_string()).as_deref(),
        Some("127.0.0.1:9464")
    );
    let (line, _, msg) = refused(&format!("{EGRESS}\n[metrics]\n"));
    assert_eq!(line, 14);
    assert!(
        msg.starts_with("missing key `listen` in `[metrics]`"),
        "{msg}"
    );
    let (line, col, msg) = refused(&format!("{EGRESS}\n[metrics]\nlisten = \"localhost\"\n"));
    assert_eq!((line, col), (15, 10));
    assert!(msg.contains("is not an IP address with a port"), "{msg}");
}

#[test]
fn hardening_defaults_to_every_step_on() {
    let c = parse(INGRESS, "/etc/ferry/ferryd.toml").unwrap();
    assert_eq!(c.hardening, HardeningSection::default());
    let h = &c.hardening;
    assert!(h.drop_privileges && h.forbid_core_dumps && h.no_new_privs);
    assert!(h.landlock && h.seccomp && h.close_inherited_fds && h.sanitize_environment);
    assert_eq!(h.seccomp_action, SeccompActionName::KillProcess);
    assert_eq!(h.user, None);
}

#[test]
fn hardening_section_parses() {
    let text = format!(
        "{EGRESS}\n[hardening]\nuser = \"ferry\"\ngroup = \"ferry\"\nseccomp_action = \"errno\"\nlandlock = false\nextra_read_paths = [\"/etc/ssl\", \"ca\"]\n"
    );
    let c = parse(&text, "/etc/ferry/ferryd.toml").unwrap();
    let h = &c.hardening;
    assert_eq!(h.user.as_deref(), Some("ferry"));
    assert_eq!(h.group.as_deref(), Some("ferry"));
    assert_eq!(h.seccomp_action, SeccompActionName::Errno);
    assert!(!h.landlock);
    assert!(h.seccomp);
    assert_eq!(
        h.extra_read_paths,
        vec![PathBuf::from("/etc/ssl"), PathBuf::from("/etc/ferry/ca")]
    );
}

#[test]
fn hardening_refusals_are_located() {
    let base = format!("{EGRESS}\n[hardening]\n");
    // EGRESS has 12 lines and a blank follows: the header is line 14.
    let (line, col, msg) = refused(&format!("{base}user = \"Fe rry\"\n"));
    assert_eq!((line, col), (15, 8));
    assert!(
        msg.starts_with("`user` must be a system user name"),
        "{msg}"
    );

    let (line, col, msg) = refused(&format!("{base}seccomp_action = \"kill\"\n"));
    assert_eq!((line, col), (15, 18));
    assert!(msg.starts_with("unknown value \"kill\""), "{msg}");

    let (line, col, msg) = refused(&format!("{base}group = \"ferry\"\n"));
    assert_eq!((line, col), (15, 1));
    assert!(msg.starts_with("`group` needs `user`"), "{msg}");

    let (line, col, msg) = refused(&format!("{base}user = \"root\"\n"));
    assert_eq!((line, col), (14, 1));
    assert!(msg.contains("defeats the privilege drop"), "{msg}");

    let (line, col, msg) = refused(&format!("{base}seccomp = \"no\"\n"));
    assert_eq!((line, col), (15, 11));
    assert!(msg.contains("invalid type"), "{msg}");

    let (line, _, msg) = refused(&format!("{base}landlok = false\n"));
    assert_eq!(line, 15);
    assert_eq!(msg, "unknown key `landlok`, did you mean `landlock`?");
}

#[test]
fn suggestions() {
    assert_eq!(suggest("mut", &["name", "mtu"]), Some("mtu"));
    assert_eq!(suggest("MTU", &["name", "mtu"]), Some("mtu"));
    assert_eq!(
        suggest("rate", &["rate_bytes_per_s", "mtu"]),
        Some("rate_bytes_per_s")
    );
    assert_eq!(
        suggest("heartbeat_interval", &["heartbeat_interval_ms"]),
        Some("heartbeat_interval_ms")
    );
    assert_eq!(suggest("xyz", &["name", "mtu"]), None);
}
