//! A content profile as the guard uses it: the `[profile.NAME]` table of
//! the policy (handed over as JSON by `ferry-policy`), checked again here,
//! with its dirty-word lists read and compiled. Compile once per policy
//! load; inspect many packages with it.

use crate::clamd::Clamd;
use crate::error::GuardError;
use crate::normalize::normalize_word;
use crate::pii::{Detector, Detectors};
use crate::report::{Action, OnUnavailable};
use crate::rules::{ColumnSettings, KeepSettings, MaskRule, SuppressionSettings, TableRules};
use crate::words::{DirtyWords, WORDS_MAX, WORD_MAX_BYTES};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Largest dirty-word list file.
pub const LIST_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Archive limits when the profile allows archives but does not say.
pub const DEFAULT_MAX_DEPTH: u32 = 2;
/// Default `archives.max_members`.
pub const DEFAULT_MAX_MEMBERS: u64 = 10_000;
/// Default `archives.max_expanded_bytes` (4 GiB).
pub const DEFAULT_MAX_EXPANDED_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Default `archives.max_ratio`.
pub const DEFAULT_MAX_RATIO: u64 = 100;

/// Where dirty-word lists and YARA rules files are read from: the file
/// system in production
/// ([`FsLists`]), anything else in tests (any
/// `Fn(&Path) -> io::Result<Vec<u8>>`).
pub trait ListSource {
    /// The bytes of the list at `path`.
    fn read_list(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// Reads lists from files, refusing files larger than [`LIST_MAX_BYTES`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FsLists;

impl ListSource for FsLists {
    fn read_list(&self, path: &Path) -> io::Result<Vec<u8>> {
        // Only a regular file: a FIFO or device named as a list is refused
        // at once, as every file an operator names to ferry.
        ferry_regular_file::read_regular(path, LIST_MAX_BYTES)
    }
}

impl<F: Fn(&Path) -> io::Result<Vec<u8>>> ListSource for F {
    fn read_list(&self, path: &Path) -> io::Result<Vec<u8>> {
        self(path)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    description: Option<String>,
    allowed_types: Option<Vec<String>>,
    archives: Option<ArchiveSettings>,
    dirty_words: Option<DirtySettings>,
    pii: Option<PiiSettings>,
    geodata: Option<GeoSettings>,
    office: Option<OfficeSettings>,
    legacy_encodings: Option<bool>,
    disarm: Option<String>,
    columns: Option<Vec<ColumnSettings>>,
    require_rules: Option<bool>,
    suppression: Option<SuppressionSettings>,
    malware: Option<MalwareSettings>,
    yara: Option<crate::yara::YaraSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MalwareSettings {
    engine: Option<String>,
    socket: Option<String>,
    timeout_ms: Option<u64>,
    on_unavailable: Option<String>,
    max_signature_age_days: Option<u64>,
    max_stream_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfficeSettings {
    action: Option<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveSettings {
    allowed: Option<bool>,
    formats: Option<Vec<String>>,
    max_depth: Option<u32>,
    max_members: Option<u64>,
    max_expanded_bytes: Option<u64>,
    max_ratio: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirtySettings {
    lists: Option<Vec<String>>,
    action: Option<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PiiSettings {
    detectors: Option<Vec<String>>,
    action: Option<Action>,
    keep_prefix: Option<u32>,
    keep_suffix: Option<u32>,
    mask: Option<BTreeMap<String, KeepSettings>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GeoSettings {
    max_decimal_places: Option<u32>,
    bbox: Option<Vec<f64>>,
    forbidden_attributes: Option<Vec<String>>,
    coordinate_columns: Option<Vec<String>>,
    action: Option<Action>,
}

/// `archives = { … }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArchiveRules {
    pub allowed: bool,
    pub zip: bool,
    pub tar: bool,
    pub gzip: bool,
    pub max_depth: u32,
    pub max_members: u64,
    pub max_expanded_bytes: u64,
    pub max_ratio: u64,
}

/// `dirty_words = { … }`, compiled.
pub(crate) struct DirtyWordRules {
    pub words: DirtyWords,
    pub action: Action,
}

/// `pii = { … }`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PiiRules {
    pub detectors: Detectors,
    pub action: Action,
    /// By detector, in the order of [`Detector::ALL`].
    masks: [MaskRule; 5],
}

impl PiiRules {
    /// How much of a `detector` value masking keeps.
    pub(crate) fn mask(&self, detector: Detector) -> MaskRule {
        let i = Detector::ALL
            .iter()
            .position(|d| *d == detector)
            .unwrap_or(0);
        self.masks[i]
    }
}

/// `geodata = { … }`.
#[derive(Debug, Clone)]
pub(crate) struct GeoRules {
    pub max_decimal_places: Option<u32>,
    /// `[min_lon, min_lat, max_lon, max_lat]`.
    pub bbox: Option<[f64; 4]>,
    pub forbidden: Vec<String>,
    pub coordinate_columns: Vec<String>,
    pub action: Action,
}

impl GeoRules {
    pub(crate) fn is_forbidden(&self, name: &str) -> bool {
        self.forbidden.iter().any(|f| f == name)
    }

    /// For a coordinate column name: `Some(true)` longitude, `Some(false)`
    /// latitude (columns are listed as pairs `lon, lat, lon, lat, …`).
    pub(crate) fn coordinate_role(&self, name: &str) -> Option<(usize, bool)> {
        self.coordinate_columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name.trim()))
            .map(|i| (i / 2, i % 2 == 0))
    }
}

/// A compiled content profile.
pub struct Profile {
    name: String,
    description: Option<String>,
    allowed_types: Option<Vec<String>>,
    pub(crate) archives: ArchiveRules,
    dirty_words: Option<DirtyWordRules>,
    pii: Option<PiiRules>,
    geodata: Option<GeoRules>,
    /// `office.action`: what to do about macros and embedded binary
    /// objects in office documents (default `reject`).
    pub(crate) office_action: Action,
    /// `legacy_encodings = true`: GBK/GB18030 text is decoded and
    /// inspected (default: refused, naming the encoding).
    pub(crate) legacy_encodings: bool,
    /// `columns`, `require_rules`, `suppression`.
    pub(crate) tables: TableRules,
    /// `malware = { … }`: scan with clamd.
    malware: Option<MalwareRules>,
    /// `yara = { … }`: the site's YARA rules, compiled.
    yara: Option<crate::yara::YaraRules>,
    /// `disarm`: what to do about metadata and active content the guard
    /// can remove (absent: nothing is looked for).
    pub(crate) disarm: Option<Disarm>,
}

/// `disarm = "strip" | "refuse"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disarm {
    /// Remove what was found and let the package go on (verdict
    /// `masked`); where the guard cannot rewrite (inside an archive), the
    /// package is refused.
    Strip,
    /// Refuse a package that carries any.
    Refuse,
}

impl Disarm {
    /// The action a disarm finding takes.
    pub(crate) fn action(self) -> Action {
        match self {
            Disarm::Strip => Action::Mask,
            Disarm::Refuse => Action::Reject,
        }
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("allowed_types", &self.allowed_types)
            .field("archives", &self.archives)
            .field("dirty_words", &self.word_count())
            .field("pii", &self.pii)
            .field("geodata", &self.geodata)
            .field("malware", &self.malware)
            .field("yara", &self.yara)
            .finish()
    }
}

impl Profile {
    /// Compiles `[profile.NAME]` from the JSON form `ferry-policy` hands
    /// over (`ferry_policy::Profile::settings`), reading the dirty-word
    /// lists through `lists`. Errors name the key, or the list file and
    /// line.
    ///
    /// Defaults: every `action` is `reject`; `allowed_types` absent allows
    /// every type the guard can inspect; `archives` absent refuses
    /// archives; `pii.detectors` absent enables all five; each detector
    /// masks by its own default rule ([`crate::MASK_LIMITS`]); no column
    /// rules.
    pub fn from_settings(
        name: &str,
        settings: &serde_json::Value,
        lists: &dyn ListSource,
    ) -> Result<Profile, GuardError> {
        let bad = |message: String| GuardError::Settings {
            profile: name.to_string(),
            message,
        };
        let s: Settings = serde_json::from_value(settings.clone())
            .map_err(|e| bad(format!("{e}; see docs/guard.md for the keys")))?;
        let allowed_types = match s.allowed_types {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for t in list {
                    let t = t.trim().to_ascii_lowercase();
                    if !valid_type_pattern(&t) {
                        return Err(bad(format!(
                            "allowed_types: `{t}` is not a media type such as \"text/csv\" or \"text/*\""
                        )));
                    }
                    out.push(t);
                }
                Some(out)
            }
        };
        let archives = archive_rules(s.archives).map_err(bad)?;
        let dirty_words = match s.dirty_words {
            None => None,
            Some(d) => {
                let mut words = Vec::new();
                let mut seen = HashSet::new();
                for l in d.lists.unwrap_or_default() {
                    let path = PathBuf::from(&l);
                    if !path.is_absolute() {
                        return Err(bad(format!(
                            "dirty_words.lists: `{l}` is not an absolute path"
                        )));
                    }
                    let bytes =
                        lists
                            .read_list(&path)
                            .map_err(|source| GuardError::ListUnreadable {
                                profile: name.to_string(),
                                path: path.clone(),
                                source,
                            })?;
                    parse_list(&path, &bytes, &mut words, &mut seen)?;
                    if words.len() > WORDS_MAX {
                        return Err(GuardError::ListTooLarge {
                            profile: name.to_string(),
                            message: format!("more than {WORDS_MAX} entries"),
                        });
                    }
                }
                let action = d.action.unwrap_or(Action::Reject);
                if words.is_empty() {
                    None
                } else {
                    let words =
                        DirtyWords::compile(words).map_err(|message| GuardError::ListTooLarge {
                            profile: name.to_string(),
                            message,
                        })?;
                    Some(DirtyWordRules { words, action })
                }
            }
        };
        let pii = match s.pii {
            None => None,
            Some(p) => {
                let mut detectors = Detectors::default();
                match p.detectors {
                    None => {
                        for d in Detector::ALL {
                            detectors = detectors.with(d);
                        }
                    }
                    Some(list) => {
                        for d in list {
                            let det = Detector::from_name(&d).ok_or_else(|| {
                                bad(format!(
                                    "pii.detectors: unknown detector `{d}`; known: prc_id, mobile, bank_card, email, uscc"
                                ))
                            })?;
                            detectors = detectors.with(det);
                        }
                    }
                }
                Some(PiiRules {
                    detectors,
                    action: p.action.unwrap_or(Action::Reject),
                    masks: crate::rules::mask_rules(p.keep_prefix, p.keep_suffix, p.mask)
                        .map_err(bad)?,
                })
            }
        };
        let geodata = match s.geodata {
            None => None,
            Some(g) => {
                if g.max_decimal_places.is_some_and(|p| p > 15) {
                    return Err(bad(
                        "geodata.max_decimal_places must be between 0 and 15".into()
                    ));
                }
                let bbox = match g.bbox {
                    None => None,
                    Some(b) => {
                        let ok = b.len() == 4
                            && b.iter().all(|x| x.is_finite())
                            && (-180.0..=180.0).contains(&b[0])
                            && (-180.0..=180.0).contains(&b[2])
                            && (-90.0..=90.0).contains(&b[1])
                            && (-90.0..=90.0).contains(&b[3])
                            && b[0] < b[2]
                            && b[1] < b[3];
                        if !ok {
                            return Err(bad("geodata.bbox must be [min_lon, min_lat, max_lon, max_lat] in degrees, min below max".into()));
                        }
                        Some([b[0], b[1], b[2], b[3]])
                    }
                };
                Some(GeoRules {
                    max_decimal_places: g.max_decimal_places,
                    bbox,
                    forbidden: g.forbidden_attributes.unwrap_or_default(),
                    coordinate_columns: g.coordinate_columns.unwrap_or_default(),
                    action: g.action.unwrap_or(Action::Reject),
                })
            }
        };
        let tables =
            crate::rules::table_rules(s.columns, s.require_rules, s.suppression).map_err(bad)?;
        let malware = s.malware.map(malware_rules).transpose().map_err(bad)?;
        let yara = s
            .yara
            .map(|y| crate::yara::compile(name, y, lists))
            .transpose()?;
        let disarm = match s.disarm.as_deref() {
            None => None,
            Some("strip") => Some(Disarm::Strip),
            Some("refuse") => Some(Disarm::Refuse),
            Some(other) => {
                return Err(bad(format!(
                    "disarm: unknown mode `{other}`; use \"strip\" or \"refuse\""
                )))
            }
        };
        Ok(Profile {
            name: name.to_string(),
            description: s.description,
            allowed_types,
            archives,
            dirty_words,
            pii,
            geodata,
            office_action: s.office.and_then(|o| o.action).unwrap_or(Action::Reject),
            legacy_encodings: s.legacy_encodings.unwrap_or(false),
            tables,
            malware,
            yara,
            disarm,
        })
    }

    /// `[profile.NAME]`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The profile's `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Distinct dirty words after normalisation.
    pub fn word_count(&self) -> usize {
        self.dirty_words.as_ref().map_or(0, |d| d.words.len())
    }

    pub(crate) fn dirty_words(&self) -> Option<&DirtyWordRules> {
        self.dirty_words.as_ref()
    }

    pub(crate) fn pii(&self) -> Option<&PiiRules> {
        self.pii.as_ref()
    }

    pub(crate) fn geodata(&self) -> Option<&GeoRules> {
        self.geodata.as_ref()
    }

    /// `columns`, `require_rules` and `suppression`.
    pub(crate) fn tables(&self) -> &TableRules {
        &self.tables
    }

    /// Does a column rule of the profile pseudonymize (so the guard needs
    /// a pseudonym key, [`crate::Guard::with_pseudonym_key`])?
    pub fn pseudonymizes(&self) -> bool {
        self.tables
            .columns
            .iter()
            .any(|c| c.action == crate::rules::ColumnAction::Pseudonymize)
    }

    /// `malware = { … }`: the engine every file and archive member is
    /// scanned with, and what to do when it cannot answer.
    pub fn malware(&self) -> Option<&MalwareRules> {
        self.malware.as_ref()
    }

    /// `yara = { … }`: the rules every file and archive member is scanned
    /// with, compiled.
    pub fn yara(&self) -> Option<&crate::yara::YaraRules> {
        self.yara.as_ref()
    }

    /// `disarm`, when the profile sets it.
    pub fn disarm(&self) -> Option<Disarm> {
        self.disarm
    }

    /// Does the profile ask for any check of the content itself?
    pub(crate) fn inspects_content(&self) -> bool {
        self.dirty_words.is_some() || self.pii.as_ref().is_some_and(|p| !p.detectors.is_empty())
    }

    /// Is a (non-archive) media type allowed?
    pub(crate) fn type_allowed(&self, mime: &str) -> bool {
        let Some(list) = &self.allowed_types else {
            return true;
        };
        list.iter().any(|p| match p.strip_suffix("/*") {
            Some(top) => mime.split_once('/').is_some_and(|(t, _)| t == top),
            None => p == mime,
        })
    }
}

fn valid_type_pattern(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
    };
    t.split_once('/')
        .is_some_and(|(a, b)| token(a) && (token(b) || b == "*"))
}

fn archive_rules(a: Option<ArchiveSettings>) -> Result<ArchiveRules, String> {
    let Some(a) = a else {
        return Ok(ArchiveRules {
            allowed: false,
            zip: false,
            tar: false,
            gzip: false,
            max_depth: DEFAULT_MAX_DEPTH,
            max_members: DEFAULT_MAX_MEMBERS,
            max_expanded_bytes: DEFAULT_MAX_EXPANDED_BYTES,
            max_ratio: DEFAULT_MAX_RATIO,
        });
    };
    let (mut zip, mut tar, mut gzip) = (true, true, true);
    if let Some(f) = a.formats {
        (zip, tar, gzip) = (false, false, false);
        for x in f {
            match x.as_str() {
                "zip" => zip = true,
                "tar" => tar = true,
                "gzip" => gzip = true,
                other => {
                    return Err(format!(
                        "archives.formats: unknown format `{other}`; known: zip, tar, gzip"
                    ))
                }
            }
        }
    }
    let max_depth = a.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
    if !(1..=16).contains(&max_depth) {
        return Err("archives.max_depth must be between 1 and 16".into());
    }
    let max_ratio = a.max_ratio.unwrap_or(DEFAULT_MAX_RATIO);
    if !(1..=100_000).contains(&max_ratio) {
        return Err("archives.max_ratio must be between 1 and 100000".into());
    }
    let max_members = a.max_members.unwrap_or(DEFAULT_MAX_MEMBERS);
    let max_expanded_bytes = a.max_expanded_bytes.unwrap_or(DEFAULT_MAX_EXPANDED_BYTES);
    if max_members == 0 || max_expanded_bytes == 0 {
        return Err("archives.max_members and max_expanded_bytes must be at least 1".into());
    }
    Ok(ArchiveRules {
        allowed: a.allowed.unwrap_or(false),
        zip,
        tar,
        gzip,
        max_depth,
        max_members,
        max_expanded_bytes,
        max_ratio,
    })
}

/// Default `malware.max_signature_age_days`.
pub const DEFAULT_MAX_SIGNATURE_AGE_DAYS: u32 = 7;
/// Limits of `malware.timeout_ms` (milliseconds).
pub const MALWARE_TIMEOUT_MS_RANGE: (u64, u64) = (100, 600_000);
/// Largest `malware.max_stream_bytes`: clamd's `StreamMaxLength` is read
/// as a 32-bit size (4 GiB − 1).
pub const MALWARE_MAX_STREAM_BYTES_MAX: u64 = u32::MAX as u64;

/// `malware = { … }`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalwareRules {
    clamd: Clamd,
    on_unavailable: OnUnavailable,
    max_signature_age_days: u32,
}

impl MalwareRules {
    /// The clamd client (socket, timeout, stream limit).
    pub fn clamd(&self) -> &Clamd {
        &self.clamd
    }

    /// What to do when the engine cannot answer.
    pub fn on_unavailable(&self) -> OnUnavailable {
        self.on_unavailable
    }

    /// Signatures older than this many days raise a warning.
    pub fn max_signature_age_days(&self) -> u32 {
        self.max_signature_age_days
    }
}

fn malware_rules(m: MalwareSettings) -> Result<MalwareRules, String> {
    match m.engine.as_deref() {
        None | Some("clamd") => {}
        Some(other) => {
            return Err(format!(
                "malware.engine: unknown engine `{other}`; the guard scans with \"clamd\""
            ))
        }
    }
    let socket = m
        .socket
        .unwrap_or_else(|| crate::clamd::DEFAULT_SOCKET.to_string());
    if !socket.starts_with('/') {
        return Err(format!(
            "malware.socket: `{socket}` is not an absolute path; write clamd's LocalSocket, e.g. \"/run/clamav/clamd.ctl\""
        ));
    }
    let (lo, hi) = MALWARE_TIMEOUT_MS_RANGE;
    let timeout_ms = m.timeout_ms.unwrap_or(crate::clamd::DEFAULT_TIMEOUT_MS);
    if !(lo..=hi).contains(&timeout_ms) {
        return Err(format!(
            "malware.timeout_ms must be between {lo} and {hi} (milliseconds)"
        ));
    }
    let on_unavailable = match m.on_unavailable.as_deref() {
        None | Some("refuse") => OnUnavailable::Refuse,
        Some("hold") => OnUnavailable::Hold,
        Some(other) => {
            return Err(format!(
                "malware.on_unavailable: `{other}` is neither \"hold\" nor \"refuse\""
            ))
        }
    };
    let age = m
        .max_signature_age_days
        .unwrap_or(u64::from(DEFAULT_MAX_SIGNATURE_AGE_DAYS));
    if !(1..=365).contains(&age) {
        return Err("malware.max_signature_age_days must be between 1 and 365 (days)".into());
    }
    let max_stream = m
        .max_stream_bytes
        .unwrap_or(crate::clamd::DEFAULT_MAX_STREAM_BYTES);
    if !(1..=MALWARE_MAX_STREAM_BYTES_MAX).contains(&max_stream) {
        return Err(format!(
            "malware.max_stream_bytes must be between 1 and {MALWARE_MAX_STREAM_BYTES_MAX} (bytes)"
        ));
    }
    Ok(MalwareRules {
        clamd: Clamd::new(
            socket,
            std::time::Duration::from_millis(timeout_ms),
            max_stream,
        ),
        on_unavailable,
        max_signature_age_days: u32::try_from(age).unwrap_or(DEFAULT_MAX_SIGNATURE_AGE_DAYS),
    })
}

/// One entry per line, UTF-8; blank lines and lines starting with `#` are
/// ignored; surrounding white space is trimmed; entries are normalised
/// and de-duplicated.
fn parse_list(
    path: &Path,
    bytes: &[u8],
    words: &mut Vec<(String, String)>,
    seen: &mut HashSet<String>,
) -> Result<(), GuardError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        let invalid = |message: &str| GuardError::ListInvalid {
            path: path.to_path_buf(),
            line: lineno,
            message: message.to_string(),
        };
        let text = std::str::from_utf8(line)
            .map_err(|_| invalid("not UTF-8 text; save the list as UTF-8"))?;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let norm = normalize_word(text);
        if norm.is_empty() {
            return Err(invalid(
                "the entry is only spaces or invisible characters; remove the line",
            ));
        }
        if norm.len() == 1 {
            return Err(invalid(
                "a single letter or digit would match almost everything; remove the line or write a longer word",
            ));
        }
        if norm.len() > WORD_MAX_BYTES {
            return Err(invalid(&format!(
                "the entry is longer than {WORD_MAX_BYTES} bytes; dirty words are words, not sentences"
            )));
        }
        if seen.insert(norm.clone()) {
            words.push((norm, format!("{}:{lineno}", path.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lists(path: &Path) -> io::Result<Vec<u8>> {
        match path.to_str() {
            Some("/w/a.txt") => Ok("# markings\n秘密\n機密\n\n  绝密  \n".as_bytes().to_vec()),
            Some("/w/bad.txt") => Ok(b"ok\n\xFF\xFE\n".to_vec()),
            Some("/w/blank.txt") => Ok("x y\n\u{200B} \u{3000}\n".as_bytes().to_vec()),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }

    #[test]
    fn compiles_the_documented_example() {
        let p = Profile::from_settings(
            "strict-public",
            &json!({
                "description": "What may leave",
                "allowed_types": ["text/csv", "application/json", "application/geo+json", "text/*"],
                "archives": { "allowed": false, "formats": ["zip", "tar", "gzip"], "max_depth": 2, "max_members": 10000, "max_expanded_bytes": 4_294_967_296u64, "max_ratio": 100 },
                "dirty_words": { "lists": ["/w/a.txt"], "action": "reject" },
                "pii": { "detectors": ["prc_id", "mobile", "bank_card", "email", "uscc"], "action": "mask", "mask": { "mobile": { "keep_prefix": 3, "keep_suffix": 4 } } },
                "geodata": { "max_decimal_places": 4, "bbox": [73.5, 18.0, 135.1, 53.6], "forbidden_attributes": ["owner_name"], "coordinate_columns": ["lon", "lat"], "action": "mask" }
            }),
            &lists,
        )
        .unwrap();
        assert_eq!(p.word_count(), 3);
        assert!(p.type_allowed("text/plain"));
        assert!(p.type_allowed("application/geo+json"));
        assert!(!p.type_allowed("application/pdf"));
    }

    #[test]
    fn list_errors_name_the_file_and_line() {
        let e = Profile::from_settings(
            "p",
            &json!({"dirty_words": {"lists": ["/w/bad.txt"]}}),
            &lists,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/w/bad.txt:2: not UTF-8 text; save the list as UTF-8"
        );
        let e = Profile::from_settings(
            "p",
            &json!({"dirty_words": {"lists": ["/w/blank.txt"]}}),
            &lists,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/w/blank.txt:2: the entry is only spaces"),
            "{e}"
        );
        let e = Profile::from_settings(
            "p",
            &json!({"dirty_words": {"lists": ["/w/none.txt"]}}),
            &lists,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read dirty-word list /w/none.txt"),
            "{e}"
        );
        let e = Profile::from_settings("p", &json!({"pii": {"detectors": ["ssn"]}}), &lists)
            .unwrap_err();
        assert!(e.to_string().contains("unknown detector `ssn`"), "{e}");
        let e = Profile::from_settings("p", &json!({"pii": {"mode": "x"}}), &lists).unwrap_err();
        assert!(e.to_string().contains("unknown field `mode`"), "{e}");
    }

    #[test]
    fn malware_settings_have_defaults_and_limits() {
        let p = Profile::from_settings("p", &json!({"malware": {}}), &lists).unwrap();
        let m = p.malware().unwrap();
        assert_eq!(m.clamd().socket(), Path::new(crate::clamd::DEFAULT_SOCKET));
        assert_eq!(m.on_unavailable(), OnUnavailable::Refuse);
        assert_eq!(m.max_signature_age_days(), DEFAULT_MAX_SIGNATURE_AGE_DAYS);
        assert_eq!(
            m.clamd().max_stream_bytes(),
            crate::clamd::DEFAULT_MAX_STREAM_BYTES
        );
        let p = Profile::from_settings(
            "p",
            &json!({"malware": {"engine": "clamd", "socket": "/s", "timeout_ms": 500, "on_unavailable": "hold", "max_signature_age_days": 3, "max_stream_bytes": 1000}}),
            &lists,
        )
        .unwrap();
        let m = p.malware().unwrap();
        assert_eq!(m.on_unavailable(), OnUnavailable::Hold);
        assert_eq!(m.clamd().timeout(), std::time::Duration::from_millis(500));
        for bad in [
            json!({"engine": "yara"}),
            json!({"socket": "relative.sock"}),
            json!({"timeout_ms": 5}),
            json!({"on_unavailable": "pass"}),
            json!({"max_signature_age_days": 0}),
            json!({"max_stream_bytes": 0}),
            json!({"sockett": "/s"}),
        ] {
            let e = Profile::from_settings("p", &json!({ "malware": bad }), &lists).unwrap_err();
            assert!(matches!(e, GuardError::Settings { .. }), "{e}");
        }
        assert!(Profile::from_settings("p", &json!({}), &lists)
            .unwrap()
            .malware()
            .is_none());
    }
}
