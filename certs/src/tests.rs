//! Unit tests over real files in temp dirs: issue → parse round trips, the
//! index and CRL numbering, and each refusal.

use crate::*;
use ferry_common::private_file::PrivateFileError;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use time::{Duration, OffsetDateTime};

fn new_ca(dir: &Path) -> CaInfo {
    init_ca(dir, "Test Site CA", 3650).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn crl_of(path: &Path) -> CrlInfo {
    match show(path).unwrap().remove(0) {
        CertInfo::Crl(c) => c,
        other => panic!("expected a CRL, got {other:?}"),
    }
}

fn cert_of(path: &Path) -> CertificateInfo {
    match show(path).unwrap().remove(0) {
        CertInfo::Certificate(c) => *c,
        other => panic!("expected a certificate, got {other:?}"),
    }
}

#[test]
fn init_ca_writes_private_key_certificate_index_and_first_crl() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ca");
    let info = new_ca(&dir);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(info.subject, "CN=Test Site CA");
    assert_eq!(info.fingerprint_sha256.len(), 64);
    assert!(info.not_after > OffsetDateTime::now_utc() + Duration::days(3649));
    let ca = cert_of(&dir.join("ca.crt"));
    assert!(ca.is_ca);
    assert_eq!(ca.key_algorithm, "EC P-256");
    let crl = crl_of(&dir.join("ca.crl"));
    assert_eq!(crl.crl_number.as_deref(), Some("1"));
    assert_eq!(crl.issuer, "CN=Test Site CA");
    assert!(crl.revoked.is_empty());
    let next = crl.next_update.unwrap();
    let days = (next - OffsetDateTime::now_utc()).whole_days();
    assert!((59..=60).contains(&days), "nextUpdate in {days} days");
    assert!(list_issued(&dir).unwrap().is_empty());
    // No temp files left behind.
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn init_ca_refuses_to_overwrite() {
    let t = tempfile::tempdir().unwrap();
    let info = new_ca(t.path());
    let key_before = fs::read(&info.key_path).unwrap();
    let err = init_ca(t.path(), "Other", 10).unwrap_err();
    assert!(matches!(err, CertError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("refusing to overwrite"));
    assert_eq!(fs::read(&info.key_path).unwrap(), key_before);
}

#[test]
fn client_identity_round_trips_role_san_and_fingerprint() {
    let t = tempfile::tempdir().unwrap();
    let ca = t.path().join("ca");
    let out = t.path().join("out");
    new_ca(&ca);
    let issued =
        issue_client(&ca, &out, "alice", Some(Role::new("sysadmin").unwrap()), 30).unwrap();
    assert_eq!(issued.cert_path, out.join("alice.crt"));
    assert_eq!(mode(&issued.key_path), 0o600);

    let der = crate::fsutil::read_certs(&issued.cert_path)
        .unwrap()
        .remove(0);
    let id = Identity::from_cert_der(&der).unwrap();
    assert_eq!(id, issued.identity);
    assert_eq!(id.common_name.as_deref(), Some("alice"));
    assert_eq!(id.subject, "CN=alice");
    assert_eq!(id.issuer, "CN=Test Site CA");
    assert_eq!(id.role.as_deref(), Some("sysadmin"));
    assert_eq!(id.role(), Some(Role::new("sysadmin").unwrap()));
    assert_eq!(
        id.san.uri,
        vec![
            "urn:ferry:id:alice".to_string(),
            "urn:ferry:role:sysadmin".to_string()
        ]
    );
    let expect_fp = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
    assert_eq!(id.fingerprint_sha256, expect_fp);
    assert_eq!(id.serial.len(), 32, "16-byte serial: {}", id.serial);
    let days = (id.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&days));

    // Serde round trip (audit records store it as JSON).
    let json = serde_json::to_string(&id).unwrap();
    assert!(json.contains("\"role\":\"sysadmin\""));
    let back: Identity = serde_json::from_str(&json).unwrap();
    assert_eq!(back, id);

    let info = cert_of(&issued.cert_path);
    assert_eq!(info.extended_key_usage, vec!["clientAuth".to_string()]);
    assert!(!info.is_ca);

    let index = list_issued(&ca).unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].serial, id.serial);
    assert_eq!(index[0].kind, CertKind::Client);
    assert_eq!(index[0].role.as_deref(), Some("sysadmin"));
    assert_eq!(index[0].fingerprint_sha256, id.fingerprint_sha256);
}

#[test]
fn client_without_role_has_none_and_server_has_server_auth_and_sans() {
    let t = tempfile::tempdir().unwrap();
    new_ca(t.path());
    let c = issue_client(t.path(), t.path(), "plain", None, 5).unwrap();
    assert_eq!(c.identity.role, None);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let s = issue_server(
        t.path(),
        t.path(),
        "ingest",
        &["Ingest.Example.org".to_string()],
        &[ip],
        5,
    )
    .unwrap();
    assert_eq!(s.identity.san.dns, vec!["ingest.example.org".to_string()]);
    assert_eq!(s.identity.san.ip, vec![ip]);
    assert!(s.identity.san.uri.is_empty());
    assert_eq!(
        cert_of(&s.cert_path).extended_key_usage,
        vec!["serverAuth".to_string()]
    );
    // The same name again would overwrite a key.
    let err = issue_server(t.path(), t.path(), "ingest", &[], &[ip], 5).unwrap_err();
    assert!(matches!(err, CertError::Exists { .. }), "{err}");
    assert_eq!(list_issued(t.path()).unwrap().len(), 2);
}

#[test]
fn issue_refuses_bad_requests() {
    let t = tempfile::tempdir().unwrap();
    new_ca(t.path());
    for name in ["../evil", "", ".hidden", "a/b", "a..b", &"x".repeat(65)] {
        let err = issue_client(t.path(), t.path(), name, None, 5).unwrap_err();
        assert!(
            matches!(err, CertError::InvalidInput { .. }),
            "{name}: {err}"
        );
    }
    let err = issue_server(t.path(), t.path(), "srv", &[], &[], 5).unwrap_err();
    assert!(err.to_string().contains("DNS name or IP"), "{err}");
    let err = issue_server(t.path(), t.path(), "srv", &["bad name".into()], &[], 5).unwrap_err();
    assert!(matches!(
        err,
        CertError::InvalidInput {
            what: "DNS name",
            ..
        }
    ));
    let mut req = IssueRequest::server("srv", &["a.example".into()], &[], 5).unwrap();
    req.role = Some(Role::new("pusher").unwrap());
    assert!(issue(t.path(), t.path(), &req).is_err());
    // A certificate may not outlive its CA (3650 days).
    let err = issue_client(t.path(), t.path(), "long", None, 4000).unwrap_err();
    assert!(matches!(err, CertError::ValidityBeyondCa { .. }), "{err}");
    assert!(issue_client(t.path(), t.path(), "zero", None, 0).is_err());
    assert!(list_issued(t.path()).unwrap().is_empty());
}

#[test]
fn revoke_records_and_numbers_crls() {
    let t = tempfile::tempdir().unwrap();
    let ca = t.path();
    new_ca(ca);
    let a = issue_client(ca, ca, "a", Some(Role::new("pusher").unwrap()), 5).unwrap();
    let b = issue_client(ca, ca, "b", None, 5).unwrap();
    let c = issue_client(ca, ca, "c", None, 5).unwrap();

    // By serial, typed the way openssl prints it (upper case, colons).
    let colon_serial = a
        .identity
        .serial
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let r = revoke(
        ca,
        &RevokeTarget::Serial(colon_serial),
        RevokeReason::KeyCompromise,
    )
    .unwrap();
    assert_eq!(r.crl.number, 2);
    assert_eq!(r.crl.revoked_count, 1);
    assert_eq!(r.record.serial, a.identity.serial);
    let crl = crl_of(&ca.join("ca.crl"));
    assert_eq!(crl.crl_number.as_deref(), Some("2"));
    assert_eq!(crl.revoked.len(), 1);
    assert_eq!(crl.revoked[0].serial, a.identity.serial);
    assert_eq!(crl.revoked[0].reason.as_deref(), Some("KeyCompromise"));

    // By file.
    let r = revoke(
        ca,
        &RevokeTarget::from_arg(b.cert_path.to_str().unwrap()),
        RevokeReason::Superseded,
    )
    .unwrap();
    assert_eq!(r.crl.number, 3);
    let crl = crl_of(&ca.join("ca.crl"));
    let mut serials: Vec<_> = crl.revoked.iter().map(|e| e.serial.clone()).collect();
    serials.sort();
    let mut expect = vec![a.identity.serial.clone(), b.identity.serial.clone()];
    expect.sort();
    assert_eq!(serials, expect);
    assert!(!serials.contains(&c.identity.serial));

    let err = revoke(
        ca,
        &RevokeTarget::Serial(a.identity.serial.clone()),
        RevokeReason::Unspecified,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::AlreadyRevoked { .. }), "{err}");
    let err = revoke(
        ca,
        &RevokeTarget::Serial("0123abcd".into()),
        RevokeReason::Unspecified,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::UnknownSerial { .. }), "{err}");
    // Failed revocations did not consume CRL numbers.
    let renewed = renew_crl(ca, 7).unwrap();
    assert_eq!(renewed.number, 4);
    assert_eq!(renewed.revoked_count, 2);
    let crl = crl_of(&ca.join("ca.crl"));
    assert_eq!(crl.crl_number.as_deref(), Some("4"));
    let days = (crl.next_update.unwrap() - OffsetDateTime::now_utc()).whole_days();
    assert!((6..=7).contains(&days));

    let index = list_issued(ca).unwrap();
    let revoked: Vec<_> = index.iter().filter(|r| r.revoked.is_some()).collect();
    assert_eq!(revoked.len(), 2);
    assert_eq!(
        index
            .iter()
            .find(|r| r.name == "b")
            .unwrap()
            .revoked
            .as_ref()
            .unwrap()
            .reason,
        RevokeReason::Superseded
    );
}

#[test]
fn revoke_refuses_a_certificate_of_another_ca() {
    let t = tempfile::tempdir().unwrap();
    let ours = t.path().join("ours");
    let theirs = t.path().join("theirs");
    new_ca(&ours);
    new_ca(&theirs); // same subject on purpose: only the signature tells them apart
    let x = issue_client(&theirs, &theirs, "x", None, 5).unwrap();
    let err = revoke(
        &ours,
        &RevokeTarget::CertFile(x.cert_path.clone()),
        RevokeReason::Unspecified,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::NotIssuedByCa { .. }), "{err}");
    assert!(err.to_string().contains("x.crt"));
}

#[test]
fn loose_key_permissions_are_refused_with_chmod_advice() {
    let t = tempfile::tempdir().unwrap();
    let info = new_ca(t.path());
    fs::set_permissions(&info.key_path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = issue_client(t.path(), t.path(), "a", None, 5).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::PrivateFile(PrivateFileError::LoosePermissions { mode: 0o640, .. })
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", info.key_path.display())),
        "{msg}"
    );
    fs::set_permissions(&info.key_path, fs::Permissions::from_mode(0o600)).unwrap();
    let c = issue_client(t.path(), t.path(), "a", None, 5).unwrap();

    // The same check guards keys handed to the TLS configurations.
    fs::set_permissions(&c.key_path, fs::Permissions::from_mode(0o604)).unwrap();
    let err = client_config(&info.cert_path, &c.cert_path, &c.key_path).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::PrivateFile(PrivateFileError::LoosePermissions { .. })
        ),
        "{err}"
    );
}

#[test]
fn key_owned_by_another_user_is_refused() {
    if ferry_common::private_file::effective_uid() != 0 {
        // chown to another uid needs root; the mode check above still runs.
        eprintln!("skipped: not root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let info = new_ca(t.path());
    nix::unistd::chown(
        &info.key_path,
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let err = issue_client(t.path(), t.path(), "a", None, 5).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::PrivateFile(PrivateFileError::WrongOwner {
                owner: 65534,
                me: 0,
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("chown 0"));
}

#[test]
fn corrupt_and_truncated_pem_name_the_file() {
    let t = tempfile::tempdir().unwrap();
    let info = new_ca(t.path());
    let good = fs::read_to_string(&info.cert_path).unwrap();

    let garbage = t.path().join("garbage.crt");
    fs::write(&garbage, "this is not a certificate\n").unwrap();
    let truncated = t.path().join("truncated.crt");
    fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let damaged = t.path().join("damaged.crt");
    fs::write(&damaged, good.replacen("MII", "M*I", 1)).unwrap();
    // Valid PEM around DER that is not a certificate.
    let bogus_der = t.path().join("bogus.crt");
    fs::write(
        &bogus_der,
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    for (p, needle) in [
        (&garbage, "no PEM section"),
        (&truncated, "truncated"),
        (&damaged, "base64"),
        (&bogus_der, "not an X.509 certificate"),
    ] {
        for err in [
            show(p).unwrap_err(),
            TrustStore::load(&[p.as_path()], &[]).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }

    // A truncated CA key.
    let key = fs::read_to_string(&info.key_path).unwrap();
    fs::write(&info.key_path, &key[..key.len() - 30]).unwrap();
    let err = issue_client(t.path(), t.path(), "a", None, 5).unwrap_err();
    assert!(matches!(err, CertError::BadPem { .. }), "{err}");
    assert!(err.to_string().contains("ca.key"));
}

#[test]
fn trust_store_refuses_a_crl_from_another_ca_and_a_ca_without_crl() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let b = t.path().join("b");
    let a_info = new_ca(&a);
    let b_info = init_ca(&b, "Other CA", 100).unwrap();

    let store =
        TrustStore::load(&[a_info.cert_path.as_path()], &[a_info.crl_path.as_path()]).unwrap();
    assert_eq!(store.ca_subjects(), vec!["CN=Test Site CA".to_string()]);
    assert_eq!(store.crl_count(), 1);

    let err =
        TrustStore::load(&[a_info.cert_path.as_path()], &[b_info.crl_path.as_path()]).unwrap_err();
    assert!(matches!(err, CertError::CrlUntrusted { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&b_info.crl_path.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("CN=Other CA"), "{msg}");

    // Same subject, different key: the signature check, not the name, decides.
    let twin = t.path().join("twin");
    let twin_info = new_ca(&twin);
    let err = TrustStore::load(
        &[a_info.cert_path.as_path()],
        &[twin_info.crl_path.as_path()],
    )
    .unwrap_err();
    assert!(matches!(err, CertError::CrlUntrusted { .. }), "{err}");

    let err = TrustStore::load(
        &[a_info.cert_path.as_path(), b_info.cert_path.as_path()],
        &[a_info.crl_path.as_path()],
    )
    .unwrap_err();
    assert!(matches!(err, CertError::MissingCrl { .. }), "{err}");

    // A leaf certificate is not a CA.
    let leaf = issue_client(&a, &a, "leaf", None, 5).unwrap();
    let err = TrustStore::load(&[leaf.cert_path.as_path()], &[]).unwrap_err();
    assert!(matches!(err, CertError::NotCa { .. }), "{err}");
}

#[test]
fn trust_store_verifies_outside_a_handshake() {
    let t = tempfile::tempdir().unwrap();
    let info = new_ca(t.path());
    let ok = issue_client(
        t.path(),
        t.path(),
        "ok",
        Some(Role::new("auditor").unwrap()),
        5,
    )
    .unwrap();
    let gone = issue_client(t.path(), t.path(), "gone", None, 5).unwrap();
    revoke(
        t.path(),
        &RevokeTarget::CertFile(gone.cert_path.clone()),
        RevokeReason::CessationOfOperation,
    )
    .unwrap();
    let store = TrustStore::load(&[info.cert_path.as_path()], &[info.crl_path.as_path()]).unwrap();
    let chain = |p: &Path| {
        crate::fsutil::read_certs(p)
            .unwrap()
            .into_iter()
            .map(rustls_pki_types::CertificateDer::from)
            .collect::<Vec<_>>()
    };
    let id = store.verify_client_cert(&chain(&ok.cert_path)).unwrap();
    assert_eq!(id.role.as_deref(), Some("auditor"));
    let err = store
        .verify_client_cert(&chain(&gone.cert_path))
        .unwrap_err();
    assert!(matches!(err, CertError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[test]
fn show_refuses_private_keys_and_reads_crls() {
    let t = tempfile::tempdir().unwrap();
    let info = new_ca(t.path());
    let err = show(&info.key_path).unwrap_err();
    assert!(matches!(err, CertError::IsPrivateKey { .. }), "{err}");
    assert!(!err.to_string().contains("BEGIN"));
    let items = show(&info.crl_path).unwrap();
    let text = items[0].to_string();
    assert!(text.starts_with("CRL\n"), "{text}");
    assert!(text.contains("number:       1"), "{text}");
    let json = serde_json::to_value(&items).unwrap();
    assert_eq!(json[0]["type"], "crl");
    let cert_text = show(&info.cert_path).unwrap()[0].to_string();
    assert!(cert_text.contains("certificate (CA)"), "{cert_text}");
    assert!(cert_text.contains(&info.fingerprint_sha256), "{cert_text}");
}

#[test]
fn expiry_lists_expired_and_soon_expiring_only() {
    let t = tempfile::tempdir().unwrap();
    let ca = t.path().join("ca");
    let out = t.path().join("out");
    new_ca(&ca);
    let now = OffsetDateTime::now_utc();
    issue_client(&ca, &out, "long", None, 200).unwrap();
    let soon = issue_client(&ca, &out, "soon", None, 10).unwrap();
    let mut req = IssueRequest::client("old", None, 1).unwrap();
    req.validity = Validity::between(now - Duration::days(20), now - Duration::days(2)).unwrap();
    let old = issue(&ca, &out, &req).unwrap();

    let notices = expiring_in_dir(&out, DEFAULT_EXPIRY_WARNING_DAYS, now).unwrap();
    let got: Vec<_> = notices
        .iter()
        .map(|n| (n.path.clone(), n.state, n.days_left))
        .collect();
    assert_eq!(
        got,
        vec![
            (old.cert_path.clone(), ExpiryState::Expired, -2),
            (soon.cert_path.clone(), ExpiryState::ExpiresSoon, 9),
        ],
        "{notices:#?}"
    );
    assert!(notices[0].to_string().contains("expired"));

    // The CA dir: the CA is fine; its CRL (60 days) falls inside a 61-day window only,
    // so the default 30-day window does not list a fresh CRL.
    assert!(expiring_in_dir(&ca, DEFAULT_EXPIRY_WARNING_DAYS, now)
        .unwrap()
        .is_empty());
    assert!(expiring_in_dir(&ca, 59, now).unwrap().is_empty());
    let crl = expiring_in_dir(&ca, 61, now).unwrap();
    assert_eq!(crl.len(), 1);
    assert_eq!(crl[0].kind, ExpiryKind::Crl);
    assert!(crl[0].to_string().contains("renew-crl"));

    // The index knows the same two.
    let issued = expiring_issued(&ca, DEFAULT_EXPIRY_WARNING_DAYS, now).unwrap();
    let names: Vec<_> = issued.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names, vec!["CN=old (client)", "CN=soon (client)"]);
}

#[test]
fn concurrent_issuing_loses_no_index_entry() {
    let t = tempfile::tempdir().unwrap();
    new_ca(t.path());
    let dir = t.path().to_path_buf();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                issue_client(&dir, &dir, &format!("c{i}"), None, 5).map(|_| ())
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap().unwrap();
    }
    let mut names: Vec<_> = list_issued(&dir)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["c0", "c1", "c2", "c3", "c4", "c5"]);
}

#[test]
fn identity_parses_a_foreign_certificate_with_several_ous() {
    // openssl builds what rcgen cannot: several OUs, an e-mail SAN.
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("k.pem");
    let crt = t.path().join("c.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args([
            "-days",
            "2",
            "-subj",
            "/C=CN/O=Land Registry/OU=Ops/OU=Night, Shift/CN=bob",
            "-addext",
            "subjectAltName=email:bob@example.org,URI:urn:ferry:role:reviewer,IP:10.0.0.1",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    let der = crate::fsutil::read_certs(&crt).unwrap().remove(0);
    let id = Identity::from_cert_der(&der).unwrap();
    assert_eq!(
        id.subject,
        "CN=bob,OU=Night\\, Shift,OU=Ops,O=Land Registry,C=CN"
    );
    assert_eq!(
        id.org_units,
        vec!["Ops".to_string(), "Night, Shift".to_string()]
    );
    assert_eq!(id.organization, vec!["Land Registry".to_string()]);
    assert_eq!(id.san.email, vec!["bob@example.org".to_string()]);
    assert_eq!(id.san.ip, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(id.role.as_deref(), Some("reviewer"));
}

#[test]
fn ambiguous_roles_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("k.pem");
    let crt = t.path().join("c.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=mallory",
            "-addext",
            "subjectAltName=URI:urn:ferry:role:pusher,URI:urn:ferry:role:secadmin",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    let der = crate::fsutil::read_certs(&crt).unwrap().remove(0);
    let err = Identity::from_cert_der(&der).unwrap_err();
    assert!(err.to_string().contains("at most one role"), "{err}");
}

mod props {
    use crate::{normalize_serial, serial_hex, show, Identity};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// One real client certificate (DER and PEM), made once.
    fn sample() -> &'static (Vec<u8>, String) {
        static SAMPLE: OnceLock<(Vec<u8>, String)> = OnceLock::new();
        SAMPLE.get_or_init(|| {
            let t = tempfile::tempdir().unwrap();
            crate::init_ca(t.path(), "Fuzz CA", 10).unwrap();
            let c = crate::issue_client(
                t.path(),
                t.path(),
                "f",
                Some(crate::Role::new("pusher").unwrap()),
                5,
            )
            .unwrap();
            let pem = std::fs::read_to_string(&c.cert_path).unwrap();
            let der = crate::fsutil::read_certs(&c.cert_path).unwrap().remove(0);
            (der, pem)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        // A peer certificate comes off the wire: damaged DER must give an
        // error or a parse, never a panic.
        #[test]
        fn damaged_der_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                    cut in any::<usize>()) {
            let mut der = sample().0.clone();
            for (pos, x) in flips {
                let i = pos % der.len();
                der[i] ^= x;
            }
            der.truncate(cut % (der.len() + 1));
            let _ = Identity::from_cert_der(&der);
        }

        // Operator-edited files: damaged PEM text gives an error naming the
        // file, never a panic.
        #[test]
        fn damaged_pem_never_panics(pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let mut pem = sample().1.clone().into_bytes();
            let i = pos % pem.len();
            pem[i] = byte;
            pem.truncate(cut % (pem.len() + 1));
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join("x.crt");
            std::fs::write(&p, &pem).unwrap();
            if let Err(e) = show(&p) {
                prop_assert!(e.to_string().contains("x.crt"), "{}", e);
            }
        }
    }

    proptest! {
        #[test]
        fn serial_text_forms_agree(bytes in proptest::collection::vec(any::<u8>(), 1..20)) {
            let canonical = serial_hex(&bytes);
            let colon = bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
            prop_assert_eq!(normalize_serial(&colon).unwrap(), canonical.clone());
            prop_assert_eq!(normalize_serial(&canonical).unwrap(), canonical);
        }
    }
}

#[test]
fn expired_ca_is_refused_for_issuing_and_trust() {
    // init_ca cannot make a CA in the past; write one with rcgen directly.
    let t = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(30);
    params.not_after = now - Duration::days(1);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let cert_path = t.path().join("ca.crt");
    fs::write(&cert_path, cert.pem()).unwrap();
    let key_path = t.path().join("ca.key");
    fs::write(&key_path, key.serialize_pem()).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();

    let err = TrustStore::load(&[cert_path.as_path()], &[]).unwrap_err();
    assert!(matches!(err, CertError::CaExpired { .. }), "{err}");
    assert!(err.to_string().contains("init-ca"), "{err}");
    let err = issue_client(t.path(), t.path(), "a", None, 1).unwrap_err();
    assert!(matches!(err, CertError::CaExpired { .. }), "{err}");
    let notices = expiring_in_dir(t.path(), 30, now).unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind, ExpiryKind::Ca);
    assert_eq!(notices[0].state, ExpiryState::Expired);
}
