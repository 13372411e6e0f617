//! Adversarial suite, audit log (issue 14, F23 and F25): evidence of a seal
//! is never explained away. An intruder cuts the end of the log, removing
//! its last seal(s), and hopes `verify` calls it a crash's "torn tail".
//! Every checkpoint the verifier has — the directory's own
//! `checkpoints.jsonl` (read by a plain `verify --dir`) or an outside copy —
//! names a seal; a seal the log no longer has is TAMPERED, and the writer
//! refuses to go on writing after it.

mod common;

use ferry_audit::segment::{list_segments, parse_frame, FrameKind, HEADER_LEN};
use ferry_audit::{
    verify, Actor, AuditError, AuditLog, AuditOptions, AuditRecord, EventKind, Outcome, Role,
    TamperKind, VerifyKey,
};
use std::path::{Path, PathBuf};

fn opts() -> AuditOptions {
    common::test_options(4096, 7)
}

fn rec(i: u64) -> AuditRecord {
    AuditRecord::new(
        EventKind::PackagePushed,
        Actor::new("sender", Role::Sender),
        Outcome::Success,
    )
    .package(format!("pkg-{i}"))
}

fn make_log(n: u64) -> (tempfile::TempDir, PathBuf, VerifyKey) {
    common::make_log_with(n, opts(), rec)
}

fn last_segment(dir: &Path) -> PathBuf {
    list_segments(dir).unwrap().last().unwrap().path.clone()
}

/// (offset, length, seq, is_seal) of each frame of a segment.
fn frames(path: &Path) -> Vec<(usize, usize, u64, bool)> {
    let data = std::fs::read(path).unwrap();
    let mut off = HEADER_LEN;
    let mut out = Vec::new();
    while let Ok(f) = parse_frame(&data, off) {
        out.push((off, f.len(), f.seq, f.kind == FrameKind::Seal));
        off += f.len();
    }
    out
}

fn cut(path: &Path, to: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(to).unwrap();
}

fn outside_copy(t: &tempfile::TempDir, dir: &Path) -> PathBuf {
    let copy = t.path().join("outside-checkpoints.jsonl");
    std::fs::copy(dir.join("checkpoints.jsonl"), &copy).unwrap();
    copy
}

/// The attack of the issue: about 100 bytes cut off the last segment, which
/// removes only the final seal and leaves a partial frame that looks like a
/// crash's torn tail. With an outside copy that vouches for that seal it is
/// TAMPERED (seal removed), naming the seq the seal covered.
#[test]
fn final_seal_cut_by_100_bytes_is_tampered_given_an_outside_copy() {
    let (t, dir, vk) = make_log(40);
    let copy = outside_copy(&t, &dir);
    let seg = last_segment(&dir);
    let fr = frames(&seg);
    let &(off, len, seq, is_seal) = fr.last().unwrap();
    assert!(is_seal, "the log ends with its close seal");
    let size = std::fs::metadata(&seg).unwrap().len();
    assert_eq!(size, (off + len) as u64);
    cut(&seg, size - 100);
    let rep = verify(&dir, &vk, Some(&copy)).unwrap();
    let p = rep
        .problem
        .clone()
        .expect("a cut-off seal must not verify INTACT");
    assert_eq!(
        (p.kind, p.seq),
        (TamperKind::SealRemoved, Some(seq)),
        "{rep}"
    );
    assert!(
        rep.to_string().starts_with("TAMPERED: seal removed"),
        "{rep}"
    );
}

/// The same cut with no outside copy: a plain `verify --dir` reads the
/// directory's own checkpoints.jsonl, which vouches for the seal too.
#[test]
fn plain_verify_reads_the_directorys_own_checkpoints() {
    let (_t, dir, vk) = make_log(40);
    let seg = last_segment(&dir);
    let size = std::fs::metadata(&seg).unwrap().len();
    cut(&seg, size - 100);
    let rep = verify(&dir, &vk, None).unwrap();
    assert_eq!(
        rep.problem.as_ref().map(|p| p.kind),
        Some(TamperKind::SealRemoved),
        "{rep}"
    );
    assert!(
        rep.checkpoint_sources
            .iter()
            .any(|(src, n)| src.ends_with("checkpoints.jsonl") && *n > 0),
        "{rep}"
    );
}

/// The class, not the example: the seal cut cleanly at a frame boundary (no
/// torn bytes), or the last two seals with the records between them, or
/// the last line of the host's own checkpoints removed as well — whatever
/// evidence is left that names a missing seal makes it TAMPERED.
#[test]
fn every_way_of_cutting_seals_that_evidence_names_is_tampered() {
    // Cleanly, at the frame boundary.
    let (t, dir, vk) = make_log(40);
    let copy = outside_copy(&t, &dir);
    let seg = last_segment(&dir);
    let &(off, _, seq, _) = frames(&seg).last().unwrap();
    cut(&seg, off as u64);
    let rep = verify(&dir, &vk, Some(&copy)).unwrap();
    assert_eq!(
        rep.problem.as_ref().map(|p| (p.kind, p.seq)),
        Some((TamperKind::SealRemoved, Some(seq))),
        "{rep}"
    );

    // Back past the previous seal: records a checkpoint vouches for are gone.
    let (t, dir, vk) = make_log(40);
    let copy = outside_copy(&t, &dir);
    let seg = last_segment(&dir);
    let fr = frames(&seg);
    let seals: Vec<_> = fr.iter().filter(|f| f.3).collect();
    assert!(seals.len() >= 2, "test needs two seals in the last segment");
    let prev_seal = seals[seals.len() - 2];
    cut(&seg, (prev_seal.0 + 10) as u64);
    let kind = verify(&dir, &vk, Some(&copy))
        .unwrap()
        .problem
        .map(|p| p.kind);
    assert!(
        matches!(kind, Some(TamperKind::SealRemoved | TamperKind::Truncated)),
        "{kind:?}"
    );

    // The intruder also drops the last line of the host's checkpoints.jsonl:
    // the outside copy still names the seal.
    let (t, dir, vk) = make_log(40);
    let copy = outside_copy(&t, &dir);
    let own = dir.join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&own).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    std::fs::write(&own, lines.join("\n") + "\n").unwrap();
    let seg = last_segment(&dir);
    let size = std::fs::metadata(&seg).unwrap().len();
    cut(&seg, size - 100);
    let rep = verify(&dir, &vk, Some(&copy)).unwrap();
    assert_eq!(
        rep.problem.map(|p| p.kind),
        Some(TamperKind::SealRemoved),
        "outside copy ignored"
    );
}

/// No false alarm: a crash's real torn tail (a record half written after the
/// last seal; no checkpoint can name it, the writer signs one only once its
/// seal is durable) and an unfinished last checkpoint line stay notes.
#[test]
fn a_real_crash_torn_tail_is_still_only_a_note() {
    let (_t, dir, vk) = make_log(40);
    let seg = last_segment(&dir);
    let first = frames(&seg)[0];
    let data = std::fs::read(&seg).unwrap();
    let partial = data[first.0..first.0 + 30].to_vec();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &partial).unwrap();
    let mut c = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("checkpoints.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut c, b"{\"log_id\":\"ab").unwrap();
    let rep = verify(&dir, &vk, None).unwrap();
    assert!(rep.intact(), "{rep}");
    assert_eq!(rep.torn_tail_bytes, 30);
    assert!(rep.notes.iter().any(|n| n.contains("unfinished")), "{rep}");
}

/// The writer does not paper over it either: reopening a log whose last
/// seal was cut off is refused (its seal key has moved past that seal), and
/// the evidence is left as it was found.
#[test]
fn writer_refuses_to_reopen_a_log_whose_last_seal_was_cut() {
    let (_t, dir, vk) = make_log(40);
    let seg = last_segment(&dir);
    let size = std::fs::metadata(&seg).unwrap().len();
    cut(&seg, size - 100);
    match AuditLog::open(&dir, opts()) {
        Err(AuditError::KeyMismatch { reason, .. }) => {
            assert!(reason.contains("gone from the log's end"), "{reason}")
        }
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("the writer reopened a log whose last seal was cut off"),
    }
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), size - 100);
    assert_eq!(
        verify(&dir, &vk, None).unwrap().problem.map(|p| p.kind),
        Some(TamperKind::SealRemoved)
    );
}

/// The command the officer runs, with no `--checkpoints`: `ferryctl audit
/// verify --dir D --key K` exits 1 (tampered) after the final seal was cut,
/// because it reads D's own checkpoints.jsonl.
#[test]
fn plain_verify_command_exits_1_after_the_final_seal_is_cut() {
    use clap::Parser;
    use ferry_audit::cli::{run, AuditCommand};
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: AuditCommand,
    }
    let cmd = |args: &[&str]| {
        let mut v = vec!["ferryctl-audit"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().cmd
    };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let key = t.path().join("vk.json");
    let (d, k) = (dir.to_str().unwrap(), key.to_str().unwrap());
    run(cmd(&["init", "--dir", d, "--verify-key-out", k]), "alice").unwrap();
    let ok = run(cmd(&["verify", "--dir", d, "--key", k]), "alice").unwrap();
    assert_eq!(ok, std::process::ExitCode::SUCCESS);
    let seg = last_segment(&dir);
    let size = std::fs::metadata(&seg).unwrap().len();
    cut(&seg, size - 100);
    let code = run(cmd(&["verify", "--dir", d, "--key", k]), "alice").unwrap();
    assert_eq!(code, std::process::ExitCode::from(1));
}
