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
    /// Metadata or active content that `disarm` strips or refuses
    /// (`detector` is `image_gps` or `image_metadata`; the location's
    /// `field` names the segment or chunk, e.g. `APP1 Exif`).
    Disarm,
}

impl FindingKind {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DirtyWord => "dirty_word",
            FindingKind::PersonalData => "personal_data",
            FindingKind::Geodata => "geodata",
            FindingKind::Uninspectable => "uninspectable",
            FindingKind::Disarm => "disarm",
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
}

impl Report {
    /// True when the package (or its masked copy) may go on without a
    /// reviewer: `pass` or `masked`.
    pub fn may_pass(&self) -> bool {
        matches!(self.verdict, Verdict::Pass | Verdict::Masked)
    }
}
