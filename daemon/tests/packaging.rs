//! The Debian package: built by cargo-deb from the binaries this test run
//! already has (the test profile's, so no release build inside a test),
//! its contents listed with `dpkg-deb -c`, then installed with `dpkg -i`
//! on this machine (root only), checked, and purged again.
//!
//! `packaging/build-deb.sh` builds the real, release package the same way.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Each external step gets this long; the whole test stays well under
/// two minutes on the reference machine (measured: about 10 s).
const STEP_LIMIT: Duration = Duration::from_secs(120);

/// Runs one external step within [`STEP_LIMIT`]; it must succeed.
fn run(cmd: &mut Command) -> Output {
    let out = run_within(cmd, STEP_LIMIT);
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}\n{}",
        out.status,
        text(&out)
    );
    out
}

fn cargo_deb_available(cargo: &str) -> bool {
    Command::new(cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Directories the postinst makes (tmpfiles.d), deepest first.
const MADE_BY_POSTINST: &[&str] = &[
    "/etc/ferry/keys",
    "/etc/ferry/credentials",
    "/etc/ferry",
    "/var/lib/ferry",
    "/var/log/ferry",
    "/var/spool/ferry",
    "/srv/ferry",
];

/// Removes the package again however the test ends, and what its
/// postinst made that was not here before (only if still empty; the user
/// only if the test created it).
struct Purge {
    preexisting: Vec<&'static str>,
    user_existed: bool,
}

impl Purge {
    fn new() -> Purge {
        Purge {
            preexisting: MADE_BY_POSTINST
                .iter()
                .copied()
                .filter(|p| Path::new(p).exists())
                .collect(),
            user_existed: nix::unistd::User::from_name("ferry")
                .ok()
                .flatten()
                .is_some(),
        }
    }
}

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "ferry"]).output();
        for p in MADE_BY_POSTINST {
            if !self.preexisting.contains(p) {
                let _ = std::fs::remove_dir(p);
            }
        }
        if !self.user_existed {
            let _ = Command::new("userdel").arg("ferry").output();
        }
    }
}

#[test]
fn debian_package_has_its_contents_and_installs() {
    if !is_root() {
        skip("installing a package with dpkg needs root");
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !cargo_deb_available(&cargo) {
        skip("cargo-deb is not installed (cargo install cargo-deb --locked; .ci/run does it)");
        return;
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        skip("not a Debian machine (no dpkg)");
        return;
    }
    if Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "ferry"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
    {
        skip("a `ferry` package is already installed here; not touching it");
        return;
    }
    // The binaries this test run was built with live in the profile
    // directory cargo-deb reads for --profile dev.
    let bin_dir = ferryd().parent().expect("bin dir").to_path_buf();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let docs = bin_dir.join("ferry-docs");
    let _ = std::fs::remove_dir_all(&docs);
    run(Command::new(ferryctl())
        .arg("generate-docs")
        .arg("--out")
        .arg(&docs));
    let out_dir = tempfile::tempdir().expect("tempdir");
    run(Command::new(&cargo)
        .args([
            "deb",
            "--no-build",
            "--fast",
            "--profile",
            "dev",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("-o")
        .arg(out_dir.path()));
    let deb: PathBuf = std::fs::read_dir(out_dir.path())
        .expect("read_dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let listing =
        String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout)
            .into_owned();
    for path in [
        "./usr/bin/ferryd",
        "./usr/bin/ferryctl",
        "./usr/lib/systemd/system/ferryd@.service",
        "./usr/lib/sysusers.d/ferry.conf",
        "./usr/lib/tmpfiles.d/ferry.conf",
        "./usr/share/doc/ferry/examples/ferryd-ingress.toml",
        "./usr/share/doc/ferry/examples/ferryd-egress.toml",
        "./usr/share/doc/ferry/examples/policy.toml",
        "./usr/share/doc/ferry/examples/yara/import.yar",
        "./usr/share/doc/ferry/operations.md",
        "./usr/share/man/man1/ferryctl.1",
        "./usr/share/man/man1/ferryctl-selfcheck.1",
        "./usr/share/bash-completion/completions/ferryctl",
        "./usr/share/zsh/vendor-completions/_ferryctl",
        "./usr/share/fish/vendor_completions.d/ferryctl.fish",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing from the package:\n{listing}"
        );
    }
    let info = String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)).stdout)
        .into_owned();
    assert!(info.contains("Package: ferry"), "{info}");
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "{script} missing:\n{info}");
    }

    let _purge = Purge::new();
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let version = run(Command::new("/usr/bin/ferryctl").arg("--version"));
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("0."),
        "ferryctl --version"
    );
    run(Command::new("/usr/bin/ferryd").arg("--version"));
    // postinst made the user and the directories.
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("ferry:") && l.ends_with("nologin")),
        "no ferry user after install"
    );
    let keys = std::fs::metadata("/etc/ferry/keys").expect("/etc/ferry/keys");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&keys.permissions()) & 0o777,
        0o700
    );
    // The installed unit verifies against the installed binary and man
    // page (this time with the man check).
    if Path::new("/usr/bin/systemd-analyze").exists() && Path::new("/usr/bin/man").exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unit = dir.path().join("ferryd@release-1.service");
        std::fs::copy("/usr/lib/systemd/system/ferryd@.service", &unit).expect("unit");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .current_dir(dir.path())
            .output()
            .expect("verify");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && said.trim().is_empty(), "{said}");
    }
    run(Command::new("dpkg").args(["--purge", "ferry"]));
    assert!(
        !Path::new("/usr/bin/ferryd").exists(),
        "ferryd left after purge"
    );
}
