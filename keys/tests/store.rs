//! The key store on real files: pairing, passphrases, bundles, rotation
//! overlap and retirement, for both suites.

use ferry_keys::store::KeyState;
use ferry_keys::{
    files, import_peer, init, list, load, retire, rotate, InitOptions, KeyError, Passphrase,
    Purpose, RotateOptions, Side, Suite,
};
use ferry_protocol::suite::{CryptoError, OpenKeys, SealKeys, Secret32};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PASS: &str = "a long enough test passphrase";

fn pass() -> Passphrase {
    Passphrase::new(PASS).expect("passphrase")
}

fn opts(side: Side, suite: Suite) -> InitOptions {
    InitOptions {
        link: "l1".into(),
        side,
        suite,
        validity_days: 365,
        kdf_target_ms: 0,
    }
}

struct Pair {
    _t: tempfile::TempDir,
    ingress: PathBuf,
    egress: PathBuf,
}

fn pair(suite: Suite) -> Pair {
    let t = tempfile::tempdir().expect("tempdir");
    let ingress = t.path().join("in");
    let egress = t.path().join("out");
    init(&ingress, &opts(Side::Ingress, suite), &pass()).expect("init ingress");
    init(&egress, &opts(Side::Egress, suite), &pass()).expect("init egress");
    import_peer(&ingress, &egress.join(files::PUBLIC), false).expect("import on ingress");
    import_peer(&egress, &ingress.join(files::PUBLIC), false).expect("import on egress");
    Pair {
        _t: t,
        ingress,
        egress,
    }
}

/// A sealed one-chunk package: (signing key id, recipient key id,
/// signature of "manifest", ephemeral, ciphertext).
struct Sealed {
    signer: String,
    recipient: String,
    sig: Vec<u8>,
    eph: Vec<u8>,
    chunk: Vec<u8>,
}

const EPOCH: Secret32 = Secret32([9; 32]);

fn seal(keys: &dyn SealKeys) -> Sealed {
    let (cipher, eph) = keys.new_package(&EPOCH, b"ctx").expect("new package");
    let mut chunk = b"package payload".to_vec();
    cipher.seal_chunk(0, true, &mut chunk).expect("seal");
    Sealed {
        signer: keys.signing_key_id().to_owned(),
        recipient: keys.recipient_key_id().to_owned(),
        sig: keys.sign(b"manifest").expect("sign"),
        eph,
        chunk,
    }
}

fn open(keys: &dyn OpenKeys, s: &Sealed) -> Result<(), CryptoError> {
    keys.verify(&s.signer, b"manifest", &s.sig)?;
    let cipher = keys.open_package(&s.recipient, &EPOCH, &s.eph, b"ctx")?;
    let mut buf = s.chunk.clone();
    cipher.open_chunk(0, true, &mut buf)?;
    assert_eq!(buf, b"package payload");
    Ok(())
}

fn seal_with(dir: &Path) -> Sealed {
    let mut k = load(dir, &pass()).expect("load ingress");
    seal(k.take_seal_keys().expect("seal keys").as_ref())
}

fn open_with(dir: &Path, s: &Sealed) -> Result<(), CryptoError> {
    let mut k = load(dir, &pass()).expect("load egress");
    open(k.take_open_keys().expect("open keys").as_ref(), s)
}

fn both_suites(f: impl Fn(Suite)) {
    f(Suite::Intl);
    f(Suite::Gm);
}

#[test]
fn pairing_derives_one_epoch_and_erases_pairing_keys() {
    both_suites(|suite| {
        let p = pair(suite);
        let a = load(&p.ingress, &pass()).expect("load ingress");
        let b = load(&p.egress, &pass()).expect("load egress");
        assert_eq!(a.epoch.1, b.epoch.1, "{suite:?}");
        for dir in [&p.ingress, &p.egress] {
            let keys = list(dir).expect("list");
            let pairing = keys
                .iter()
                .find(|k| k.owner == "own" && k.purpose == "pairing")
                .expect("pairing listed");
            assert_eq!(pairing.state, "erased");
            let id = &pairing.id;
            assert!(!dir.join(files::PRIVATE).join(format!("{id}.key")).exists());
        }
        // The second start reads the sealed epoch state.
        assert_eq!(
            load(&p.ingress, &pass()).expect("reload").epoch.1,
            a.epoch.1
        );
        open_with(&p.egress, &seal_with(&p.ingress)).expect("opens");
    });
}

#[test]
fn wrong_passphrase_and_weak_passphrase() {
    let p = pair(Suite::Intl);
    let before = fs::read(p.ingress.join(files::KEYRING)).expect("read");
    let wrong = Passphrase::new("not the passphrase at all").expect("p");
    let e = load(&p.ingress, &wrong).expect_err("wrong passphrase");
    assert!(matches!(e, KeyError::WrongPassphrase { .. }), "{e}");
    assert!(e.to_string().contains("keyring.toml"), "{e}");
    assert_eq!(
        fs::read(p.ingress.join(files::KEYRING)).expect("read"),
        before
    );
    let t = tempfile::tempdir().expect("tempdir");
    let e = init(
        &t.path().join("k"),
        &opts(Side::Ingress, Suite::Intl),
        &Passphrase::new("short").expect("p"),
    )
    .expect_err("weak");
    assert!(matches!(e, KeyError::WeakPassphrase { .. }), "{e}");
    assert!(!t.path().join("k").join(files::KEYRING).exists());
}

#[test]
fn private_files_are_sealed_and_checked() {
    let p = pair(Suite::Intl);
    let sig = list(&p.ingress)
        .expect("list")
        .into_iter()
        .find(|k| k.owner == "own" && k.purpose == "signing")
        .expect("signing key");
    let path = p
        .ingress
        .join(files::PRIVATE)
        .join(format!("{}.key", sig.id));
    let text = fs::read_to_string(&path).expect("read");
    // Loose permissions are refused with the fix.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    let e = load(&p.ingress, &pass()).expect_err("loose");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    // One flipped hex digit in the sealed key: named as corrupt.
    let at = text.find("sealed = \"").expect("sealed") + 20;
    let mut bytes = text.clone().into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    fs::write(&path, &bytes).expect("write");
    let e = load(&p.ingress, &pass()).expect_err("corrupt");
    assert!(matches!(e, KeyError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains(&sig.id), "{e}");
    // Another key's file in its place (right passphrase, wrong binding).
    let other = fs::read_dir(p.ingress.join(files::PRIVATE))
        .expect("dir")
        .filter_map(Result::ok)
        .find(|e| e.path() != path)
        .map(|e| e.path());
    if let Some(other) = other {
        fs::copy(&other, &path).expect("copy");
        let e = load(&p.ingress, &pass()).expect_err("swapped");
        assert!(e.to_string().contains("swapped"), "{e}");
    }
    fs::write(&path, text).expect("restore");
    load(&p.ingress, &pass()).expect("loads again");
}

#[test]
fn bundles_are_verified_on_import() {
    let p = pair(Suite::Intl);
    let bundle = fs::read_to_string(p.egress.join(files::PUBLIC)).expect("read");
    let t = tempfile::tempdir().expect("tempdir");
    let f = t.path().join("b.toml");
    // Truncated.
    fs::write(&f, &bundle[..bundle.len() / 2]).expect("write");
    let e = import_peer(&p.ingress, &f, false).expect_err("truncated");
    assert!(e.to_string().contains("b.toml"), "{e}");
    // A validity date changed after signing.
    let edited = bundle.replacen("not_after = ", "not_after = 9", 1);
    fs::write(&f, edited).expect("write");
    let e = import_peer(&p.ingress, &f, false).expect_err("edited");
    assert!(e.to_string().contains("does not verify"), "{e}");
    // Signatures stripped.
    let unsigned: String = bundle
        .split("[[signature]]")
        .next()
        .expect("head")
        .to_owned();
    fs::write(&f, unsigned).expect("write");
    let e = import_peer(&p.ingress, &f, false).expect_err("unsigned");
    assert!(e.to_string().contains("no self-signature"), "{e}");
    // Wrong side, wrong suite.
    let e = import_peer(&p.ingress, &p.ingress.join(files::PUBLIC), false).expect_err("side");
    assert!(e.to_string().contains("so is this side"), "{e}");
    let gm = t.path().join("gm");
    init(&gm, &opts(Side::Egress, Suite::Gm), &pass()).expect("init gm");
    let e = import_peer(&p.ingress, &gm.join(files::PUBLIC), false).expect_err("suite");
    assert!(e.to_string().contains("suite `gm`"), "{e}");
    // A stranger's bundle for the same link is refused without
    // --new-identity, and refused even with it once paired.
    let stranger = t.path().join("stranger");
    init(&stranger, &opts(Side::Egress, Suite::Intl), &pass()).expect("init");
    let e = import_peer(&p.ingress, &stranger.join(files::PUBLIC), false).expect_err("stranger");
    assert!(e.to_string().contains("--new-identity"), "{e}");
    load(&p.ingress, &pass()).expect("pairs");
    let e = import_peer(&p.ingress, &stranger.join(files::PUBLIC), true).expect_err("paired");
    assert!(e.to_string().contains("re-initialised"), "{e}");
}

#[test]
fn agreement_key_rotation_overlaps_then_retirement_refuses() {
    both_suites(|suite| {
        let p = pair(suite);
        let old_pkg = seal_with(&p.ingress);
        let (new_id, _) = rotate(&p.egress, &RotateOptions::default(), &pass()).expect("rotate");
        // The ingress side has not imported yet: it still seals to the old
        // key, and the egress side still opens that.
        let before_import = seal_with(&p.ingress);
        assert_ne!(before_import.recipient, new_id);
        open_with(&p.egress, &before_import).expect("old key opens during overlap");
        let report = import_peer(&p.ingress, &p.egress.join(files::PUBLIC), false).expect("import");
        assert!(
            report.continuity.is_some(),
            "continuity by the egress signing key"
        );
        assert_eq!(report.added, vec![new_id.clone()]);
        let new_pkg = seal_with(&p.ingress);
        assert_eq!(new_pkg.recipient, new_id);
        open_with(&p.egress, &new_pkg).expect("new key opens");
        open_with(&p.egress, &old_pkg).expect("old package still opens");
        // Retire the old key: packages sealed to it are refused by name.
        retire(&p.egress, &old_pkg.recipient, &pass()).expect("retire");
        match open_with(&p.egress, &old_pkg) {
            Err(CryptoError::UnknownKey(id)) => assert_eq!(id, old_pkg.recipient),
            other => panic!("{suite:?}: expected UnknownKey, got {other:?}"),
        }
        open_with(&p.egress, &new_pkg).expect("new key still opens");
        let report = import_peer(&p.ingress, &p.egress.join(files::PUBLIC), false).expect("import");
        assert_eq!(report.retired, vec![old_pkg.recipient.clone()]);
    });
}

#[test]
fn signing_key_rotation_and_retirement() {
    let p = pair(Suite::Intl);
    let old_pkg = seal_with(&p.ingress);
    let (new_id, _) = rotate(&p.ingress, &RotateOptions::default(), &pass()).expect("rotate");
    let new_pkg = seal_with(&p.ingress);
    assert_eq!(new_pkg.signer, new_id);
    // Not imported yet: the egress side does not know the new key.
    assert!(matches!(
        open_with(&p.egress, &new_pkg),
        Err(CryptoError::UnknownKey(id)) if id == new_id
    ));
    let report = import_peer(&p.egress, &p.ingress.join(files::PUBLIC), false).expect("import");
    assert_eq!(report.continuity.as_deref(), Some(old_pkg.signer.as_str()));
    open_with(&p.egress, &new_pkg).expect("new signer accepted");
    open_with(&p.egress, &old_pkg).expect("old signer accepted during overlap");
    // The key in use cannot be retired; the superseded one can.
    let e = retire(&p.ingress, &new_id, &pass()).expect_err("in use");
    assert!(e.to_string().contains("rotate"), "{e}");
    retire(&p.ingress, &old_pkg.signer, &pass()).expect("retire old");
    import_peer(&p.egress, &p.ingress.join(files::PUBLIC), false).expect("import");
    assert!(matches!(
        open_with(&p.egress, &old_pkg),
        Err(CryptoError::UnknownKey(id)) if id == old_pkg.signer
    ));
    // An older bundle (from before the retirement) cannot be re-imported.
    let listed = list(&p.egress).expect("list");
    assert!(listed
        .iter()
        .any(|k| k.owner == "peer" && k.id == old_pkg.signer && k.state == "retired"));
}

#[test]
fn delayed_activation_and_expiry() {
    let p = pair(Suite::Intl);
    let soon = ferry_keys::now_secs() + 3600;
    let (pending, _) = rotate(
        &p.ingress,
        &RotateOptions {
            activate_at: Some(soon),
            ..RotateOptions::default()
        },
        &pass(),
    )
    .expect("rotate");
    let keys = list(&p.ingress).expect("list");
    let state = |id: &str| {
        keys.iter()
            .find(|k| k.id == id)
            .map(|k| k.state.clone())
            .expect("listed")
    };
    assert_eq!(state(&pending), "pending");
    let pkg = seal_with(&p.ingress);
    assert_ne!(pkg.signer, pending, "the pending key is not used yet");
    assert_eq!(state(&pkg.signer), "in use");

    // A directory whose keys are already expired is refused with the fix.
    let t = tempfile::tempdir().expect("tempdir");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let mut o = opts(Side::Ingress, Suite::Intl);
    o.validity_days = 0;
    init(&a, &o, &pass()).expect("init");
    init(&b, &opts(Side::Egress, Suite::Intl), &pass()).expect("init");
    import_peer(&a, &b.join(files::PUBLIC), false).expect("import");
    let e = load(&a, &pass()).expect_err("expired");
    assert!(matches!(e, KeyError::NoValidKey { .. }), "{e}");
    assert!(e.to_string().contains("keys rotate"), "{e}");
    let l = list(&a).expect("list");
    assert!(l
        .iter()
        .any(|k| k.purpose == "signing" && k.state == "expired" && k.warning));
}

#[test]
fn retired_keys_cannot_come_back_and_secrets_stay_out_of_debug() {
    let p = pair(Suite::Intl);
    let t = tempfile::tempdir().expect("tempdir");
    let old_bundle = t.path().join("old.toml");
    fs::copy(p.ingress.join(files::PUBLIC), &old_bundle).expect("copy");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let old = seal_with(&p.ingress).signer;
    rotate(&p.ingress, &RotateOptions::default(), &pass()).expect("rotate");
    import_peer(&p.egress, &p.ingress.join(files::PUBLIC), false).expect("import rotated");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    retire(&p.ingress, &old, &pass()).expect("retire");
    import_peer(&p.egress, &p.ingress.join(files::PUBLIC), false).expect("import");
    let e = import_peer(&p.egress, &old_bundle, false).expect_err("older");
    assert!(e.to_string().contains("older"), "{e}");
    let k = load(&p.ingress, &pass()).expect("load");
    let dbg = format!("{k:?}");
    assert!(!dbg.contains(&hex::encode(k.epoch.1 .0)), "{dbg}");
    let ring = fs::read_to_string(p.ingress.join(files::KEYRING)).expect("read");
    assert!(!ring.contains(&hex::encode(k.epoch.1 .0)));
    assert!(ring.contains(&format!("{:?}", KeyState::Retired).to_lowercase()));
    let _ = Purpose::Signing;
}

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        RotateSigning,
        RotateAgreement,
        /// Carry the ingress bundle to the egress side.
        CarryToEgress,
        /// Carry the egress bundle to the ingress side.
        CarryToIngress,
        RetireOldSigning,
        RetireOldAgreement,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::RotateSigning),
            Just(Op::RotateAgreement),
            Just(Op::CarryToEgress),
            Just(Op::CarryToIngress),
            Just(Op::RetireOldSigning),
            Just(Op::RetireOldAgreement),
        ]
    }

    fn own_keys(dir: &Path, purpose: &str) -> Vec<(String, String)> {
        list(dir)
            .expect("list")
            .into_iter()
            .filter(|k| k.owner == "own" && k.purpose == purpose)
            .map(|k| (k.id, k.state))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

        /// Whatever the order of rotations, bundle carries and retirements
        /// the operators perform (following the documented rule: carry a
        /// bundle before retiring the key it replaces), a package sealed now
        /// opens on the other side once both sides hold each other's current
        /// bundle, and every package sealed under a key that was later
        /// retired is refused by name.
        #[test]
        fn any_rotation_history_keeps_the_link_working(ops in proptest::collection::vec(op(), 1..10)) {
            let p = pair(Suite::Intl);
            let mut sealed: Vec<Sealed> = vec![seal_with(&p.ingress)];
            let mut carried_egress = true;
            let mut carried_ingress = true;
            for op in ops {
                match op {
                    Op::RotateSigning => {
                        rotate(&p.ingress, &RotateOptions::default(), &pass()).expect("rotate");
                        carried_egress = false;
                    }
                    Op::RotateAgreement => {
                        rotate(&p.egress, &RotateOptions::default(), &pass()).expect("rotate");
                        carried_ingress = false;
                    }
                    Op::CarryToEgress => {
                        import_peer(&p.egress, &p.ingress.join(files::PUBLIC), false).expect("import");
                        carried_egress = true;
                    }
                    Op::CarryToIngress => {
                        import_peer(&p.ingress, &p.egress.join(files::PUBLIC), false).expect("import");
                        carried_ingress = true;
                    }
                    Op::RetireOldSigning | Op::RetireOldAgreement => {
                        let (dir, purpose, carried) = if matches!(op, Op::RetireOldSigning) {
                            (&p.ingress, "signing", carried_egress)
                        } else {
                            (&p.egress, "agreement", carried_ingress)
                        };
                        // The documented order: the rotation's bundle reaches
                        // the other side before the old key is retired.
                        if !carried {
                            continue;
                        }
                        if let Some((id, _)) = own_keys(dir, purpose).into_iter().find(|(_, s)| s == "superseded") {
                            retire(dir, &id, &pass()).expect("retire superseded key");
                            if matches!(op, Op::RetireOldSigning) { carried_egress = false } else { carried_ingress = false }
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            import_peer(&p.egress, &p.ingress.join(files::PUBLIC), false).expect("final import");
            import_peer(&p.ingress, &p.egress.join(files::PUBLIC), false).expect("final import");
            sealed.push(seal_with(&p.ingress));
            let retired: Vec<String> = list(&p.egress)
                .expect("list")
                .into_iter()
                .chain(list(&p.ingress).expect("list"))
                .filter(|k| k.state == "retired")
                .map(|k| k.id)
                .collect();
            for s in &sealed {
                let result = open_with(&p.egress, s);
                if retired.contains(&s.signer) {
                    prop_assert_eq!(result, Err(CryptoError::UnknownKey(s.signer.clone())));
                } else if retired.contains(&s.recipient) {
                    prop_assert_eq!(result, Err(CryptoError::UnknownKey(s.recipient.clone())));
                } else {
                    prop_assert_eq!(result, Ok(()));
                }
            }
        }
    }
}
