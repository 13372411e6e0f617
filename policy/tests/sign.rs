//! Signed policies: keygen, sign, verify, and the daemon's load_signed.

use ferry_policy::cli::{run_to, IdentityArgs, PolicyCommand};
use ferry_policy::sign::{keygen, sign, signature_path, verify};
use ferry_policy::{load_signed, PolicyError, PublicKey, SignError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn example(dir: &Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.toml");
    let main = dir.join("policy.toml");
    let text = std::fs::read_to_string(src).unwrap();
    // Move one table into an include so the signature must cover it.
    let ident = "[identity.any-pusher]\ndescription = \"Every pushing system, for the site-wide deny rules\"\nrole = \"pusher\"\n";
    assert!(text.contains(ident));
    std::fs::write(
        &main,
        format!("include = [\"extra.toml\"]\n{}", text.replace(ident, "")),
    )
    .unwrap();
    std::fs::write(dir.join("extra.toml"), ident).unwrap();
    main
}

#[test]
fn keygen_sign_verify_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let policy = example(dir.path());
    let (key, public) = keygen(&dir.path().join("secadmin.key")).unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(matches!(keygen(&key), Err(SignError::Exists { .. })));
    let secret = std::fs::read_to_string(&key).unwrap();
    assert!(
        !format!("{:?}", ferry_policy::SigningKey::read(&key).unwrap())
            .contains(&secret.lines().nth(1).unwrap()[..16])
    );

    let trusted = vec![PublicKey::read(&public).unwrap()];
    let sig = sign(&policy, &key).unwrap();
    assert_eq!(sig, signature_path(&policy));
    let v = verify(&policy, &sig, &trusted).unwrap();
    let (p, _, v2) = load_signed(&policy, &trusted).unwrap();
    assert_eq!(v, v2);
    assert_eq!(v.policy_hash, p.hash());
    assert_eq!(v.key_id, trusted[0].key_id());

    // Editing the included file breaks the signature.
    let extra = dir.path().join("extra.toml");
    let original = std::fs::read_to_string(&extra).unwrap();
    std::fs::write(&extra, original.replace("pusher", "reviewer")).unwrap();
    assert!(matches!(
        verify(&policy, &sig, &trusted),
        Err(SignError::HashMismatch { .. })
    ));
    assert!(matches!(
        load_signed(&policy, &trusted),
        Err(PolicyError::Signature(SignError::HashMismatch { .. }))
    ));
    std::fs::write(&extra, original).unwrap();
    verify(&policy, &sig, &trusted).unwrap();

    // A different key is not trusted; a forged signature does not verify.
    let (_, other_pub) = keygen(&dir.path().join("other.key")).unwrap();
    let other = vec![PublicKey::read(&other_pub).unwrap()];
    assert!(matches!(
        verify(&policy, &sig, &other),
        Err(SignError::UntrustedKey { .. })
    ));
    let text = std::fs::read_to_string(&sig).unwrap();
    let last = text.trim_end().chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    let forged = format!(
        "{}{flipped}\n",
        &text.trim_end()[..text.trim_end().len() - 1]
    );
    std::fs::write(&sig, forged).unwrap();
    assert!(matches!(
        verify(&policy, &sig, &trusted),
        Err(SignError::BadSignature { .. })
    ));

    // Unsigned: refused.
    std::fs::remove_file(&sig).unwrap();
    assert!(matches!(
        load_signed(&policy, &trusted),
        Err(PolicyError::Signature(SignError::Io { .. }))
    ));
}

#[test]
fn an_invalid_policy_is_not_signed() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[channel.c]\ndirection = \"sideways\"\n").unwrap();
    let (key, _) = keygen(&dir.path().join("k")).unwrap();
    assert!(matches!(
        sign(&policy, &key),
        Err(SignError::InvalidPolicy(_))
    ));
    assert!(!signature_path(&policy).exists());
}

fn cli(cmd: PolicyCommand) -> (u8, String) {
    let mut out = Vec::new();
    let code = run_to(cmd, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn cli_commands() {
    let dir = tempfile::tempdir().unwrap();
    let policy = example(dir.path());
    let key = dir.path().join("sec.key");
    let (code, text) = cli(PolicyCommand::Keygen { out: key.clone() });
    assert_eq!(code, 0, "{text}");
    let (code, _) = cli(PolicyCommand::Sign {
        file: policy.clone(),
        key: key.clone(),
    });
    assert_eq!(code, 0);
    let pubkey = vec![dir.path().join("sec.key.pub")];
    let (code, text) = cli(PolicyCommand::Verify {
        file: policy.clone(),
        pubkey: pubkey.clone(),
        sig: None,
    });
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("signature valid"), "{text}");

    let (code, text) = cli(PolicyCommand::Check {
        file: policy.clone(),
        strict: true,
        json: false,
    });
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("valid: 0 error(s), 0 warning(s) (strict)"),
        "{text}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[channel.c]\ndirection = \"import\"\nlink = \"l\"\nmax_size = 3\n",
    )
    .unwrap();
    let (code, text) = cli(PolicyCommand::Check {
        file: bad.clone(),
        strict: false,
        json: true,
    });
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["diagnostics"][0]["code"], "unknown-key");
    assert_eq!(json["diagnostics"][0]["line"], 4);
    assert_eq!(json["diagnostics"][0]["column"], 1);

    let (code, text) = cli(PolicyCommand::Explain {
        file: policy.clone(),
        identity: IdentityArgs {
            identity: vec!["cn=stats.registry.example".into(), "role=pusher".into()],
            ..IdentityArgs::default()
        },
        channel: "public-stats".into(),
        name: "stats-x.exe".into(),
        content_type: "text/csv".into(),
        size: 10,
        at: Some("2026-11-28T23:30:00+08:00".into()),
        json: false,
    });
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("verdict: DENY (rule `R-no-executables`)"),
        "{text}"
    );
    assert!(
        text.contains("forbidden by rule `R-no-executables`"),
        "{text}"
    );

    // A failing case makes `test` exit non-zero and name the case.
    let cases = dir.path().join("cases.toml");
    std::fs::write(&cases, "[[case]]\nname = \"wrongly expected\"\nidentity = { cn = \"x\" }\nchannel = \"public-stats\"\nfile_name = \"a.csv\"\nsize_bytes = 1\nat = \"2026-11-28T23:30:00+08:00\"\nexpect = \"allow\"\n").unwrap();
    let (code, text) = cli(PolicyCommand::Test {
        file: policy,
        cases,
    });
    assert_eq!(code, 1);
    assert!(
        text.contains("FAIL wrongly expected: expected allow, got deny"),
        "{text}"
    );
    assert!(text.contains("0 passed, 1 failed"), "{text}");
}
