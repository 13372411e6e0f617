//! Decisions: deny by default, deny rules override, first allow decides,
//! windows hold, quotas deny with a retry hint, every reason listed.

use ferry_policy::{
    parse_str, Charge, Counter, Decision, Measure, NoUsage, Period, Policy, Reason, Request, San,
    StepOutcome, Subject, Usage, UsageScope, Verdict,
};
use std::cell::RefCell;
use time::macros::datetime;
use time::OffsetDateTime;

const POLICY: &str = r#"
[policy]
time_zone = "Asia/Shanghai"

[identity.stats]
cn = "stats.example"
role = "pusher"
limits = { packages_per_minute = 2, bytes_per_day = 1000 }

[identity.by-san]
san = ["dns:Portal.Example", "uri:urn:ferry:id:portal"]

[identity.by-fp]
fingerprint = "AB:CD:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01"

[identity.by-ou]
ou = ["Statistics", "Land"]
subject = "CN=x,OU=Statistics,OU=Land"

[identity.nightly]
spool = "nightly"

[window.night]
from = "22:00"
to = "06:00"
days = ["mon", "tue", "wed", "thu", "fri"]

[window.weekend-noon]
time_zone = "UTC"
from = "12:00"
to = "13:00"
days = ["sat", "sun"]

[approval.two]
reviewers = 2
roles = ["reviewer"]
expires_after_s = 3600

[profile.strict]
allowed_types = ["text/csv"]

[channel.out]
direction = "release"
link = "release-1"
profile = "strict"
approval = "two"
windows = ["night"]
limits = { packages_per_day = 100 }

[channel.in]
direction = "import"
link = "import-1"

[spool.nightly]
dir = "/var/spool/ferry/nightly"
channel = "in"
schedule = "continuous"

[[rule]]
id = "deny-exe"
effect = "deny"
identities = ["*"]
channels = ["*"]
names = ["*.exe"]

[[rule]]
id = "deny-big-in"
effect = "deny"
identities = ["*"]
channels = ["in"]
min_package_bytes = 100000

[[rule]]
id = "stats-out"
effect = "allow"
identities = ["stats"]
channels = ["out"]
content_types = ["text/*"]
names = ["stats-*"]
max_package_bytes = 500

[[rule]]
id = "stats-out-json"
effect = "allow"
identities = ["stats"]
channels = ["out"]
content_types = ["application/json"]

[[rule]]
id = "any-in"
effect = "allow"
identities = ["by-san", "by-fp", "by-ou", "nightly"]
channels = ["in"]

[[rule]]
id = "weekend-in"
effect = "allow"
identities = ["stats"]
channels = ["in"]
windows = ["weekend-noon"]
"#;

fn policy() -> Policy {
    let (p, w) = parse_str(POLICY, "p.toml").unwrap();
    assert!(w.is_empty(), "{w:#?}");
    p
}

fn stats() -> Subject {
    Subject {
        subject: "CN=stats.example".into(),
        common_name: Some("stats.example".into()),
        role: Some("pusher".into()),
        ..Subject::default()
    }
}

// 2026-11-30 is a Monday; 23:00 Shanghai = 15:00Z.
const MONDAY_NIGHT: OffsetDateTime = datetime!(2026-11-30 23:00 +8);
const MONDAY_NOON: OffsetDateTime = datetime!(2026-11-30 12:00 +8);

fn req(
    identity: Subject,
    channel: &str,
    name: &str,
    ty: &str,
    size: u64,
    at: OffsetDateTime,
) -> Request {
    Request {
        identity,
        channel: channel.into(),
        file_name: name.into(),
        content_type: ty.into(),
        size_bytes: size,
        at,
    }
}

fn decide(r: &Request) -> Decision {
    policy().decide(r, &NoUsage)
}

#[test]
fn allowed_with_profile_approval_and_charges() {
    let d = decide(&req(
        stats(),
        "out",
        "stats-1.csv",
        "text/csv; charset=utf-8",
        100,
        MONDAY_NIGHT,
    ));
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    assert_eq!(d.rule_id.as_deref(), Some("stats-out"));
    assert_eq!(d.profile.as_deref(), Some("strict"));
    assert_eq!(d.egress_profile.as_deref(), Some("strict"));
    let a = d.approval.unwrap();
    assert_eq!((a.reviewers, a.expires_after_s), (2, 3600));
    assert_eq!(
        d.charges,
        vec![
            Charge::Identity("stats".into()),
            Charge::Channel("out".into())
        ]
    );
    assert_eq!(d.policy_hash.len(), 64);
}

#[test]
fn first_matching_allow_rule_decides() {
    let d = decide(&req(
        stats(),
        "out",
        "data.json",
        "application/json",
        400,
        MONDAY_NIGHT,
    ));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule_id.as_deref(), Some("stats-out-json"));
    // The earlier rule is in the trace as not applicable, with its reason.
    assert!(d
        .trace
        .iter()
        .any(|t| t.rule_id.as_deref() == Some("stats-out")
            && t.outcome == StepOutcome::NotApplicable));
}

#[test]
fn deny_rule_overrides_and_is_cited() {
    let d = decide(&req(
        stats(),
        "out",
        "stats-x.exe",
        "text/plain",
        10,
        MONDAY_NIGHT,
    ));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_id.as_deref(), Some("deny-exe"));
    assert_eq!(
        d.reasons,
        vec![Reason::ForbiddenByRule {
            rule_id: "deny-exe".into(),
            defined_at: "p.toml:59".into()
        }]
    );
}

#[test]
fn no_rule_allows_lists_every_reason() {
    let d = decide(&req(
        stats(),
        "out",
        "report.pdf",
        "application/pdf",
        1000,
        MONDAY_NIGHT,
    ));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_id, None);
    assert!(
        matches!(d.reasons[0], Reason::NoRuleAllows { .. }),
        "{:#?}",
        d.reasons
    );
    let why: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
    assert_eq!(why.len(), 3, "{why:#?}");
    assert!(
        why[1].starts_with("rule `stats-out` does not apply"),
        "{}",
        why[1]
    );
    assert!(
        why[1].contains("content type `application/pdf`"),
        "{}",
        why[1]
    );
    assert!(why[1].contains("file name `report.pdf`"), "{}", why[1]);
    assert!(
        why[1].contains("1000 bytes is more than max_package_bytes = 500"),
        "{}",
        why[1]
    );
    assert!(
        why[2].starts_with("rule `stats-out-json` does not apply"),
        "{}",
        why[2]
    );
}

#[test]
fn unknown_identity_and_channel() {
    let nobody = Subject {
        common_name: Some("nobody".into()),
        ..Subject::default()
    };
    let d = decide(&req(
        nobody,
        "out",
        "stats-1.csv",
        "text/csv",
        1,
        MONDAY_NIGHT,
    ));
    assert!(matches!(d.reasons[0], Reason::UnknownIdentity { .. }));
    assert!(matches!(d.reasons[1], Reason::NoRuleAllows { .. }));

    let d = decide(&req(
        stats(),
        "ot",
        "stats-1.csv",
        "text/csv",
        1,
        MONDAY_NIGHT,
    ));
    assert_eq!(
        d.reasons,
        vec![Reason::UnknownChannel {
            channel: "ot".into(),
            suggestion: Some("out".into())
        }]
    );
}

#[test]
fn unsafe_file_names_are_denied() {
    for name in ["", "..", "a/b.csv", "..\\x", "a\nb"] {
        let d = decide(&req(stats(), "out", name, "text/csv", 1, MONDAY_NIGHT));
        assert!(
            matches!(d.reasons[..], [Reason::InvalidFileName { .. }]),
            "{name:?}: {d:#?}"
        );
    }
}

#[test]
fn channel_window_holds_until_it_opens() {
    let d = decide(&req(
        stats(),
        "out",
        "stats-1.csv",
        "text/csv",
        1,
        MONDAY_NOON,
    ));
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!(d.rule_id.as_deref(), Some("stats-out"));
    assert_eq!(d.hold_until, Some(datetime!(2026-11-30 22:00 +8)));
    // Friday night's window runs into Saturday morning; Saturday night is closed.
    let d = decide(&req(
        stats(),
        "out",
        "stats-1.csv",
        "text/csv",
        1,
        datetime!(2026-12-05 05:59 +8),
    ));
    assert_eq!(d.verdict, Verdict::Allow);
    let d = decide(&req(
        stats(),
        "out",
        "stats-1.csv",
        "text/csv",
        1,
        datetime!(2026-12-05 23:00 +8),
    ));
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!(d.hold_until, Some(datetime!(2026-12-07 22:00 +8)));
}

#[test]
fn rule_window_holds_and_uses_its_own_time_zone() {
    // Saturday 12:30 UTC is inside weekend-noon.
    let d = decide(&req(
        stats(),
        "in",
        "a.bin",
        "application/octet-stream",
        1,
        datetime!(2026-12-05 12:30 UTC),
    ));
    assert_eq!(
        (d.verdict, d.rule_id.as_deref()),
        (Verdict::Allow, Some("weekend-in"))
    );
    let d = decide(&req(
        stats(),
        "in",
        "a.bin",
        "application/octet-stream",
        1,
        datetime!(2026-12-05 13:00 UTC),
    ));
    assert_eq!(d.verdict, Verdict::Hold);
    assert_eq!(d.hold_until, Some(datetime!(2026-12-06 12:00 UTC)));
}

#[test]
fn a_held_decision_carries_the_grants_and_the_quotas_of_an_allowed_one() {
    let p = policy();
    // Monday noon: the channel's night window is closed.
    let r = req(stats(), "out", "stats-1.csv", "text/csv", 100, MONDAY_NOON);
    let plain = p.decide(&r, &NoUsage);
    assert_eq!(
        (plain.verdict, plain.profile.as_deref()),
        (Verdict::Hold, None)
    );
    let d = p.decide_holding(&r, &NoUsage);
    assert_eq!(d.verdict, Verdict::Hold, "{d:#?}");
    assert_eq!(d.hold_until, Some(datetime!(2026-11-30 22:00 +8)));
    assert_eq!(d.rule_id.as_deref(), Some("stats-out"));
    assert_eq!(d.profile.as_deref(), Some("strict"));
    assert_eq!(d.approval.as_ref().map(|a| a.reviewers), Some(2));
    assert_eq!(
        d.charges,
        vec![
            Charge::Identity("stats".into()),
            Charge::Channel("out".into())
        ]
    );
    assert!(
        matches!(d.reasons[..], [Reason::WindowClosed { .. }]),
        "{d:#?}"
    );

    // Over a quota: denied now, not held until the window opens.
    let usage = Fixed(RefCell::new(vec![(
        "Identity(\"stats\")".into(),
        Period::Minute,
        Counter {
            packages: 2,
            bytes: 0,
            resets_at: None,
        },
    )]));
    let d = p.decide_holding(&r, &usage);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(
        matches!(d.reasons[..], [Reason::QuotaExceeded { .. }]),
        "{d:#?}"
    );

    // Forbidden stays forbidden, window or not.
    let exe = req(stats(), "out", "stats-1.exe", "text/csv", 100, MONDAY_NOON);
    assert_eq!(p.decide_holding(&exe, &NoUsage).verdict, Verdict::Deny);

    // Inside the windows the same package is allowed: what a release asks.
    let d = p.decide_inside_windows(&r, &NoUsage);
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    // A rule's own window counts as open there too.
    let weekend = req(
        stats(),
        "in",
        "a.bin",
        "application/octet-stream",
        1,
        datetime!(2026-12-05 13:00 UTC),
    );
    assert_eq!(
        p.decide_inside_windows(&weekend, &NoUsage)
            .rule_id
            .as_deref(),
        Some("weekend-in")
    );
}

#[test]
fn a_channel_says_when_its_closed_windows_open() {
    let p = policy();
    assert_eq!(
        p.channel_closed_until("out", MONDAY_NOON),
        Some(Some(datetime!(2026-11-30 22:00 +8)))
    );
    assert_eq!(p.channel_closed_until("out", MONDAY_NIGHT), None);
    assert_eq!(p.channel_closed_until("in", MONDAY_NOON), None);
    assert_eq!(p.channel_closed_until("nowhere", MONDAY_NOON), None);
}

#[test]
fn identities_match_on_san_fingerprint_ou_and_spool() {
    let by_san = Subject {
        san: vec![
            San::parse("dns:portal.example").unwrap(),
            San::parse("uri:urn:ferry:id:portal").unwrap(),
        ],
        ..Subject::default()
    };
    let by_fp = Subject {
        fingerprint_sha256: Some(format!("abcd{}01", "0".repeat(58))),
        ..Subject::default()
    };
    let by_ou = Subject {
        subject: "CN=x,OU=Statistics,OU=Land".into(),
        org_units: vec!["Land".into(), "Statistics".into()],
        ..Subject::default()
    };
    for s in [by_san, by_fp, by_ou, Subject::spool("nightly")] {
        let d = decide(&req(
            s.clone(),
            "in",
            "a.zip",
            "application/zip",
            10,
            MONDAY_NOON,
        ));
        assert_eq!(
            (d.verdict, d.rule_id.as_deref()),
            (Verdict::Allow, Some("any-in")),
            "{s:?}"
        );
    }
    // Half a SAN set, one OU, a certificate named like the spool: no match.
    let partial = Subject {
        san: vec![San::parse("dns:portal.example").unwrap()],
        ..Subject::default()
    };
    let one_ou = Subject {
        subject: "CN=x,OU=Statistics,OU=Land".into(),
        org_units: vec!["Land".into()],
        ..Subject::default()
    };
    let fake_spool = Subject {
        subject: "spool:nightly".into(),
        common_name: Some("nightly".into()),
        ..Subject::default()
    };
    for s in [partial, one_ou, fake_spool] {
        let d = decide(&req(
            s.clone(),
            "in",
            "a.zip",
            "application/zip",
            10,
            MONDAY_NOON,
        ));
        assert_eq!(d.verdict, Verdict::Deny, "{s:?}");
    }
}

#[test]
fn size_deny_rule_on_import() {
    let s = Subject::spool("nightly");
    let d = decide(&req(
        s,
        "in",
        "a.zip",
        "application/zip",
        100_000,
        MONDAY_NOON,
    ));
    assert_eq!(
        (d.verdict, d.rule_id.as_deref()),
        (Verdict::Deny, Some("deny-big-in"))
    );
}

struct Fixed(RefCell<Vec<(String, Period, Counter)>>);

impl Usage for Fixed {
    fn counter(&self, scope: UsageScope<'_>, period: Period) -> Counter {
        let key = format!("{scope:?}");
        self.0
            .borrow()
            .iter()
            .find(|(k, p, _)| *k == key && *p == period)
            .map(|x| x.2)
            .unwrap_or_default()
    }
}

#[test]
fn quotas_deny_with_retry_after() {
    let p = policy();
    let r = req(stats(), "out", "stats-1.csv", "text/csv", 100, MONDAY_NIGHT);
    let usage = Fixed(RefCell::new(vec![(
        "Identity(\"stats\")".into(),
        Period::Minute,
        Counter {
            packages: 2,
            bytes: 0,
            resets_at: Some(MONDAY_NIGHT + time::Duration::seconds(17)),
        },
    )]));
    let d = p.decide(&r, &usage);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule_id.as_deref(), Some("stats-out"));
    assert_eq!(
        d.reasons,
        vec![Reason::QuotaExceeded {
            scope: Charge::Identity("stats".into()),
            period: Period::Minute,
            measure: Measure::Packages,
            limit: 2,
            used: 2,
            retry_after_s: Some(17),
        }]
    );
    assert!(d.charges.is_empty());

    // Daily bytes: 950 used + 100 > 1000; the channel's day count is full too.
    let usage = Fixed(RefCell::new(vec![
        (
            "Identity(\"stats\")".into(),
            Period::Day,
            Counter {
                packages: 0,
                bytes: 950,
                resets_at: None,
            },
        ),
        (
            "Channel(\"out\")".into(),
            Period::Day,
            Counter {
                packages: 100,
                bytes: 0,
                resets_at: None,
            },
        ),
    ]));
    let d = p.decide(&r, &usage);
    assert_eq!(d.reasons.len(), 2, "{:#?}", d.reasons);
    assert!(matches!(
        d.reasons[0],
        Reason::QuotaExceeded {
            measure: Measure::Bytes,
            retry_after_s: Some(86400),
            ..
        }
    ));
    assert!(matches!(
        d.reasons[1],
        Reason::QuotaExceeded {
            scope: Charge::Channel(_),
            measure: Measure::Packages,
            ..
        }
    ));

    // A package larger than the daily byte quota never fits.
    let big = req(
        stats(),
        "out",
        "data.json",
        "application/json",
        5000,
        MONDAY_NIGHT,
    );
    let d = p.decide(&big, &NoUsage);
    assert!(
        matches!(
            d.reasons[..],
            [Reason::QuotaExceeded {
                retry_after_s: None,
                ..
            }]
        ),
        "{:#?}",
        d.reasons
    );
}

#[test]
fn explain_traces_skipped_rules_decide_does_not() {
    let p = policy();
    let r = req(
        Subject::spool("nightly"),
        "in",
        "a.zip",
        "application/zip",
        10,
        MONDAY_NOON,
    );
    let full = p.explain(&r, &NoUsage);
    let quick = p.decide(&r, &NoUsage);
    assert_eq!(full.verdict, quick.verdict);
    assert!(full
        .trace
        .iter()
        .any(|t| t.outcome == StepOutcome::Skipped && t.rule_id.as_deref() == Some("weekend-in")));
    assert!(!quick
        .trace
        .iter()
        .any(|t| t.outcome == StepOutcome::Skipped));
}

#[test]
fn accessors_for_the_daemon() {
    let p = policy();
    assert_eq!(p.channels().len(), 2);
    let out = p.channel("out").unwrap();
    assert_eq!(out.link, "release-1");
    assert_eq!(out.windows, vec!["night".to_string()]);
    assert_eq!(p.spool_collections()[0].channel, "in");
    assert_eq!(p.identities_of(&stats()), vec!["stats"]);
    assert_eq!(p.rule_ids().count(), 6);
    assert_eq!(
        p.profile("strict").unwrap().settings["allowed_types"][0],
        "text/csv"
    );
    assert!(p.channel_open_at("out", MONDAY_NIGHT));
    assert!(!p.channel_open_at("out", MONDAY_NOON));
    assert!(p.channel_open_at("in", MONDAY_NOON));
    assert_eq!(p.spool_collections()[0].next_run_after(MONDAY_NOON), None);
    assert_eq!(
        p.window("night").unwrap().next_opening_after(MONDAY_NOON),
        Some(datetime!(2026-11-30 22:00 +8))
    );
    fn shareable<T: Send + Sync>() {}
    shareable::<Policy>();
    // Decisions serialize for the audit log.
    let d = decide(&req(
        stats(),
        "out",
        "stats-1.csv",
        "text/csv",
        1,
        MONDAY_NOON,
    ));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["verdict"], "hold");
    assert_eq!(json["hold_until"], "2026-11-30T14:00:00Z");
    assert_eq!(json["reasons"][0]["kind"], "window-closed");
}
