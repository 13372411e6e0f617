//! Reading policy files (with includes), checking every key, value and
//! reference, and compiling the result into a [`Policy`].
//!
//! The checker walks the parsed document itself rather than deserializing
//! with serde, so that one run reports *every* problem, each located, instead
//! of stopping at the first. Nothing is returned unless the whole policy is
//! valid: there is no partially loaded policy.

use crate::diag::{suggest, Diagnostic, Severity, Source};
pub use profile_rules::MASK_LIMITS;

#[path = "profile_rules.rs"]
mod profile_rules;
use crate::glob::Glob;
use crate::model::*;
use crate::when::{parse_hhmm, CronSchedule, Schedule, Window, DAY_NAMES};
use ring::digest;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml_edit::{ImDocument, Item, TableLike, Value};

/// Largest policy file; 1 MiB is far more than any real policy and keeps
/// a hostile or corrupt file from costing memory or stack.
pub const FILE_MAX_BYTES: usize = 1 << 20;
/// Most files in one policy, main file and includes together.
pub const FILES_MAX: usize = 32;
/// `yara.timeout_s` bounds (seconds); the guard's
/// `ferry_guard::YARA_TIMEOUT_S_RANGE`, kept equal by a daemon test.
pub const YARA_TIMEOUT_S_MIN: u64 = 2;
/// See [`YARA_TIMEOUT_S_MIN`].
pub const YARA_TIMEOUT_S_MAX: u64 = 60;
/// Largest `yara.max_scan_bytes` (`ferry_guard::YARA_MAX_SCAN_BYTES_MAX`).
pub const YARA_MAX_SCAN_BYTES_MAX: u64 = 1 << 30;
/// Most files in `yara.rules` (`ferry_guard::YARA_RULES_FILES_MAX`).
pub const YARA_RULES_FILES_MAX: usize = 64;
/// Deepest include chain.
pub const INCLUDE_DEPTH_MAX: usize = 8;
/// Most rules in one policy.
/// Shadowing analysis is quadratic in the rules of one channel; this bound
/// keeps `check` within a few seconds for any file.
pub const RULES_MAX: usize = 10_000;
/// Deepest table nesting a policy needs (`[profile.x.archives]` is 3).
const KEY_DEPTH_MAX: usize = 8;

/// Domain prefix of the policy hash, so it can never collide with a hash of
/// something else that happens to have the same bytes.
const HASH_DOMAIN: &[u8] = b"ferry-policy-hash-v1\n";

/// One file of a policy.
pub(crate) struct PolicyFile {
    /// As shown in diagnostics.
    pub(crate) origin: String,
    /// As covered by the hash: the path relative to the main file's
    /// directory as written in `include` (the main file is "").
    pub(crate) hash_name: String,
    pub(crate) text: String,
    pub(crate) line_starts: std::sync::OnceLock<Vec<usize>>,
    /// The directory the file was read from (`None` for a policy given as
    /// text): paths the file names (`yara.rules`) are relative to it.
    pub(crate) dir: Option<PathBuf>,
}

/// Files read for one policy, in discovery order, and the order their
/// contents are compiled in (includes before the including file's own).
pub(crate) struct FileSet {
    pub(crate) files: Vec<PolicyFile>,
    pub(crate) docs: Vec<Option<ImDocument<String>>>,
    pub(crate) compile_order: Vec<usize>,
    pub(crate) diags: Vec<Diagnostic>,
}

impl FileSet {
    pub(crate) fn source(&self, file: usize) -> Source<'_> {
        let f = &self.files[file];
        Source {
            text: &f.text,
            origin: &f.origin,
            line_starts: f
                .line_starts
                .get_or_init(|| ferry_common::located::line_starts(&f.text)),
        }
    }

    /// SHA-256 over the canonical bytes of all files: a domain prefix, then
    /// for each file in discovery order its hash name and contents, each
    /// length-prefixed so no two file sets share an encoding.
    pub(crate) fn hash(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(HASH_DOMAIN);
        for f in &self.files {
            ctx.update(&(f.hash_name.len() as u64).to_be_bytes());
            ctx.update(f.hash_name.as_bytes());
            ctx.update(&(f.text.len() as u64).to_be_bytes());
            ctx.update(f.text.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// Where something is: file index and byte span.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loc {
    file: usize,
    span: Range<usize>,
}

struct Sp<T> {
    v: T,
    loc: Loc,
}

/// Turns bytes into text, or a located diagnostic naming the first byte
/// that is not UTF-8.
fn decode(bytes: Vec<u8>, origin: &str) -> Result<String, Diagnostic> {
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let src = Source {
                text: &prefix,
                origin,
                line_starts: &[],
            };
            Err(src.diag(
                Severity::Error,
                "not-utf8",
                valid..valid,
                format!("the policy file is not UTF-8 text (invalid byte at offset {valid}); is this the right file?"),
            ))
        }
    }
}

/// Cheap pre-check before parsing: a policy never nests deeper than a few
/// levels, and refusing deep nesting here keeps the parser's and the
/// checker's recursion bounded whatever the input.
fn nesting_error(text: &str) -> Option<(Range<usize>, String)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        // The key part of a header or `key = value` line; other lines
        // (array items, string continuations) hold no keys.
        let head: &str = if trimmed.starts_with('[') {
            trimmed.split(']').next().unwrap_or("")
        } else if trimmed.starts_with(|c: char| {
            c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"' || c == '\''
        }) {
            trimmed.split('=').next().unwrap_or("")
        } else {
            ""
        };
        let mut quote: Option<char> = None;
        let mut dots = 0;
        for c in head.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '.') => dots += 1,
                _ => {}
            }
        }
        // Inline nesting deeper than this is refused by the parser's own
        // recursion limit; this bound only keeps hostile lines cheap.
        let opens = trimmed.bytes().filter(|b| *b == b'{' || *b == b'[').count();
        if dots >= KEY_DEPTH_MAX || opens > 256 {
            let start = offset + indent;
            return Some((
                start..start + head.len().clamp(1, 80),
                format!(
                    "nesting deeper than a policy ever needs ({KEY_DEPTH_MAX} levels at most); check that this is a ferry policy file"
                ),
            ));
        }
        offset += line.len();
    }
    None
}

/// Parses one file's text; on failure pushes a located diagnostic.
fn parse_doc(text: &str, origin: &str, diags: &mut Vec<Diagnostic>) -> Option<ImDocument<String>> {
    let src = Source {
        text,
        origin,
        line_starts: &[],
    };
    if text.trim().is_empty() {
        diags.push(src.diag(
            Severity::Error,
            "empty",
            0..0,
            "the policy file is empty; a policy needs at least one [channel.NAME] and one [[rule]] (see docs/policy.md)",
        ));
        return None;
    }
    if let Some((span, message)) = nesting_error(text) {
        diags.push(src.diag(Severity::Error, "too-deep", span, message));
        return None;
    }
    match ImDocument::parse(text.to_string()) {
        Ok(doc) => Some(doc),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().replace('\n', "; ");
            let message = if message.contains("duplicate key") {
                format!("{message}; each key may appear once per table: remove or rename one")
            } else if message.contains("number too large") || message.contains("fit in") {
                format!("{message}: integers are at most 9223372036854775807")
            } else {
                message
            };
            diags.push(src.diag(Severity::Error, "syntax", span, message));
            None
        }
    }
}

/// Reads the main file and its includes.
pub(crate) fn read_files(main: &Path) -> Result<FileSet, crate::PolicyError> {
    let bytes = read_bounded(main).map_err(|source| crate::PolicyError::Io {
        path: main.to_path_buf(),
        source,
    })?;
    let origin = main.display().to_string();
    let mut set = FileSet {
        files: Vec::new(),
        docs: Vec::new(),
        compile_order: Vec::new(),
        diags: Vec::new(),
    };
    let canonical = std::fs::canonicalize(main).unwrap_or_else(|_| main.to_path_buf());
    let mut seen = HashMap::new();
    add_file(
        &mut set,
        bytes,
        origin,
        String::new(),
        Some(canonical),
        &mut seen,
        0,
    );
    Ok(set)
}

/// Parses text with no includes followed (for fuzzing and tests).
pub(crate) fn text_files(text: &str, name: &str) -> FileSet {
    let mut set = FileSet {
        files: Vec::new(),
        docs: Vec::new(),
        compile_order: Vec::new(),
        diags: Vec::new(),
    };
    add_file(
        &mut set,
        text.as_bytes().to_vec(),
        name.to_string(),
        String::new(),
        None,
        &mut HashMap::new(),
        0,
    );
    set
}

/// One byte more than the limit, so that a file too large is reported as
/// such; a FIFO, device or directory is refused at once.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::files::read_regular_prefix(path, FILE_MAX_BYTES as u64 + 1)
}

fn add_file(
    set: &mut FileSet,
    bytes: Vec<u8>,
    origin: String,
    hash_name: String,
    path: Option<PathBuf>,
    seen: &mut HashMap<PathBuf, usize>,
    depth: usize,
) {
    let index = set.files.len();
    if let Some(p) = &path {
        seen.insert(p.clone(), index);
    }
    let dir = path
        .as_ref()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf);
    if bytes.len() > FILE_MAX_BYTES {
        let src = Source {
            text: "",
            origin: &origin,
            line_starts: &[],
        };
        set.diags.push(src.diag(
            Severity::Error,
            "too-large",
            0..0,
            format!(
                "the policy file is larger than {FILE_MAX_BYTES} bytes; a policy is never this big: check that this is a ferry policy file"
            ),
        ));
        set.files.push(PolicyFile {
            line_starts: std::sync::OnceLock::new(),
            origin,
            hash_name,
            text: String::new(),
            dir,
        });
        set.docs.push(None);
        return;
    }
    let text = match decode(bytes, &origin) {
        Ok(t) => t,
        Err(d) => {
            set.diags.push(d);
            set.files.push(PolicyFile {
                line_starts: std::sync::OnceLock::new(),
                origin,
                hash_name,
                text: String::new(),
                dir,
            });
            set.docs.push(None);
            return;
        }
    };
    let doc = parse_doc(&text, &origin, &mut set.diags);
    set.files.push(PolicyFile {
        line_starts: std::sync::OnceLock::new(),
        origin: origin.clone(),
        hash_name: hash_name.clone(),
        text,
        dir,
    });
    // Includes are listed before the file itself is compiled, so their rules
    // come first.
    let includes = doc
        .as_ref()
        .map(|d| include_list(d, index, set))
        .unwrap_or_default();
    set.docs.push(doc);
    for (inc, loc) in includes {
        let src_text = set.files[index].text.clone();
        let src = Source {
            text: &src_text,
            origin: &origin,
            line_starts: &[],
        };
        let fail = |set: &mut FileSet, code: &'static str, msg: String| {
            set.diags
                .push(src.diag(Severity::Error, code, loc.span.clone(), msg));
        };
        let Some(base) = path.as_ref() else {
            fail(
                set,
                "include-failed",
                format!("`include = [\"{inc}\"]`: includes are only followed when the policy is loaded from a file"),
            );
            continue;
        };
        if depth + 1 > INCLUDE_DEPTH_MAX {
            fail(
                set,
                "include-failed",
                format!(
                    "include chain deeper than {INCLUDE_DEPTH_MAX} files; flatten the includes"
                ),
            );
            continue;
        }
        if set.files.len() >= FILES_MAX {
            fail(
                set,
                "include-failed",
                format!("more than {FILES_MAX} policy files; merge some includes"),
            );
            continue;
        }
        let dir = base.parent().unwrap_or(Path::new("/"));
        let target = dir.join(&inc);
        let canonical = match std::fs::canonicalize(&target) {
            Ok(c) => c,
            Err(e) => {
                fail(
                    set,
                    "include-failed",
                    format!(
                        "cannot read included file {}: {e}; check the path (relative to this file)",
                        target.display()
                    ),
                );
                continue;
            }
        };
        if let Some(&first) = seen.get(&canonical) {
            fail(
                set,
                "include-cycle",
                format!("{} is already part of the policy (as {}); a file may be included once and includes may not form a cycle", target.display(), set.files[first].origin),
            );
            continue;
        }
        let bytes = match read_bounded(&canonical) {
            Ok(b) => b,
            Err(e) => {
                fail(
                    set,
                    "include-failed",
                    format!("cannot read included file {}: {e}", target.display()),
                );
                continue;
            }
        };
        let child_hash_name = if hash_name.is_empty() {
            inc.clone()
        } else {
            Path::new(&hash_name)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&inc)
                .display()
                .to_string()
        };
        add_file(
            set,
            bytes,
            target.display().to_string(),
            child_hash_name,
            Some(canonical),
            seen,
            depth + 1,
        );
    }
    set.compile_order.push(index);
}

fn include_list(doc: &ImDocument<String>, file: usize, set: &mut FileSet) -> Vec<(String, Loc)> {
    let Some(item) = doc.as_table().get("include") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let src_text = set.files[file].text.clone();
    let origin = set.files[file].origin.clone();
    let src = Source {
        text: &src_text,
        origin: &origin,
        line_starts: &[],
    };
    match item.as_array() {
        Some(a) => {
            for v in a.iter() {
                let span = v.span().unwrap_or(0..0);
                match v.as_str() {
                    Some(s) if !s.is_empty() && !s.contains('\0') => out.push((s.to_string(), Loc { file, span })),
                    _ => set.diags.push(src.diag(Severity::Error, "wrong-type", span, "`include` entries must be non-empty file paths, e.g. include = [\"identities.toml\"]")),
                }
            }
        }
        None => set.diags.push(src.diag(
            Severity::Error,
            "wrong-type",
            item.span().unwrap_or(0..0),
            "`include` must be an array of file paths, e.g. include = [\"identities.toml\"]",
        )),
    }
    out
}

// ---------------------------------------------------------------------------
// The checker.

struct Ctx<'s> {
    set: &'s FileSet,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn push(&mut self, sev: Severity, code: &'static str, loc: &Loc, msg: impl Into<String>) {
        let d = self
            .set
            .source(loc.file)
            .diag(sev, code, loc.span.clone(), msg);
        self.diags.push(d);
    }
    fn err(&mut self, code: &'static str, loc: &Loc, msg: impl Into<String>) {
        self.push(Severity::Error, code, loc, msg);
    }
    fn warn(&mut self, code: &'static str, loc: &Loc, msg: impl Into<String>) {
        self.push(Severity::Warning, code, loc, msg);
    }
    fn line(&self, loc: &Loc) -> String {
        let src = self.set.source(loc.file);
        format!("{}:{}", src.origin, src.line_of(loc.span.start))
    }
}

/// A table being read: every key is checked against the allowed list
/// up-front, so unknown keys are reported even when the rest is fine.
struct Tbl<'d> {
    file: usize,
    header: Loc,
    what: String,
    table: &'d dyn TableLike,
}

fn as_table(item: &Item) -> Option<(&dyn TableLike, Option<Range<usize>>)> {
    match item {
        Item::Table(t) => Some((t as &dyn TableLike, t.span())),
        Item::Value(Value::InlineTable(t)) => Some((t as &dyn TableLike, t.span())),
        _ => None,
    }
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
        Item::Value(Value::Array(_)) => "an array",
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

impl<'d> Tbl<'d> {
    fn open(
        ctx: &mut Ctx<'_>,
        file: usize,
        item: &'d Item,
        fallback: Range<usize>,
        what: String,
        allowed: &[&str],
    ) -> Option<Tbl<'d>> {
        let Some((table, span)) = as_table(item) else {
            ctx.err(
                "wrong-type",
                &Loc {
                    file,
                    span: item.span().unwrap_or(fallback),
                },
                format!(
                    "wrong type: {what} must be a table, found {}",
                    type_name(item)
                ),
            );
            return None;
        };
        let header = Loc {
            file,
            span: span.unwrap_or(fallback),
        };
        let t = Tbl {
            file,
            header,
            what,
            table,
        };
        for (key, _) in table.iter() {
            if !allowed.contains(&key) {
                let loc = t.key_loc(key);
                let msg = match suggest(key, allowed) {
                    Some(c) => format!("unknown key `{key}`, did you mean `{c}`?"),
                    None => format!(
                        "unknown key `{key}` in {}; remove it (allowed here: {})",
                        t.what,
                        allowed.join(", ")
                    ),
                };
                ctx.err("unknown-key", &loc, msg);
            }
        }
        Some(t)
    }

    fn key_loc(&self, key: &str) -> Loc {
        let span = self
            .table
            .get_key_value(key)
            .and_then(|(k, _)| k.span())
            .unwrap_or_else(|| self.header.span.clone());
        Loc {
            file: self.file,
            span,
        }
    }

    fn item(&self, key: &str) -> Option<(&'d Item, Loc)> {
        let item = self.table.get(key)?;
        let span = item.span().unwrap_or_else(|| self.key_loc(key).span);
        Some((
            item,
            Loc {
                file: self.file,
                span,
            },
        ))
    }

    fn wrong(&self, ctx: &mut Ctx<'_>, key: &str, item: &Item, loc: &Loc, want: &str) {
        ctx.err(
            "wrong-type",
            loc,
            format!(
                "wrong type: `{key}` must be {want}, found {}",
                type_name(item)
            ),
        );
    }

    fn str(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Sp<String>> {
        let (item, loc) = self.item(key)?;
        match item.as_str() {
            Some(s) => Some(Sp {
                v: s.to_string(),
                loc,
            }),
            None => {
                self.wrong(ctx, key, item, &loc, "a string");
                None
            }
        }
    }

    fn required_str(&self, ctx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<String>> {
        if self.table.get(key).is_none() {
            ctx.err(
                "missing-key",
                &self.header,
                format!(
                    "missing key `{key}` in {}: add e.g. {key} = {example}",
                    self.what
                ),
            );
            return None;
        }
        self.str(ctx, key)
    }

    fn bool(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<bool> {
        let (item, loc) = self.item(key)?;
        match item.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong(ctx, key, item, &loc, "true or false");
                None
            }
        }
    }

    /// An integer within `min..=max`; the error names the unit.
    fn uint(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Option<Sp<u64>> {
        let (item, loc) = self.item(key)?;
        let Some(n) = item.as_integer() else {
            self.wrong(ctx, key, item, &loc, &format!("an integer ({unit})"));
            return None;
        };
        match u64::try_from(n) {
            Ok(u) if (min..=max).contains(&u) => Some(Sp { v: u, loc }),
            _ => {
                let range = if max >= i64::MAX as u64 {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                ctx.err(
                    "invalid-value",
                    &loc,
                    format!("`{key}` must be {range} ({unit}), got {n}"),
                );
                None
            }
        }
    }

    fn str_list(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        let (item, loc) = self.item(key)?;
        let Some(arr) = item.as_array() else {
            self.wrong(
                ctx,
                key,
                item,
                &loc,
                &format!("an array of strings, e.g. {key} = [\"…\"]"),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for v in arr.iter() {
            let vloc = Loc {
                file: self.file,
                span: v.span().unwrap_or_else(|| loc.span.clone()),
            };
            match v.as_str() {
                Some(s) => out.push(Sp {
                    v: s.to_string(),
                    loc: vloc,
                }),
                None => {
                    ctx.err(
                        "wrong-type",
                        &vloc,
                        format!("wrong type: `{key}` entries must be strings"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(Sp { v: out, loc })
    }

    fn table(&self, ctx: &mut Ctx<'_>, key: &str, allowed: &[&str]) -> Option<Tbl<'d>> {
        let item = self.table.get(key)?;
        let what = format!("`{key}` of {}", self.what);
        Tbl::open(ctx, self.file, item, self.key_loc(key).span, what, allowed)
    }
}

fn valid_name(s: &str) -> bool {
    (1..=NAME_MAX_CHARS).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Names defined across files, with where each was first defined.
struct Defs<T> {
    items: Vec<(String, Loc, T)>,
    index: HashMap<String, usize>,
    /// Defined but refused: references to them are not reported again.
    broken: HashSet<String>,
}

impl<T> Defs<T> {
    fn new() -> Self {
        Defs {
            items: Vec::new(),
            index: HashMap::new(),
            broken: HashSet::new(),
        }
    }
    fn add(&mut self, ctx: &mut Ctx<'_>, kind: &str, name: String, loc: Loc, v: T) {
        if let Some(&i) = self.index.get(&name) {
            let first = ctx.line(&self.items[i].1);
            ctx.err(
                "duplicate-name",
                &loc,
                format!(
                    "[{kind}.{name}] is defined twice (first at {first}); rename or remove one"
                ),
            );
            return;
        }
        self.index.insert(name.clone(), self.items.len());
        self.items.push((name, loc, v));
    }
    fn names(&self) -> Vec<&str> {
        self.items.iter().map(|(n, _, _)| n.as_str()).collect()
    }
    /// Resolves a reference, reporting an unknown name with a suggestion.
    fn resolve(&self, ctx: &mut Ctx<'_>, kind: &str, key: &str, r: &Sp<String>) -> Option<usize> {
        if let Some(&i) = self.index.get(&r.v) {
            return Some(i);
        }
        if self.broken.contains(&r.v) {
            return None;
        }
        let names = self.names();
        let hint = match suggest(&r.v, &names) {
            Some(c) => format!(", did you mean `{c}`?"),
            None if names.is_empty() => format!("; no [{kind}.NAME] is defined"),
            None => format!("; defined: {}", names.join(", ")),
        };
        ctx.err(
            "unknown-reference",
            &r.loc,
            format!("`{key}` names unknown {kind} `{}`{hint}", r.v),
        );
        None
    }
}

const TOP_KEYS: &[&str] = &[
    "version", "include", "policy", "identity", "channel", "window", "approval", "profile",
    "spool", "rule",
];
const POLICY_KEYS: &[&str] = &["name", "description", "time_zone"];
const IDENTITY_KEYS: &[&str] = &[
    "description",
    "subject",
    "cn",
    "ou",
    "san",
    "fingerprint",
    "role",
    "spool",
    "limits",
];
const LIMIT_KEYS: &[&str] = &[
    "packages_per_minute",
    "bytes_per_minute",
    "packages_per_day",
    "bytes_per_day",
];
const CHANNEL_KEYS: &[&str] = &[
    "description",
    "direction",
    "link",
    "destination",
    "redundancy",
    "retention",
    "profile",
    "egress_profile",
    "approval",
    "windows",
    "limits",
];
const RETENTION_KEYS: &[&str] = &["max_age_s", "max_bytes"];
const WINDOW_KEYS: &[&str] = &["description", "from", "to", "days", "time_zone"];
const APPROVAL_KEYS: &[&str] = &[
    "description",
    "reviewers",
    "roles",
    "expires_after_s",
    "allow_submitter",
];
const PROFILE_KEYS: &[&str] = &[
    "description",
    "allowed_types",
    "archives",
    "dirty_words",
    "pii",
    "geodata",
    "office",
    "legacy_encodings",
    "disarm",
    "columns",
    "require_rules",
    "suppression",
    "malware",
    "yara",
];
const YARA_KEYS: &[&str] = &["rules", "action", "timeout_s", "max_scan_bytes"];
/// What a YARA match may do (it cannot be masked).
const YARA_ACTIONS: &[&str] = &["reject", "review"];
const MALWARE_KEYS: &[&str] = &[
    "engine",
    "socket",
    "timeout_ms",
    "on_unavailable",
    "max_signature_age_days",
    "max_stream_bytes",
];
/// Malware engines the guard can use.
const MALWARE_ENGINES: &[&str] = &["clamd"];
/// What a profile may do with a package the engine could not scan.
const ON_UNAVAILABLE: &[&str] = &["hold", "refuse"];
const OFFICE_KEYS: &[&str] = &["action"];
const DISARM_MODES: &[&str] = &["strip", "refuse"];
const ARCHIVE_KEYS: &[&str] = &[
    "allowed",
    "formats",
    "max_depth",
    "max_members",
    "max_expanded_bytes",
    "max_ratio",
];
const DIRTY_KEYS: &[&str] = &["lists", "action"];
const PII_KEYS: &[&str] = &["detectors", "action", "keep_prefix", "keep_suffix", "mask"];
const GEO_KEYS: &[&str] = &[
    "max_decimal_places",
    "bbox",
    "forbidden_attributes",
    "coordinate_columns",
    "action",
];
const SPOOL_KEYS: &[&str] = &[
    "description",
    "dir",
    "channel",
    "schedule",
    "time_zone",
    "content_type",
];
const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "effect",
    "identities",
    "channels",
    "content_types",
    "names",
    "min_package_bytes",
    "max_package_bytes",
    "windows",
];
/// Content actions a profile may take on a finding.
pub const ACTIONS: &[&str] = &["reject", "mask", "review"];
/// PII detectors the guard implements.
pub const PII_DETECTORS: &[&str] = &["prc_id", "mobile", "bank_card", "email", "uscc"];
/// Archive formats the guard understands.
pub const ARCHIVE_FORMATS: &[&str] = &["zip", "tar", "gzip"];

struct RawIdentity {
    m: IdentityMatcher,
    spool_ref: Option<Sp<String>>,
}

struct RawChannel {
    ch: Channel,
    profile: Option<Sp<String>>,
    egress_profile: Option<Sp<String>>,
    approval: Option<Sp<String>>,
    windows: Vec<Sp<String>>,
}

struct RawWindow {
    from: Option<Sp<String>>,
    to: Option<Sp<String>>,
    days: Option<Sp<Vec<Sp<String>>>>,
    tz: Option<Sp<String>>,
}

struct RawSpool {
    dir: Option<Sp<String>>,
    channel: Option<Sp<String>>,
    schedule: Option<Sp<String>>,
    tz: Option<Sp<String>>,
    content_type: Option<Sp<String>>,
}

struct RawRule {
    id: Sp<String>,
    effect: Effect,
    identities: Vec<Sp<String>>,
    channels: Vec<Sp<String>>,
    content_types: Option<Vec<TypePattern>>,
    names: Option<Vec<Glob>>,
    min: Option<u64>,
    max: Option<u64>,
    windows: Vec<Sp<String>>,
    loc: Loc,
}

/// Checks and compiles a file set. `Ok` carries the warnings.
pub(crate) fn compile(set: &FileSet) -> Result<(Policy, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut ctx = Ctx {
        set,
        diags: set.diags.clone(),
    };
    let mut policy_name = None;
    let mut default_tz: Option<Sp<String>> = None;
    let mut identities: Defs<RawIdentity> = Defs::new();
    let mut channels: Defs<RawChannel> = Defs::new();
    let mut windows: Defs<RawWindow> = Defs::new();
    let mut approvals: Defs<ApprovalRequirement> = Defs::new();
    let mut profiles: Defs<Profile> = Defs::new();
    let mut spools: Defs<RawSpool> = Defs::new();
    let mut rules: Vec<RawRule> = Vec::new();
    let mut misspelled: Vec<(&str, String)> = Vec::new();

    for &file in &set.compile_order {
        let Some(doc) = &set.docs[file] else { continue };
        let root = doc.as_table();
        let top = Tbl {
            file,
            header: Loc { file, span: 0..0 },
            what: "the top level".into(),
            table: root as &dyn TableLike,
        };
        for (key, _) in root.iter() {
            if !TOP_KEYS.contains(&key) {
                let loc = top.key_loc(key);
                // Names under a misspelled table are not reported again as
                // unknown references.
                if let (Some(kind), Some((t, _))) =
                    (suggest(key, TOP_KEYS), root.get(key).and_then(as_table))
                {
                    misspelled.extend(t.iter().map(|(n, _)| (kind, n.to_string())));
                }
                let msg = match suggest(key, TOP_KEYS) {
                    Some(c) => format!("unknown key `{key}`, did you mean `{c}`?"),
                    None => format!(
                        "unknown key `{key}`; remove it (allowed at the top level: {})",
                        TOP_KEYS.join(", ")
                    ),
                };
                ctx.err("unknown-key", &loc, msg);
            }
        }
        if let Some(v) = top.uint(&mut ctx, "version", 0, u64::MAX, "policy language version") {
            if v.v != 1 {
                ctx.err(
                    "invalid-value",
                    &v.loc,
                    format!(
                        "policy language version {} is not supported; this ferry reads version = 1",
                        v.v
                    ),
                );
            }
        }
        if let Some(p) = top.table(&mut ctx, "policy", POLICY_KEYS) {
            if file != 0 {
                ctx.err(
                    "invalid-value",
                    &p.header,
                    "[policy] belongs in the main policy file, not in an included one",
                );
            }
            policy_name = p.str(&mut ctx, "name").map(|s| s.v);
            p.str(&mut ctx, "description");
            default_tz = p.str(&mut ctx, "time_zone");
        }
        for_each_named(&mut ctx, &top, "identity", IDENTITY_KEYS, |ctx, name, t| {
            let Some(v) = read_identity(ctx, name, t) else {
                identities.broken.insert(name.to_string());
                return None;
            };
            identities.add(ctx, "identity", name.into(), t.header.clone(), v);
            Some(())
        });
        for_each_named(&mut ctx, &top, "channel", CHANNEL_KEYS, |ctx, name, t| {
            let Some(v) = read_channel(ctx, name, t) else {
                channels.broken.insert(name.to_string());
                return None;
            };
            channels.add(ctx, "channel", name.into(), t.header.clone(), v);
            Some(())
        });
        for_each_named(&mut ctx, &top, "window", WINDOW_KEYS, |ctx, name, t| {
            let v = RawWindow {
                from: t.required_str(ctx, "from", "\"22:00\""),
                to: t.required_str(ctx, "to", "\"06:00\""),
                days: t.str_list(ctx, "days"),
                tz: t.str(ctx, "time_zone"),
            };
            t.str(ctx, "description");
            windows.add(ctx, "window", name.into(), t.header.clone(), v);
            Some(())
        });
        for_each_named(&mut ctx, &top, "approval", APPROVAL_KEYS, |ctx, name, t| {
            let Some(v) = read_approval(ctx, name, t) else {
                approvals.broken.insert(name.to_string());
                return None;
            };
            approvals.add(ctx, "approval", name.into(), t.header.clone(), v);
            Some(())
        });
        for_each_named(&mut ctx, &top, "profile", PROFILE_KEYS, |ctx, name, t| {
            let Some(v) = read_profile(ctx, name, t) else {
                profiles.broken.insert(name.to_string());
                return None;
            };
            profiles.add(ctx, "profile", name.into(), t.header.clone(), v);
            Some(())
        });
        for_each_named(&mut ctx, &top, "spool", SPOOL_KEYS, |ctx, name, t| {
            t.str(ctx, "description");
            let v = RawSpool {
                dir: t.required_str(ctx, "dir", "\"/var/spool/ferry/NAME\""),
                channel: t.required_str(ctx, "channel", "\"CHANNEL\""),
                schedule: t.required_str(ctx, "schedule", "\"30 1 * * *\" or \"continuous\""),
                tz: t.str(ctx, "time_zone"),
                content_type: t.str(ctx, "content_type"),
            };
            spools.add(ctx, "spool", name.into(), t.header.clone(), v);
            Some(())
        });
        read_rules(&mut ctx, &top, &mut rules);
    }

    for (kind, name) in misspelled {
        match kind {
            "identity" => identities.broken.insert(name),
            "channel" => channels.broken.insert(name),
            "window" => windows.broken.insert(name),
            "approval" => approvals.broken.insert(name),
            "profile" => profiles.broken.insert(name),
            "spool" => spools.broken.insert(name),
            _ => false,
        };
    }

    // Time zones.
    let default_zone = default_tz.as_ref().and_then(|z| zone(&mut ctx, z));

    // Windows.
    let mut compiled_windows: Vec<Option<Window>> = Vec::new();
    for (name, loc, w) in &windows.items {
        compiled_windows.push(compile_window(
            &mut ctx,
            name,
            loc,
            w,
            default_zone.as_ref(),
            default_tz.is_some(),
        ));
    }

    // Identities: spool references.
    let mut compiled_ids = Vec::new();
    for (_, _, raw) in &identities.items {
        if let Some(s) = &raw.spool_ref {
            spools.resolve(&mut ctx, "spool", "spool", s);
        }
        compiled_ids.push(raw.m.clone());
    }

    // Channels: references, window overlaps, release warnings.
    let mut compiled_channels = Vec::new();
    let mut used_profiles = HashSet::new();
    let mut used_windows = HashSet::new();
    let mut used_approvals = HashSet::new();
    for (name, loc, raw) in &channels.items {
        let mut ch = raw.ch.clone();
        for (key, r) in [
            ("profile", &raw.profile),
            ("egress_profile", &raw.egress_profile),
        ] {
            if let Some(r) = r {
                if let Some(i) = profiles.resolve(&mut ctx, "profile", key, r) {
                    used_profiles.insert(i);
                }
            }
        }
        if ch.egress_profile.is_none() {
            ch.egress_profile = ch.profile.clone();
        }
        if let Some(r) = &raw.approval {
            if let Some(i) = approvals.resolve(&mut ctx, "approval", "approval", r) {
                used_approvals.insert(i);
                ch.approval = Some(approvals.items[i].2.clone());
            }
        }
        ch.window_ids = resolve_windows(
            &mut ctx,
            &windows,
            &compiled_windows,
            &raw.windows,
            &mut used_windows,
        );
        if ch.direction == Direction::Release {
            if raw.approval.is_none() {
                ctx.warn(
                    "release-without-approval",
                    loc,
                    format!("release channel `{name}` has no `approval`: packages leave the classified side without the two-person rule; add approval = \"NAME\""),
                );
            }
            if raw.profile.is_none() {
                ctx.warn(
                    "release-without-profile",
                    loc,
                    format!("release channel `{name}` has no content `profile`: nothing inspects what leaves; add profile = \"NAME\""),
                );
            }
        }
        compiled_channels.push(ch);
    }

    // Spools.
    let mut compiled_spools = Vec::new();
    for (name, _, raw) in &spools.items {
        let channel = raw
            .channel
            .as_ref()
            .and_then(|c| channels.resolve(&mut ctx, "channel", "channel", c));
        let tz = match &raw.tz {
            Some(z) => zone(&mut ctx, z).map(|t| (z.v.clone(), t)),
            None => default_zone.clone().map(|t| {
                (
                    default_tz.as_ref().map(|d| d.v.clone()).unwrap_or_default(),
                    t,
                )
            }),
        };
        let dir = raw.dir.as_ref().and_then(|d| {
            if d.v.starts_with('/') && !d.v.contains('\0') && !d.v.split('/').any(|c| c == "..") {
                Some(PathBuf::from(&d.v))
            } else {
                ctx.err("invalid-value", &d.loc, "`dir` must be an absolute directory path without `..`, e.g. \"/var/spool/ferry/registry\"");
                None
            }
        });
        let schedule = raw.schedule.as_ref().and_then(|s| {
            if s.v == "continuous" {
                return Some(Schedule::Continuous);
            }
            let Some((zone_name, tz)) = tz.clone() else {
                if raw.tz.is_none() && default_tz.is_none() {
                    ctx.err("missing-key", &s.loc, format!("spool `{name}` has a cron schedule but no time zone: add time_zone = \"Asia/Shanghai\" here or in [policy]"));
                }
                return None;
            };
            match CronSchedule::parse(&s.v, &zone_name, tz) {
                Ok(c) => {
                    if !c.ever_fires() {
                        ctx.err("schedule-never-fires", &s.loc, format!("cron schedule \"{}\" never fires (no such date); check day-of-month and month", s.v));
                        return None;
                    }
                    Some(Schedule::Cron(c))
                }
                Err(e) => {
                    // +1 skips the opening quote of a basic string.
                    let start = s.loc.span.start + 1 + e.offset;
                    let loc = Loc { file: s.loc.file, span: start..start + e.len.max(1) };
                    ctx.err("invalid-cron", &loc, e.message);
                    None
                }
            }
        });
        let content_type = raw
            .content_type
            .as_ref()
            .and_then(|c| type_pattern(&mut ctx, c, false))
            .map(|t| t.text);
        if let (Some(ch), Some(dir), Some(schedule)) = (channel, dir, schedule) {
            compiled_spools.push(SpoolCollection {
                name: name.clone(),
                dir,
                channel: channels.items[ch].0.clone(),
                schedule,
                content_type,
            });
        }
    }

    // Rules.
    let mut compiled_rules = Vec::new();
    let mut seen_ids: HashMap<String, Loc> = HashMap::new();
    let mut used_ids = HashSet::new();
    for r in &rules {
        if let Some(first) = seen_ids.get(&r.id.v) {
            let at = ctx.line(first);
            ctx.err("duplicate-rule-id", &r.id.loc, format!("rule id `{}` is used twice (first at {at}); decisions cite rule ids, so each must be unique", r.id.v));
        } else {
            seen_ids.insert(r.id.v.clone(), r.id.loc.clone());
        }
        let identities_sel = selector(
            &mut ctx,
            &identities,
            "identity",
            "identities",
            &r.identities,
            &mut used_ids,
        );
        // `"*"` in an allow rule would let every client of the site CA
        // push, including certificates no `[identity.NAME]` matches: an
        // allow names who it allows. A deny rule may still say "everyone".
        if r.effect == Effect::Allow {
            if let Some(star) = r.identities.iter().find(|i| i.v == "*") {
                ctx.err("allows-anyone", &star.loc, format!("allow rule `{}` has identities = [\"*\"], which allows every client of the CA, even one that matches no [identity.NAME]; list the identities it allows (\"*\" is for deny rules)", r.id.v));
            }
        }
        let mut unused = HashSet::new();
        let channels_sel = selector(
            &mut ctx,
            &channels,
            "channel",
            "channels",
            &r.channels,
            &mut unused,
        );
        let window_ids = resolve_windows(
            &mut ctx,
            &windows,
            &compiled_windows,
            &r.windows,
            &mut used_windows,
        );
        if let (Some(a), Some(b)) = (r.min, r.max) {
            if a > b {
                ctx.err("invalid-value", &r.loc, format!("rule `{}`: `min_package_bytes` ({a}) is larger than `max_package_bytes` ({b}); it can never match", r.id.v));
            }
        }
        if let (Some(identities_sel), Some(channels_sel)) = (identities_sel, channels_sel) {
            compiled_rules.push((
                r,
                Rule {
                    id: Arc::from(r.id.v.as_str()),
                    effect: r.effect,
                    identities: identities_sel,
                    channels: channels_sel,
                    content_types: r.content_types.clone(),
                    names: r.names.clone(),
                    min_bytes: r.min,
                    max_bytes: r.max,
                    windows: window_ids,
                    defined_at: ctx.line(&r.loc),
                },
            ));
        }
    }

    // Shadowing: a rule that an earlier rule of the same effect covers can
    // never be the deciding rule; an allow rule that a deny rule covers can
    // never allow anything.
    // Only rules that share b's first channel (or name all channels) can
    // cover it, so compare within those groups.
    let mut by_channel: Vec<Vec<usize>> = vec![Vec::new(); channels.items.len()];
    let mut any_channel: Vec<usize> = Vec::new();
    for (j, (_, a)) in compiled_rules.iter().enumerate() {
        match &a.channels {
            Selector::Any => any_channel.push(j),
            Selector::Some(chs) => chs.iter().for_each(|&c| by_channel[c].push(j)),
        }
    }
    for (i, (raw_b, b)) in compiled_rules.iter().enumerate() {
        let mut candidates: Vec<usize> = match &b.channels {
            Selector::Some(chs) if !chs.is_empty() => by_channel[chs[0]].clone(),
            _ => Vec::new(),
        };
        candidates.extend_from_slice(&any_channel);
        candidates.sort_unstable();
        for j in candidates {
            let a = &compiled_rules[j].1;
            if i == j || !covers(a, b) {
                continue;
            }
            if a.effect == b.effect && j < i {
                ctx.warn("shadowed-rule", &raw_b.loc, format!("rule `{}` is shadowed by rule `{}` ({}), which matches everything it matches; it never decides anything: remove it or narrow the earlier rule", b.id, a.id, a.defined_at));
                break;
            }
            if a.effect == Effect::Deny && b.effect == Effect::Allow {
                ctx.warn("rule-never-allows", &raw_b.loc, format!("rule `{}` never allows anything: deny rule `{}` ({}) forbids everything it matches", b.id, a.id, a.defined_at));
                break;
            }
        }
    }

    // Unused definitions are likely typos elsewhere.
    for (i, (name, loc, _)) in identities.items.iter().enumerate() {
        if !used_ids.contains(&i) {
            ctx.warn(
                "unused-definition",
                loc,
                format!("identity `{name}` is not used by any rule"),
            );
        }
    }
    for (i, (name, loc, _)) in profiles.items.iter().enumerate() {
        if !used_profiles.contains(&i) {
            ctx.warn(
                "unused-definition",
                loc,
                format!("profile `{name}` is not used by any channel"),
            );
        }
    }
    for (i, (name, loc, _)) in windows.items.iter().enumerate() {
        if !used_windows.contains(&i) {
            ctx.warn(
                "unused-definition",
                loc,
                format!("window `{name}` is not used by any channel or rule"),
            );
        }
    }
    for (i, (name, loc, _)) in approvals.items.iter().enumerate() {
        if !used_approvals.contains(&i) {
            ctx.warn(
                "unused-definition",
                loc,
                format!("approval `{name}` is not used by any channel"),
            );
        }
    }

    if channels.items.is_empty() && !ctx.diags.iter().any(|d| d.severity == Severity::Error) {
        ctx.err(
            "no-channels",
            &Loc::default(),
            "the policy defines no channel; add at least one [channel.NAME] (see docs/policy.md)",
        );
    }
    let has_errors = ctx.diags.iter().any(|d| d.severity == Severity::Error);
    if !has_errors
        && !compiled_rules
            .iter()
            .any(|(_, r)| r.effect == Effect::Allow)
        && !channels.items.is_empty()
    {
        ctx.warn(
            "no-allow-rules",
            &Loc::default(),
            "no rule has effect = \"allow\": this policy denies every package",
        );
    }

    // In file order, as an administrator reads the file.
    let file_rank = |name: &str| {
        set.files
            .iter()
            .position(|f| f.origin == name)
            .unwrap_or(usize::MAX)
    };
    ctx.diags
        .sort_by_key(|d| (file_rank(&d.file), d.line, d.column));
    if ctx.diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(ctx.diags);
    }

    let rules: Vec<Rule> = compiled_rules.into_iter().map(|(_, r)| r).collect();
    let windows_final: Vec<Window> = compiled_windows.into_iter().flatten().collect();
    let profiles_final: Vec<Profile> = profiles.items.into_iter().map(|(_, _, p)| p).collect();
    let channel_index: HashMap<String, usize> = compiled_channels
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let rules_by_channel = (0..compiled_channels.len())
        .map(|c| {
            (0..rules.len())
                .filter(|&r| rules[r].channels.contains(c))
                .collect()
        })
        .collect();
    let policy = Policy {
        name: policy_name,
        hash: hex::encode(set.hash()),
        files: set.files.iter().map(|f| f.origin.clone()).collect(),
        identities: compiled_ids,
        channels: compiled_channels,
        channel_index,
        windows: windows_final,
        profiles: profiles_final,
        spools: compiled_spools,
        rules,
        rules_by_channel,
    };

    // A spool that no rule lets push to its channel collects for nothing.
    let mut warnings = ctx.diags;
    let spool_locs: Vec<Loc> = spools.items.iter().map(|(_, l, _)| l.clone()).collect();
    for (s, loc) in policy.spools.iter().zip(spool_locs) {
        if !crate::decide::spool_can_push(&policy, s) {
            let d = set.source(loc.file).diag(
                Severity::Warning,
                "spool-never-allowed",
                loc.span.clone(),
                format!("spool `{}` feeds channel `{}`, but no rule allows identity spool:{} on it; its files will all be denied (add an [identity.X] with spool = \"{}\" and an allow rule)", s.name, s.channel, s.name, s.name),
            );
            warnings.push(d);
        }
    }
    Ok((policy, warnings))
}

fn for_each_named<'d>(
    ctx: &mut Ctx<'_>,
    top: &Tbl<'d>,
    kind: &str,
    allowed: &[&str],
    mut f: impl FnMut(&mut Ctx<'_>, &str, &Tbl<'d>) -> Option<()>,
) {
    let Some(item) = top.table.get(kind) else {
        return;
    };
    let key_span = top.key_loc(kind).span;
    let Some((table, _)) = as_table(item) else {
        ctx.err(
            "wrong-type",
            &Loc {
                file: top.file,
                span: item.span().unwrap_or(key_span),
            },
            format!("wrong type: `{kind}` must hold named tables, e.g. [{kind}.NAME]"),
        );
        return;
    };
    for (name, sub) in table.iter() {
        let name_span = table
            .get_key_value(name)
            .and_then(|(k, _)| k.span())
            .unwrap_or_else(|| key_span.clone());
        let name_loc = Loc {
            file: top.file,
            span: name_span.clone(),
        };
        if !valid_name(name) {
            ctx.err("invalid-value", &name_loc, format!("{kind} name `{name}` must be 1 to {NAME_MAX_CHARS} characters from A-Z a-z 0-9 . _ -"));
            continue;
        }
        let what = format!("[{kind}.{name}]");
        if let Some(t) = Tbl::open(ctx, top.file, sub, name_span, what, allowed) {
            f(ctx, name, &t);
        }
    }
}

fn zone(ctx: &mut Ctx<'_>, z: &Sp<String>) -> Option<crate::when::Zone> {
    // Only IANA names: a POSIX TZ string or an abbreviation like CST is
    // ambiguous (China, or US Central?).
    let looks_iana = z.v == "UTC" || z.v.contains('/');
    match crate::when::time_zone(&z.v) {
        Ok(tz) if looks_iana => Some(tz),
        _ => {
            let hint = match z.v.to_ascii_uppercase().as_str() {
                "CST" | "BEIJING" | "CHINA" | "PRC" => ", did you mean `Asia/Shanghai`?",
                _ => "; use an IANA name such as \"Asia/Shanghai\" or \"UTC\"",
            };
            ctx.err(
                "invalid-time-zone",
                &z.loc,
                format!("unknown time zone `{}`{hint}", z.v),
            );
            None
        }
    }
}

fn compile_window(
    ctx: &mut Ctx<'_>,
    name: &str,
    loc: &Loc,
    w: &RawWindow,
    default_zone: Option<&crate::when::Zone>,
    default_given: bool,
) -> Option<Window> {
    let time = |ctx: &mut Ctx<'_>, v: &Option<Sp<String>>, end: bool| -> Option<u16> {
        let v = v.as_ref()?;
        let t = parse_hhmm(&v.v, end);
        if t.is_none() {
            ctx.err(
                "invalid-value",
                &v.loc,
                format!(
                    "`{}` is not a time of day; write HH:MM in 24-hour form, e.g. \"22:00\"{}",
                    v.v,
                    if end { " (\"24:00\" for midnight)" } else { "" }
                ),
            );
        }
        t
    };
    let from = time(ctx, &w.from, false);
    let to = time(ctx, &w.to, true);
    let mut days = [true; 7];
    if let Some(d) = &w.days {
        days = [false; 7];
        for day in &d.v {
            let lower = day.v.to_ascii_lowercase();
            match DAY_NAMES.iter().position(|n| {
                *n == lower || lower.starts_with(n) && lower.len() > 3 && is_full_day(&lower)
            }) {
                Some(i) if days[i] => ctx.err(
                    "invalid-value",
                    &day.loc,
                    format!("day `{}` is listed twice", day.v),
                ),
                Some(i) => days[i] = true,
                None => {
                    let hint = suggest(&lower, &DAY_NAMES)
                        .map_or(String::new(), |c| format!(", did you mean `{c}`?"));
                    ctx.err(
                        "invalid-value",
                        &day.loc,
                        format!(
                            "`{}` is not a day; use mon, tue, wed, thu, fri, sat, sun{hint}",
                            day.v
                        ),
                    );
                }
            }
        }
        if d.v.is_empty() {
            ctx.err("window-never-opens", &d.loc, format!("window `{name}` has no days, so it never opens; list days or remove `days` for every day"));
        }
    }
    let (zone_name, tz) = match &w.tz {
        Some(z) => (z.v.clone(), zone(ctx, z)?),
        None => match default_zone {
            Some(tz) => (tz.iana_name().unwrap_or("UTC").to_string(), tz.clone()),
            None if default_given => return None,
            None => {
                ctx.err("missing-key", loc, format!("window `{name}` has no time zone: add time_zone = \"Asia/Shanghai\" here or in [policy]; windows are in local time"));
                return None;
            }
        },
    };
    let (from, to) = (from?, to?);
    if from == to {
        let at = w.to.as_ref().map_or(loc.clone(), |t| t.loc.clone());
        ctx.err("window-never-opens", &at, format!("window `{name}` opens and closes at the same time, so it never opens; for an all-day window use from = \"00:00\", to = \"24:00\""));
        return None;
    }
    Some(Window {
        name: name.to_string(),
        time_zone: zone_name,
        tz,
        from_minute: from,
        to_minute: to,
        days,
    })
}

fn is_full_day(s: &str) -> bool {
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .contains(&s)
}

fn resolve_windows(
    ctx: &mut Ctx<'_>,
    windows: &Defs<RawWindow>,
    compiled: &[Option<Window>],
    refs: &[Sp<String>],
    used: &mut HashSet<usize>,
) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for r in refs {
        let Some(i) = windows.resolve(ctx, "window", "windows", r) else {
            continue;
        };
        used.insert(i);
        if out.contains(&i) {
            ctx.err(
                "invalid-value",
                &r.loc,
                format!("window `{}` is listed twice", r.v),
            );
            continue;
        }
        if let Some(w) = &compiled[i] {
            for &j in &out {
                if let Some(o) = &compiled[j] {
                    if o.time_zone == w.time_zone && o.overlaps(w) {
                        ctx.err("overlapping-windows", &r.loc, format!("windows `{}` and `{}` overlap; merge them into one window or make them disjoint", o.name, w.name));
                    }
                }
            }
        }
        out.push(i);
    }
    // Keep indexes into the compiled (flattened) window list.
    out.iter()
        .filter_map(|&i| {
            compiled[i]
                .as_ref()
                .map(|_| compiled[..i].iter().filter(|w| w.is_some()).count())
        })
        .collect()
}

fn read_limits(ctx: &mut Ctx<'_>, t: &Tbl<'_>) -> Limits {
    let Some(l) = t.table(ctx, "limits", LIMIT_KEYS) else {
        return Limits::default();
    };
    let get = |ctx: &mut Ctx<'_>, key: &str, unit: &str| {
        l.uint(ctx, key, 1, i64::MAX as u64, unit).map(|v| v.v)
    };
    let limits = Limits {
        packages_per_minute: get(ctx, "packages_per_minute", "packages"),
        bytes_per_minute: get(ctx, "bytes_per_minute", "bytes"),
        packages_per_day: get(ctx, "packages_per_day", "packages"),
        bytes_per_day: get(ctx, "bytes_per_day", "bytes"),
    };
    for (m, d, what) in [
        (
            limits.packages_per_minute,
            limits.packages_per_day,
            "packages",
        ),
        (limits.bytes_per_minute, limits.bytes_per_day, "bytes"),
    ] {
        if let (Some(m), Some(d)) = (m, d) {
            if m > d {
                ctx.warn("limit-order", &l.header, format!("{what}_per_minute ({m}) is larger than {what}_per_day ({d}); the daily limit is reached first"));
            }
        }
    }
    limits
}

fn read_identity(ctx: &mut Ctx<'_>, name: &str, t: &Tbl<'_>) -> Option<RawIdentity> {
    t.str(ctx, "description");
    // Every matcher must restrict: an empty string, an empty list or a
    // subject that is no DN would match anyone, or no one, silently.
    let subject = t.str(ctx, "subject").and_then(|s| match dn_problem(&s.v) {
        None => Some(s.v),
        Some(why) => {
            ctx.err("vacuous-matcher", &s.loc, format!("`subject` {why}; write the certificate's subject exactly as `ferryctl certs show` prints it, e.g. \"CN=stats.registry.example,O=Land Registry\""));
            None
        }
    });
    let cn = t.str(ctx, "cn").and_then(|c| match text_problem(&c.v) {
        None => Some(c.v),
        Some(why) => {
            ctx.err("vacuous-matcher", &c.loc, format!("`cn` {why}; write the certificate's common name, e.g. cn = \"stats.registry.example\", or remove the key"));
            None
        }
    });
    let ou: Vec<String> = non_empty_list(ctx, t, "ou", "ou = [\"Statistics\"]")
        .into_iter()
        .filter_map(|o| match text_problem(&o.v) {
            None => Some(o.v),
            Some(why) => {
                ctx.err("vacuous-matcher", &o.loc, format!("this `ou` entry {why}; write an organizational unit of the certificate, e.g. \"Statistics\""));
                None
            }
        })
        .collect();
    let mut san = Vec::new();
    for s in non_empty_list(ctx, t, "san", "san = [\"dns:stats.registry.example\"]") {
        match San::parse(&s.v) {
            Ok(v) => san.push(v),
            Err(e) => ctx.err("invalid-value", &s.loc, e),
        }
    }
    let fingerprint = t.str(ctx, "fingerprint").and_then(|f| {
        let n = normalize_fingerprint(&f.v);
        if n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(n)
        } else {
            ctx.err("invalid-value", &f.loc, "`fingerprint` must be the certificate's SHA-256: 64 hex digits (colons allowed), as `ferryctl certs show` prints");
            None
        }
    });
    let role = t.str(ctx, "role").and_then(|r| {
        if valid_role(&r.v) {
            Some(r.v)
        } else {
            ctx.err("invalid-value", &r.loc, "`role` must be 1-32 characters of a-z, 0-9, `-`, `_`, starting with a letter (e.g. pusher)");
            None
        }
    });
    let spool_ref = t.str(ctx, "spool");
    let limits = read_limits(ctx, t);
    // Keys present count, valid or not: an invalid value is reported once.
    let cert_fields = ["subject", "cn", "ou", "san", "fingerprint", "role"]
        .iter()
        .any(|k| t.table.get(k).is_some());
    if spool_ref.is_some() && cert_fields {
        ctx.err("invalid-value", &t.header, format!("identity `{name}` mixes `spool` with certificate fields; a spool identity is local and has no certificate: split it in two"));
    } else if spool_ref.is_none()
        && !cert_fields
        // A misspelled key was already reported; do not report its effect.
        && t.table.iter().all(|(k, _)| IDENTITY_KEYS.contains(&k))
    {
        ctx.err("invalid-value", &t.header, format!("identity `{name}` sets nothing to match, so it would match every client; set at least one of subject, cn, ou, san, fingerprint, role or spool"));
    }
    Some(RawIdentity {
        m: IdentityMatcher {
            name: name.to_string(),
            subject,
            cn,
            ou,
            san,
            fingerprint,
            role,
            spool: spool_ref.as_ref().map(|s| s.v.clone()),
            limits,
        },
        spool_ref,
    })
}

/// The role names a certificate can carry (`urn:ferry:role:ROLE`, as
/// `ferry-certs` issues and parses them): 1-32 of a-z 0-9 - _, starting
/// with a letter. A role of any other shape is held by no account.
fn valid_role(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.as_bytes()[0].is_ascii_lowercase()
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Why a text matcher (`cn`, an `ou` entry) restricts nothing, if it does
/// not: empty or blank (an anonymous request has no common name to
/// compare, but a certificate may have an empty one), or with control
/// characters no certificate field shows.
fn text_problem(v: &str) -> Option<&'static str> {
    if v.trim().is_empty() {
        Some("is empty, so it would match a certificate without that field")
    } else if v.trim() != v {
        Some("starts or ends with a space, so it matches no certificate as ferry reads them")
    } else if v.chars().any(char::is_control) {
        Some("holds a control character, which no certificate field shows")
    } else {
        None
    }
}

/// Attribute names as ferry prints certificate subjects (RFC 4514 short
/// names; other attributes print as dotted OIDs).
const DN_ATTRIBUTES: &[&str] = &["CN", "C", "L", "ST", "STREET", "O", "OU", "DC", "UID"];

/// Why `s` is not a subject as ferry prints one (`CN=a,O=b`, RDNs joined
/// by `,`, multi-valued ones by `+`, specials escaped with `\`), if it
/// is not. Subjects are compared exactly, so a subject of any other
/// shape would match no certificate, and an empty one the anonymous
/// request.
fn dn_problem(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        return Some("is empty, so it would match a request without a certificate subject".into());
    }
    // Split on unescaped `,` and `+`.
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Some("ends with a lone `\\`".into()),
                }
            }
            ',' | '+' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    for p in &parts {
        let Some((key, value)) = p.split_once('=') else {
            return Some(format!(
                "is not a distinguished name: `{p}` is not ATTRIBUTE=value"
            ));
        };
        if key.trim() != key || key.is_empty() {
            return Some(format!("has a space around the attribute `{}`: ferry prints subjects without spaces (`CN=a,O=b`)", key.trim()));
        }
        let oid = key.split('.').count() > 1
            && key
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !oid && !DN_ATTRIBUTES.contains(&key) {
            let upper = key.to_ascii_uppercase();
            return Some(if DN_ATTRIBUTES.contains(&upper.as_str()) {
                format!("has the attribute `{key}`: ferry prints it as `{upper}`")
            } else {
                format!("has the attribute `{key}`, which ferry never prints (it prints {} or a dotted OID)", DN_ATTRIBUTES.join(", "))
            });
        }
        if value.is_empty() {
            return Some(format!("has an empty value for `{key}`"));
        }
    }
    None
}

/// A string list whose key, when present, must list something: an empty
/// matcher list would restrict nothing and match every client.
fn non_empty_list(ctx: &mut Ctx<'_>, t: &Tbl<'_>, key: &str, example: &str) -> Vec<Sp<String>> {
    match t.str_list(ctx, key) {
        Some(l) if l.v.is_empty() => {
            ctx.err("vacuous-matcher", &l.loc, format!("`{key} = []` restricts nothing, so the identity would match every client; list what to match, e.g. {example}, or remove the key"));
            Vec::new()
        }
        Some(l) => l.v,
        None => Vec::new(),
    }
}

fn read_channel(ctx: &mut Ctx<'_>, name: &str, t: &Tbl<'_>) -> Option<RawChannel> {
    t.str(ctx, "description");
    let direction = t.required_str(ctx, "direction", "\"release\" or \"import\"");
    let link = t.required_str(ctx, "link", "\"release-1\"");
    let direction = direction.and_then(|d| match d.v.as_str() {
        "release" => Some(Direction::Release),
        "import" => Some(Direction::Import),
        other => {
            let hint = suggest(other, &["release", "import"]).map_or(
                "; use \"release\" (high → low) or \"import\" (low → high)".to_string(),
                |c| format!(", did you mean `{c}`?"),
            );
            ctx.err(
                "invalid-value",
                &d.loc,
                format!("unknown value \"{other}\" for `direction`{hint}"),
            );
            None
        }
    });
    let link = link.and_then(|l| {
        if valid_name(&l.v) {
            Some(l.v)
        } else {
            ctx.err("invalid-value", &l.loc, format!("`link` must be 1 to {NAME_MAX_CHARS} characters from A-Z a-z 0-9 . _ - (the link's `name` in ferryd.toml)"));
            None
        }
    });
    let destination = match t.str(ctx, "destination") {
        None => Some(Destination::Outbox),
        Some(d) if d.v == "outbox" => Some(Destination::Outbox),
        Some(d) => {
            let ok = d.v.strip_prefix("https://").is_some_and(|rest| {
                let host = rest.split('/').next().unwrap_or("");
                !host.is_empty() && !d.v.chars().any(|c| c.is_whitespace() || c.is_control())
            });
            if ok {
                Some(Destination::Downstream(d.v))
            } else {
                ctx.err("invalid-value", &d.loc, "`destination` must be \"outbox\" or an https:// URL of the downstream system, e.g. \"https://portal.example/upload\"");
                None
            }
        }
    };
    let redundancy = t
        .uint(
            ctx,
            "redundancy",
            1,
            u64::from(REDUNDANCY_MAX),
            "sends per package",
        )
        .map_or(1, |v| v.v as u8);
    let mut retention = Retention::default();
    if let Some(r) = t.table(ctx, "retention", RETENTION_KEYS) {
        retention.max_age_s = r
            .uint(ctx, "max_age_s", 1, i64::MAX as u64, "seconds")
            .map(|v| v.v);
        retention.max_bytes = r
            .uint(ctx, "max_bytes", 0, i64::MAX as u64, "bytes")
            .map(|v| v.v);
    }
    let profile = t.str(ctx, "profile");
    let egress_profile = t.str(ctx, "egress_profile");
    let approval = t.str(ctx, "approval");
    let windows = t.str_list(ctx, "windows").map(|l| l.v).unwrap_or_default();
    let limits = read_limits(ctx, t);
    Some(RawChannel {
        ch: Channel {
            name: name.to_string(),
            direction: direction?,
            link: link?,
            destination: destination?,
            redundancy,
            retention,
            profile: profile.as_ref().map(|p| p.v.clone()),
            egress_profile: egress_profile.as_ref().map(|p| p.v.clone()),
            approval: None,
            windows: windows.iter().map(|w| w.v.clone()).collect(),
            limits,
            window_ids: Vec::new(),
        },
        profile,
        egress_profile,
        approval,
        windows,
    })
}

fn read_approval(ctx: &mut Ctx<'_>, name: &str, t: &Tbl<'_>) -> Option<ApprovalRequirement> {
    t.str(ctx, "description");
    if t.table.get("reviewers").is_none() {
        ctx.err(
            "missing-key",
            &t.header,
            format!("missing key `reviewers` in [approval.{name}]: add e.g. reviewers = 2"),
        );
    }
    if t.table.get("expires_after_s").is_none() {
        ctx.err("missing-key", &t.header, format!("missing key `expires_after_s` in [approval.{name}]: add e.g. expires_after_s = 86400 (one day)"));
    }
    let reviewers = t.uint(
        ctx,
        "reviewers",
        1,
        u64::from(REVIEWERS_MAX),
        "distinct reviewers",
    );
    let expires = t.uint(
        ctx,
        "expires_after_s",
        APPROVAL_EXPIRY_MIN_S,
        APPROVAL_EXPIRY_MAX_S,
        "seconds",
    );
    let roles = match t.str_list(ctx, "roles") {
        Some(r) if r.v.is_empty() => {
            ctx.err("invalid-value", &r.loc, "`roles` is empty, so no one could approve; list the reviewer roles, e.g. roles = [\"reviewer\"]");
            None
        }
        Some(r) => {
            let mut ok = true;
            for role in &r.v {
                if !valid_role(&role.v) {
                    ok = false;
                    ctx.err("invalid-value", &role.loc, format!("no account can hold the role `{}`: a role is 1-32 characters of a-z, 0-9, `-`, `_`, starting with a letter (reviewers hold `{REVIEWER_ROLE}`)", role.v));
                }
            }
            if ok && !r.v.iter().any(|role| role.v == REVIEWER_ROLE) {
                ok = false;
                ctx.err("invalid-value", &r.loc, format!("`roles` does not include `{REVIEWER_ROLE}`, the role ferry's reviewers hold, so no one could approve and every held package would expire; add \"{REVIEWER_ROLE}\""));
            }
            ok.then(|| r.v.into_iter().map(|s| s.v).collect())
        }
        None if t.table.get("roles").is_none() => {
            ctx.err(
                "missing-key",
                &t.header,
                format!(
                    "missing key `roles` in [approval.{name}]: add e.g. roles = [\"reviewer\"]"
                ),
            );
            None
        }
        None => None,
    };
    let allow_submitter = t.bool(ctx, "allow_submitter").unwrap_or(false);
    Some(ApprovalRequirement {
        name: name.to_string(),
        reviewers: reviewers?.v as u8,
        roles: roles?,
        expires_after_s: expires?.v,
        allow_submitter,
    })
}

fn action(ctx: &mut Ctx<'_>, t: &Tbl<'_>) -> Option<String> {
    let a = t.str(ctx, "action")?;
    if ACTIONS.contains(&a.v.as_str()) {
        return Some(a.v);
    }
    let hint = suggest(&a.v, ACTIONS).map_or(String::new(), |c| format!(", did you mean `{c}`?"));
    ctx.err(
        "invalid-value",
        &a.loc,
        format!(
            "unknown action \"{}\"{hint}; use \"reject\", \"mask\" or \"review\"",
            a.v
        ),
    );
    None
}

fn check_members(
    ctx: &mut Ctx<'_>,
    list: &Option<Sp<Vec<Sp<String>>>>,
    known: &[&str],
    what: &str,
) {
    for d in list.iter().flat_map(|l| l.v.iter()) {
        if !known.contains(&d.v.as_str()) {
            let hint =
                suggest(&d.v, known).map_or(String::new(), |c| format!(", did you mean `{c}`?"));
            ctx.err(
                "invalid-value",
                &d.loc,
                format!(
                    "unknown {what} `{}`{hint}; known: {}",
                    d.v,
                    known.join(", ")
                ),
            );
        }
    }
}

fn read_profile(ctx: &mut Ctx<'_>, name: &str, t: &Tbl<'_>) -> Option<Profile> {
    let before = ctx.diags.len();
    t.str(ctx, "description");
    for ty in t
        .str_list(ctx, "allowed_types")
        .map(|l| l.v)
        .unwrap_or_default()
    {
        type_pattern(ctx, &ty, true);
    }
    if let Some(a) = t.table(ctx, "archives", ARCHIVE_KEYS) {
        a.bool(ctx, "allowed");
        let formats = a.str_list(ctx, "formats");
        check_members(ctx, &formats, ARCHIVE_FORMATS, "archive format");
        a.uint(ctx, "max_depth", 1, 16, "nesting levels");
        a.uint(ctx, "max_members", 1, i64::MAX as u64, "members");
        a.uint(ctx, "max_expanded_bytes", 1, i64::MAX as u64, "bytes");
        a.uint(
            ctx,
            "max_ratio",
            1,
            100_000,
            "expanded size / compressed size",
        );
    }
    let mut lists = Vec::new();
    if let Some(d) = t.table(ctx, "dirty_words", DIRTY_KEYS) {
        for l in d.str_list(ctx, "lists").map(|l| l.v).unwrap_or_default() {
            if !l.v.starts_with('/') {
                ctx.err("invalid-value", &l.loc, "dirty-word lists are absolute file paths, e.g. \"/etc/ferry/words/classified.txt\"");
            }
            let place = ctx.set.source(l.loc.file).place(l.loc.span.clone());
            lists.push((PathBuf::from(&l.v), place));
        }
        action(ctx, &d);
    }
    if let Some(p) = t.table(ctx, "pii", PII_KEYS) {
        let detectors = p.str_list(ctx, "detectors");
        check_members(ctx, &detectors, PII_DETECTORS, "PII detector");
        action(ctx, &p);
        profile_rules::pii_masks(ctx, &p, detectors.as_ref());
    }
    profile_rules::columns(ctx, t);
    t.bool(ctx, "require_rules");
    profile_rules::suppression(ctx, t);
    if let Some(g) = t.table(ctx, "geodata", GEO_KEYS) {
        g.uint(ctx, "max_decimal_places", 0, 15, "decimal places");
        if let Some((item, loc)) = g.item("bbox") {
            let nums: Option<Vec<f64>> = item.as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
                    .collect()
            });
            let ok = nums.as_ref().is_some_and(|n| {
                n.len() == 4
                    && n.iter().all(|x| x.is_finite())
                    && (-180.0..=180.0).contains(&n[0])
                    && (-180.0..=180.0).contains(&n[2])
                    && (-90.0..=90.0).contains(&n[1])
                    && (-90.0..=90.0).contains(&n[3])
                    && n[0] < n[2]
                    && n[1] < n[3]
            }) && item.as_array().is_some_and(|a| a.len() == 4);
            if !ok {
                ctx.err("invalid-value", &loc, "`bbox` must be [min_lon, min_lat, max_lon, max_lat] in degrees, min below max, e.g. [73.5, 18.0, 135.1, 53.6]");
            }
        }
        g.str_list(ctx, "forbidden_attributes");
        g.str_list(ctx, "coordinate_columns");
        action(ctx, &g);
    }
    // Office documents: macros and embedded binaries (docs/guard.md).
    if let Some(o) = t.table(ctx, "office", OFFICE_KEYS) {
        action(ctx, &o);
    }
    t.bool(ctx, "legacy_encodings");
    if let Some(m) = t.table(ctx, "malware", MALWARE_KEYS) {
        read_malware(ctx, &m);
    }
    let rules_files = match t.table(ctx, "yara", YARA_KEYS) {
        Some(y) => read_yara(ctx, &y),
        None => Vec::new(),
    };
    // Metadata and active content (docs/guard.md, "Disarm").
    if let Some(d) = t.str(ctx, "disarm") {
        if !DISARM_MODES.contains(&d.v.as_str()) {
            let hint = suggest(&d.v, DISARM_MODES)
                .map_or(String::new(), |c| format!(", did you mean `{c}`?"));
            ctx.err(
                "invalid-value",
                &d.loc,
                format!(
                    "unknown disarm mode \"{}\"{hint}; use \"strip\" (cut image metadata out and go on) or \"refuse\" (refuse packages that carry any)",
                    d.v
                ),
            );
        }
    }
    if ctx.diags.len() > before {
        return None;
    }
    let mut settings = to_json(t.table);
    if let Some(rules) = settings.pointer_mut("/yara/rules") {
        // The guard reads the files where this crate found them.
        *rules = rules_files
            .iter()
            .map(|(p, _)| serde_json::Value::String(p.display().to_string()))
            .collect();
    }
    Some(Profile {
        name: name.to_string(),
        settings,
        at: ctx.set.source(t.header.file).place(t.header.span.clone()),
        lists,
        rules_files,
    })
}

/// `yara = { … }` (docs/policy.md): the same limits the guard checks
/// again when it compiles the rules (`ferry_guard::YARA_*`). Returns each
/// rules file made absolute, with where it is named; whether a file can
/// be read and compiled is the guard's to say (`ferryctl policy check`
/// asks it).
fn read_yara(ctx: &mut Ctx<'_>, y: &Tbl<'_>) -> Vec<(PathBuf, crate::diag::Place)> {
    let mut out = Vec::new();
    match y.str_list(ctx, "rules") {
        None if y.item("rules").is_none() => ctx.err(
            "missing-key",
            &y.header,
            "`yara` needs `rules`, the YARA rules files to scan with, e.g. rules = [\"yara/import.yar\"]",
        ),
        None => {}
        Some(list) if list.v.is_empty() => ctx.err(
            "invalid-value",
            &list.loc,
            "`rules` is empty; name at least one YARA rules file, e.g. [\"yara/import.yar\"]",
        ),
        Some(list) if list.v.len() > YARA_RULES_FILES_MAX => ctx.err(
            "invalid-value",
            &list.loc,
            format!("more than {YARA_RULES_FILES_MAX} rules files; merge some"),
        ),
        Some(list) => {
            let mut stems = HashMap::new();
            for r in list.v {
                let dir = ctx.set.files[r.loc.file].dir.clone();
                let path = match (Path::new(&r.v).is_absolute(), dir) {
                    (true, _) => PathBuf::from(&r.v),
                    (false, Some(dir)) if !r.v.is_empty() => dir.join(&r.v),
                    (false, _) => {
                        ctx.err(
                            "invalid-value",
                            &r.loc,
                            "a relative rules path is read from the policy file's directory, so the policy must be loaded from a file; or write an absolute path",
                        );
                        continue;
                    }
                };
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                if let Some(first) = stems.insert(stem.clone(), r.v.clone()) {
                    ctx.err(
                        "invalid-value",
                        &r.loc,
                        format!("`{}` and `{first}` have the same name `{stem}`; matches are reported as NAME:RULE, so rename one", r.v),
                    );
                    continue;
                }
                let place = ctx.set.source(r.loc.file).place(r.loc.span.clone());
                out.push((path, place));
            }
        }
    }
    if let Some(a) = y.str(ctx, "action") {
        if !YARA_ACTIONS.contains(&a.v.as_str()) {
            let hint = suggest(&a.v, YARA_ACTIONS)
                .map_or(String::new(), |c| format!(", did you mean `{c}`?"));
            ctx.err(
                "invalid-value",
                &a.loc,
                format!(
                    "unknown YARA action \"{}\"{hint}; use \"reject\" (refuse the package) or \"review\" (hold it for reviewers): a match cannot be masked",
                    a.v
                ),
            );
        }
    }
    y.uint(
        ctx,
        "timeout_s",
        YARA_TIMEOUT_S_MIN,
        YARA_TIMEOUT_S_MAX,
        "seconds per stream scanned",
    );
    y.uint(
        ctx,
        "max_scan_bytes",
        1,
        YARA_MAX_SCAN_BYTES_MAX,
        "bytes held in memory per stream scanned",
    );
    out
}

/// `malware = { … }` (docs/policy.md): the same limits the guard checks
/// again when it compiles the profile (`ferry_guard::MALWARE_*`).
fn read_malware(ctx: &mut Ctx<'_>, m: &Tbl<'_>) {
    let one_of = |ctx: &mut Ctx<'_>, key: &str, known: &[&str], what: &str| {
        let v = m.str(ctx, key)?;
        if known.contains(&v.v.as_str()) {
            return Some(v);
        }
        let hint = suggest(&v.v, known).map_or(String::new(), |c| format!(", did you mean `{c}`?"));
        ctx.err(
            "invalid-value",
            &v.loc,
            format!(
                "unknown {what} \"{}\"{hint}; use {}",
                v.v,
                known
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        );
        None
    };
    one_of(ctx, "engine", MALWARE_ENGINES, "malware engine");
    if let Some(s) = m.str(ctx, "socket") {
        if !s.v.starts_with('/') {
            ctx.err(
                "invalid-value",
                &s.loc,
                "`socket` is clamd's LocalSocket, an absolute path, e.g. \"/run/clamav/clamd.ctl\"",
            );
        }
    }
    m.uint(ctx, "timeout_ms", 100, 600_000, "milliseconds");
    one_of(
        ctx,
        "on_unavailable",
        ON_UNAVAILABLE,
        "on_unavailable action",
    );
    m.uint(ctx, "max_signature_age_days", 1, 365, "days");
    m.uint(
        ctx,
        "max_stream_bytes",
        1,
        u64::from(u32::MAX),
        "bytes; equal to StreamMaxLength in clamd.conf",
    );
}

fn to_json(t: &dyn TableLike) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, item) in t.iter() {
        map.insert(k.to_string(), item_json(item));
    }
    serde_json::Value::Object(map)
}

fn item_json(item: &Item) -> serde_json::Value {
    match item {
        Item::Value(v) => value_json(v),
        Item::Table(t) => to_json(t),
        Item::ArrayOfTables(a) => serde_json::Value::Array(a.iter().map(|t| to_json(t)).collect()),
        Item::None => serde_json::Value::Null,
    }
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => serde_json::Value::String(s.value().clone()),
        Value::Integer(i) => serde_json::Value::from(*i.value()),
        Value::Float(f) => serde_json::Value::from(*f.value()),
        Value::Boolean(b) => serde_json::Value::Bool(*b.value()),
        Value::Datetime(d) => serde_json::Value::String(d.value().to_string()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(value_json).collect()),
        Value::InlineTable(t) => to_json(t),
    }
}

fn type_pattern(ctx: &mut Ctx<'_>, s: &Sp<String>, allow_wildcard: bool) -> Option<TypePattern> {
    let lower = s.v.to_ascii_lowercase();
    let ok = lower.split_once('/').is_some_and(|(a, b)| {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
        };
        token(a) && (token(b) || (allow_wildcard && b == "*"))
    });
    if ok {
        Some(TypePattern { text: lower })
    } else {
        ctx.err(
            "invalid-value",
            &s.loc,
            format!(
                "`{}` is not a media type; write type/subtype such as \"text/csv\"{}",
                s.v,
                if allow_wildcard { " or \"text/*\"" } else { "" }
            ),
        );
        None
    }
}

/// The tables of `key` written as `[[key]]` or as an array of inline
/// tables, each with its span; `None` (reported as `wrong_type`) when
/// `key` is something else, or absent.
fn tables_of<'d>(
    ctx: &mut Ctx<'_>,
    top: &Tbl<'d>,
    key: &str,
    wrong_type: &str,
) -> Option<Vec<(&'d dyn TableLike, Range<usize>)>> {
    let item = top.table.get(key)?;
    let key_span = top.key_loc(key).span;
    match item {
        Item::ArrayOfTables(a) => Some(
            a.iter()
                .map(|t| (t as &dyn TableLike, t.span().unwrap_or(key_span.clone())))
                .collect(),
        ),
        Item::Value(Value::Array(a)) if a.iter().all(|v| v.as_inline_table().is_some()) => Some(
            a.iter()
                .filter_map(|v| {
                    v.as_inline_table()
                        .map(|t| (t as &dyn TableLike, t.span().unwrap_or(key_span.clone())))
                })
                .collect(),
        ),
        other => {
            ctx.err(
                "wrong-type",
                &Loc {
                    file: top.file,
                    span: other.span().unwrap_or(key_span),
                },
                wrong_type,
            );
            None
        }
    }
}

fn read_rules(ctx: &mut Ctx<'_>, top: &Tbl<'_>, out: &mut Vec<RawRule>) {
    let Some(list) = tables_of(
        ctx,
        top,
        "rule",
        "wrong type: rules are written as [[rule]] tables",
    ) else {
        return;
    };
    let key_span = top.key_loc("rule").span;
    if out.len() + list.len() > RULES_MAX {
        ctx.err(
            "invalid-value",
            &Loc {
                file: top.file,
                span: key_span,
            },
            format!("more than {RULES_MAX} rules; group identities and channels instead"),
        );
        return;
    }
    for (n, (table, span)) in list.into_iter().enumerate() {
        let header = Loc {
            file: top.file,
            span,
        };
        let t = Tbl {
            file: top.file,
            header: header.clone(),
            what: format!("rule #{}", n + 1),
            table,
        };
        for (key, _) in table.iter() {
            if !RULE_KEYS.contains(&key) {
                let loc = t.key_loc(key);
                let msg = match suggest(key, RULE_KEYS) {
                    Some(c) => format!("unknown key `{key}`, did you mean `{c}`?"),
                    None => format!(
                        "unknown key `{key}` in [[rule]]; remove it (allowed here: {})",
                        RULE_KEYS.join(", ")
                    ),
                };
                ctx.err("unknown-key", &loc, msg);
            }
        }
        let id = t.required_str(ctx, "id", "\"R-stats-release\"");
        if let Some(id) = &id {
            if !valid_name(&id.v) {
                ctx.err(
                    "invalid-value",
                    &id.loc,
                    format!(
                        "rule `id` must be 1 to {NAME_MAX_CHARS} characters from A-Z a-z 0-9 . _ -"
                    ),
                );
            }
        }
        let t = Tbl {
            what: id
                .as_ref()
                .map_or(t.what.clone(), |i| format!("rule `{}`", i.v)),
            ..t
        };
        t.str(ctx, "description");
        let effect = t
            .required_str(ctx, "effect", "\"allow\"")
            .and_then(|e| match e.v.as_str() {
                "allow" => Some(Effect::Allow),
                "deny" => Some(Effect::Deny),
                other => {
                    let hint = suggest(other, &["allow", "deny"])
                        .map_or("; use \"allow\" or \"deny\"".to_string(), |c| {
                            format!(", did you mean `{c}`?")
                        });
                    ctx.err(
                        "invalid-value",
                        &e.loc,
                        format!("unknown value \"{other}\" for `effect`{hint}"),
                    );
                    None
                }
            });
        let list = |ctx: &mut Ctx<'_>, key: &str, example: &str| -> Option<Vec<Sp<String>>> {
            if t.table.get(key).is_none() {
                ctx.err(
                    "missing-key",
                    &t.header,
                    format!(
                        "missing key `{key}` in {}: add e.g. {key} = {example} (\"*\" for all)",
                        t.what
                    ),
                );
                return None;
            }
            let l = t.str_list(ctx, key)?;
            if l.v.is_empty() {
                ctx.err(
                    "invalid-value",
                    &l.loc,
                    format!(
                        "`{key}` is empty, so the rule matches nothing; list names or use [\"*\"]"
                    ),
                );
                return None;
            }
            Some(l.v)
        };
        let identities = list(ctx, "identities", "[\"stats-system\"]");
        let channels = list(ctx, "channels", "[\"public-stats\"]");
        let content_types = t.str_list(ctx, "content_types").map(|l| {
            if l.v.is_empty() {
                ctx.err("invalid-value", &l.loc, "`content_types` is empty, so the rule matches nothing; list types or remove the key to match any type");
            }
            l.v.iter().filter_map(|s| type_pattern(ctx, s, true)).collect::<Vec<_>>()
        });
        let names = t.str_list(ctx, "names").map(|l| {
            if l.v.is_empty() {
                ctx.err("invalid-value", &l.loc, "`names` is empty, so the rule matches nothing; list patterns or remove the key to match any name");
            }
            l.v.iter()
                .filter_map(|s| Glob::new(&s.v).map_err(|e| ctx.err("invalid-value", &s.loc, e)).ok())
                .collect::<Vec<_>>()
        });
        let min = t
            .uint(ctx, "min_package_bytes", 0, i64::MAX as u64, "bytes")
            .map(|v| v.v);
        let max = t
            .uint(ctx, "max_package_bytes", 1, i64::MAX as u64, "bytes")
            .map(|v| v.v);
        let windows = t.str_list(ctx, "windows").map(|l| l.v).unwrap_or_default();
        if let (Some(id), Some(effect), Some(identities), Some(channels)) =
            (id, effect, identities, channels)
        {
            out.push(RawRule {
                id,
                effect,
                identities,
                channels,
                content_types,
                names,
                min,
                max,
                windows,
                loc: header,
            });
        }
    }
}

fn selector<T>(
    ctx: &mut Ctx<'_>,
    defs: &Defs<T>,
    kind: &str,
    key: &str,
    refs: &[Sp<String>],
    used: &mut HashSet<usize>,
) -> Option<Selector> {
    if refs.iter().any(|r| r.v == "*") {
        if refs.len() > 1 {
            ctx.err(
                "invalid-value",
                &refs[0].loc,
                format!("`{key}` mixes \"*\" with names; \"*\" alone already means all"),
            );
            return None;
        }
        used.extend(0..defs.items.len());
        return Some(Selector::Any);
    }
    let mut out = Vec::new();
    let mut ok = true;
    for r in refs {
        match defs.resolve(ctx, kind, key, r) {
            Some(i) => {
                used.insert(i);
                out.push(i);
            }
            None => ok = false,
        }
    }
    ok.then_some(Selector::Some(out))
}

/// Whether rule `a` matches every request rule `b` matches (conservative:
/// false when unsure).
fn covers(a: &Rule, b: &Rule) -> bool {
    let types = match (&a.content_types, &b.content_types) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) => y.iter().all(|t| x.iter().any(|s| s.covers(t))),
    };
    let names = match (&a.names, &b.names) {
        (None, _) => true,
        (Some(x), _) if x.iter().any(Glob::matches_everything) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) => y.iter().all(|g| x.iter().any(|h| h.as_str() == g.as_str())),
    };
    let min = a.min_bytes.unwrap_or(0) <= b.min_bytes.unwrap_or(0);
    let max = a.max_bytes.unwrap_or(u64::MAX) >= b.max_bytes.unwrap_or(u64::MAX);
    let windows = a.windows.is_empty()
        || (!b.windows.is_empty() && b.windows.iter().all(|w| a.windows.contains(w)));
    a.identities.covers(&b.identities)
        && a.channels.covers(&b.channels)
        && types
        && names
        && min
        && max
        && windows
}
