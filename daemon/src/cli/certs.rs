//! `ferryctl certs …`: a site CA and the certificates of ferry's mTLS
//! endpoints (ingest API, admin access), enough to set up a site and the
//! tests without any other tool. The files work with
//! `curl --cert/--key/--cacert` and `openssl s_client`.

use clap::Subcommand;
use ferry_certs::{RevokeReason, RevokeTarget, Role};
use std::net::IpAddr;
use std::path::PathBuf;

/// `ferryctl certs` subcommands.
#[derive(Subcommand)]
pub enum CertsCmd {
    /// Create the site CA: ca.crt, ca.key (0600), an empty signed ca.crl.
    InitCa {
        /// CA directory (created).
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "ferry site CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = ferry_certs::DEFAULT_CA_VALIDITY_DAYS)]
        days: u32,
    },
    /// Issue a server certificate (ingest API, admin endpoint).
    IssueServer {
        /// CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// Output directory for NAME.crt and NAME.key.
        #[arg(long)]
        out: PathBuf,
        /// Certificate name (the subject CN).
        #[arg(long)]
        name: String,
        /// DNS names (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// IP addresses (repeatable).
        #[arg(long = "ip")]
        ip: Vec<IpAddr>,
        /// Validity in days.
        #[arg(long, default_value_t = ferry_certs::DEFAULT_LEAF_VALIDITY_DAYS)]
        days: u32,
    },
    /// Issue a client certificate for a pushing system or an administrator.
    IssueClient {
        /// CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// Output directory for NAME.crt and NAME.key.
        #[arg(long)]
        out: PathBuf,
        /// Identity name (the subject CN).
        #[arg(long)]
        name: String,
        /// Role carried in the certificate (sysadmin, secadmin, auditor,
        /// reviewer, pusher, or a site-defined role).
        #[arg(long)]
        role: Option<String>,
        /// The person the certificate belongs to, carried as the SAN URI
        /// `urn:ferry:person:ID`: give every certificate of one person
        /// (renewals, re-issues, one per device) the same id, e.g. their
        /// host account name. Reviewers are counted by person for the
        /// two-person rule, and a person holds one officer role. Without
        /// it the person is NAME.
        #[arg(long)]
        person: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = ferry_certs::DEFAULT_LEAF_VALIDITY_DAYS)]
        days: u32,
    },
    /// Revoke a certificate (by serial or file) and write a fresh ca.crl.
    Revoke {
        /// CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// Serial (hex) or certificate file.
        target: String,
        /// RFC 5280 reason.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Write a fresh ca.crl (before the current one's next update).
    RenewCrl {
        /// CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// Validity of the CRL in days.
        #[arg(long, default_value_t = ferry_certs::DEFAULT_CRL_VALIDITY_DAYS)]
        days: u32,
    },
    /// List what the CA issued, with revocations.
    List {
        /// CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a certificate or CRL file (PEM).
    Show {
        /// The file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Certificates and CRLs in a directory that expire within N days;
    /// exit 2 if any.
    Expiring {
        /// Directory to scan (*.crt, *.pem, *.crl).
        #[arg(long)]
        dir: PathBuf,
        /// Warning window in days.
        #[arg(long, default_value_t = ferry_certs::DEFAULT_EXPIRY_WARNING_DAYS)]
        days: u32,
    },
}

/// Runs one `certs` subcommand.
pub fn run(cmd: CertsCmd) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        CertsCmd::InitCa { dir, name, days } => {
            let ca = ferry_certs::init_ca(&dir, &name, days)?;
            println!("created CA `{}` in {}", ca.subject, dir.display());
            println!("  certificate {}", ca.cert_path.display());
            println!(
                "  key         {} (0600; keep it offline)",
                ca.key_path.display()
            );
            println!("  CRL         {}", ca.crl_path.display());
            println!("  SHA-256     {}", ca.fingerprint_sha256);
            println!("  valid until {}", ca.not_after);
        }
        CertsCmd::IssueServer {
            ca,
            out,
            name,
            dns,
            ip,
            days,
        } => {
            let issued = ferry_certs::issue_server(&ca, &out, &name, &dns, &ip, days)?;
            print_issued(&issued);
        }
        CertsCmd::IssueClient {
            ca,
            out,
            name,
            role,
            person,
            days,
        } => {
            let role = role.as_deref().map(Role::new).transpose()?;
            let req = ferry_certs::IssueRequest {
                person,
                ..ferry_certs::IssueRequest::client(&name, role, days)?
            };
            let issued = ferry_certs::issue(&ca, &out, &req)?;
            print_issued(&issued);
        }
        CertsCmd::Revoke { ca, target, reason } => {
            let reason: RevokeReason = reason.parse().map_err(anyhow::Error::msg)?;
            let r = ferry_certs::revoke(&ca, &RevokeTarget::from_arg(&target), reason)?;
            println!(
                "revoked serial {} ({}), reason {}",
                r.record.serial,
                r.record.name,
                reason.as_str()
            );
            println!(
                "wrote {} (CRL number {}, {} revoked, next update {}); copy it to every ferry host (ferryd re-reads it within trust_reload_interval_s, no restart)",
                r.crl.path.display(),
                r.crl.number,
                r.crl.revoked_count,
                r.crl.next_update
            );
        }
        CertsCmd::RenewCrl { ca, days } => {
            let c = ferry_certs::renew_crl(&ca, days)?;
            println!(
                "wrote {} (CRL number {}, {} revoked, next update {})",
                c.path.display(),
                c.number,
                c.revoked_count,
                c.next_update
            );
        }
        CertsCmd::List { ca, json } => {
            let records = ferry_certs::list_issued(&ca)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in records {
                    println!(
                        "{} {:?} {} role={} until {}{}",
                        r.serial,
                        r.kind,
                        r.name,
                        r.role.as_deref().unwrap_or("-"),
                        r.not_after,
                        r.revoked.as_ref().map_or(String::new(), |v| format!(
                            " REVOKED ({})",
                            v.reason.as_str()
                        ))
                    );
                }
            }
        }
        CertsCmd::Show { file, json } => {
            let infos = ferry_certs::show(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&infos)?);
            } else {
                for i in infos {
                    println!("{i}");
                }
            }
        }
        CertsCmd::Expiring { dir, days } => {
            let notices =
                ferry_certs::expiring_in_dir(&dir, days, time::OffsetDateTime::now_utc())?;
            for n in &notices {
                println!("{n}");
            }
            if !notices.is_empty() {
                return Ok(std::process::ExitCode::from(2));
            }
            println!("nothing in {} expires within {days} days", dir.display());
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_issued(issued: &ferry_certs::Issued) {
    let id = &issued.identity;
    println!("issued {}", id.subject);
    println!("  certificate {}", issued.cert_path.display());
    println!("  key         {} (0600)", issued.key_path.display());
    println!("  serial      {}", id.serial);
    println!("  SHA-256     {}", id.fingerprint_sha256);
    if let Some(role) = &id.role {
        println!("  role        {role}");
    }
    if let Some(person) = id.person().filter(|_| id.role.is_some()) {
        println!("  person      {person}");
    }
}
