//! The GM suite against the `openssl` command-line tool run as a separate
//! process (signatures both ways with an explicit distinguishing ID, keys
//! from `openssl genpkey`, SM2 encryption both ways, HMAC-SM3, the
//! pairing HKDF-SM3 and the SM4-GCM keystream), SM4-GCM with its tag
//! against Python's `cryptography` where that is installed, and key
//! rotation through the public API.
//!
//! Needs the `openssl` binary of an OpenSSL 3 with SM algorithms on PATH.
//! OpenSSL 3.0's CLI signs and verifies SM2 with an *empty* ID unless told
//! otherwise, so every call passes `distid:1234567812345678`.

use ferry_protocol::manifest::MAX_EPHEMERAL_LEN;
use ferry_protocol::suite::{CryptoError, OpenKeys, SealKeys, Secret32};
use ferry_suites::gm::{self, GmOpenKeys, GmSealKeys, DEFAULT_DISTINGUISHING_ID};
use openssl::derive::Deriver;
use openssl::pkey::PKey;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const DISTID: &str = "distid:1234567812345678";
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `openssl args...` with a deadline; returns (success, stdout, stderr).
fn openssl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the `openssl` command is needed for interop tests: apt-get install openssl");
    let deadline = Instant::now() + CLI_TIMEOUT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("openssl {args:?} did not finish within {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn openssl_ok(args: &[&str]) -> Vec<u8> {
    let (ok, stdout, stderr) = openssl(args);
    assert!(ok, "openssl {args:?} failed: {stderr}");
    stdout
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("temp dir"))
    }
    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// An SM2 key made by `openssl genpkey`: (PKCS#8 DER, SPKI DER, PEM paths).
fn cli_key(dir: &Dir, name: &str) -> (Zeroizing<Vec<u8>>, Vec<u8>, PathBuf, PathBuf) {
    let private_pem = dir.path(&format!("{name}.key.pem"));
    let public_pem = dir.path(&format!("{name}.pub.pem"));
    openssl_ok(&["genpkey", "-algorithm", "SM2", "-out", p(&private_pem)]);
    openssl_ok(&[
        "pkey",
        "-in",
        p(&private_pem),
        "-pubout",
        "-out",
        p(&public_pem),
    ]);
    let pkcs8 = gm::sm2_private_pem_to_pkcs8(&std::fs::read(&private_pem).expect("read"))
        .expect("genpkey's SM2 key loads");
    let spki =
        gm::sm2_public_pem_to_spki(&std::fs::read(&public_pem).expect("read")).expect("loads");
    (pkcs8, spki, private_pem, public_pem)
}

#[test]
fn ferry_signature_verifies_with_openssl_cli() {
    let dir = Dir::new();
    let (private, public) = gm::generate_sm2().expect("key");
    let public_pem = dir.file(
        "pub.pem",
        &gm::sm2_public_spki_to_pem(&public).expect("pem"),
    );
    let msg = b"canonical manifest bytes\x00\x01\x02";
    let msg_path = dir.file("msg.bin", msg);
    let sig = gm::sm2_sign(&private, DEFAULT_DISTINGUISHING_ID, msg).expect("sign");
    let sig_path = dir.file("sig.der", &sig);

    let pkeyutl = |m: &Path| {
        openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            p(&public_pem),
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            DISTID,
            "-in",
            p(m),
            "-sigfile",
            p(&sig_path),
        ])
    };
    let (ok, _, err) = pkeyutl(&msg_path);
    assert!(ok, "pkeyutl rejected ferry's signature: {err}");
    let (ok, stdout, err) = openssl(&[
        "dgst",
        "-sm3",
        "-verify",
        p(&public_pem),
        "-sigopt",
        DISTID,
        "-signature",
        p(&sig_path),
        p(&msg_path),
    ]);
    assert!(ok, "dgst rejected ferry's signature: {err}");
    assert!(String::from_utf8_lossy(&stdout).contains("Verified OK"));

    // The CLI does reject: another message, another ID.
    let other = dir.file("other.bin", b"canonical manifest bytes\x00\x01\x03");
    assert!(!pkeyutl(&other).0);
    let (ok, _, _) = openssl(&[
        "dgst",
        "-sm3",
        "-verify",
        p(&public_pem),
        "-sigopt",
        "distid:ALICE123@YAHOO.COM",
        "-signature",
        p(&sig_path),
        p(&msg_path),
    ]);
    assert!(!ok, "a signature under another ID must not verify");
}

#[test]
fn openssl_cli_signature_verifies_with_ferry() {
    let dir = Dir::new();
    let (_, spki, private_pem, _) = cli_key(&dir, "signer");
    let msg = b"a manifest signed by the openssl tool";
    let msg_path = dir.file("msg.bin", msg);
    let sig_path = dir.path("sig.der");
    openssl_ok(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        p(&private_pem),
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-in",
        p(&msg_path),
        "-out",
        p(&sig_path),
    ]);
    let sig = std::fs::read(&sig_path).expect("sig");
    gm::sm2_verify(&spki, DEFAULT_DISTINGUISHING_ID, msg, &sig).expect("pkeyutl's signature");

    let sig2_path = dir.path("sig2.der");
    openssl_ok(&[
        "dgst",
        "-sm3",
        "-sign",
        p(&private_pem),
        "-sigopt",
        DISTID,
        "-out",
        p(&sig2_path),
        p(&msg_path),
    ]);
    let sig2 = std::fs::read(&sig2_path).expect("sig");
    gm::sm2_verify(&spki, DEFAULT_DISTINGUISHING_ID, msg, &sig2).expect("dgst's signature");
    assert!(gm::sm2_verify(&spki, DEFAULT_DISTINGUISHING_ID, b"another", &sig2).is_err());

    // Through the suite's verifier, by key id.
    let (enc_private, _) = gm::generate_sm2().expect("enc");
    let open = GmOpenKeys::new(
        vec![("cli-signer".into(), spki)],
        vec![("enc".into(), enc_private)],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys");
    open.verify("cli-signer", msg, &sig).expect("verifies");
    assert_eq!(
        open.verify("ferry-signer", msg, &sig),
        Err(CryptoError::UnknownKey("ferry-signer".into()))
    );
}

#[test]
fn genpkey_keys_work_in_the_suite() {
    let dir = Dir::new();
    let (sig_pkcs8, sig_spki, sig_pem, _) = cli_key(&dir, "sig");
    let (enc_pkcs8, enc_spki, _, _) = cli_key(&dir, "enc");
    // The public key ferry derives equals the CLI's.
    assert_eq!(
        gm::sm2_public_from_private(&sig_pkcs8).expect("public"),
        sig_spki
    );
    let der = openssl_ok(&["pkey", "-in", p(&sig_pem), "-pubout", "-outform", "DER"]);
    assert_eq!(der, sig_spki);

    let seal = GmSealKeys::new(
        "sig".into(),
        &sig_pkcs8,
        "enc".into(),
        &enc_spki,
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("seal keys from genpkey keys");
    let open = GmOpenKeys::new(
        vec![("sig".into(), sig_spki)],
        vec![("enc".into(), enc_pkcs8)],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys from genpkey keys");
    let sig = seal.sign(b"m").expect("sign");
    open.verify("sig", b"m", &sig).expect("verify");
    let epoch = Secret32([9; 32]);
    let (sealer, eph) = seal.new_package(&epoch, b"ctx").expect("package");
    let opener = open
        .open_package("enc", &epoch, &eph, b"ctx")
        .expect("open");
    let mut buf = b"payload".to_vec();
    sealer.seal_chunk(0, true, &mut buf).expect("seal");
    opener.open_chunk(0, true, &mut buf).expect("open");
    assert_eq!(buf, b"payload");
}

#[test]
fn sm2_encryption_interoperates_with_openssl_cli() {
    let dir = Dir::new();
    let (pkcs8, spki, private_pem, public_pem) = cli_key(&dir, "enc");
    let secret: Vec<u8> = (0u8..32).collect();

    // CLI encrypts, ferry decrypts.
    let plain_path = dir.file("plain.bin", &secret);
    let ct_path = dir.path("ct.der");
    openssl_ok(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        p(&public_pem),
        "-in",
        p(&plain_path),
        "-out",
        p(&ct_path),
    ]);
    let ct = std::fs::read(&ct_path).expect("ct");
    assert!(ct.len() <= MAX_EPHEMERAL_LEN, "{} bytes", ct.len());
    assert_eq!(
        gm::sm2_decrypt_with(&pkcs8, &ct).expect("decrypt")[..],
        secret[..]
    );

    // ferry encrypts, CLI decrypts.
    let ct = gm::sm2_encrypt_to(&spki, &secret).expect("encrypt");
    let ct_path = dir.file("ct2.der", &ct);
    let out = openssl_ok(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        p(&private_pem),
        "-in",
        p(&ct_path),
    ]);
    assert_eq!(out, secret);

    // A manifest's key-transport field is exactly such a ciphertext of a
    // 32-byte package key.
    let (sig_private, _) = gm::generate_sm2().expect("sig");
    let seal = GmSealKeys::new(
        "s".into(),
        &sig_private,
        "enc".into(),
        &spki,
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("seal");
    let (_, eph) = seal
        .new_package(&Secret32([1; 32]), b"ctx")
        .expect("package");
    assert!(eph.len() <= MAX_EPHEMERAL_LEN);
    let eph_path = dir.file("eph.der", &eph);
    let out = openssl_ok(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        p(&private_pem),
        "-in",
        p(&eph_path),
    ]);
    assert_eq!(out.len(), gm::PACKAGE_KEY_LEN);
}

#[test]
fn hmac_sm3_and_hkdf_sm3_match_openssl_cli() {
    let dir = Dir::new();
    let key: Vec<u8> = (1u8..=0x25).collect();
    let data = vec![0xcdu8; 50];
    let data_path = dir.file("data.bin", &data);
    let out = openssl_ok(&[
        "mac",
        "-digest",
        "SM3",
        "-macopt",
        &format!("hexkey:{}", hex::encode(&key)),
        "-in",
        p(&data_path),
        "HMAC",
    ]);
    let cli = String::from_utf8_lossy(&out).trim().to_ascii_lowercase();
    assert_eq!(cli, hex::encode(gm::hmac_sm3(&key, &data).expect("hmac")));

    // The pairing formula: E(0) = HKDF-SM3 over the ECDH x coordinate.
    // Neither OpenSSL 3.0's CLI nor its library do ECDH with keys typed
    // SM2, so the shared secret comes from OpenSSL's ECDH on EC-typed
    // keys of the SM2 curve and the HKDF from the CLI.
    let a = PKey::ec_gen("SM2").expect("a");
    let b = PKey::ec_gen("SM2").expect("b");
    let mut deriver = Deriver::new(&a).expect("deriver");
    deriver.set_peer(&b).expect("peer");
    let shared = deriver.derive_to_vec().expect("ECDH");
    let e0 = gm::pairing_secret(
        &a.private_key_to_pkcs8().expect("pkcs8"),
        &b.public_key_to_der().expect("spki"),
        "high-to-low",
    )
    .expect("pair");
    assert_eq!(shared.len(), 32);
    let info = [&b"ferry/v1/gm/epoch0"[..], b"high-to-low"].concat();
    let out = openssl_ok(&[
        "kdf",
        "-keylen",
        "32",
        "-kdfopt",
        "digest:SM3",
        "-kdfopt",
        &format!("hexkey:{}", hex::encode(&shared)),
        "-kdfopt",
        &format!("hexsalt:{}", hex::encode(b"ferry/v1/gm/pairing")),
        "-kdfopt",
        &format!("hexinfo:{}", hex::encode(&info)),
        "HKDF",
    ]);
    let cli = String::from_utf8_lossy(&out)
        .trim()
        .replace(':', "")
        .to_ascii_lowercase();
    assert_eq!(cli, hex::encode(e0.0));
}

/// The RFC 8998 A.1 key and nonce, and a plaintext of several blocks with
/// a ragged end.
const GCM_KEY: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
];
const GCM_NONCE: [u8; 12] = [0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 0xab, 0xcd];

fn gcm_plaintext() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn sm4_gcm_keystream_matches_openssl_enc_both_ways() {
    // OpenSSL 3.0's CLI has no SM4-GCM (and `enc` takes no AEAD), but
    // GCM's ciphertext is SM4-CTR from inc32(J0) = nonce || 00000002: the
    // CLI decrypts ours, and its encryption equals ours.
    let dir = Dir::new();
    let plain = gcm_plaintext();
    let mut ours = plain.clone();
    let tag = gm::sm4_gcm_encrypt(&GCM_KEY, &GCM_NONCE, b"", &mut ours).expect("seal");
    let iv = format!("{}00000002", hex::encode(GCM_NONCE));
    let key = hex::encode(GCM_KEY);
    let ct_path = dir.file("ct.bin", &ours);
    let cli_plain = openssl_ok(&[
        "enc",
        "-d",
        "-sm4-ctr",
        "-K",
        &key,
        "-iv",
        &iv,
        "-in",
        p(&ct_path),
    ]);
    assert_eq!(
        cli_plain, plain,
        "openssl enc decrypts our SM4-GCM ciphertext"
    );
    let pt_path = dir.file("pt.bin", &plain);
    let cli_ct = openssl_ok(&[
        "enc",
        "-sm4-ctr",
        "-K",
        &key,
        "-iv",
        &iv,
        "-in",
        p(&pt_path),
    ]);
    assert_eq!(
        cli_ct, ours,
        "openssl enc's SM4-CTR from inc32(J0) is our ciphertext"
    );
    let mut back = cli_ct;
    gm::sm4_gcm_decrypt(&GCM_KEY, &GCM_NONCE, b"", &mut back, &tag).expect("open");
    assert_eq!(back, plain);
}

/// Runs a Python snippet; `None` when Python or its `cryptography` with
/// SM4-GCM is not installed (the test then says so and checks nothing).
fn python(script: &str, input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input).ok()?;
    let out = child.wait_with_output().ok()?;
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

const PY_GCM: &str = r#"
import sys
try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    Cipher(algorithms.SM4(bytes(16)), modes.GCM(bytes(12))).encryptor()
except Exception:
    sys.exit(3)
"#;

fn python_gcm(op: &str, data: &[u8], tag: Option<&[u8; 16]>) -> Option<Vec<u8>> {
    let body = match op {
        "seal" => "e = Cipher(algorithms.SM4(K), modes.GCM(N)).encryptor()\nct = e.update(D) + e.finalize()\nsys.stdout.buffer.write(ct + e.tag)",
        _ => "d = Cipher(algorithms.SM4(K), modes.GCM(N, D[-16:])).decryptor()\nsys.stdout.buffer.write(d.update(D[:-16]) + d.finalize())",
    };
    let script = format!(
        "{PY_GCM}\nK = bytes.fromhex('{}')\nN = bytes.fromhex('{}')\nD = sys.stdin.buffer.read()\n{}\n",
        hex::encode(GCM_KEY),
        hex::encode(GCM_NONCE),
        body
    );
    let mut input = data.to_vec();
    if let Some(t) = tag {
        input.extend_from_slice(t);
    }
    python(&script, &input)
}

#[test]
fn sm4_gcm_interoperates_with_python_cryptography_both_ways() {
    let plain = gcm_plaintext();
    let mut ours = plain.clone();
    let tag = gm::sm4_gcm_encrypt(&GCM_KEY, &GCM_NONCE, b"", &mut ours).expect("seal");
    let Some(theirs) = python_gcm("seal", &plain, None) else {
        eprintln!("python3 with cryptography's SM4-GCM not installed: interop not checked");
        return;
    };
    assert_eq!(
        theirs,
        [&ours[..], &tag[..]].concat(),
        "same ciphertext and tag"
    );
    let opened = python_gcm("open", &ours, Some(&tag)).expect("python ran before");
    assert_eq!(
        opened, plain,
        "python opens ours (its finalize checks the tag)"
    );
    let mut back = theirs[..theirs.len() - 16].to_vec();
    gm::sm4_gcm_decrypt(
        &GCM_KEY,
        &GCM_NONCE,
        b"",
        &mut back,
        &theirs[theirs.len() - 16..],
    )
    .expect("we open theirs");
    assert_eq!(back, plain);
}

/// Keys of one generation: (signing PKCS#8, signing SPKI, encryption
/// PKCS#8, encryption SPKI).
struct Generation {
    sig: (Zeroizing<Vec<u8>>, Vec<u8>),
    enc: (Zeroizing<Vec<u8>>, Vec<u8>),
}

fn generation() -> Generation {
    Generation {
        sig: gm::generate_sm2().expect("sig"),
        enc: gm::generate_sm2().expect("enc"),
    }
}

fn seal_keys(g: &Generation, n: u32) -> GmSealKeys {
    GmSealKeys::new(
        format!("sig-{n}"),
        &g.sig.0,
        format!("enc-{n}"),
        &g.enc.1,
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("seal keys")
}

/// Seals one package and opens it: Ok(plaintext) or the first error.
fn transfer(
    seal: &GmSealKeys,
    open: &GmOpenKeys,
    epoch: &Secret32,
) -> Result<Vec<u8>, CryptoError> {
    let body = b"manifest body".to_vec();
    let sig = seal.sign(&body)?;
    open.verify(seal.signing_key_id(), &body, &sig)?;
    let (sealer, eph) = seal.new_package(epoch, b"pkg")?;
    let opener = open.open_package(seal.recipient_key_id(), epoch, &eph, b"pkg")?;
    let mut out = Vec::new();
    for i in 0..3u64 {
        let mut chunk = vec![i as u8; 1000];
        sealer.seal_chunk(i, i == 2, &mut chunk)?;
        opener.open_chunk(i, i == 2, &mut chunk)?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[test]
fn rotation_opens_packages_of_old_and_new_keys() {
    let old = generation();
    let new = generation();
    let epoch = Secret32([5; 32]);
    let open = GmOpenKeys::new(
        vec![
            ("sig-2".into(), new.sig.1.clone()),
            ("sig-1".into(), old.sig.1.clone()),
        ],
        vec![
            ("enc-2".into(), new.enc.0.clone()),
            ("enc-1".into(), old.enc.0.clone()),
        ],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys");
    assert_eq!(open.sender_key_id(), "sig-2");
    assert_eq!(open.recipient_key_id(), "enc-2");
    for (g, n) in [(&old, 1), (&new, 2)] {
        let got = transfer(&seal_keys(g, n), &open, &epoch).expect("opens");
        assert_eq!(got.len(), 3000);
    }
    // A sender that mixes generations (new signing key, old recipient key)
    // still opens: each half is picked by its own id.
    let mixed = GmSealKeys::new(
        "sig-2".into(),
        &new.sig.0,
        "enc-1".into(),
        &old.enc.1,
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("mixed");
    transfer(&mixed, &open, &epoch).expect("mixed generations open");

    // After retiring generation 1, its packages are refused by id.
    let retired = GmOpenKeys::new(
        vec![("sig-2".into(), new.sig.1.clone())],
        vec![("enc-2".into(), new.enc.0.clone())],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys");
    assert_eq!(
        transfer(&seal_keys(&old, 1), &retired, &epoch),
        Err(CryptoError::UnknownKey("sig-1".into()))
    );
    assert_eq!(
        transfer(&mixed, &retired, &epoch),
        Err(CryptoError::UnknownKey("enc-1".into()))
    );
    transfer(&seal_keys(&new, 2), &retired, &epoch).expect("current generation");
}

#[test]
fn a_key_under_the_wrong_id_is_refused() {
    let old = generation();
    let new = generation();
    let epoch = Secret32([6; 32]);
    // The egress side files the new keys under the old ids by mistake.
    let open = GmOpenKeys::new(
        vec![("sig-1".into(), new.sig.1.clone())],
        vec![("enc-1".into(), new.enc.0.clone())],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys");
    assert_eq!(
        transfer(&seal_keys(&old, 1), &open, &epoch),
        Err(CryptoError::BadSignature)
    );
    // With the right verifying key but the wrong decryption key.
    let open = GmOpenKeys::new(
        vec![("sig-1".into(), old.sig.1.clone())],
        vec![("enc-1".into(), new.enc.0.clone())],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys");
    assert_eq!(
        transfer(&seal_keys(&old, 1), &open, &epoch),
        Err(CryptoError::Agreement)
    );
    // A signer with another distinguishing ID does not verify.
    let other_id = GmSealKeys::new(
        "sig-1".into(),
        &old.sig.0,
        "enc-1".into(),
        &old.enc.1,
        b"ferry-ingress-01",
    )
    .expect("seal keys");
    let open = GmOpenKeys::new(
        vec![("sig-1".into(), old.sig.1.clone())],
        vec![("enc-1".into(), old.enc.0.clone())],
        DEFAULT_DISTINGUISHING_ID,
    )
    .expect("open keys");
    assert_eq!(
        transfer(&other_id, &open, &epoch),
        Err(CryptoError::BadSignature)
    );
}
