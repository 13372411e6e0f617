//! Every error class the validator reports, each with its line and column.

use ferry_policy::{check, parse_str, Diagnostic, PolicyError, Severity};

/// A valid policy; line numbers below refer to it.
const BASE: &str = r#"version = 1

[policy]
time_zone = "Asia/Shanghai"

[identity.stats]
cn = "stats.example"

[window.night]
from = "22:00"
to = "06:00"

[approval.two]
reviewers = 2
roles = ["reviewer"]
expires_after_s = 86400

[profile.strict]
allowed_types = ["text/csv"]

[channel.out]
direction = "release"
link = "release-1"
profile = "strict"
approval = "two"
windows = ["night"]

[spool.nightly]
dir = "/var/spool/ferry/nightly"
channel = "out"
schedule = "30 1 * * *"

[identity.nightly]
spool = "nightly"

[[rule]]
id = "R1"
effect = "allow"
identities = ["stats", "nightly"]
channels = ["out"]
max_package_bytes = 1000
"#;

fn diags(text: &str) -> Vec<Diagnostic> {
    match parse_str(text, "policy.toml") {
        Ok((_, warnings)) => warnings,
        Err(PolicyError::Invalid { diagnostics }) => diagnostics,
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// The errors of `text` as (line, column, code, message).
fn errors(text: &str) -> Vec<(usize, usize, &'static str, String)> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.line, d.column, d.code, d.message))
        .collect()
}

fn warnings(text: &str) -> Vec<(usize, usize, &'static str, String)> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| (d.line, d.column, d.code, d.message))
        .collect()
}

/// The single error of `text`.
fn one_error(text: &str) -> (usize, usize, &'static str, String) {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_is_valid_without_warnings() {
    assert_eq!(diags(BASE), vec![]);
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let (l, c, code, m) = one_error(&edit("max_package_bytes = 1000", "max_size = 1000"));
    assert_eq!((l, c, code), (41, 1, "unknown-key"));
    assert_eq!(
        m,
        "unknown key `max_size`, did you mean `max_package_bytes`?"
    );

    let (l, c, _, m) = one_error(&edit("[channel.out]", "[chanel.out]"));
    assert_eq!((l, c), (21, 2));
    assert_eq!(m, "unknown key `chanel`, did you mean `channel`?");

    let (l, c, _, m) = one_error(&edit(
        "cn = \"stats.example\"",
        "cn = \"stats.example\"\nzzzz = 1",
    ));
    assert_eq!((l, c), (8, 1));
    assert!(m.contains("remove it") && m.contains("fingerprint"), "{m}");
}

#[test]
fn display_matches_house_style() {
    let d = diags(&edit("max_package_bytes = 1000", "max_size = 1000"));
    assert_eq!(
        d[0].to_string(),
        "policy.toml:41:1: unknown key `max_size`, did you mean `max_package_bytes`?\n   |\n41 | max_size = 1000\n   | ^^^^^^^^"
    );
}

#[test]
fn wrong_type_points_at_value() {
    let (l, c, code, m) = one_error(&edit(
        "max_package_bytes = 1000",
        "max_package_bytes = \"1000\"",
    ));
    assert_eq!((l, c, code), (41, 21, "wrong-type"));
    assert!(m.contains("must be an integer"), "{m}");
}

#[test]
fn missing_key_points_at_table_header() {
    let (l, c, code, m) = one_error(&edit("link = \"release-1\"\n", ""));
    assert_eq!((l, c, code), (21, 1, "missing-key"));
    assert!(m.starts_with("missing key `link` in [channel.out]"), "{m}");
}

#[test]
fn unknown_references_are_located_with_suggestions() {
    let (l, c, code, m) = one_error(&edit("profile = \"strict\"", "profile = \"strikt\""));
    assert_eq!((l, c, code), (24, 11, "unknown-reference"));
    assert_eq!(
        m,
        "`profile` names unknown profile `strikt`, did you mean `strict`?"
    );

    let (l, c, _, m) = one_error(&edit(
        "identities = [\"stats\", \"nightly\"]",
        "identities = [\"stats\", \"nightly\", \"bob\"]",
    ));
    assert_eq!((l, c), (39, 35));
    assert!(m.contains("unknown identity `bob`"), "{m}");

    let (l, c, _, m) = one_error(&edit("channel = \"out\"", "channel = \"outt\""));
    assert_eq!((l, c), (30, 11));
    assert!(m.contains("did you mean `out`"), "{m}");

    let (l, c, _, _) = one_error(&edit("windows = [\"night\"]", "windows = [\"nite\"]"));
    assert_eq!((l, c), (26, 12));

    let (l, c, _, _) = one_error(&edit("approval = \"two\"", "approval = \"three\""));
    assert_eq!((l, c), (25, 12));
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let (l, _, code, m) = one_error(&edit(
        "cn = \"stats.example\"",
        "cn = \"stats.example\"\ncn = \"other\"",
    ));
    assert_eq!((l, code), (8, "syntax"));
    assert!(m.contains("duplicate key"), "{m}");
}

#[test]
fn duplicate_rule_ids() {
    let text = format!("{BASE}\n[[rule]]\nid = \"R1\"\neffect = \"deny\"\nidentities = [\"stats\"]\nchannels = [\"out\"]\nnames = [\"*.exe\"]\n");
    let (l, c, code, m) = one_error(&text);
    assert_eq!((l, c, code), (44, 6, "duplicate-rule-id"));
    assert!(m.contains("first at policy.toml:37"), "{m}");
}

#[test]
fn invalid_time_zone_suggests_shanghai() {
    let (l, c, code, m) = one_error(&edit(
        "time_zone = \"Asia/Shanghai\"",
        "time_zone = \"CST\"",
    ));
    assert_eq!((l, c, code), (4, 13, "invalid-time-zone"));
    assert!(m.contains("Asia/Shanghai"), "{m}");
    let (l, c, code, _) = one_error(&edit(
        "time_zone = \"Asia/Shanghai\"",
        "time_zone = \"Mars/Olympus\"",
    ));
    assert_eq!((l, c, code), (4, 13, "invalid-time-zone"));
}

#[test]
fn invalid_cron_points_at_the_field() {
    let (l, c, code, m) = one_error(&edit("\"30 1 * * *\"", "\"30 25 * * *\""));
    assert_eq!((l, c, code), (31, 16, "invalid-cron"));
    assert!(m.contains("hour"), "{m}");
    let (_, _, code, _) = one_error(&edit("\"30 1 * * *\"", "\"30 1 * *\""));
    assert_eq!(code, "invalid-cron");
    let (l, c, code, _) = one_error(&edit("\"30 1 * * *\"", "\"0 0 30 feb *\""));
    assert_eq!((l, c, code), (31, 12, "schedule-never-fires"));
}

#[test]
fn window_that_never_opens() {
    let (l, c, code, _) = one_error(&edit("to = \"06:00\"", "to = \"22:00\""));
    assert_eq!((l, c, code), (11, 6, "window-never-opens"));
    let (l, c, code, _) = one_error(&edit("to = \"06:00\"", "to = \"06:00\"\ndays = []"));
    assert_eq!((l, c, code), (12, 8, "window-never-opens"));
    let (l, c, code, _) = one_error(&edit("to = \"06:00\"", "to = \"6pm\""));
    assert_eq!((l, c, code), (11, 6, "invalid-value"));
}

#[test]
fn overlapping_windows() {
    let text = edit(
        "windows = [\"night\"]",
        "windows = [\"night\", \"evening\"]",
    ) + "\n[window.evening]\nfrom = \"20:00\"\nto = \"23:00\"\n";
    let (l, c, code, m) = one_error(&text);
    assert_eq!((l, c, code), (26, 21, "overlapping-windows"));
    assert!(m.contains("`night` and `evening`"), "{m}");
    // Disjoint windows are fine.
    let text = text.replace("to = \"23:00\"", "to = \"21:00\"");
    assert_eq!(errors(&text), vec![]);
}

#[test]
fn integer_overflow_and_ranges() {
    let (l, _, code, _) = one_error(&edit(
        "max_package_bytes = 1000",
        "max_package_bytes = 99999999999999999999",
    ));
    assert_eq!((l, code), (41, "syntax"));
    let (l, c, code, m) = one_error(&edit("max_package_bytes = 1000", "max_package_bytes = -1"));
    assert_eq!((l, c, code), (41, 21, "invalid-value"));
    assert!(m.contains("at least 1"), "{m}");
    let (l, c, _, m) = one_error(&edit(
        "link = \"release-1\"",
        "link = \"release-1\"\nredundancy = 9",
    ));
    assert_eq!((l, c), (24, 14));
    assert!(m.contains("between 1 and 8"), "{m}");
    let (l, c, _, _) = one_error(&edit("reviewers = 2", "reviewers = 0"));
    assert_eq!((l, c), (14, 13));
}

#[test]
fn bad_values() {
    let (l, c, _, m) = one_error(&edit("direction = \"release\"", "direction = \"relase\""));
    assert_eq!((l, c), (22, 13));
    assert!(m.contains("did you mean `release`"), "{m}");
    let (l, c, _, _) = one_error(&edit("max_package_bytes = 1000", "names = [\"[abc\"]"));
    assert_eq!((l, c), (41, 10));
    let (l, c, _, _) = one_error(&edit("cn = \"stats.example\"", "fingerprint = \"abc\""));
    assert_eq!((l, c), (7, 15));
    let (l, c, _, m) = one_error(&edit("cn = \"stats.example\"", "description = \"nothing\""));
    assert_eq!((l, c), (6, 1));
    assert!(m.contains("sets nothing to match"), "{m}");
    let (l, c, _, _) = one_error(&edit(
        "dir = \"/var/spool/ferry/nightly\"",
        "dir = \"spool\"",
    ));
    assert_eq!((l, c), (29, 7));
    let (l, c, _, m) = one_error(&edit(
        "allowed_types = [\"text/csv\"]",
        "allowed_types = [\"text/csv\"]\npii = { detectors = [\"prc-id\"] }",
    ));
    assert_eq!((l, c), (20, 22));
    assert!(m.contains("did you mean `prc_id`"), "{m}");
}

#[test]
fn all_errors_are_reported_in_one_run() {
    let text = edit("max_package_bytes = 1000", "max_size = 1000")
        .replace("profile = \"strict\"", "profile = \"nope\"")
        .replace("time_zone = \"Asia/Shanghai\"", "time_zone = \"Nowhere\"");
    let e = errors(&text);
    let lines: Vec<usize> = e.iter().map(|x| x.0).collect();
    assert!(
        lines.contains(&41) && lines.contains(&24) && lines.contains(&4),
        "{e:#?}"
    );
}

#[test]
fn empty_and_garbage_files() {
    let (l, c, code, _) = one_error("");
    assert_eq!((l, c, code), (1, 1, "empty"));
    let (l, c, code, _) = one_error("  \n# only a comment\n");
    assert_eq!((l, c, code), (1, 1, "no-channels"));
    let (_, _, code, _) = one_error("\u{0}\u{1}\u{2}garbage\u{7f}[[[");
    assert_eq!(code, "syntax");
}

#[test]
fn no_channels_is_an_error() {
    let (l, c, code, _) = one_error("version = 1\n[policy]\nname = \"x\"\n");
    assert_eq!((l, c, code), (1, 1, "no-channels"));
}

#[test]
fn warnings_are_located() {
    let w = warnings(&edit("approval = \"two\"\n", ""));
    let codes: Vec<_> = w.iter().map(|x| (x.0, x.1, x.2)).collect();
    assert!(
        codes.contains(&(21, 1, "release-without-approval")),
        "{w:#?}"
    );
    assert!(codes.contains(&(13, 1, "unused-definition")), "{w:#?}");

    let w = warnings(&edit("profile = \"strict\"\n", ""));
    assert!(
        w.iter()
            .any(|x| (x.0, x.2) == (21, "release-without-profile")),
        "{w:#?}"
    );

    // A second allow rule that the first covers is shadowed.
    let text = format!("{BASE}\n[[rule]]\nid = \"R2\"\neffect = \"allow\"\nidentities = [\"stats\"]\nchannels = [\"out\"]\nmax_package_bytes = 10\n");
    let w = warnings(&text);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!((w[0].0, w[0].1, w[0].2), (43, 1, "shadowed-rule"));
    assert!(w[0].3.contains("shadowed by rule `R1`"), "{}", w[0].3);

    // An allow rule under a deny rule that covers it never allows.
    let text = format!("{BASE}\n[[rule]]\nid = \"D1\"\neffect = \"deny\"\nidentities = [\"*\"]\nchannels = [\"*\"]\n");
    let w = warnings(&text);
    assert!(
        w.iter().any(|x| (x.0, x.2) == (36, "rule-never-allows")),
        "{w:#?}"
    );

    // A spool no rule lets push.
    let w = warnings(&edit(
        "identities = [\"stats\", \"nightly\"]",
        "identities = [\"stats\"]",
    ));
    assert!(
        w.iter().any(|x| (x.0, x.2) == (28, "spool-never-allowed")),
        "{w:#?}"
    );
}

#[test]
fn strict_turns_warnings_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, edit("approval = \"two\"\n", "")).unwrap();
    let lax = check(&file, false);
    assert!(lax.valid && lax.warnings > 0, "{}", lax.render());
    let strict = check(&file, true);
    assert!(!strict.valid, "{}", strict.render());
    assert_eq!(strict.warnings, 0);
    assert!(strict.errors >= 2);
    let json = serde_json::to_value(&strict).unwrap();
    assert_eq!(json["valid"], false);
    let release = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "release-without-approval")
        .unwrap();
    assert_eq!(
        (
            release["line"].as_u64(),
            release["column"].as_u64(),
            release["severity"].as_str()
        ),
        (Some(21), Some(1), Some("error"))
    );
}

#[test]
fn includes_are_followed_and_errors_name_the_included_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("policy.toml");
    let ids = dir.path().join("ids.toml");
    let (head, tail) = BASE.split_at(BASE.find("[identity.stats]").unwrap());
    let tail = tail.replacen("[identity.stats]\ncn = \"stats.example\"\n", "", 1);
    std::fs::write(&main, format!("include = [\"ids.toml\"]\n{head}{tail}")).unwrap();
    std::fs::write(&ids, "[identity.stats]\ncn = \"stats.example\"\n").unwrap();
    let (p, w) = ferry_policy::load(&main).unwrap();
    assert!(w.is_empty(), "{w:#?}");
    assert_eq!(p.files().len(), 2);

    // Editing the include changes the hash.
    let before = p.hash().to_string();
    std::fs::write(&ids, "[identity.stats]\ncn = \"stats2.example\"\n").unwrap();
    let (p2, _) = ferry_policy::load(&main).unwrap();
    assert_ne!(p2.hash(), before);

    std::fs::write(&ids, "[identity.stats]\ncnn = \"stats.example\"\n").unwrap();
    let err = ferry_policy::load(&main).unwrap_err();
    let d = &err.diagnostics()[0];
    assert!(d.file.ends_with("ids.toml"), "{d}");
    assert_eq!((d.line, d.column), (2, 1));

    // A missing include and a cycle are located at the include entry.
    std::fs::write(
        &ids,
        "include = [\"policy.toml\"]\n[identity.stats]\ncn = \"stats.example\"\n",
    )
    .unwrap();
    let err = ferry_policy::load(&main).unwrap_err();
    let d = err
        .diagnostics()
        .iter()
        .find(|d| d.code == "include-cycle")
        .unwrap();
    assert!(d.file.ends_with("ids.toml"));
    assert_eq!((d.line, d.column), (1, 12));

    std::fs::remove_file(&ids).unwrap();
    let err = ferry_policy::load(&main).unwrap_err();
    let d = err
        .diagnostics()
        .iter()
        .find(|d| d.code == "include-failed")
        .unwrap();
    assert_eq!((d.line, d.column), (1, 12));
    assert!(d.file.ends_with("policy.toml"), "{d}");
}

#[test]
fn duplicate_definitions_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("policy.toml");
    std::fs::write(&main, format!("include = [\"more.toml\"]\n{BASE}")).unwrap();
    std::fs::write(
        dir.path().join("more.toml"),
        "[identity.stats]\ncn = \"x\"\n",
    )
    .unwrap();
    let err = ferry_policy::load(&main).unwrap_err();
    let d = err
        .diagnostics()
        .iter()
        .find(|d| d.code == "duplicate-name")
        .unwrap();
    assert_eq!(d.line, 7, "{d}");
    assert!(d.message.contains("more.toml:1"), "{d}");
}

/// Promise: a mask that keeps more of a value than docs/guard.md allows
/// ("Masking rules") is refused at the value that says so, whether it is
/// written for one detector or for all.
#[test]
fn masks_that_hide_too_little_are_refused_where_written() {
    // The README's old demo profile: 6 + 4 kept of an 11-digit mobile.
    let text = edit(
        "allowed_types = [\"text/csv\"]\n",
        "allowed_types = [\"text/csv\"]\npii = { detectors = [\"mobile\"], action = \"mask\", keep_prefix = 6, keep_suffix = 4 }\n",
    );
    let (line, col, code, msg) = one_error(&text);
    assert_eq!((line, code), (20, "mask-too-weak"), "{msg}");
    assert_eq!(col, 64, "points at the 6: {msg}");
    assert!(msg.contains("keeps too much of a mobile value"), "{msg}");
    assert!(msg.contains("keep_prefix = 3"), "{msg}");
    // The same keep, overridden for mobile by its own rule, is fine for
    // an identity number (6 + 4 hides the birth date).
    let text = edit(
        "allowed_types = [\"text/csv\"]\n",
        "allowed_types = [\"text/csv\"]\n[profile.strict.pii]\ndetectors = [\"mobile\", \"prc_id\"]\naction = \"mask\"\nkeep_prefix = 6\nkeep_suffix = 4\nmask = { mobile = { keep_prefix = 3, keep_suffix = 4 } }\n",
    );
    assert!(errors(&text).is_empty(), "{:?}", errors(&text));
    // A per-detector rule that keeps too much.
    let text = edit(
        "allowed_types = [\"text/csv\"]\n",
        "allowed_types = [\"text/csv\"]\npii = { action = \"mask\", mask = { uscc = { keep_suffix = 2 } } }\n",
    );
    let (line, _, code, msg) = one_error(&text);
    assert_eq!((line, code), (20, "mask-too-weak"), "{msg}");
    assert!(msg.contains("uscc"), "{msg}");
    // An unknown detector under mask.
    let text = edit(
        "allowed_types = [\"text/csv\"]\n",
        "allowed_types = [\"text/csv\"]\npii = { action = \"mask\", mask = { phone = { keep_suffix = 2 } } }\n",
    );
    let (_, _, code, msg) = one_error(&text);
    assert_eq!(code, "unknown-key", "{msg}");
}

/// Promise: column rules and suppression are checked key by key, each
/// error at its place, with what to write instead.
#[test]
fn column_rules_and_suppression_are_checked_where_written() {
    let with = |rules: &str| {
        edit(
            "allowed_types = [\"text/csv\"]\n",
            &format!("allowed_types = [\"text/csv\"]\n{rules}"),
        )
    };
    let ok = with(
        "require_rules = true\ncolumns = [\n  { match = [\"权利人\", \"owner*\"], action = \"pseudonymize\" },\n  { match = [\"登记日期\"], action = \"generalize\", to = \"month\" },\n  { match = [\"成交价格\"], action = \"generalize\", to = \"range\", step = 100000 },\n  { match = [\"联系电话\"], action = \"mask\", keep_prefix = 3 },\n  { match = [\"备注\"], action = \"drop\" },\n]\nsuppression = { count_columns = [\"户数\"], k = 5, total_column = \"合计\", marker = \"*\" }\n",
    );
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    let cases: &[(&str, &str, &str)] = &[
        (
            "columns = [{ match = [\"a\"], action = \"hash\" }]\n",
            "invalid-value",
            "unknown column action \"hash\"",
        ),
        (
            "columns = [{ match = [\"a\"], action = \"generalize\" }]\n",
            "missing-key",
            "needs `to`",
        ),
        (
            "columns = [{ match = [\"a\"], action = \"generalize\", to = \"range\" }]\n",
            "missing-key",
            "need a `step`",
        ),
        (
            "columns = [{ match = [\"a\"], action = \"generalize\", to = \"week\" }]\n",
            "invalid-value",
            "unknown `to = \"week\"`",
        ),
        (
            "columns = [{ match = [\"a\"], action = \"mask\", keep_prefix = 9 }]\n",
            "invalid-value",
            "`keep_prefix` must be between 0 and 4",
        ),
        (
            "columns = [{ match = [\"a\"], action = \"drop\", to = \"month\" }]\n",
            "invalid-value",
            "`to` applies to action = \"generalize\" only",
        ),
        (
            "columns = [{ match = [], action = \"drop\" }]\n",
            "invalid-value",
            "`match` names at least one column",
        ),
        (
            "columns = [{ action = \"drop\" }]\n",
            "missing-key",
            "missing key `match`",
        ),
        (
            "columns = [{ match = [\"a\"], action = \"drop\", colour = 1 }]\n",
            "unknown-key",
            "unknown key `colour`",
        ),
        (
            "suppression = { count_columns = [\"户数\"], k = 1 }\n",
            "invalid-value",
            "`k` must be between 2 and 100",
        ),
        (
            "suppression = { count_columns = [\"户数\"] }\n",
            "missing-key",
            "needs `k`",
        ),
        (
            "suppression = { count_columns = [\"户数\"], k = 3, marker = \"0\" }\n",
            "invalid-value",
            "`marker` is 1 to 16 characters",
        ),
        (
            "require_rules = \"yes\"\n",
            "wrong-type",
            "`require_rules` must be true or false",
        ),
    ];
    for (rules, code, needle) in cases {
        let (line, _, c, msg) = one_error(&with(rules));
        assert_eq!(line, 20, "{rules}: {msg}");
        assert_eq!(c, *code, "{rules}: {msg}");
        assert!(msg.contains(needle), "{rules}: {msg}");
    }
}

/// `malware = { … }`: each wrong setting at its line and column, with
/// what to write instead; a valid table is accepted and handed to the
/// guard as it is.
#[test]
fn malware_settings_are_located() {
    let with = |m: &str| {
        edit(
            "allowed_types = [\"text/csv\"]\n",
            &format!("allowed_types = [\"text/csv\"]\nmalware = {{ {m} }}\n"),
        )
    };
    let ok = with(
        "engine = \"clamd\", socket = \"/run/clamav/clamd.ctl\", timeout_ms = 30000, on_unavailable = \"hold\", max_signature_age_days = 7, max_stream_bytes = 104857600",
    );
    assert_eq!(errors(&ok), vec![]);
    let (policy, _) = parse_str(&ok, "policy.toml").unwrap();
    let settings = &policy.profile("strict").unwrap().settings;
    assert_eq!(settings["malware"]["on_unavailable"], "hold");
    assert_eq!(errors(&with("")), vec![], "every key has a default");
    // (setting, column of the value, code, part of the message)
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "engine = \"clamav\"",
            22,
            "invalid-value",
            "unknown malware engine \"clamav\"",
        ),
        ("engine = \"yara\"", 22, "invalid-value", "use \"clamd\""),
        (
            "socket = \"clamd.ctl\"",
            22,
            "invalid-value",
            "an absolute path",
        ),
        (
            "timeout_ms = 10",
            26,
            "invalid-value",
            "between 100 and 600000 (milliseconds)",
        ),
        (
            "timeout_ms = \"30s\"",
            26,
            "wrong-type",
            "must be an integer",
        ),
        (
            "on_unavailable = \"pass\"",
            30,
            "invalid-value",
            "use \"hold\" or \"refuse\"",
        ),
        (
            "on_unavailable = \"hodl\"",
            30,
            "invalid-value",
            "did you mean `hold`?",
        ),
        (
            "max_signature_age_days = 0",
            38,
            "invalid-value",
            "between 1 and 365 (days)",
        ),
        (
            "max_stream_bytes = 5000000000",
            32,
            "invalid-value",
            "StreamMaxLength",
        ),
        (
            "sokcet = \"/x\"",
            13,
            "unknown-key",
            "did you mean `socket`?",
        ),
    ];
    for (m, col, code, needle) in cases {
        let (line, c, got, msg) = one_error(&with(m));
        assert_eq!((line, got), (20, *code), "{m}: {msg}");
        assert_eq!(c, *col, "{m}: {msg}");
        assert!(msg.contains(needle), "{m}: {msg}");
    }
}

#[test]
fn unknown_disarm_mode_points_at_the_value_and_names_the_modes() {
    let text = edit(
        "[profile.strict]\n",
        "[profile.strict]\ndisarm = \"strp\"\n",
    );
    let (l, c, code, m) = one_error(&text);
    assert_eq!((l, c, code), (19, 10, "invalid-value"));
    assert!(m.contains("did you mean `strip`"), "{m}");
    assert!(m.contains("\"refuse\""), "{m}");
    for ok in ["strip", "refuse"] {
        let text = edit(
            "[profile.strict]\n",
            &format!("[profile.strict]\ndisarm = \"{ok}\"\n"),
        );
        assert_eq!(errors(&text), vec![]);
    }
}

/// `yara = { … }`: each wrong setting at its line and column, with what
/// to write instead; a valid table is accepted, its rules files handed to
/// the guard as absolute paths.
#[test]
fn yara_settings_are_located() {
    let with = |y: &str| {
        edit(
            "allowed_types = [\"text/csv\"]\n",
            &format!("allowed_types = [\"text/csv\"]\nyara = {{ {y} }}\n"),
        )
    };
    let ok = with(
        "rules = [\"/etc/ferry/yara/import.yar\", \"/etc/ferry/yara/docs.yar\"], action = \"review\", timeout_s = 10, max_scan_bytes = 1048576",
    );
    assert_eq!(errors(&ok), vec![]);
    let (policy, _) = parse_str(&ok, "policy.toml").unwrap();
    let p = policy.profile("strict").unwrap();
    assert_eq!(p.settings["yara"]["action"], "review");
    let files: Vec<_> = p
        .rules_files
        .iter()
        .map(|(f, at)| (f.clone(), at.line, at.column))
        .collect();
    assert_eq!(
        files,
        vec![
            ("/etc/ferry/yara/import.yar".into(), 20, 19),
            ("/etc/ferry/yara/docs.yar".into(), 20, 49),
        ]
    );
    // (setting, the text the error points at, code, part of the message)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "action = \"reject\"",
            "{",
            "missing-key",
            "`yara` needs `rules`",
        ),
        ("rules = []", "[]", "invalid-value", "name at least one"),
        (
            "rules = \"/a.yar\"",
            "\"/a.yar\"",
            "wrong-type",
            "an array of strings",
        ),
        (
            "rules = [\"import.yar\"]",
            "\"import.yar\"",
            "invalid-value",
            "loaded from a file",
        ),
        (
            "rules = [\"/a/import.yar\", \"/b/import.yar\"]",
            "\"/b/import.yar\"",
            "invalid-value",
            "same name `import`",
        ),
        (
            "rules = [\"/a.yar\"], action = \"mask\"",
            "\"mask\"",
            "invalid-value",
            "a match cannot be masked",
        ),
        (
            "rules = [\"/a.yar\"], action = \"reviw\"",
            "\"reviw\"",
            "invalid-value",
            "did you mean `review`?",
        ),
        (
            "rules = [\"/a.yar\"], timeout_s = 1",
            "1 }",
            "invalid-value",
            "between 2 and 60 (seconds",
        ),
        (
            "rules = [\"/a.yar\"], timeout_s = \"5s\"",
            "\"5s\"",
            "wrong-type",
            "must be an integer",
        ),
        (
            "rules = [\"/a.yar\"], max_scan_bytes = 0",
            "0 }",
            "invalid-value",
            "between 1 and 1073741824",
        ),
        (
            "rules = [\"/a.yar\"], timeout_ms = 5000",
            "timeout_ms",
            "unknown-key",
            "did you mean `timeout_s`?",
        ),
    ];
    for (y, at, code, needle) in cases {
        let text = with(y);
        let line = text.lines().nth(19).unwrap();
        let col = line.find(at).unwrap() + 1;
        let (l, c, got, msg) = one_error(&text);
        assert_eq!((l, got), (20, *code), "{y}: {msg}");
        assert_eq!(c, col, "{y}: {msg}");
        assert!(msg.contains(needle), "{y}: {msg}");
    }
}

/// A relative rules path is read from the directory of the policy file
/// that names it: the main file's, or an include's own.
#[test]
fn relative_yara_rules_are_read_from_the_naming_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(root.join("shared")).unwrap();
    std::fs::write(
        root.join("shared/profiles.toml"),
        "[profile.inc]\nyara = { rules = [\"yara/inc.yar\"] }\n",
    )
    .unwrap();
    let main = edit(
        "allowed_types = [\"text/csv\"]\n",
        "allowed_types = [\"text/csv\"]\nyara = { rules = [\"yara/import.yar\"] }\n",
    )
    .replacen(
        "version = 1\n",
        "version = 1\ninclude = [\"shared/profiles.toml\"]\n",
        1,
    );
    std::fs::write(root.join("policy.toml"), main).unwrap();
    let report = check(&root.join("policy.toml"), false);
    assert!(report.valid, "{}", report.render());
    let (policy, _) = ferry_policy::load(&root.join("policy.toml")).unwrap();
    let strict = policy.profile("strict").unwrap();
    assert_eq!(strict.rules_files[0].0, root.join("yara/import.yar"));
    assert_eq!(
        strict.settings["yara"]["rules"][0],
        root.join("yara/import.yar").display().to_string()
    );
    let inc = policy.profile("inc").unwrap();
    assert_eq!(inc.rules_files[0].0, root.join("shared/yara/inc.yar"));
    assert!(inc.rules_files[0].1.file.ends_with("shared/profiles.toml"));
}
