//! Private keys at rest: a key-encryption key (KEK) derived from the
//! operator's passphrase with Argon2id, and AES-256-GCM files bound to
//! what they hold.
//!
//! One Argon2id run per key directory (tuned to about a second) unlocks
//! every key in it; each sealed file carries its own random nonce and is
//! authenticated together with its link, key id and purpose, so a file
//! swapped for another or edited by a byte is refused as corrupt. The
//! passphrase comes from a file, an environment variable or a systemd
//! credential, never from the command line (where `ps` would show it).

use crate::{check_private, io, KeyError};
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use zeroize::Zeroizing;

/// Environment variable that may hold the passphrase.
pub const PASSPHRASE_ENV: &str = "FERRY_KEYS_PASSPHRASE";
/// systemd credential name (`LoadCredential=ferry-keys-passphrase:…`).
pub const PASSPHRASE_CREDENTIAL: &str = "ferry-keys-passphrase";
/// Shortest passphrase accepted when a key directory is created.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Argon2id floor (OWASP's minimum profile): 19 MiB, 2 passes.
const FLOOR_MEMORY_KIB: u32 = 19 * 1024;
const FLOOR_ITERATIONS: u32 = 2;
/// Memory used when tuning to a time target.
const TUNED_MEMORY_KIB: u32 = 64 * 1024;
/// Upper bound on passes, so a slow probe cannot produce an absurd setting.
const MAX_ITERATIONS: u32 = 32;
/// Upper bounds accepted when reading a keyring (refuses a file that would
/// make `ferryd` allocate gigabytes or spin for minutes).
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// The value sealed under the KEK to tell a wrong passphrase from a corrupt
/// key file.
const CHECK_PLAINTEXT: &[u8] = b"ferry/v1/kek-check";

/// The operator's passphrase, erased on drop.
pub struct Passphrase(Zeroizing<String>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// Wraps a passphrase (a trailing newline, as `echo` writes, is not
    /// part of it).
    pub fn new(text: &str) -> Result<Self, KeyError> {
        let trimmed = text.strip_suffix('\n').unwrap_or(text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(KeyError::NoPassphrase {
                what: "the passphrase is empty".into(),
            });
        }
        Ok(Self(Zeroizing::new(trimmed.to_owned())))
    }

    /// Reads the passphrase from the first source that is set: `file`
    /// (must be private to this user), the systemd credential
    /// [`PASSPHRASE_CREDENTIAL`] under `$CREDENTIALS_DIRECTORY`, or the
    /// environment variable [`PASSPHRASE_ENV`].
    pub fn resolve(file: Option<&Path>) -> Result<Self, KeyError> {
        if let Some(path) = file {
            return Self::from_file(path);
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = PathBuf::from(dir).join(PASSPHRASE_CREDENTIAL);
            if path.exists() {
                return Self::from_file(&path);
            }
        }
        if let Ok(text) = std::env::var(PASSPHRASE_ENV) {
            return Self::new(&Zeroizing::new(text));
        }
        Err(KeyError::NoPassphrase {
            what: format!(
                "no passphrase given: pass --passphrase-file FILE (mode 0600), set {PASSPHRASE_ENV}, \
                 or load the systemd credential `{PASSPHRASE_CREDENTIAL}`"
            ),
        })
    }

    fn from_file(path: &Path) -> Result<Self, KeyError> {
        check_private(path)?;
        let text = Zeroizing::new(
            ferry_regular_file::read_regular_string(path, crate::KEY_FILE_MAX_BYTES)
                .map_err(io(path))?,
        );
        Self::new(&text).map_err(|_| KeyError::NoPassphrase {
            what: format!("{}: the passphrase file is empty", path.display()),
        })
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in characters (checked when a directory is created).
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

/// Argon2id parameters and the KEK check value, stored in the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Hex salt (16 random bytes).
    pub salt: String,
    /// Hex nonce ‖ AES-256-GCM of a constant under the KEK.
    pub check: String,
    /// Milliseconds one derivation took on the machine that made it.
    pub measured_ms: u64,
}

/// The key-encryption key, erased on drop. Boxed so its page can be
/// locked and kept out of core dumps for as long as it lives.
pub struct Kek(Box<Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// Derives a fresh KEK for a new directory, tuning Argon2id so one
    /// derivation takes about `target_ms` (never below the floor profile).
    pub fn create(passphrase: &Passphrase, target_ms: u64) -> Result<(Kek, KdfParams), KeyError> {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| KeyError::Random)?;
        let (mut memory_kib, mut iterations) = (FLOOR_MEMORY_KIB, FLOOR_ITERATIONS);
        let mut took = time_derive(passphrase, &salt, memory_kib, iterations)?;
        if target_ms > took.1 {
            memory_kib = TUNED_MEMORY_KIB;
            let probe = time_derive(passphrase, &salt, memory_kib, 1)?;
            let per_pass = probe.1.max(1);
            iterations = (target_ms / per_pass).clamp(1, u64::from(MAX_ITERATIONS)) as u32;
            took = time_derive(passphrase, &salt, memory_kib, iterations)?;
        }
        let kek = took.0;
        let check = kek.seal(CHECK_PLAINTEXT, b"check")?;
        Ok((
            kek,
            KdfParams {
                algorithm: "argon2id".into(),
                memory_kib,
                iterations,
                parallelism: 1,
                salt: hex::encode(salt),
                check: hex::encode(check),
                measured_ms: took.1,
            },
        ))
    }

    /// Re-derives the KEK of an existing directory and checks it.
    pub fn unlock(
        passphrase: &Passphrase,
        params: &KdfParams,
        keyring: &Path,
    ) -> Result<Kek, KeyError> {
        let corrupt = |what: &str| KeyError::Corrupt {
            path: keyring.to_path_buf(),
            what: what.to_owned(),
        };
        if params.algorithm != "argon2id" {
            return Err(corrupt("unknown KDF (only argon2id is supported)"));
        }
        if params.memory_kib > MAX_MEMORY_KIB
            || params.iterations > MAX_ITERATIONS
            || params.parallelism == 0
            || params.parallelism > 16
        {
            return Err(corrupt("KDF parameters out of the accepted range"));
        }
        let salt = hex::decode(&params.salt).map_err(|_| corrupt("KDF salt is not hex"))?;
        let kek = derive(passphrase, &salt, params.memory_kib, params.iterations)
            .map_err(|_| corrupt("KDF parameters rejected by argon2"))?;
        let check = hex::decode(&params.check).map_err(|_| corrupt("KDF check is not hex"))?;
        match kek.open(&check, b"check") {
            Some(v) if v.as_slice() == CHECK_PLAINTEXT => Ok(kek),
            _ => Err(KeyError::WrongPassphrase {
                path: keyring.to_path_buf(),
            }),
        }
    }

    /// nonce ‖ AES-256-GCM(plaintext) with `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Random)?;
        let key = self.aead_key()?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| KeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`Kek::seal`] made; `None` on any mismatch (the caller
    /// knows which file it was and says so). The plaintext's pages are
    /// locked and kept out of core dumps.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, body) = sealed.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let key = self.aead_key().ok()?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = key
            .open_in_place(nonce, aead::Aad::from(aad), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        ferry_hardening::memory::protect(&buf);
        Some(buf)
    }

    fn aead_key(&self) -> Result<aead::LessSafeKey, KeyError> {
        aead::UnboundKey::new(&aead::AES_256_GCM, self.0.as_slice())
            .map(aead::LessSafeKey::new)
            .map_err(|_| KeyError::Random)
    }
}

fn time_derive(
    passphrase: &Passphrase,
    salt: &[u8],
    memory_kib: u32,
    iterations: u32,
) -> Result<(Kek, u64), KeyError> {
    let start = Instant::now();
    let kek = derive(passphrase, salt, memory_kib, iterations)?;
    Ok((kek, start.elapsed().as_millis() as u64))
}

fn derive(
    passphrase: &Passphrase,
    salt: &[u8],
    memory_kib: u32,
    iterations: u32,
) -> Result<Kek, KeyError> {
    let params = argon2::Params::new(memory_kib, iterations, 1, Some(32))
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Box::new(Zeroizing::new([0u8; 32]));
    ferry_hardening::memory::protect(out.as_slice());
    argon
        .hash_password_into(passphrase.bytes(), salt, out.as_mut_slice())
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    Ok(Kek(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_passphrase_is_told_apart() {
        let p = Passphrase::new("correct horse battery").expect("passphrase");
        let (kek, params) = Kek::create(&p, 0).expect("create");
        let path = Path::new("keyring.toml");
        assert!(Kek::unlock(&p, &params, path).is_ok());
        let wrong = Passphrase::new("correct horse battery!").expect("passphrase");
        assert!(matches!(
            Kek::unlock(&wrong, &params, path),
            Err(KeyError::WrongPassphrase { .. })
        ));
        let sealed = kek.seal(b"secret", b"aad").expect("seal");
        assert_eq!(
            kek.open(&sealed, b"aad").expect("open").as_slice(),
            b"secret"
        );
        assert!(kek.open(&sealed, b"other").is_none());
        let mut flipped = sealed.clone();
        flipped[14] ^= 1;
        assert!(kek.open(&flipped, b"aad").is_none());
        assert!(kek.open(&sealed[..20], b"aad").is_none());
    }

    #[test]
    fn floor_profile_and_tuning() {
        let p = Passphrase::new("correct horse battery").expect("passphrase");
        let (_, floor) = Kek::create(&p, 0).expect("create");
        assert_eq!((floor.memory_kib, floor.iterations), (FLOOR_MEMORY_KIB, 2));
        let (_, tuned) = Kek::create(&p, 300).expect("create");
        assert_eq!(tuned.memory_kib, TUNED_MEMORY_KIB);
        assert!(tuned.iterations >= 1);
    }

    #[test]
    fn passphrase_sources() {
        assert!(Passphrase::new("\n").is_err());
        assert_eq!(Passphrase::new("abc\n").expect("p").chars(), 3);
        let t = tempfile::tempdir().expect("tempdir");
        let f = t.path().join("pass");
        crate::write_atomic(&f, b"from a file\n", 0o644).expect("write");
        let e = Passphrase::resolve(Some(&f)).expect_err("loose file");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        crate::write_atomic(&f, b"from a file\n", 0o600).expect("write");
        assert_eq!(Passphrase::resolve(Some(&f)).expect("file").chars(), 11);
        assert!(format!("{:?}", Passphrase::new("hidden").expect("p")) == "Passphrase(<redacted>)");
    }
}
