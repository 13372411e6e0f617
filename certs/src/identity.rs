//! Who a certificate names: the identity that policy matching and audit
//! records use, and the role it carries.
//!
//! Parsing here does not verify anything: an `Identity` from a peer is only
//! as good as the rustls verifier that accepted the chain first.

use crate::CertError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;

/// SAN URI prefix that carries a client's role: `urn:ferry:role:ROLE`.
///
/// A URI SAN is used rather than a subject OU because it is a name type of
/// its own that no ordinary certificate request fills in by accident, and it
/// leaves the subject for the operator's naming.
pub const ROLE_URI_PREFIX: &str = "urn:ferry:role:";

/// SAN URI prefix that repeats a client's name: `urn:ferry:id:NAME`.
pub const ID_URI_PREFIX: &str = "urn:ferry:id:";

/// SAN URI prefix that names the person a certificate belongs to:
/// `urn:ferry:person:ID` (`ferryctl certs issue-client --person ID`).
///
/// Reviewers and officers are persons, not certificates: a renewed or
/// re-issued certificate of one person carries the same person id, so the
/// two-person rule counts it once and the admin plane sees one person in
/// one role. A certificate without this URI belongs to the person named by
/// its `urn:ferry:id:NAME` URI, else by its subject CN (see
/// [`Identity::person`]).
pub const PERSON_URI_PREFIX: &str = "urn:ferry:person:";

/// Longest role name.
pub const MAX_ROLE_CHARS: usize = 32;

/// Longest person id.
pub const MAX_PERSON_CHARS: usize = 64;

/// Validates a person id and returns it in canonical (lowercase) form:
/// 1-64 characters of ASCII letters, digits, `.`, `-`, `_`, starting with
/// a letter or digit. Case is not significant (`Alice` and `alice` are one
/// person), so ids compare in lowercase; they are meant to be the same
/// names as the administrators' host accounts in `[admin]`.
pub fn check_person(id: &str) -> Result<String, CertError> {
    let b = id.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_PERSON_CHARS
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_');
    if !ok {
        return Err(CertError::InvalidInput {
            what: "person id",
            value: id.chars().take(80).collect(),
            rule: "a person id is 1-64 characters of A-Z a-z 0-9 . - _, starting with a letter or digit (use the person's account name or staff number, the same for every certificate of that person)",
        });
    }
    Ok(id.to_ascii_lowercase())
}

/// The person a certificate with these SAN URIs and this CN belongs to, in
/// lowercase: the `urn:ferry:person:ID` URI, else the `urn:ferry:id:NAME`
/// URI, else the CN. `None` when there is none of them.
///
/// One rule for every place that asks "who is this person" (the two-person
/// rule, "the submitter may not approve", one person one role), so that a
/// certificate cannot be one person here and another there.
pub fn person_of<'a>(
    uris: impl IntoIterator<Item = &'a str> + Clone,
    common_name: Option<&str>,
) -> Option<String> {
    let find = |prefix: &str| {
        uris.clone()
            .into_iter()
            .find_map(|u| u.strip_prefix(prefix).map(str::to_owned))
    };
    find(PERSON_URI_PREFIX)
        .or_else(|| find(ID_URI_PREFIX))
        .or_else(|| common_name.map(str::to_owned))
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
}

/// What a client certificate may do, carried in a `urn:ferry:role:ROLE` SAN.
///
/// The four officer roles have constants; a pushing system's role (e.g.
/// `pusher`) is any other lowercase name. Role names are `[a-z][a-z0-9_-]*`,
/// at most [`MAX_ROLE_CHARS`] characters, so they can be matched literally in
/// policy and never need escaping in a URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(String);

impl Role {
    /// System administrator (系统管理员): runs the service.
    pub const SYSADMIN: &'static str = "sysadmin";
    /// Security administrator (安全保密管理员): edits the policy.
    pub const SECADMIN: &'static str = "secadmin";
    /// Audit officer (安全审计员): reads and exports the audit log.
    pub const AUDITOR: &'static str = "auditor";
    /// Release reviewer: approves packages under the two-person rule.
    pub const REVIEWER: &'static str = "reviewer";
    /// The usual role of an intranet system that pushes packages.
    pub const PUSHER: &'static str = "pusher";

    /// Validates a role name.
    pub fn new(name: &str) -> Result<Role, CertError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_ROLE_CHARS
            && name.as_bytes()[0].is_ascii_lowercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(CertError::InvalidInput {
                what: "role",
                value: name.chars().take(64).collect(),
                rule: "a role is 1-32 characters of a-z, 0-9, `-`, `_`, starting with a letter (e.g. sysadmin, secadmin, auditor, reviewer, pusher)",
            });
        }
        Ok(Role(name.to_string()))
    }

    /// The role name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the three officers and the reviewer (the human roles of
    /// three-officer separation), false for system roles such as `pusher`.
    pub fn is_officer(&self) -> bool {
        matches!(
            self.0.as_str(),
            Self::SYSADMIN | Self::SECADMIN | Self::AUDITOR | Self::REVIEWER
        )
    }

    /// The SAN URI that carries this role.
    pub fn uri(&self) -> String {
        format!("{ROLE_URI_PREFIX}{}", self.0)
    }
}

impl FromStr for Role {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Role, CertError> {
        Role::new(s)
    }
}

impl TryFrom<String> for Role {
    type Error = CertError;
    fn try_from(s: String) -> Result<Role, CertError> {
        Role::new(&s)
    }
}

impl From<Role> for String {
    fn from(r: Role) -> String {
        r.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Subject alternative names, by type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectAltNames {
    /// DNS names.
    pub dns: Vec<String>,
    /// URIs (including ferry's `urn:ferry:…` names).
    pub uri: Vec<String>,
    /// E-mail addresses (rfc822Name).
    pub email: Vec<String>,
    /// IP addresses.
    pub ip: Vec<IpAddr>,
}

/// The identity a certificate names, for policy matching and audit records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Subject as an RFC 4514 string (most specific RDN first, e.g.
    /// `CN=alice,O=Land Registry`).
    pub subject: String,
    /// Issuer as an RFC 4514 string.
    pub issuer: String,
    /// The subject common name, if there is one.
    pub common_name: Option<String>,
    /// Subject organization (O) values.
    pub organization: Vec<String>,
    /// Subject organizational unit (OU) values.
    pub org_units: Vec<String>,
    /// Subject alternative names.
    pub san: SubjectAltNames,
    /// SHA-256 over the certificate DER, lowercase hex without colons.
    pub fingerprint_sha256: String,
    /// Serial number, lowercase hex without leading zero bytes.
    pub serial: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The role from the `urn:ferry:role:ROLE` SAN, if present.
    pub role: Option<String>,
}

impl Identity {
    /// Parses the identity of a DER certificate. Does not verify it.
    ///
    /// Refuses certificates whose identity would be ambiguous for policy:
    /// more than one CN, more than one role URI, or a role URI whose name is
    /// not a valid role.
    pub fn from_cert_der(der: &[u8]) -> Result<Identity, CertError> {
        Self::parse(&Origin::Peer, der)
    }

    /// The identity of the end-entity certificate a TLS peer presented
    /// (`conn.peer_certificates()`), or `None` if it presented none.
    pub fn from_peer_certificates(
        certs: Option<&[rustls_pki_types::CertificateDer<'_>]>,
    ) -> Result<Option<Identity>, CertError> {
        match certs.and_then(|c| c.first()) {
            Some(leaf) => Identity::from_cert_der(leaf.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    /// The person this certificate belongs to (lowercase): its
    /// `urn:ferry:person:ID` URI, else its `urn:ferry:id:NAME` URI, else its
    /// CN. Renewals and re-issues of one person's certificate give the same
    /// answer; see [`PERSON_URI_PREFIX`].
    pub fn person(&self) -> Option<String> {
        person_of(
            self.san.uri.iter().map(String::as_str),
            self.common_name.as_deref(),
        )
    }

    /// The role, validated.
    pub fn role(&self) -> Option<Role> {
        self.role.as_deref().and_then(|r| Role::new(r).ok())
    }

    pub(crate) fn parse(origin: &Origin<'_>, der: &[u8]) -> Result<Identity, CertError> {
        let cert = parse_x509(origin, der)?;
        Self::from_x509(origin, der, &cert)
    }

    pub(crate) fn from_x509(
        origin: &Origin<'_>,
        der: &[u8],
        cert: &X509Certificate<'_>,
    ) -> Result<Identity, CertError> {
        let bad = |what: String| origin.bad_cert(what);
        let subject = cert.subject();
        let cns = attr_strings(subject, &x509_parser::oid_registry::OID_X509_COMMON_NAME);
        if cns.len() > 1 {
            return Err(bad(format!(
                "subject has {} common names; an identity needs at most one",
                cns.len()
            )));
        }
        let mut san = SubjectAltNames::default();
        let san_ext = cert
            .subject_alternative_name()
            .map_err(|e| bad(format!("subjectAltName: {e}")))?;
        if let Some(ext) = san_ext {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(s) => san.dns.push(s.to_string()),
                    GeneralName::URI(s) => san.uri.push(s.to_string()),
                    GeneralName::RFC822Name(s) => san.email.push(s.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => san
                            .ip
                            .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or([0; 4]))),
                        16 => san
                            .ip
                            .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or([0; 16]))),
                        n => return Err(bad(format!("SAN IP address of {n} bytes"))),
                    },
                    _ => {}
                }
            }
        }
        let roles: Vec<&str> = san
            .uri
            .iter()
            .filter_map(|u| u.strip_prefix(ROLE_URI_PREFIX))
            .collect();
        let role = match roles.as_slice() {
            [] => None,
            [one] => Some(
                Role::new(one)
                    .map_err(|_| {
                        bad(format!(
                            "role URI `{ROLE_URI_PREFIX}{one}` names no valid role"
                        ))
                    })?
                    .0,
            ),
            many => {
                return Err(bad(format!(
                    "{} role URIs ({}); a certificate carries at most one role",
                    many.len(),
                    many.join(", ")
                )))
            }
        };
        let persons: Vec<&str> = san
            .uri
            .iter()
            .filter_map(|u| u.strip_prefix(PERSON_URI_PREFIX))
            .collect();
        match persons.as_slice() {
            [] => {}
            [one] => {
                check_person(one).map_err(|_| {
                    bad(format!(
                        "person URI `{PERSON_URI_PREFIX}{one}` names no valid person id"
                    ))
                })?;
            }
            many => {
                return Err(bad(format!(
                    "{} person URIs ({}); a certificate belongs to one person",
                    many.len(),
                    many.join(", ")
                )))
            }
        }
        Ok(Identity {
            subject: rfc4514(subject),
            issuer: rfc4514(cert.issuer()),
            common_name: cns.into_iter().next(),
            organization: attr_strings(
                subject,
                &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
            ),
            org_units: attr_strings(
                subject,
                &x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT,
            ),
            san,
            fingerprint_sha256: fingerprint(der),
            serial: serial_hex(cert.raw_serial()),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            role,
        })
    }
}

/// Where certificate bytes came from, for error messages.
pub(crate) enum Origin<'a> {
    File(&'a std::path::Path),
    Peer,
}

impl Origin<'_> {
    pub(crate) fn bad_cert(&self, what: String) -> CertError {
        CertError::BadCertificate {
            origin: match self {
                Origin::File(p) => p.display().to_string(),
                Origin::Peer => "peer certificate".into(),
            },
            what,
        }
    }
}

pub(crate) fn parse_x509<'a>(
    origin: &Origin<'_>,
    der: &'a [u8],
) -> Result<X509Certificate<'a>, CertError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| origin.bad_cert(format!("not an X.509 certificate ({e})")))?;
    if !rest.is_empty() {
        return Err(origin.bad_cert(format!("{} stray bytes after the certificate", rest.len())));
    }
    Ok(cert)
}

/// SHA-256 over DER, lowercase hex, no colons.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Canonical serial text: lowercase hex of the DER integer's bytes without
/// leading zero bytes (so `00:ab` and `ab` name the same serial).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let s = hex::encode(&raw[start..]);
    if s.is_empty() {
        "00".into()
    } else {
        s
    }
}

/// Normalises an operator-typed serial (`AB:CD:…`, `0xabcd`, spaces) to the
/// canonical form of [`serial_hex`].
pub fn normalize_serial(text: &str) -> Result<String, CertError> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: String = t
        .chars()
        .filter(|c| *c != ':' && *c != ' ')
        .collect::<String>()
        .to_ascii_lowercase();
    let invalid = || {
        CertError::InvalidInput {
        what: "serial",
        value: text.chars().take(80).collect(),
        rule: "a serial is hex digits, optionally separated by colons (as `ferryctl certs show` prints it)",
    }
    };
    if digits.is_empty() || digits.len() > 80 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(padded).map_err(|_| invalid())?;
    Ok(serial_hex(&bytes))
}

fn attr_strings(name: &X509Name<'_>, oid: &x509_parser::der_parser::Oid<'_>) -> Vec<String> {
    name.iter_by_oid(oid).map(attr_text).collect()
}

fn attr_text(attr: &x509_parser::x509::AttributeTypeAndValue<'_>) -> String {
    match attr.as_str() {
        Ok(s) => s.to_string(),
        Err(_) => match std::str::from_utf8(attr.as_slice()) {
            Ok(s) => s.to_string(),
            Err(_) => format!("#{}", hex::encode(attr.as_slice())),
        },
    }
}

/// RFC 4514 string of a distinguished name: RDNs most specific first,
/// joined by `,`; multi-valued RDNs joined by `+`; special characters
/// escaped. Attribute types without a short name print as dotted OIDs.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let key = short_name(&oid).map(str::to_string).unwrap_or(oid);
                    let value = match attr.as_str() {
                        Ok(s) => escape_rfc4514(s),
                        // Non-string values print as `#` + hex of the value
                        // octets (RFC 4514 §2.4 asks for the whole BER; the
                        // content is what a reader can act on).
                        Err(_) => format!("#{}", hex::encode(attr.as_slice())),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape_rfc4514(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let n = s.chars().count();
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == n => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_validated() {
        for ok in ["sysadmin", "pusher", "land-registry_2"] {
            assert_eq!(Role::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Sysadmin", "1abc", "a b", "a:b", &"x".repeat(33)] {
            assert!(Role::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Role::new("auditor").unwrap().is_officer());
        assert!(!Role::new("pusher").unwrap().is_officer());
        assert_eq!(Role::new("pusher").unwrap().uri(), "urn:ferry:role:pusher");
    }

    #[test]
    fn persons_come_from_the_person_uri_then_the_id_uri_then_the_cn() {
        let uris = [
            "urn:ferry:id:alice-2026",
            "urn:ferry:person:Alice",
            "urn:ferry:role:reviewer",
        ];
        assert_eq!(
            person_of(uris, Some("alice-2026")).as_deref(),
            Some("alice")
        );
        assert_eq!(
            person_of(["urn:ferry:id:Bob"], Some("x")).as_deref(),
            Some("bob")
        );
        assert_eq!(person_of([], Some("Carol")).as_deref(), Some("carol"));
        assert_eq!(person_of([], None), None);
        assert_eq!(check_person("Zhang.Wei-01").unwrap(), "zhang.wei-01");
        for bad in ["", "-x", "a b", "a:b", "名字", &"x".repeat(65)] {
            assert!(check_person(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serials_normalise() {
        assert_eq!(normalize_serial("00:AB:cd").unwrap(), "abcd");
        assert_eq!(normalize_serial("0xABC").unwrap(), "0abc");
        assert_eq!(serial_hex(&[0, 0, 1, 2]), "0102");
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial("").is_err());
    }

    #[test]
    fn rfc4514_escapes_specials() {
        assert_eq!(escape_rfc4514("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc4514("#x "), "\\#x\\ ");
        assert_eq!(escape_rfc4514("plain"), "plain");
    }
}
