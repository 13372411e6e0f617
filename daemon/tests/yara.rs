//! YARA rules through a real `ferryd`: a pushed package matching a rule
//! of the channel's profile is refused at ingest (the rule named in the
//! answer, the status and the `guard.inspected` audit record, never the
//! bytes it matched), clean data crosses scanned on both sides, `ferryctl
//! inspect` names the rule too; `ferryctl policy check` locates a rule
//! that does not compile in its `.yar` file and names the policy entry;
//! and a reload with that broken file is refused, the policy in force
//! staying (its rules still refuse).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What the rule looks for; the rule's name does not contain it.
const MARKER: &str = "FERRY-TEST-DROPPER-7f3a9c";
const RULES: &str = r#"rule Dropper_Marker : dropper
{
  strings:
    $m = "FERRY-TEST-DROPPER-7f3a9c"
  condition:
    $m
}
"#;
/// Line 5, column 5: a pattern the rule never declared.
const BROKEN: &str =
    "rule Dropper_Marker : dropper\n{\n  condition:\n    true and\n    $missing\n}\n";
const CSV: &[u8] = b"district,households\nA,10\nB,12\n";

fn ferry_policy(spool: &Path) -> String {
    format!(
        r#"version = 1

[policy]
name = "yara-test"
time_zone = "Asia/Shanghai"

[identity.feed]
description = "The public-data feed"
cn = "registry-feed"
role = "pusher"

[identity.spool]
description = "This link's spool"
spool = "e2e"

[spool.e2e]
description = "The spool"
dir = "{}"
channel = "import"
schedule = "continuous"

[profile.import]
description = "Public data brought in, with the site's YARA rules"
allowed_types = ["text/csv", "text/plain"]
archives = {{ allowed = true, formats = ["zip"], max_depth = 2 }}
yara = {{ rules = ["yara/import.yar"], action = "reject", timeout_s = 10 }}

[channel.import]
description = "Import, scanned on both sides"
direction = "import"
link = "e2e"
destination = "outbox"
profile = "import"
egress_profile = "import"

[[rule]]
id = "R-import"
description = "The feed pushes"
effect = "allow"
identities = ["feed", "spool"]
channels = ["import"]
"#,
        spool.display()
    )
}

/// `curl` a file to the import channel: HTTP code and body.
fn push_file(site: &Site, name: &str, data: &Path) -> (String, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(site.ca.crt())
        .arg("--cert")
        .arg(site.clients.join("registry-feed.crt"))
        .arg("--key")
        .arg(site.clients.join("registry-feed.key"))
        .args(["-H", &format!("X-Ferry-File-Name: {name}")])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(["--data-binary", &format!("@{}", path_str(data))])
        .arg(format!(
            "https://127.0.0.1:{}/v1/channels/import/packages",
            site.port
        ))
        .output()
        .expect("curl");
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = t.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().to_owned(), body.to_owned())
}

struct Site {
    tb: ferry_daemon::testkit::Testbed,
    ca: SiteCa,
    clients: PathBuf,
    port: u16,
}

/// Promise: a real ferryd refuses a package matching a YARA rule (403
/// naming the rule, counted, audited by rule name and never by the
/// matched bytes), lets clean data through scanned on both sides; `policy
/// check` locates a broken rule in its `.yar` file and names the policy
/// entry; a reload with the broken file is refused and the old rules stay
/// in force.
#[test]
fn ferryd_refuses_a_matching_package_and_keeps_its_rules_when_a_reload_breaks_them() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().to_path_buf();
    let tb = testbed(&root, |_| {});
    let ca = SiteCa::init(&root.join("ca"));
    ca.server(&root.join("ingress/tls"), "ingest");
    let clients = root.join("clients");
    ca.client(&clients, "registry-feed", "pusher");
    let site = Site {
        tb,
        ca,
        clients,
        port: free_tcp_port(),
    };
    let tb = &site.tb;
    let policy_text = ferry_policy(&tb.spool);
    let mut audits = Vec::new();
    for (side, config) in [
        ("ingress", &tb.ingress_config),
        ("egress", &tb.egress_config),
    ] {
        std::fs::create_dir_all(root.join(side).join("yara")).expect("dir");
        std::fs::write(root.join(side).join("yara/import.yar"), RULES).expect("rules");
        std::fs::write(root.join(side).join("policy.toml"), &policy_text).expect("policy");
        append_config(config, "[policy]\nfile = \"policy.toml\"\n");
        audits.push(with_audit(&root, config, side));
    }
    append_config(&tb.ingress_config, &ingest_section(site.port, &site.ca, ""));
    let egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[site.port], "ingest listening");

    let policy_file = root.join("ingress/policy.toml");
    let rules_file = root.join("ingress/yara/import.yar");
    let marked = format!("notes\n{MARKER}\n");
    let z = root.join("data.zip");
    std::fs::write(
        &z,
        ferry_daemon::testkit::stored_zip(&[
            ("counts.csv", CSV),
            ("docs/notes.txt", marked.as_bytes()),
        ]),
    )
    .expect("zip");

    // `ferryctl inspect` with the same profile names the rule.
    let o = ctl(&[
        "inspect",
        "--policy",
        path_str(&policy_file),
        "--profile",
        "import",
        path_str(&z),
    ]);
    let shown = text(&o);
    assert_eq!(o.status.code(), Some(1), "{shown}");
    assert!(shown.contains("yara: matched"), "{shown}");
    assert!(
        shown.contains("rule import:Dropper_Marker [dropper] matched in the package"),
        "{shown}"
    );
    assert!(!shown.contains(MARKER), "{shown}");

    let clean = root.join("counts.csv");
    std::fs::write(&clean, CSV).expect("csv");
    let (code, body) = push_file(&site, "counts.csv", &clean);
    assert_eq!(code, "202", "{body}");
    let (code, body) = push_file(&site, "data.zip", &z);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("import:Dropper_Marker"), "{body}");
    assert!(!body.contains(MARKER), "{body}");
    wait_for(Duration::from_secs(30), "the clean file delivered", || {
        outbox_files(&tb.outbox) == vec!["counts.csv".to_string()]
    });
    let st = status(&tb.ingress_config).expect("status");
    // Scanned inside ferryd's sandbox (the seccomp allow-list is in force).
    assert_eq!(st["hardening"]["seccomp_action"], "kill_process", "{st}");
    assert_eq!(st["yara"]["scanned"], 2, "{st}");
    assert_eq!(st["yara"]["matched"], 1, "{st}");
    let est = status(&tb.egress_config).expect("egress status");
    assert_eq!(
        est["yara"]["scanned"], 1,
        "the egress side scans again: {est}"
    );

    // `policy check`: a rule that does not compile, at its line and column
    // in the rules file, naming the `rules` entry of the policy.
    std::fs::write(&rules_file, BROKEN).expect("broken rules");
    let o = ctl(&["policy", "check", path_str(&policy_file), "--strict"]);
    let shown = text(&o);
    assert!(!o.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("{}:5:5: ", rules_file.display())),
        "{shown}"
    );
    assert!(shown.contains("$missing"), "{shown}");
    let entry = policy_text
        .lines()
        .position(|l| l.starts_with("yara = "))
        .expect("yara line")
        + 1;
    let col = policy_text
        .lines()
        .nth(entry - 1)
        .and_then(|l| l.find("\"yara/"))
        .expect("entry")
        + 1;
    assert!(
        shown.contains(&format!("{}:{entry}:{col}", policy_file.display())),
        "{shown}"
    );

    // The same broken file on a reload: refused, the old policy (and its
    // compiled rules) stays in force.
    let before = status(&tb.ingress_config).expect("status")["policy_hash"].clone();
    let out = ctl(&["policy", "reload", "--config", path_str(&tb.ingress_config)]);
    let answer = text(&out);
    assert!(
        !out.status.success(),
        "a refused reload exits non-zero: {answer}"
    );
    assert!(answer.contains("\"reloaded\": false"), "{answer}");
    assert!(answer.contains("import.yar:5:5"), "{answer}");
    let st = status(&tb.ingress_config).expect("status");
    assert_eq!(st["policy_hash"], before, "{st}");
    let (code, body) = push_file(&site, "data-2.zip", &z);
    assert_eq!(code, "403", "the old rules still refuse: {body}");
    assert!(body.contains("import:Dropper_Marker"), "{body}");
    let (code, body) = push_file(&site, "counts-2.csv", &clean);
    assert_eq!(code, "202", "{body}");
    wait_for(
        Duration::from_secs(30),
        "the second clean file delivered",
        || outbox_files(&tb.outbox).len() == 2,
    );
    let shown = text(&ctl(&["status", "--config", path_str(&tb.ingress_config)]));
    assert!(
        shown.contains("yara scans") && shown.contains("2 matched a rule"),
        "{shown}"
    );
    ingress.stop();
    egress.stop();

    // The audit log names the rule, never the bytes it matched.
    let recs = audit_records(&audits[0], "guard.inspected");
    let refused: Vec<String> = recs
        .iter()
        .map(|r| r.to_string())
        .filter(|r| r.contains("\"yara_rules\""))
        .collect();
    assert_eq!(refused.len(), 2, "{recs:#?}");
    for r in &refused {
        assert!(r.contains("import:Dropper_Marker"), "{r}");
        assert!(r.contains("refused"), "{r}");
    }
    let all = ctl_ok(&["audit", "export", "--dir", path_str(&audits[0])]);
    assert!(!all.contains(MARKER), "matched bytes in the audit log");
    assert!(
        !all.contains("7f3a9c"),
        "part of the match in the audit log"
    );
}
