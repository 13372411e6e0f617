//! Promise pinned here: a secret is accepted only when it belongs to the
//! uid this process really runs as (its effective uid from the kernel),
//! never to root by default. A process without `/proc` (a sandbox, a
//! container) must still refuse a key file that belongs to another user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Says loudly that this test is skipped and lists it where `.ci/run`
/// counts skipped tests (the same file as the daemon tests' `common::skip`).
fn skip(why: &str) {
    let list = concat!(env!("CARGO_TARGET_TMPDIR"), "/ferry-skipped-tests.txt");
    let line = format!(
        "{}::without_proc_a_non_root_process_still_refuses_root_owned_keys: {why}",
        env!("CARGO_CRATE_NAME")
    );
    eprintln!("skipped (loudly): {line}");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("could not list the skip in {list}: {e}");
    }
}

/// Set in the re-executed child: the key file it must refuse.
const CHILD_ENV: &str = "FERRY_KEYS_OWNER_CHILD_FILE";
/// The uid the child runs as (the usual `nobody`).
const CHILD_UID: u32 = 65_534;

#[test]
fn the_owner_check_compares_with_the_kernels_effective_uid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("own.key");
    std::fs::write(&key, b"secret").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // A file this process creates is owned by its effective uid.
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&key).expect("stat"));
    assert_eq!(ferry_keys::effective_uid(), owner);
    ferry_keys::check_private(&key).expect("own 0600 file accepted");
}

/// Runs in the child only (see the test below): without `/proc` and as
/// uid 65534, a root-owned 0600 key file is refused as someone else's.
#[test]
fn child_refuses_a_root_owned_key_without_proc() {
    let Some(file) = std::env::var_os(CHILD_ENV) else {
        return; // not the child
    };
    assert!(
        !Path::new("/proc/self/status").exists(),
        "the parent hides /proc"
    );
    match ferry_keys::check_private(Path::new(&file)) {
        Err(ferry_keys::KeyError::PrivateFile(
            ferry_common::private_file::PrivateFileError::WrongOwner { owner, me, .. },
        )) => {
            assert_eq!((owner, me), (0, CHILD_UID));
        }
        other => panic!("a root-owned key was not refused as uid {CHILD_UID}: {other:?}"),
    }
}

#[test]
fn without_proc_a_non_root_process_still_refuses_root_owned_keys() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root to hide /proc (unshare) and change uid (setpriv)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let key = dir.path().join("root.key");
    std::fs::write(&key, b"secret").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let me = std::env::current_exe().expect("test binary");
    // A private mount namespace with an empty tmpfs over /proc, then the
    // test binary again as uid 65534 running only the child test.
    let script = format!(
        "mount -t tmpfs none /proc && exec setpriv --reuid={CHILD_UID} --regid={CHILD_UID} --clear-groups \"$0\" --exact child_refuses_a_root_owned_key_without_proc --test-threads=1"
    );
    let out = Command::new("timeout")
        .args([
            "60",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(&script)
        .arg(&me)
        .env(CHILD_ENV, &key)
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && (text.contains("unshare failed") || text.contains("mount:")) {
        eprintln!("{text}");
        skip("this host does not allow mount namespaces here");
        return;
    }
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
}
