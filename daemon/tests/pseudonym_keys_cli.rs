//! The security administrator's pseudonym key workflow through the real
//! `ferryctl`: rotate, list, retire, a refused loose key file, and the
//! promise that no command ever prints the key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn ferryctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferryctl"))
        .args(args)
        .output()
        .expect("run ferryctl")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `ferryctl keys pseudonym ARGS…`, asserts its success is `ok`, and
/// returns stdout and stderr.
fn pseudonym(args: &[&str], ok: bool) -> (String, String) {
    let mut all = vec!["keys", "pseudonym"];
    all.extend_from_slice(args);
    let out = ferryctl(&all);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.success(),
        ok,
        "ferryctl {all:?}: {stdout}{stderr}"
    );
    (stdout, stderr)
}

fn secret_of(dir: &Path, epoch: u32) -> String {
    let t = std::fs::read_to_string(dir.join(format!("pseudonym-{epoch}.key"))).expect("key file");
    t.lines()
        .find_map(|l| l.strip_prefix("key = "))
        .expect("key line")
        .to_owned()
}

#[test]
fn pseudonym_keys_through_the_cli() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("pseudonym");
    let d = dir.to_str().expect("utf-8 path");
    let mut outputs = Vec::new();

    // No key yet: list says how to make one.
    let (_, e) = pseudonym(&["list", "--dir", d], false);
    assert!(e.contains("ferryctl keys pseudonym rotate --dir"), "{e}");

    let (o, e) = pseudonym(&["rotate", "--dir", d], true);
    assert!(o.contains("epoch 1"), "{o}");
    assert!(o.contains("ferryctl policy reload"), "{o}");
    outputs.push(o + &e);
    let (o, e) = pseudonym(&["rotate", "--dir", d, "--json"], true);
    let v: serde_json::Value = serde_json::from_str(&o).expect("rotate json");
    assert_eq!(v["epoch"], 2);
    outputs.push(o + &e);
    let (o, e) = pseudonym(&["rotate", "--dir", d], true);
    assert!(o.contains("epoch 3"), "{o}");
    outputs.push(o + &e);
    let mode = std::fs::metadata(dir.join("pseudonym-3.key"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (o, e) = pseudonym(&["list", "--dir", d], true);
    assert!(o.contains("EPOCH") && o.contains("current"), "{o}");
    outputs.push(o + &e);
    let (o, e) = pseudonym(&["list", "--dir", d, "--json"], true);
    let v: Vec<serde_json::Value> = serde_json::from_str(&o).expect("list json");
    let epochs: Vec<(u64, bool)> = v
        .iter()
        .map(|k| {
            (
                k["epoch"].as_u64().expect("epoch"),
                k["current"].as_bool().expect("current"),
            )
        })
        .collect();
    assert_eq!(epochs, [(1, false), (2, false), (3, true)]);
    outputs.push(o + &e);

    let secrets: Vec<String> = (1..=3).map(|e| secret_of(&dir, e)).collect();

    // A key file that its group may read is refused, with the fix.
    let current = dir.join("pseudonym-3.key");
    std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let (o, e) = pseudonym(&["list", "--dir", d], false);
    assert!(e.contains("chmod 600"), "{e}");
    outputs.push(o + &e);
    std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // Retire below 3: epochs 1 and 2 go; below 100: the current stays.
    let (o, e) = pseudonym(&["retire", "--dir", d, "--before", "3"], true);
    assert!(o.contains("retired epochs 1, 2"), "{o}");
    outputs.push(o + &e);
    assert!(!dir.join("pseudonym-1.key").exists());
    assert!(!dir.join("pseudonym-2.key").exists());
    let (o, e) = pseudonym(&["retire", "--dir", d, "--before", "100"], true);
    assert!(o.contains("no epoch below 100"), "{o}");
    outputs.push(o + &e);
    assert!(current.exists());
    let (o, e) = pseudonym(&["list", "--dir", d, "--json"], true);
    let v: Vec<serde_json::Value> = serde_json::from_str(&o).expect("list json");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["epoch"], 3);
    outputs.push(o + &e);

    for out in &outputs {
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "key printed: {out}");
        }
    }
}
