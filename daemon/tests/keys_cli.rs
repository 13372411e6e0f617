//! The operator's key and certificate workflow through `ferryctl`, as real
//! processes: init both sides, exchange bundles, rotate, retire, and a
//! site CA with client and server certificates.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn ferryctl_run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(ferryctl());
    c.args(args).env_remove("FERRY_KEYS_PASSPHRASE");
    c.env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run ferryctl")
}

fn ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = ferryctl_run(args, env);
    assert!(
        out.status.success(),
        "ferryctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = ferryctl_run(args, env);
    assert!(!out.status.success(), "ferryctl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn list_json(dir: &Path) -> Vec<serde_json::Value> {
    let text = ok(&["keys", "list", "--dir", path_str(dir), "--json"], &[]);
    serde_json::from_str(&text).expect("list json")
}

#[test]
fn keys_lifecycle_through_the_cli() {
    for suite in ["intl", "gm"] {
        let t = tempfile::tempdir().expect("tempdir");
        let (a, b) = (t.path().join("in"), t.path().join("out"));
        let pass = t.path().join("pass");
        std::fs::write(&pass, "a passphrase from a file\n").expect("write");
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let pf = ["--passphrase-file", path_str(&pass)];
        // No passphrase source at all: refused with the three ways to give one.
        let e = fails(
            &[
                "keys",
                "init",
                "--dir",
                path_str(&a),
                "--link",
                "l",
                "--side",
                "ingress",
            ],
            &[],
        );
        assert!(
            e.contains("--passphrase-file") && e.contains("FERRY_KEYS_PASSPHRASE"),
            "{e}"
        );
        let init = |dir: &Path, side: &str, env: &[(&str, &str)], file: bool| {
            let mut args = vec![
                "keys",
                "init",
                "--dir",
                path_str(dir),
                "--link",
                "l",
                "--side",
                side,
                "--suite",
                suite,
                "--kdf-target-ms",
                "0",
            ];
            if file {
                args.extend(pf);
            }
            ok(&args, env)
        };
        let out = init(&a, "ingress", &[], true);
        assert!(out.contains("bundle fingerprint"), "{out}");
        // The egress side takes its passphrase from the environment.
        init(
            &b,
            "egress",
            &[("FERRY_KEYS_PASSPHRASE", "an environment passphrase")],
            false,
        );
        let export = t.path().join("egress-bundle.toml");
        ok(
            &[
                "keys",
                "export-public",
                "--dir",
                path_str(&b),
                "--out",
                path_str(&export),
            ],
            &[],
        );
        let out = ok(
            &[
                "keys",
                "import-peer",
                "--dir",
                path_str(&a),
                path_str(&export),
            ],
            &[],
        );
        assert!(out.contains("first import"), "{out}");
        ok(
            &[
                "keys",
                "import-peer",
                "--dir",
                path_str(&b),
                path_str(&a.join("public.toml")),
            ],
            &[],
        );
        let keys = list_json(&a);
        assert!(keys
            .iter()
            .any(|k| k["owner"] == "own" && k["purpose"] == "signing" && k["state"] == "in use"));
        assert!(keys
            .iter()
            .any(|k| k["owner"] == "peer" && k["purpose"] == "agreement" && k["suite"] == suite));
        // Rotate on the egress side, import by continuity, retire the old key.
        let old = list_json(&b)
            .into_iter()
            .find(|k| k["owner"] == "own" && k["purpose"] == "agreement")
            .and_then(|k| k["id"].as_str().map(str::to_owned))
            .expect("agreement key");
        let env = [("FERRY_KEYS_PASSPHRASE", "an environment passphrase")];
        let out = ok(&["keys", "rotate", "--dir", path_str(&b)], &env);
        assert!(out.contains("takes over"), "{out}");
        let out = ok(
            &[
                "keys",
                "import-peer",
                "--dir",
                path_str(&a),
                path_str(&b.join("public.toml")),
            ],
            &[],
        );
        assert!(out.contains("continuity: signed by"), "{out}");
        let e = fails(
            &["keys", "retire", "--dir", path_str(&b), &old],
            &[("FERRY_KEYS_PASSPHRASE", "a wrong passphrase!!")],
        );
        assert!(e.contains("wrong passphrase"), "{e}");
        ok(&["keys", "retire", "--dir", path_str(&b), &old], &env);
        let states: Vec<(String, String)> = list_json(&b)
            .into_iter()
            .filter(|k| k["owner"] == "own" && k["purpose"] == "agreement")
            .map(|k| {
                (
                    k["id"].as_str().unwrap_or_default().to_owned(),
                    k["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert!(
            states.contains(&(old.clone(), "retired".into())),
            "{states:?}"
        );
        assert!(states.iter().any(|(_, st)| st == "in use"), "{states:?}");
        let out = ok(
            &[
                "keys",
                "import-peer",
                "--dir",
                path_str(&a),
                path_str(&b.join("public.toml")),
            ],
            &[],
        );
        assert!(out.contains(&format!("retired key {old}")), "{out}");
    }
}

#[test]
fn site_ca_and_certificates_through_the_cli() {
    let t = tempfile::tempdir().expect("tempdir");
    let ca = t.path().join("ca");
    let out = t.path().join("issued");
    ok(
        &[
            "certs",
            "init-ca",
            "--dir",
            path_str(&ca),
            "--name",
            "Test Site CA",
        ],
        &[],
    );
    ok(
        &[
            "certs",
            "issue-server",
            "--ca",
            path_str(&ca),
            "--out",
            path_str(&out),
            "--name",
            "ingest",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
        &[],
    );
    let issued = ok(
        &[
            "certs",
            "issue-client",
            "--ca",
            path_str(&ca),
            "--out",
            path_str(&out),
            "--name",
            "alice",
            "--role",
            "auditor",
        ],
        &[],
    );
    assert!(issued.contains("role        auditor"), "{issued}");
    let shown = ok(
        &["certs", "show", path_str(&out.join("alice.crt")), "--json"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(v[0]["identity"]["role"], "auditor", "{v}");
    // openssl agrees the chain is valid before revocation and revoked after.
    let verify = |crl: bool| {
        let mut c = Command::new("openssl");
        c.args(["verify", "-CAfile", path_str(&ca.join("ca.crt"))]);
        if crl {
            c.args(["-crl_check", "-CRLfile", path_str(&ca.join("ca.crl"))]);
        }
        c.arg(out.join("alice.crt"));
        c.output().expect("openssl").status.success()
    };
    assert!(verify(false) && verify(true));
    let r = ok(
        &[
            "certs",
            "revoke",
            "--ca",
            path_str(&ca),
            path_str(&out.join("alice.crt")),
            "--reason",
            "key-compromise",
        ],
        &[],
    );
    assert!(r.contains("revoked serial"), "{r}");
    assert!(!verify(true), "openssl still accepts a revoked certificate");
    let list = ok(&["certs", "list", "--ca", path_str(&ca), "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert!(v
        .as_array()
        .expect("array")
        .iter()
        .any(|r| r["name"] == "alice" && r["revoked"].is_object()));
    // Nothing expires soon; a 400-day window catches the one-year leaves.
    ok(&["certs", "expiring", "--dir", path_str(&out)], &[]);
    let o = ferryctl_run(
        &[
            "certs",
            "expiring",
            "--dir",
            path_str(&out),
            "--days",
            "400",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn status_warns_about_keys_and_certificates_near_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let keys = dir.path().join("ingress/keys");
    let pass = dir.path().join("ingress/passphrase");
    ok(
        &[
            "keys",
            "rotate",
            "--dir",
            path_str(&keys),
            "--validity-days",
            "10",
            "--passphrase-file",
            path_str(&pass),
        ],
        &[],
    );
    let ca = dir.path().join("ca");
    let certs = dir.path().join("ingress/tls");
    ok(&["certs", "init-ca", "--dir", path_str(&ca)], &[]);
    ok(
        &[
            "certs",
            "issue-server",
            "--ca",
            path_str(&ca),
            "--out",
            path_str(&certs),
            "--name",
            "ingest",
            "--dns",
            "localhost",
            "--days",
            "5",
        ],
        &[],
    );
    let cfg = std::fs::read_to_string(&tb.ingress_config).expect("config");
    std::fs::write(
        &tb.ingress_config,
        cfg.replace(
            "keys_dir = \"keys\"\n",
            "keys_dir = \"keys\"\ncerts_dir = \"tls\"\n",
        ),
    )
    .expect("config");
    let _ingress = Daemon::start(&tb.ingress_config);
    let mut warnings = Vec::new();
    wait_for(
        std::time::Duration::from_secs(20),
        "status warnings",
        || {
            warnings = status(&tb.ingress_config)
                .and_then(|v| v["warnings"].as_array().cloned())
                .unwrap_or_default();
            warnings.len() >= 2
        },
    );
    let text = serde_json::Value::Array(warnings).to_string();
    assert!(
        text.contains("signing key") && text.contains("expires"),
        "{text}"
    );
    assert!(
        text.contains("ingest.crt") && text.contains("days left"),
        "{text}"
    );
    // The human status shows them too, without turning them into alarms.
    let out = ferryctl_run(&["status", "--config", path_str(&tb.ingress_config)], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("WARNING:"));
}
