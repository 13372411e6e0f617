//! The compiled policy: immutable, indexed for fast decisions, and free of
//! anything that could still be wrong (every reference resolved, every
//! value range-checked).

use crate::glob::Glob;
use crate::when::{Schedule, Window};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Most sends per package (as the daemon's link configuration).
pub const REDUNDANCY_MAX: u8 = 8;
/// Most distinct reviewers an approval may ask for.
pub const REVIEWERS_MAX: u8 = 16;
/// The role ferry's reviewers hold (the admin plane and the control
/// socket admit approvals from it alone), so `[approval] roles` must
/// include it or no one could approve.
pub const REVIEWER_ROLE: &str = "reviewer";
/// Shortest approval expiry: a pending package must outlive a coffee break.
pub const APPROVAL_EXPIRY_MIN_S: u64 = 60;
/// Longest approval expiry (90 days): longer pending packages are forgotten work.
pub const APPROVAL_EXPIRY_MAX_S: u64 = 90 * 24 * 3600;
/// Longest channel, identity, window, profile, spool or rule name.
pub const NAME_MAX_CHARS: usize = 64;

/// A channel's direction across the one-way link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// High → low (classified → non-classified): needs approvals and a strict profile.
    Release,
    /// Low → high.
    Import,
}

/// Where the egress side puts a channel's packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// The egress outbox directory.
    Outbox,
    /// An HTTPS URL of a downstream system.
    Downstream(String),
}

/// Rate and quota limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Packages per minute.
    pub packages_per_minute: Option<u64>,
    /// Bytes per minute.
    pub bytes_per_minute: Option<u64>,
    /// Packages per day.
    pub packages_per_day: Option<u64>,
    /// Bytes per day.
    pub bytes_per_day: Option<u64>,
}

impl Limits {
    /// True when no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

/// How long the ingress side keeps a channel's sent packages for resends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Age after which a sent package is deleted; `None` = daemon default.
    pub max_age_s: Option<u64>,
    /// Bytes kept; `None` = daemon default.
    pub max_bytes: Option<u64>,
}

/// The two-person rule for a channel: how many distinct reviewers of which
/// roles must approve, and how long a pending package waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRequirement {
    /// `[approval.NAME]`.
    pub name: String,
    /// Distinct reviewers needed.
    pub reviewers: u8,
    /// Roles a reviewer must hold (any of them).
    pub roles: Vec<String>,
    /// A pending package expires after this long.
    pub expires_after_s: u64,
    /// Whether the identity that pushed the package may approve it itself.
    pub allow_submitter: bool,
}

/// A channel, as the daemon needs it.
#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    /// `[channel.NAME]`.
    pub name: String,
    /// Release or import.
    pub direction: Direction,
    /// The link name (as in ferryd's `[link] name`).
    pub link: String,
    /// Where the egress side delivers.
    pub destination: Destination,
    /// Sends per package, 1..=8.
    pub redundancy: u8,
    /// Ingress copies kept for resends.
    pub retention: Retention,
    /// Content profile the ingress guard applies.
    pub profile: Option<String>,
    /// Content profile the egress guard applies (defaults to `profile`).
    pub egress_profile: Option<String>,
    /// Approvals before sending.
    pub approval: Option<ApprovalRequirement>,
    /// Windows the channel is open in (any of them); empty = always.
    pub windows: Vec<String>,
    /// Limits over everything the channel carries.
    pub limits: Limits,
    #[serde(skip)]
    pub(crate) window_ids: Vec<usize>,
}

/// A spool directory the ingress side collects, pushed by the local
/// identity `spool:NAME`.
#[derive(Debug, Clone)]
pub struct SpoolCollection {
    /// `[spool.NAME]`.
    pub name: String,
    /// Absolute directory.
    pub dir: PathBuf,
    /// Channel its files go to.
    pub channel: String,
    /// When to collect.
    pub schedule: Schedule,
    /// Content type declared for its files, if the policy fixes one.
    pub content_type: Option<String>,
}

impl SpoolCollection {
    /// When to collect next after `at`: `None` for a continuous collection
    /// (collect whenever files appear).
    pub fn next_run_after(&self, at: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
        match &self.schedule {
            Schedule::Continuous => None,
            Schedule::Cron(c) => c.next_run_after(at),
        }
    }
}

/// A content profile. Its settings are checked for shape here; the content
/// guard interprets them.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// `[profile.NAME]`.
    pub name: String,
    /// The profile table as JSON, for the guard to deserialize.
    pub settings: serde_json::Value,
    /// Where `[profile.NAME]` is written.
    pub at: crate::diag::Place,
    /// Each `dirty_words.lists` entry and where it is written, so that a
    /// list the guard cannot read or parse is reported there.
    pub lists: Vec<(std::path::PathBuf, crate::diag::Place)>,
    /// Each `yara.rules` entry, made absolute (a relative path is read
    /// from the directory of the policy file that names it), and where it
    /// is written, so that a rules file the guard cannot read or compile
    /// is reported there too. `settings` holds the absolute paths.
    pub rules_files: Vec<(std::path::PathBuf, crate::diag::Place)>,
}

/// A subject alternative name of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum San {
    /// dNSName (compared case-insensitively).
    Dns(String),
    /// uniformResourceIdentifier.
    Uri(String),
    /// rfc822Name (compared case-insensitively).
    Email(String),
    /// iPAddress.
    Ip(IpAddr),
}

impl San {
    /// Parses `dns:…`, `uri:…`, `email:…` or `ip:…`.
    pub fn parse(s: &str) -> Result<San, String> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| format!("SAN `{s}` needs a type prefix: dns:, uri:, email: or ip:"))?;
        if value.is_empty() {
            return Err(format!("SAN `{s}` has an empty value"));
        }
        if value.trim() != value || value.chars().any(char::is_control) {
            return Err(format!(
                "SAN `{s}` has spaces around the value or control characters, so it matches no certificate; write the name alone"
            ));
        }
        match kind {
            "dns" if !is_dns_name(value) => Err(format!(
                "SAN `{s}`: `{value}` is not a DNS name (labels of a-z, 0-9 and `-`, joined by dots); e.g. dns:stats.registry.example"
            )),
            "dns" => Ok(San::Dns(value.to_ascii_lowercase())),
            "uri" if !is_uri(value) => Err(format!(
                "SAN `{s}`: `{value}` is not a URI (a scheme such as `urn:` or `https:`, then the rest); e.g. uri:urn:ferry:id:stats"
            )),
            "uri" => Ok(San::Uri(value.to_string())),
            "email" if !is_email(value) => Err(format!(
                "SAN `{s}`: `{value}` is not an e-mail address (local@domain); e.g. email:ops@registry.example"
            )),
            "email" => Ok(San::Email(value.to_ascii_lowercase())),
            "ip" => value
                .parse()
                .map(San::Ip)
                .map_err(|_| format!("SAN `{s}`: `{value}` is not an IP address")),
            other => Err(format!(
                "SAN type `{other}` is unknown; use dns:, uri:, email: or ip:"
            )),
        }
    }
}

/// A DNS name as a certificate carries it: dot-separated labels of 1-63
/// letters, digits and `-` (not at either end), 253 characters at most. A
/// wildcard certificate name (`*.example`) is matched as written, so its
/// first label may be `*`.
fn is_dns_name(v: &str) -> bool {
    let v = v.strip_suffix('.').unwrap_or(v);
    let body = v.strip_prefix("*.").unwrap_or(v);
    !body.is_empty()
        && v.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `scheme:rest` with an RFC 3986 scheme and no spaces.
fn is_uri(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once(':') else {
        return false;
    };
    let mut sb = scheme.bytes();
    sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        && sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !v.contains(char::is_whitespace)
}

/// `local@domain`, the domain a DNS name.
fn is_email(v: &str) -> bool {
    v.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !local.contains(char::is_whitespace) && is_dns_name(domain)
    })
}

/// Who is pushing: filled by the daemon from a verified client certificate
/// (`ferry-certs` `Identity`) or, for a spool collection, from its name.
/// Deserializable so the daemon can keep it with a held package and decide
/// again when the package is released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Subject as an RFC 4514 string (e.g. `CN=stats,O=Land Registry`).
    pub subject: String,
    /// Common name.
    pub common_name: Option<String>,
    /// Organizational units.
    pub org_units: Vec<String>,
    /// Subject alternative names.
    pub san: Vec<San>,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint_sha256: Option<String>,
    /// Role from the `urn:ferry:role:ROLE` SAN.
    pub role: Option<String>,
    /// Set only by the daemon for files from `[spool.NAME]`; never from a
    /// certificate, so no client can claim a spool's rights.
    pub spool: Option<String>,
}

impl Subject {
    /// The local identity of a spool collection.
    pub fn spool(name: &str) -> Subject {
        Subject {
            subject: format!("spool:{name}"),
            spool: Some(name.to_string()),
            ..Subject::default()
        }
    }

    /// A short label for traces and audit records.
    pub fn label(&self) -> String {
        if let Some(s) = &self.spool {
            return format!("spool:{s}");
        }
        if let Some(cn) = &self.common_name {
            return format!("CN={cn}");
        }
        if !self.subject.is_empty() {
            return self.subject.clone();
        }
        match &self.fingerprint_sha256 {
            Some(f) => format!("sha256:{f}"),
            None => "(anonymous)".into(),
        }
    }
}

/// `[identity.NAME]`: every field given must match.
#[derive(Debug, Clone)]
pub(crate) struct IdentityMatcher {
    pub(crate) name: String,
    pub(crate) subject: Option<String>,
    pub(crate) cn: Option<String>,
    pub(crate) ou: Vec<String>,
    pub(crate) san: Vec<San>,
    pub(crate) fingerprint: Option<String>,
    pub(crate) role: Option<String>,
    pub(crate) spool: Option<String>,
    pub(crate) limits: Limits,
}

impl IdentityMatcher {
    // `map_or(true, …)` rather than `is_none_or`: the workspace MSRV is 1.80.
    #[allow(clippy::unnecessary_map_or)]
    pub(crate) fn matches(&self, s: &Subject) -> bool {
        // A spool identity and a certificate identity never match each other.
        if self.spool.is_some() || s.spool.is_some() {
            return self.spool.is_some() && self.spool == s.spool;
        }
        // An identity that restricts nothing matches no one. The compiler
        // refuses such an identity; this keeps "match everyone" from ever
        // being the meaning of a matcher that slipped through.
        if self.is_vacuous() {
            return false;
        }
        self.subject.as_ref().map_or(true, |v| *v == s.subject)
            && self
                .cn
                .as_ref()
                .map_or(true, |v| s.common_name.as_ref() == Some(v))
            && self
                .role
                .as_ref()
                .map_or(true, |v| s.role.as_ref() == Some(v))
            && self.fingerprint.as_ref().map_or(true, |v| {
                s.fingerprint_sha256
                    .as_ref()
                    .is_some_and(|f| normalize_fingerprint(f) == *v)
            })
            && self.ou.iter().all(|o| s.org_units.contains(o))
            && self.san.iter().all(|want| {
                s.san.iter().any(|have| match (want, have) {
                    (San::Dns(a), San::Dns(b)) | (San::Email(a), San::Email(b)) => {
                        a.eq_ignore_ascii_case(b)
                    }
                    _ => want == have,
                })
            })
    }
}

impl IdentityMatcher {
    /// Whether no certificate field is restricted (no subject, cn, ou,
    /// san, fingerprint or role).
    // `map_or(true, …)` rather than `is_none_or`: the workspace MSRV is 1.80.
    #[allow(clippy::unnecessary_map_or)]
    pub(crate) fn is_vacuous(&self) -> bool {
        self.subject.as_deref().map_or(true, str::is_empty)
            && self.cn.as_deref().map_or(true, str::is_empty)
            && self.ou.iter().all(String::is_empty)
            && self.san.is_empty()
            && self.fingerprint.as_deref().map_or(true, str::is_empty)
            && self.role.as_deref().map_or(true, str::is_empty)
    }
}

/// Lowercase hex without colons or spaces.
pub(crate) fn normalize_fingerprint(f: &str) -> String {
    f.chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Allows what it matches (unless a deny rule forbids it).
    Allow,
    /// Forbids what it matches, whatever allows it.
    Deny,
}

/// `*` or a list of indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    Any,
    Some(Vec<usize>),
}

impl Selector {
    pub(crate) fn contains(&self, i: usize) -> bool {
        match self {
            Selector::Any => true,
            Selector::Some(v) => v.contains(&i),
        }
    }

    pub(crate) fn covers(&self, other: &Selector) -> bool {
        match (self, other) {
            (Selector::Any, _) => true,
            (Selector::Some(_), Selector::Any) => false,
            (Selector::Some(a), Selector::Some(b)) => b.iter().all(|x| a.contains(x)),
        }
    }
}

/// `type/subtype` or `type/*`, lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypePattern {
    pub(crate) text: String,
}

impl TypePattern {
    pub(crate) fn is_match(&self, content_type: &str) -> bool {
        match self.text.strip_suffix("/*") {
            Some(major) => content_type
                .split_once('/')
                .is_some_and(|(m, _)| m == major),
            None => self.text == content_type,
        }
    }

    pub(crate) fn covers(&self, other: &TypePattern) -> bool {
        self.text == other.text
            || (self.text.ends_with("/*")
                && !other.text.ends_with("/*")
                && self.is_match(&other.text))
    }
}

/// A compiled `[[rule]]`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: Arc<str>,
    pub(crate) effect: Effect,
    pub(crate) identities: Selector,
    pub(crate) channels: Selector,
    pub(crate) content_types: Option<Vec<TypePattern>>,
    pub(crate) names: Option<Vec<Glob>>,
    pub(crate) min_bytes: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) windows: Vec<usize>,
    /// Where it is defined, for traces: `file:line`.
    pub(crate) defined_at: String,
}

/// The compiled policy. Immutable, `Send + Sync`; share it behind an `Arc`
/// and swap the `Arc` on reload.
#[derive(Debug)]
pub struct Policy {
    pub(crate) name: Option<String>,
    pub(crate) hash: String,
    pub(crate) files: Vec<String>,
    pub(crate) identities: Vec<IdentityMatcher>,
    pub(crate) channels: Vec<Channel>,
    pub(crate) channel_index: HashMap<String, usize>,
    pub(crate) windows: Vec<Window>,
    pub(crate) profiles: Vec<Profile>,
    pub(crate) spools: Vec<SpoolCollection>,
    pub(crate) rules: Vec<Rule>,
    /// For each channel, the rules that can apply to it, in file order.
    pub(crate) rules_by_channel: Vec<Vec<usize>>,
}

impl Policy {
    /// `[policy] name`, if set.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// SHA-256 (lowercase hex) over the canonical bytes of every file the
    /// policy was loaded from, includes too; audit records and signatures
    /// cite it.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The files the policy was loaded from, main file first.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channel_index.get(name).map(|&i| &self.channels[i])
    }

    /// All channels, in file order.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// All spool collections, in file order.
    pub fn spool_collections(&self) -> &[SpoolCollection] {
        &self.spools
    }

    /// A content profile by name.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// All content profiles.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// A window by name.
    pub fn window(&self, name: &str) -> Option<&Window> {
        self.windows.iter().find(|w| w.name == name)
    }

    /// Whether channel `name` is inside one of its windows at `at` (true for
    /// a channel without windows; false for an unknown channel).
    pub fn channel_open_at(&self, name: &str, at: time::OffsetDateTime) -> bool {
        let Some(&c) = self.channel_index.get(name) else {
            return false;
        };
        let ids = &self.channels[c].window_ids;
        ids.is_empty() || ids.iter().any(|&i| self.windows[i].is_open_at(at))
    }

    /// When the windows of channel `name` next open, if they are all
    /// closed at `at`. `None` when one of them is open, when the channel has
    /// no windows or when the policy does not define it; `Some(None)` for
    /// closed windows that never open again (load refuses such windows).
    pub fn channel_closed_until(
        &self,
        name: &str,
        at: time::OffsetDateTime,
    ) -> Option<Option<time::OffsetDateTime>> {
        let &c = self.channel_index.get(name)?;
        let ts = crate::when::instant(at)?;
        let ids = &self.channels[c].window_ids;
        if ids.is_empty() || ids.iter().any(|&i| self.windows[i].is_open(ts)) {
            return None;
        }
        let next = ids
            .iter()
            .filter_map(|&i| self.windows[i].next_opening(ts))
            .min()
            .and_then(crate::when::offset_date_time);
        Some(next)
    }

    /// Rule ids in evaluation order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id)
    }

    /// Names of the identities that match `subject`, in file order; the
    /// daemon keys per-identity usage counters by these names.
    pub fn identities_of(&self, subject: &Subject) -> Vec<&str> {
        self.identities
            .iter()
            .filter(|m| m.matches(subject))
            .map(|m| m.name.as_str())
            .collect()
    }
}
