//! The audit officer's commands: verify's exit code, and every use recorded.

use clap::Parser;
use ferry_audit::cli::{run, AuditCommand};
use ferry_audit::query::{query_scan, Filter};
use ferry_audit::{EventKind, Role};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: AuditCommand,
}

fn cmd(args: &[&str]) -> AuditCommand {
    let mut v = vec!["ferryctl-audit"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).unwrap().cmd
}

#[test]
fn verify_exit_codes_and_uses_are_audited() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let key = t.path().join("vk.json");
    let (d, k) = (dir.to_str().unwrap(), key.to_str().unwrap());
    run(cmd(&["init", "--dir", d, "--verify-key-out", k]), "alice").unwrap();
    let code = run(cmd(&["verify", "--dir", d, "--key", k]), "alice").unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    run(
        cmd(&["query", "--dir", d, "--event", "audit.init", "--json"]),
        "alice",
    )
    .unwrap();
    run(cmd(&["trace", "--dir", d, "pkg-1"]), "alice").unwrap();
    assert!(run(cmd(&["query", "--dir", d, "--event", "no.such"]), "alice").is_err());

    let reads = query_scan(
        &dir,
        &Filter {
            event: Some(EventKind::AuditRead),
            ..Filter::default()
        },
    )
    .unwrap();
    let what: Vec<&str> = reads
        .iter()
        .map(|r| r.record.details["command"].as_str())
        .collect();
    assert_eq!(what, ["verify", "query", "trace"]);
    assert!(reads
        .iter()
        .all(|r| r.record.actor.id == "alice" && r.record.actor.role == Role::Auditor));

    // Tamper with the first record: verify now exits 1.
    let seg = ferry_audit::segment::list_segments(&dir).unwrap()[0]
        .path
        .clone();
    let mut data = std::fs::read(&seg).unwrap();
    data[ferry_audit::segment::HEADER_LEN + 30] ^= 1;
    std::fs::write(&seg, data).unwrap();
    let code = run(cmd(&["verify", "--dir", d, "--key", k]), "alice").unwrap();
    assert_eq!(code, std::process::ExitCode::from(1));
}
