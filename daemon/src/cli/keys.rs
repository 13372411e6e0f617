//! `ferryctl keys …`: the key store from the command line.
//!
//! The passphrase never comes from an argument (where `ps` and shell
//! history would keep it): `--passphrase-file`, the systemd credential or
//! `FERRY_KEYS_PASSPHRASE`, as [`ferry_keys::Passphrase::resolve`] says.

use anyhow::Context;
use clap::Subcommand;
use ferry_keys::{Passphrase, Purpose, Side, Suite};
use std::path::{Path, PathBuf};

/// `ferryctl keys` subcommands.
#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create a new key set for one side of a link.
    Init {
        /// Key directory (created, mode 0700).
        #[arg(long)]
        dir: PathBuf,
        /// Link name (both sides must use the same).
        #[arg(long)]
        link: String,
        /// Which side this is.
        #[arg(long, value_parser = ["ingress", "egress"])]
        side: String,
        /// Crypto suite (both sides must use the same).
        #[arg(long, default_value = "intl", value_parser = ["intl", "gm"])]
        suite: String,
        /// Validity of the first keys, in days.
        #[arg(long, default_value_t = ferry_keys::store::DEFAULT_VALIDITY_DAYS)]
        validity_days: u64,
        /// Argon2id time target in milliseconds for unlocking the keys.
        #[arg(long, default_value_t = 1000)]
        kdf_target_ms: u64,
        /// File holding the passphrase (mode 0600).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// List this side's and the peer's keys: ids, suites, fingerprints,
    /// validity, state.
    List {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a new key that takes over from the current one; the old key
    /// stays for opening and verifying until retired.
    Rotate {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
        /// Which key (default: signing on ingress, agreement on egress).
        #[arg(long, value_parser = ["signing", "agreement"])]
        purpose: Option<String>,
        /// Hours from now until the new key takes over (give the other side
        /// time to import the new bundle).
        #[arg(long, default_value_t = 0)]
        activate_in_hours: u64,
        /// Validity of the new key, in days.
        #[arg(long, default_value_t = ferry_keys::store::DEFAULT_VALIDITY_DAYS)]
        validity_days: u64,
        /// File holding the passphrase (mode 0600).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Erase a superseded key; once the other side imports the new bundle
    /// it refuses packages under that key.
    Retire {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
        /// Key id (from `keys list`).
        id: String,
        /// File holding the passphrase (mode 0600).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Write this side's signed public bundle, to carry to the other side.
    ExportPublic {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
        /// Output file (default: print to stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import the other side's public bundle (carried out of band).
    ImportPeer {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
        /// The other side's bundle.
        file: PathBuf,
        /// Accept a bundle that no already-trusted key signed (the other
        /// side was re-installed); check its fingerprint first.
        #[arg(long)]
        new_identity: bool,
    },
    /// Show this side's public bundle and fingerprint.
    Show {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Security administrator: the content guard's pseudonym key (rotate,
    /// list, retire).
    Pseudonym {
        #[command(subcommand)]
        cmd: PseudonymCmd,
    },
}

/// `ferryctl keys pseudonym` subcommands. The key never leaves its file:
/// no command prints it.
#[derive(Subcommand)]
pub enum PseudonymCmd {
    /// Start a new key epoch: a new random key, `pseudonym-N.key` (0600).
    /// Every value gets a new pseudonym under it, so tables released under
    /// different epochs do not join.
    Rotate {
        /// Pseudonym key directory (created, mode 0700).
        #[arg(long)]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the epochs held: epoch, creation time, which one is current.
    List {
        /// Pseudonym key directory.
        #[arg(long)]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Erase the keys of every epoch below EPOCH (never the current one).
    /// Pseudonyms made under them can no longer be made again.
    Retire {
        /// Pseudonym key directory.
        #[arg(long)]
        dir: PathBuf,
        /// Retire the epochs below this one.
        #[arg(long, value_name = "EPOCH")]
        before: u32,
    },
}

/// Runs one `keys` subcommand.
pub fn run(cmd: KeysCmd) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        KeysCmd::Init {
            dir,
            link,
            side,
            suite,
            validity_days,
            kdf_target_ms,
            passphrase_file,
        } => {
            let side = if side == "ingress" {
                Side::Ingress
            } else {
                Side::Egress
            };
            let suite: Suite = suite.parse().map_err(anyhow::Error::msg)?;
            let passphrase = Passphrase::resolve(passphrase_file.as_deref())?;
            let opts = ferry_keys::InitOptions {
                link: link.clone(),
                side,
                suite,
                validity_days,
                kdf_target_ms,
            };
            let b = ferry_keys::init(&dir, &opts, &passphrase)?;
            println!(
                "created {} keys ({} suite) for link `{link}` in {}",
                side.name(),
                suite.name(),
                dir.display()
            );
            print_keys(&dir, false)?;
            println!("bundle fingerprint: {}", b.fingerprint());
            println!(
                "carry {} to the other side and run `ferryctl keys import-peer` there; read the fingerprint to its operator",
                dir.join(ferry_keys::files::PUBLIC).display()
            );
        }
        KeysCmd::List { dir, json } => print_keys(&dir, json)?,
        KeysCmd::Rotate {
            dir,
            purpose,
            activate_in_hours,
            validity_days,
            passphrase_file,
        } => {
            let passphrase = Passphrase::resolve(passphrase_file.as_deref())?;
            let purpose = purpose.map(|p| {
                if p == "signing" {
                    Purpose::Signing
                } else {
                    Purpose::Agreement
                }
            });
            let activate_at = ferry_keys::now_secs() + activate_in_hours * 3600;
            let opts = ferry_keys::RotateOptions {
                purpose,
                activate_at: Some(activate_at),
                validity_days,
            };
            let (id, b) = ferry_keys::rotate(&dir, &opts, &passphrase)?;
            println!(
                "new key {id} takes over at {}",
                ferry_keys::utc(activate_at)
            );
            println!("bundle fingerprint: {}", b.fingerprint());
            println!(
                "next: carry {} to the other side and import it there before the new key takes over; \
                 retire the old key with `ferryctl keys retire` once no package under it is in flight",
                dir.join(ferry_keys::files::PUBLIC).display()
            );
        }
        KeysCmd::Retire {
            dir,
            id,
            passphrase_file,
        } => {
            let passphrase = Passphrase::resolve(passphrase_file.as_deref())?;
            let b = ferry_keys::retire(&dir, &id, &passphrase)?;
            println!("retired {id}; its private key is erased");
            println!("bundle fingerprint: {}", b.fingerprint());
            println!(
                "next: carry {} to the other side and import it there",
                dir.join(ferry_keys::files::PUBLIC).display()
            );
        }
        KeysCmd::ExportPublic { dir, out } => match out {
            Some(out) => {
                let b = ferry_keys::export_public(&dir, &out)?;
                println!("wrote {}", out.display());
                println!("bundle fingerprint: {}", b.fingerprint());
            }
            None => {
                let path = dir.join(ferry_keys::files::PUBLIC);
                ferry_keys::read_bundle(&path)?;
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                print!("{text}");
            }
        },
        KeysCmd::ImportPeer {
            dir,
            file,
            new_identity,
        } => {
            let r = ferry_keys::import_peer(&dir, &file, new_identity)?;
            println!(
                "imported the {} side's bundle for link `{}` ({} suite)",
                r.bundle.side.name(),
                r.bundle.link,
                r.bundle.suite.name()
            );
            println!("bundle fingerprint: {}", r.bundle.fingerprint());
            match &r.continuity {
                Some(k) => println!("continuity: signed by {k}, a key already trusted"),
                None => println!(
                    "first import: compare the fingerprint with the other side's operator before starting ferryd"
                ),
            }
            for id in &r.added {
                if let Some(k) = r.bundle.keys.iter().find(|k| &k.id == id) {
                    println!(
                        "  new key {id} ({}) fingerprint {}",
                        k.purpose.name(),
                        k.fingerprint()
                    );
                }
            }
            for id in &r.retired {
                println!("  retired key {id}: packages under it are now refused");
            }
            println!("restart ferryd (or let it reload) to use the new keys");
        }
        KeysCmd::Show { dir } => {
            let b = ferry_keys::read_bundle(&dir.join(ferry_keys::files::PUBLIC))?;
            println!("link:        {}", b.link);
            println!("side:        {}", b.side.name());
            println!("suite:       {}", b.suite.name());
            println!("fingerprint: {}", b.fingerprint());
            print_keys(&dir, false)?;
        }
        KeysCmd::Pseudonym { cmd } => run_pseudonym(cmd)?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn run_pseudonym(cmd: PseudonymCmd) -> anyhow::Result<()> {
    use ferry_keys::pseudonym;
    match cmd {
        PseudonymCmd::Rotate { dir, json } => {
            let epoch = pseudonym::rotate(&dir)?;
            let file = dir.join(format!("pseudonym-{epoch}.key"));
            if json {
                let out = serde_json::json!({
                    "epoch": epoch,
                    "file": file.display().to_string(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            println!("new pseudonym key epoch {epoch} in {}", file.display());
            println!(
                "every value gets a new pseudonym under epoch {epoch}: tables released from now on do not join with tables released under earlier epochs"
            );
            println!(
                "next: retire old epochs with `ferryctl keys pseudonym retire` once their pseudonyms need never be made again"
            );
            // ferryd reads `[policy] pseudonym_keys` at start and at every
            // policy reload.
            println!(
                "next: `ferryctl policy reload --config FILE` (or a restart) makes ferryd use epoch {epoch}"
            );
        }
        PseudonymCmd::List { dir, json } => {
            let keys = pseudonym::list(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            if keys.is_empty() {
                println!(
                    "no pseudonym key in {}; create one with `ferryctl keys pseudonym rotate --dir {}`",
                    dir.display(),
                    dir.display()
                );
                return Ok(());
            }
            println!("{:<6} {:<20} STATE", "EPOCH", "CREATED");
            for k in keys {
                println!(
                    "{:<6} {:<20} {}",
                    k.epoch,
                    k.created,
                    if k.current { "current" } else { "held" }
                );
            }
        }
        PseudonymCmd::Retire { dir, before } => {
            let removed = pseudonym::retire(&dir, before)?;
            if removed.is_empty() {
                println!(
                    "no epoch below {before} to retire in {} (the current epoch is never retired)",
                    dir.display()
                );
                return Ok(());
            }
            let list: Vec<String> = removed.iter().map(u32::to_string).collect();
            println!(
                "retired epoch{} {}; their key files are overwritten and deleted",
                if removed.len() == 1 { "" } else { "s" },
                list.join(", ")
            );
            println!(
                "pseudonyms made under {} can no longer be made again",
                if removed.len() == 1 { "it" } else { "them" }
            );
        }
    }
    Ok(())
}

fn print_keys(dir: &Path, json: bool) -> anyhow::Result<()> {
    let keys = ferry_keys::list(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&keys)?);
        return Ok(());
    }
    println!(
        "{:<5} {:<18} {:<5} {:<9} {:<39} {:<20} {:<20} STATE",
        "OWNER", "ID", "SUITE", "PURPOSE", "FINGERPRINT", "NOT BEFORE", "NOT AFTER"
    );
    for k in keys {
        println!(
            "{:<5} {:<18} {:<5} {:<9} {:<39} {:<20} {:<20} {}{}",
            k.owner,
            k.id,
            k.suite,
            k.purpose,
            k.fingerprint,
            k.not_before,
            k.not_after,
            k.state,
            if k.warning {
                format!("  WARNING: expires in {} days", k.expires_in_days)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
