//! What an inspection found and decided. A report goes to the audit log
//! as it is, so nothing in it may carry a sensitive value: findings hold a
//! keyed hash, a type and a location only.

use serde::{Deserialize, Serialize};

/// The outcome of one inspection, ordered by severity (`Pass` < `Masked` <
/// `Review` < `Reject`): the worst finding decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing found: the package may go on unchanged.
    Pass,
    /// Findings were masked: the masked package may go on instead.
    Masked,
    /// A finding needs a human reviewer's approval before the package may
    /// go on (unchanged).
    Review,
    /// The package must not go on.
    Reject,
}

impl Verdict {
    /// `pass`, `masked`, `review` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Masked => "masked",
            Verdict::Review => "review",
            Verdict::Reject => "reject",
        }
    }
}

/// What a profile says to do about a finding (`action = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse the package.
    Reject,
    /// Transform the finding away and go on.
    Mask,
    /// Hold the package for reviewers.
    Review,
}

impl Action {
    /// `reject`, `mask` or `review`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::Mask => "mask",
            Action::Review => "review",
        }
    }

    pub(crate) fn verdict(self) -> Verdict {
        match self {
            Action::Reject => Verdict::Reject,
            Action::Mask => Verdict::Masked,
            Action::Review => Verdict::Review,
        }
    }
}

/// Which check produced a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A word from a dirty-word list (`detector` is `dirty_word`).
    DirtyWord,
    /// Personal data (`detector` is `prc_id`, `mobile`, `bank_card`,
    /// `email` or `uscc`).
    PersonalData,
    /// Geodata rules (`detector` is `precision`, `bbox`,
    /// `forbidden_attribute` or `coordinate_format`).
    Geodata,
    /// Content the guard cannot look into (`detector` is the type, e.g.
    /// `pdf`), under a profile that asks for content checks.
    Uninspectable,
    /// A malware signature matched (`detector` is `clamav`; `pattern` is
    /// the signature's name as the engine gives it).
    Malware,
    /// Metadata or active content that `disarm` strips or refuses
    /// (`detector`: `image_gps`, `image_georef`, `image_metadata`,
    /// `office_macro`, `office_ole`, `office_activex`, `office_external`,
    /// `office_dde`, `pdf_*`; the location's `field` names the segment,
    /// chunk or tag, e.g. `APP1 Exif`, `IFD 0 tag 34853 GPSInfo`).
    Disarm,
    /// A YARA rule of the profile matched (`detector` is `yara_rule`;
    /// `pattern` is the rule as `FILE-STEM:RULE`, never what it matched),
    /// or a stream could not be scanned (`yara_timeout`,
    /// `yara_unscannable`).
    Yara,
}

impl FindingKind {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DirtyWord => "dirty_word",
            FindingKind::PersonalData => "personal_data",
            FindingKind::Geodata => "geodata",
            FindingKind::Uninspectable => "uninspectable",
            FindingKind::Malware => "malware",
            FindingKind::Disarm => "disarm",
            FindingKind::Yara => "yara",
        }
    }
}

/// Where a finding is. Every field is optional because not every format
/// has lines or fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The archive member path, nested members joined by `!`
    /// (`data.zip` → `parcels.tar!2026/parcels.csv`). A member whose name
    /// itself holds a finding is shown as `#N` (its index) instead.
    /// Absent for the package itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// 1-based line in the member (or package).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// CSV: the column name from the header; JSON: a JSON pointer
    /// (`/features/3/properties/phone`); XML: the element path;
    /// `name` for the file or member name itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 0-based byte offset of the finding's first byte in the member (or
    /// package) as stored, i.e. after decompression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_offset: Option<u64>,
}

/// One thing a check found. Never holds the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Which check.
    pub kind: FindingKind,
    /// Which detector of that check (see [`FindingKind`]).
    pub detector: String,
    /// Where.
    pub location: Location,
    /// Hex HMAC-SHA-256 of the normalised value under the guard's finding
    /// key (see [`Guard::with_finding_key`](crate::Guard::with_finding_key)),
    /// so equal values can be correlated without being revealed. Absent
    /// when the finding has no value (a forbidden column, an opaque type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_hash: Option<String>,
    /// Dirty words: the list entry that matched, as `FILE:LINE` (never the
    /// word itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// What was done: the profile's action, or `reject` where the profile
    /// said `mask` but the guard cannot mask there (the report's reasons
    /// say why).
    pub action: Action,
}

/// One de-identification technique applied to a package: what was done,
/// to which column or detector, to how many values. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deidentification {
    /// `mask`, `pseudonymize`, `generalize`, `drop`, `suppress` or `keep`.
    pub technique: String,
    /// `detector mobile`, `column 联系电话` (a column named by a finding
    /// is shown by number), or `columns 户数, 人口` for suppression.
    pub target: String,
    /// The rule's parameters: `keep 3 first, 4 last`, `to month`,
    /// `k = 5, below k`, … (empty when the technique has none).
    pub rule: String,
    /// How many values the technique changed (for `keep`: values
    /// released as they were; for `drop`: columns removed).
    pub values: u64,
    /// Pseudonyms: the key epoch they were made under.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_epoch: Option<u32>,
}

/// The result of inspecting one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The profile that was applied.
    pub profile: String,
    /// The worst outcome of any check.
    pub verdict: Verdict,
    /// Why, for people: structural problems first (each with its
    /// location), then one summary line per kind of finding. Never holds a
    /// sensitive value.
    pub reasons: Vec<String>,
    /// Up to [`FINDINGS_LISTED_MAX`](crate::FINDINGS_LISTED_MAX) findings, in
    /// the order found.
    pub findings: Vec<Finding>,
    /// How many findings there were in all (may exceed `findings.len()`).
    pub findings_total: u64,
    /// The type the content was recognised as (a media type), if the
    /// guard got that far.
    pub detected_type: Option<String>,
    /// The declared content type, as given.
    pub declared_type: String,
    /// Hex SHA-256 of the package as given. Absent when the inspection
    /// stopped before reading all of it (a structural rejection).
    pub digest_before: Option<String>,
    /// Hex SHA-256 of the package that may go on: equal to
    /// `digest_before` when nothing was changed, the masked package's
    /// digest when `verdict` is `masked`, absent when rejected.
    pub digest_after: Option<String>,
    /// Bytes read from the package.
    pub bytes_read: u64,
    /// Bytes inspected inside archives after decompression.
    pub bytes_expanded: u64,
    /// Archive members inspected (every level counted).
    pub members: u64,
    /// The de-identification record: every technique applied, by column
    /// or detector, with counts and key epochs, never values.
    #[serde(default)]
    pub deidentification: Vec<Deidentification>,
    /// The malware scan, under a profile with `malware = { … }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malware: Option<MalwareScan>,
    /// The YARA scan, under a profile with `yara = { … }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yara: Option<YaraScan>,
}

/// `malware.on_unavailable`: what becomes of a package the engine could
/// not scan (down, too slow, or answering with an error). Never a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Not accepted now, to be tried again: the ingest API answers 503
    /// with `Retry-After`, a spool file stays in the spool for the next
    /// collection. On the egress side (nothing can wait there) the
    /// package is refused like `refuse`.
    Hold,
    /// Refused like any rejected package.
    Refuse,
}

impl OnUnavailable {
    /// `hold` or `refuse`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::Hold => "hold",
            OnUnavailable::Refuse => "refuse",
        }
    }
}

/// What the malware scan of a package came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanStatus {
    /// Every stream scanned was clean (when the inspection stopped early
    /// for another reason, not every member was scanned: see `streams`).
    Clean,
    /// A signature matched: the package is refused.
    Found,
    /// The engine could not answer (down, too slow, an error): the
    /// package is refused, and `on_unavailable` says whether it is held
    /// for another try instead. Never a pass.
    Unavailable,
    /// The file or a member is larger than the engine takes
    /// (`max_stream_bytes`, clamd's `StreamMaxLength`): refused, since
    /// trying again will not help.
    Unscannable,
}

impl ScanStatus {
    /// `clean`, `found`, `unavailable` or `unscannable`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Clean => "clean",
            ScanStatus::Found => "found",
            ScanStatus::Unavailable => "unavailable",
            ScanStatus::Unscannable => "unscannable",
        }
    }
}

/// One signature that matched, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalwareDetection {
    /// The archive member (as in [`Location::member`]); absent for the
    /// package as a whole.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub member: Option<String>,
    /// The signature's name as the engine gives it
    /// (`Win.Test.EICAR_HDB-1`): the engine's name, not package content.
    pub signature: String,
}

/// The malware scan of one package: the engine, its database, and the
/// verdict. Never holds package content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalwareScan {
    /// `clamd`.
    pub engine: String,
    /// The engine's version (`ClamAV 1.4.3`), when it answered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub engine_version: Option<String>,
    /// The signature database's version, when an official database is
    /// loaded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub database_version: Option<u64>,
    /// The database's build time, as the engine gives it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub database_date: Option<String>,
    /// The outcome.
    pub status: ScanStatus,
    /// Streams scanned to a verdict: the package itself and each archive
    /// member at every level.
    pub streams: u64,
    /// Bytes sent to the engine.
    pub bytes: u64,
    /// Signatures that matched.
    #[serde(default)]
    pub detections: Vec<MalwareDetection>,
    /// Why the engine gave no verdict (status `unavailable` or
    /// `unscannable`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// `malware.on_unavailable` of the profile.
    pub on_unavailable: OnUnavailable,
    /// The engine could not answer, the profile says `hold`, and nothing
    /// else refused the package: the verdict is `reject` (never a pass),
    /// but the caller should keep the package for another try rather than
    /// refuse it for good.
    #[serde(default)]
    pub hold: bool,
}

/// What the YARA scan of a package came to, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YaraStatus {
    /// No rule matched in any stream scanned (when the inspection stopped
    /// early for another reason, not every member was scanned: see
    /// `streams`).
    Clean,
    /// A rule matched: the package is refused or held (`yara.action`).
    Matched,
    /// A scan ran past `yara.timeout_s`: refused, never passed.
    Timeout,
    /// A stream is longer than `yara.max_scan_bytes`, or the engine
    /// failed: refused, never passed.
    Unscannable,
}

impl YaraStatus {
    /// `clean`, `matched`, `timeout` or `unscannable`.
    pub fn as_str(self) -> &'static str {
        match self {
            YaraStatus::Clean => "clean",
            YaraStatus::Matched => "matched",
            YaraStatus::Timeout => "timeout",
            YaraStatus::Unscannable => "unscannable",
        }
    }
}

/// One rules file of a profile, as compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YaraRulesFile {
    /// The file, as named in the policy (made absolute).
    pub path: String,
    /// Hex SHA-256 of the file as compiled: which rules judged the package.
    pub sha256: String,
    /// Rules in the file.
    pub rules: usize,
}

/// One rule that matched, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YaraMatch {
    /// The archive member (as in [`Location::member`]); absent for the
    /// package as a whole.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub member: Option<String>,
    /// `FILE-STEM:RULE`: the rules file's name without extension (the
    /// rule's namespace) and the rule's identifier.
    pub rule: String,
    /// The rule's tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The YARA scan of one package: the rules that judged it and what
/// matched, by rule name. Never holds package content (no matched bytes,
/// no offsets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YaraScan {
    /// The rules files, each with its digest and rule count.
    pub files: Vec<YaraRulesFile>,
    /// Rules in all files.
    pub rules: usize,
    /// The outcome.
    pub status: YaraStatus,
    /// Streams scanned to the end: the package itself and each archive
    /// member at every level.
    pub streams: u64,
    /// Bytes scanned (or read to be).
    pub bytes: u64,
    /// Rules that matched, in the order found.
    #[serde(default)]
    pub matches: Vec<YaraMatch>,
    /// Why a stream was not scanned (status `timeout` or `unscannable`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Report {
    /// True when the package (or its masked copy) may go on without a
    /// reviewer: `pass` or `masked`.
    pub fn may_pass(&self) -> bool {
        matches!(self.verdict, Verdict::Pass | Verdict::Masked)
    }
}
