//! ferry's content guard: decides whether a package's *content* may cross
//! the one-way link, under a content profile from the policy.
//!
//! It owns, in a fixed order: type by content (magic bytes and structure,
//! agreeing with the declared type and the extension), archive handling
//! with limits, dirty words (over normalised text), personal data
//! (validated detectors), geodata (precision, area, forbidden attributes),
//! and masking; and, where a profile asks, a malware scan by clamd and the
//! site's YARA rules on the package and on every archive member, first. It reads the package as a
//! stream in bounded memory and never panics on any input; bad content is
//! a verdict with a reason, never an error.
//!
//! It must never put a sensitive value into a report: findings carry a
//! keyed hash, a type and a location. It does no network I/O (its one
//! connection is to a local `clamd` socket, when a profile asks for a
//! malware scan: [`Clamd`]), keeps no state between inspections, and
//! writes only the masked package (and scratch copies of nested zip
//! archives) next to the caller's output path.
//!
//! ```no_run
//! # fn main() -> Result<(), ferry_guard::GuardError> {
//! use ferry_guard::{FsLists, Guard, Profile};
//! let settings = serde_json::json!({ "allowed_types": ["text/csv"],
//!     "pii": { "action": "mask", "mask": { "mobile": { "keep_prefix": 3, "keep_suffix": 4 } } } });
//! let guard = Guard::new(Profile::from_settings("strict", &settings, &FsLists)?);
//! let report = guard.inspect("in.csv".as_ref(), "stats.csv", "text/csv", "out/stats.csv".as_ref())?;
//! println!("{} {:?}", report.verdict.as_str(), report.reasons);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod archive;
mod clamd;
mod csv;
mod deid;
mod disarm;
mod emit;
mod error;
mod geo;
mod inspect;
mod json;
mod malware;
mod normalize;
mod opaque;
mod pdf;
mod pii;
mod profile;
mod redact;
mod report;
mod rules;
mod scan;
mod sniff;
mod source;
mod tabular;
mod text;
mod tiff;
mod words;
mod xml;
mod yara;

pub use archive::MEMBER_NAME_MAX_BYTES;
pub use clamd::{
    parse_instream_reply, parse_version_reply, Clamd, ClamdError, Detection, EngineVersion, Scan,
    CHUNK_MAX_BYTES, DEFAULT_MAX_STREAM_BYTES, DEFAULT_SOCKET, DEFAULT_TIMEOUT_MS, REPLY_MAX_BYTES,
    SIGNATURE_MAX_CHARS,
};
pub use csv::{COLUMNS_MAX, RECORD_MAX_BYTES};
pub use error::GuardError;
pub use inspect::{Guard, FINDINGS_LISTED_MAX};
pub use json::{DEPTH_MAX as JSON_DEPTH_MAX, STRING_MAX_BYTES as JSON_STRING_MAX_BYTES};
pub use pii::{prc_id_check, uscc_check};
pub use profile::{
    Disarm, FsLists, ListSource, MalwareRules, Profile, DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_EXPANDED_BYTES, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_RATIO,
    DEFAULT_MAX_SIGNATURE_AGE_DAYS, LIST_MAX_BYTES, MALWARE_MAX_STREAM_BYTES_MAX,
    MALWARE_TIMEOUT_MS_RANGE,
};
pub use report::{
    Action, Deidentification, Finding, FindingKind, Location, MalwareDetection, MalwareScan,
    OnUnavailable, Report, ScanStatus, Verdict, YaraMatch, YaraRulesFile, YaraScan, YaraStatus,
};
pub use rules::{
    COLUMN_KEEP_MAX, DEFAULT_TOTAL_LABELS, K_MAX, MARKER_MAX_CHARS, MASK_LIMITS, STEP_MAX,
};
pub use source::RATIO_FLOOR_BYTES;
pub use words::{GAP_MAX_CHARS, WORDS_MAX, WORD_MAX_BYTES};
pub use xml::DEPTH_MAX as XML_DEPTH_MAX;
pub use yara::{
    YaraRules, DEFAULT_YARA_MAX_SCAN_BYTES, DEFAULT_YARA_TIMEOUT_S, YARA_MAX_MATCHES_PER_PATTERN,
    YARA_MAX_SCAN_BYTES_MAX, YARA_RULES_FILES_MAX, YARA_TIMEOUT_S_RANGE,
};
