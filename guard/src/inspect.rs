//! One inspection: the fixed order of checks, the findings and verdict
//! as they accumulate, the masked output, and the recursion into archive
//! members. Format handlers live in their own modules and report here.

use crate::emit::{EmitError, Emitter, Op, Sink, Target};
use crate::error::GuardError;
use crate::pii::Detector;
use crate::profile::Profile;
use crate::report::{Action, Finding, FindingKind, Location, Report, Verdict};
use crate::scan::{fold_token, ContentScan, SegMap};
use crate::sniff::{resolve, sniff, Kind};
use crate::source::{
    blame, drain, read_full, AtReader, Blame, Budget, Digesting, Prefixed, RandomRead,
};
use crate::{archive, csv, json, opaque, pii, text, xml};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// At most this many findings are listed in a report; all are counted.
pub const FINDINGS_LISTED_MAX: usize = 1000;
/// At most this many structural reasons are kept.
const REASONS_MAX: usize = 100;
/// Bytes read to identify a type.
const HEAD_BYTES: usize = 8192;

/// Inspects packages under one compiled profile. Cheap to share
/// (`Arc<Guard>`); every inspection has its own state.
pub struct Guard {
    profile: Profile,
    key: ring::hmac::Key,
    /// The site's pseudonym key and its epoch (`pseudonymize` rules).
    pseudonyms: Option<(u32, ring::hmac::Key)>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Why an inspection stopped early.
pub(crate) enum Halt {
    /// Rejected; the reason is recorded.
    Rejected,
    /// An I/O error, to be blamed on the machine or the content.
    Io(io::Error),
    /// The machine failed.
    Fatal(GuardError),
}

impl From<io::Error> for Halt {
    fn from(e: io::Error) -> Halt {
        Halt::Io(e)
    }
}

impl Guard {
    /// A guard whose finding hashes are keyed with a random key made now:
    /// equal values correlate within this guard's reports only.
    pub fn new(profile: Profile) -> Guard {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            // No system randomness: fall back to the per-process random
            // keys of the standard library's hasher.
            use std::hash::{BuildHasher, Hasher};
            let mut k = [0u8; 32];
            for chunk in k.chunks_mut(8) {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u8(0);
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k)
        });
        Guard {
            profile,
            key,
            pseudonyms: None,
        }
    }

    /// A guard whose finding hashes are HMAC-SHA-256 under `key`: give
    /// every guard of a site the same secret (kept like the audit keys)
    /// and equal values correlate across reports and restarts, yet cannot
    /// be recovered by hashing every possible phone or identity number.
    pub fn with_finding_key(profile: Profile, key: &[u8]) -> Guard {
        Guard {
            profile,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            pseudonyms: None,
        }
    }

    /// This guard with the site's pseudonym key of key epoch `epoch`
    /// (`ferryctl keys pseudonym`): `pseudonymize` column rules turn a
    /// value into `p<epoch>-` and 20 letters, an HMAC-SHA-256 under a key
    /// derived from `secret` and the channel, so the same value gets the
    /// same pseudonym in every package of a channel until the key is
    /// rotated. Without a key, a value to pseudonymize rejects the
    /// package (fail closed).
    pub fn with_pseudonym_key(mut self, epoch: u32, secret: &[u8]) -> Guard {
        self.pseudonyms = Some((epoch, ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)));
        self
    }

    /// The key epoch of the pseudonym key, if the guard has one.
    pub fn pseudonym_epoch(&self) -> Option<u32> {
        self.pseudonyms.as_ref().map(|(e, _)| *e)
    }

    /// The profile this guard applies.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Inspects the package at `input`, declared by its sender as
    /// `declared_name` with `declared_content_type` (`""` or
    /// `application/octet-stream` when undeclared).
    ///
    /// When the verdict is [`Verdict::Masked`], the masked package has
    /// been written to `masked_out`: the guard writes a temporary file in
    /// the same directory, fsyncs it, renames it over `masked_out` and
    /// fsyncs the directory. With any other verdict `masked_out` is not
    /// touched. Nested zip archives are spooled to unnamed temporary files
    /// in that directory too.
    ///
    /// `Err` only when the machine fails (the package or output cannot be
    /// read or written); bad content is a report with verdict `reject`.
    pub fn inspect(
        &self,
        input: &Path,
        declared_name: &str,
        declared_content_type: &str,
        masked_out: &Path,
    ) -> Result<Report, GuardError> {
        self.inspect_for("", input, declared_name, declared_content_type, masked_out)
    }

    /// [`Guard::inspect`] for a package of `channel`: pseudonyms are
    /// stable per channel (and key epoch).
    pub fn inspect_for(
        &self,
        channel: &str,
        input: &Path,
        declared_name: &str,
        declared_content_type: &str,
        masked_out: &Path,
    ) -> Result<Report, GuardError> {
        let in_err = |source| GuardError::Input {
            path: input.to_path_buf(),
            source,
        };
        // Opened without blocking (a FIFO has no writer to wait for) and
        // typed on the descriptor that is read.
        let file = ferry_regular_file::open_regular(input).map_err(in_err)?;
        let meta = file.metadata().map_err(in_err)?;
        if !meta.is_file() {
            return Err(in_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let dir = match masked_out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (report, sink) = self.run(
            (channel, declared_name, declared_content_type),
            &file,
            input,
            Target::Dir(dir.clone()),
            dir.clone(),
        )?;
        if report.verdict == Verdict::Masked {
            if let Some(Sink::File(w)) = sink {
                let out_err = |source| GuardError::Output {
                    path: masked_out.to_path_buf(),
                    source,
                };
                let tmp = w.into_inner().map_err(|e| out_err(e.into_error()))?;
                tmp.as_file().sync_all().map_err(out_err)?;
                tmp.persist(masked_out).map_err(|e| out_err(e.error))?;
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(out_err)?;
            }
        }
        Ok(report)
    }

    /// Inspects `data` held in memory; returns the masked package when
    /// the verdict is [`Verdict::Masked`]. For tests, fuzzing and small
    /// packages; nested zip archives are spooled to the system's
    /// temporary directory.
    pub fn inspect_bytes(
        &self,
        data: &[u8],
        declared_name: &str,
        declared_content_type: &str,
    ) -> Result<(Report, Option<Vec<u8>>), GuardError> {
        self.inspect_bytes_for("", data, declared_name, declared_content_type)
    }

    /// [`Guard::inspect_bytes`] for a package of `channel`.
    pub fn inspect_bytes_for(
        &self,
        channel: &str,
        data: &[u8],
        declared_name: &str,
        declared_content_type: &str,
    ) -> Result<(Report, Option<Vec<u8>>), GuardError> {
        let (report, sink) = self.run(
            (channel, declared_name, declared_content_type),
            &data,
            Path::new("<memory>"),
            Target::Memory,
            std::env::temp_dir(),
        )?;
        let masked = match sink {
            Some(Sink::Memory(v)) if report.verdict == Verdict::Masked => Some(v),
            _ => None,
        };
        Ok((report, masked))
    }

    fn run(
        &self,
        (channel, name, content_type): (&str, &str, &str),
        src: &dyn RandomRead,
        path: &Path,
        target: Target,
        scratch: PathBuf,
    ) -> Result<(Report, Option<Sink>), GuardError> {
        let mut ctx = Ctx::new(self, src, target, scratch);
        ctx.channel = channel.to_string();
        ctx.declared_type = Some(content_type.to_string());
        // Malware first: a package the engine refuses (or cannot scan) is
        // not looked into any further.
        let scanned = match self.profile.malware() {
            Some(rules) => ctx.scan_package(rules, src),
            None => Ok(()),
        };
        // Then the site's YARA rules, on the package as given.
        let scanned = scanned.and_then(|()| match self.profile.yara() {
            Some(rules) => ctx.yara_package(rules, src),
            None => Ok(()),
        });
        let inspected = scanned.and_then(|()| ctx.top(src, name));
        match inspected {
            Ok(()) | Err(Halt::Rejected) => {}
            Err(Halt::Io(e)) => match blame(e) {
                Blame::Machine(source) => {
                    return Err(GuardError::Input {
                        path: path.to_path_buf(),
                        source,
                    })
                }
                Blame::Content(reason) => {
                    ctx.reject(reason);
                }
            },
            Err(Halt::Fatal(e)) => return Err(e),
        }
        ctx.finish(content_type)
    }
}

/// The state of one inspection.
pub(crate) struct Ctx<'a> {
    pub(crate) profile: &'a Profile,
    guard: &'a Guard,
    /// The package itself, read at offsets where a format needs random
    /// access at the top level (TIFF directories).
    pub(crate) src: &'a dyn RandomRead,
    declared_type: Option<String>,
    verdict: Verdict,
    reasons: Vec<String>,
    findings: Vec<Finding>,
    findings_total: u64,
    tally: BTreeMap<(FindingKind, &'static str, Action), u64>,
    /// Labels of the archive members being inspected, outermost first.
    members: Vec<String>,
    emitter: Option<Emitter<'a>>,
    /// Edits not yet handed to the emitter; sorted when flushed, since
    /// format handlers find them in more than one pass over a block.
    staged: Vec<(u64, u64, Op)>,
    /// The masked copy was abandoned because the package is rejected or
    /// held anyway (masking is still possible, just pointless).
    output_abandoned: bool,
    /// Why masking is impossible where the inspection is now.
    mask_refusal: Option<&'static str>,
    pub(crate) budget: Rc<Budget>,
    pub(crate) scratch: PathBuf,
    detected: Option<Kind>,
    digest_before: Option<String>,
    bytes_read: u64,
    /// The members being inspected are parts of an office document (set
    /// by the zip handler from the archive's own structure).
    pub(crate) office: bool,
    /// The members being inspected are parts of the package's own office
    /// document under `disarm = "strip"`: its macros can be cut out.
    pub(crate) office_strip: bool,
    /// Parts to cut out of the package's office document (`disarm`).
    pub(crate) strip_parts: Vec<String>,
    /// `disarm = "strip"` cut something out of the copy that would go on.
    pub(crate) stripped: bool,
    /// The channel of the package (pseudonyms are stable per channel).
    channel: String,
    /// The pseudonym key of this channel, derived on first use.
    channel_key: Option<ring::hmac::Key>,
    /// The de-identification record: (technique, target, rule) → (values,
    /// key epoch).
    deid: BTreeMap<(&'static str, String, String), (u64, Option<u32>)>,
    /// Values masked per detector, in the order of [`Detector::ALL`].
    detector_masks: [u64; 5],
    /// The malware scan so far (profiles with `malware`).
    pub(crate) malware: Option<crate::report::MalwareScan>,
    /// The YARA scan so far (profiles with `yara`).
    pub(crate) yara: Option<crate::report::YaraScan>,
    /// A scanner of the profile's YARA rules, kept between streams (making
    /// one instantiates the rules' compiled code).
    pub(crate) yara_scanner: Option<yara_x::Scanner<'a>>,
}

impl<'a> Ctx<'a> {
    fn new(guard: &'a Guard, src: &'a dyn RandomRead, target: Target, scratch: PathBuf) -> Ctx<'a> {
        let a = &guard.profile.archives;
        Ctx {
            profile: &guard.profile,
            guard,
            src,
            declared_type: None,
            verdict: Verdict::Pass,
            reasons: Vec::new(),
            findings: Vec::new(),
            findings_total: 0,
            tally: BTreeMap::new(),
            members: Vec::new(),
            emitter: Some(Emitter::new(src, target)),
            staged: Vec::new(),
            output_abandoned: false,
            mask_refusal: None,
            budget: Rc::new(Budget {
                expanded_left: Cell::new(a.max_expanded_bytes),
                expanded_limit: a.max_expanded_bytes,
                expanded: Cell::new(0),
                members: Cell::new(0),
            }),
            scratch,
            detected: None,
            digest_before: None,
            bytes_read: 0,
            office: false,
            office_strip: false,
            strip_parts: Vec::new(),
            stripped: false,
            channel: String::new(),
            channel_key: None,
            deid: BTreeMap::new(),
            detector_masks: [0; 5],
            malware: None,
            yara: None,
            yara_scanner: None,
        }
    }

    // ---- the fixed order, top level -----------------------------------

    fn top(&mut self, src: &dyn RandomRead, name: &str) -> Result<(), Halt> {
        let size = src.size();
        let mut head = vec![0u8; HEAD_BYTES.min(usize::try_from(size).unwrap_or(HEAD_BYTES))];
        let mut got = 0;
        while got < head.len() {
            let n = src.read_at(&mut head[got..], got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        head.truncate(got);
        // 1. Type: declared type, extension and content must agree.
        let declared = match Kind::from_mime(self.declared_type.as_deref().unwrap_or("")) {
            Ok(d) => d,
            Err(r) => return Err(self.reject(r)),
        };
        let named = Kind::from_name(name).map_err(|r| self.reject(r))?;
        let legacy = self.legacy_text(&head);
        let sniffed = if legacy {
            // Typed by what the decoded text looks like.
            let (text, _, _) = encoding_rs::GB18030.decode(&head);
            sniff(text.as_bytes()).map_err(|r| self.reject(r))?
        } else {
            sniff(&head).map_err(|r| self.reject(r))?
        };
        let kind = resolve(sniffed, declared, named).map_err(|r| self.reject(r))?;
        self.detected = Some(kind);
        self.check_allowed(kind, 0)?;
        // The name is content too.
        self.scan_name(name)?;
        let mut at = AtReader::new(src, size);
        if kind == Kind::Zip || matches!(kind, Kind::Office(_)) {
            self.mask_refusal = Some(MASK_IN_ARCHIVE);
            archive::zip::inspect(self, &mut at, size, 0)?;
            self.bytes_read = size;
            self.digest_before = Some(digest_all(src)?);
            return Ok(());
        }
        let mut d = Digesting::new(&mut at);
        let res = match kind {
            Kind::Tar => {
                self.mask_refusal = Some(MASK_IN_ARCHIVE);
                archive::tar::inspect(self, &mut d, 0)
            }
            Kind::Gzip => {
                self.mask_refusal = Some(MASK_IN_ARCHIVE);
                archive::gzip::inspect(self, &mut d, size, name, 0)
            }
            _ if legacy => {
                // Decoded text is inspected, never rewritten: findings'
                // offsets are in the decoded (UTF-8) text.
                self.mask_refusal = Some(
                    "the guard does not rewrite GBK/GB18030 text; convert it to UTF-8, or use action = \"review\"",
                );
                let mut dec = crate::source::Gb18030Reader::new(&mut d);
                let r = self.content(kind, &mut dec, false);
                r.and_then(|()| drain(&mut dec).map(|_| ()).map_err(Halt::Io))
            }
            _ => self.content(kind, &mut d, true),
        };
        let rest = res.and_then(|()| drain(&mut d).map_err(Halt::Io));
        self.bytes_read = d.count;
        let rest = rest?;
        if rest > 0 {
            return Err(self.reject(format!(
                "{rest} bytes after the end of the {} data would not be inspected",
                kind.mime()
            )));
        }
        self.digest_before = Some(hex::encode(d.ctx.finish().as_ref()));
        Ok(())
    }

    /// Inspects non-archive content. `top`: the package itself (maskable
    /// where the format allows).
    pub(crate) fn content(&mut self, kind: Kind, r: &mut dyn Read, top: bool) -> Result<(), Halt> {
        let saved = self.mask_refusal;
        let res = match kind {
            Kind::Text => text::inspect(self, r),
            Kind::Csv => csv::inspect(self, r),
            Kind::Json | Kind::GeoJson => {
                let is_geo = json::inspect(self, r)?;
                if kind == Kind::GeoJson && !is_geo {
                    return Err(self.reject(
                        "declared or named as GeoJSON, but the top-level object has no GeoJSON \"type\"".into(),
                    ));
                }
                let found = if is_geo { Kind::GeoJson } else { Kind::Json };
                if top {
                    self.detected = Some(found);
                }
                if !self.profile.type_allowed(found.mime()) {
                    return Err(self.reject(format!(
                        "type {} is not in allowed_types of profile `{}`",
                        found.mime(),
                        self.profile.name()
                    )));
                }
                Ok(())
            }
            Kind::Xml => {
                self.mask_refusal = Some(
                    "the guard does not rewrite XML; use action = \"review\" or \"reject\", or send CSV/JSON",
                );
                xml::inspect(self, r)
            }
            Kind::Pdf if self.profile.disarm.is_some() => {
                // Rewritten by the parser at the top level (`can_mask`
                // still refuses inside archives).
                self.mask_refusal = None;
                crate::pdf::inspect(self, r, top)
            }
            Kind::Jpeg | Kind::Png | Kind::Tiff if self.profile.disarm.is_some() => {
                // Metadata is cut out of the image where it stands: at the
                // top level the image can be rewritten (`can_mask` still
                // refuses inside archives).
                self.mask_refusal = None;
                crate::disarm::image(self, r, kind, top)
            }
            _ => {
                self.mask_refusal = Some("the guard cannot rewrite this type");
                opaque::inspect(self, r, kind)
            }
        };
        self.mask_refusal = saved;
        res
    }

    /// Inspects one archive member: name already checked for traversal by
    /// the archive handler. `depth`: the nesting level of the member (1
    /// for members of the package).
    pub(crate) fn member(
        &mut self,
        r: &mut dyn Read,
        name: &str,
        index: u64,
        depth: u32,
        own_name: bool,
    ) -> Result<(), Halt> {
        let m = self.budget.members.get() + 1;
        self.budget.members.set(m);
        if m > self.profile.archives.max_members {
            return Err(self.reject(format!(
                "more than max_members ({}) archive members",
                self.profile.archives.max_members
            )));
        }
        // Shown as its index until the name is known to hold no finding.
        self.members.push(format!("#{index}"));
        let hidden = if own_name {
            self.scan_name(name)
        } else {
            Ok(false)
        };
        let res = match hidden {
            Ok(hidden) => {
                if !hidden {
                    if let Some(l) = self.members.last_mut() {
                        *l = name.to_string();
                    }
                }
                let profile = self.profile;
                let scanned = |ctx: &mut Self, r: &mut dyn Read| match profile.malware() {
                    Some(rules) => ctx.scan_member(rules, r, name, depth),
                    None => ctx.member_inner(r, name, depth),
                };
                match profile.yara() {
                    Some(rules) => self.yara_member(rules, r, scanned),
                    None => scanned(self, r),
                }
            }
            Err(h) => Err(h),
        };
        let res = match res {
            Err(Halt::Io(e)) => match blame(e) {
                Blame::Machine(e) => Err(Halt::Io(crate::source::source_failure(e))),
                Blame::Content(reason) => Err(self.reject(reason)),
            },
            other => other,
        };
        self.members.pop();
        res
    }

    pub(crate) fn member_inner(
        &mut self,
        r: &mut dyn Read,
        name: &str,
        depth: u32,
    ) -> Result<(), Halt> {
        let mut head = vec![0u8; HEAD_BYTES];
        let n = read_full(r, &mut head)?;
        head.truncate(n);
        let part = if self.office {
            office_part(name)
        } else {
            OfficePart::Plain
        };
        if self.office && self.profile.disarm.is_some() {
            if let Some(detector) = active_part(name) {
                self.active_part(name, detector);
                return Ok(());
            }
        }
        let named = match (part, Kind::from_name(name)) {
            (OfficePart::Macro, _) if self.profile.disarm.is_some() => {
                self.macro_part(name);
                return Ok(());
            }
            (OfficePart::Macro | OfficePart::Embedded, _) => return self.embedded_part(part),
            (OfficePart::As(k), _) => k,
            (OfficePart::Plain, Ok(Some(k))) => k,
            (OfficePart::Plain, Ok(None)) => {
                return Err(self.reject(
                    "the member's name has no extension, so its type cannot be checked".into(),
                ))
            }
            (OfficePart::Plain, Err(e)) => return Err(self.reject(e)),
        };
        // A GBK/GB18030 member is decoded as the package itself would be
        // (same profile switch): a legacy text inside a zip is as
        // inspectable as one sent alone.
        let legacy = self.legacy_text(&head);
        let sniffed = if legacy {
            let (text, _, _) = encoding_rs::GB18030.decode(&head);
            sniff(text.as_bytes())
        } else {
            sniff(&head)
        }
        .map_err(|e| self.reject(e))?;
        let kind = resolve(sniffed, None, Some(named)).map_err(|e| self.reject(e))?;
        // The XML and text parts of an allowed office document are the
        // document: allowed with it. Images and nested documents are
        // content of their own and need their own type allowed.
        if !(self.office && matches!(kind, Kind::Xml | Kind::Text)) {
            self.check_allowed(kind, depth)?;
        }
        let mut pr = Prefixed::new(&head, r);
        match kind {
            Kind::Zip | Kind::Office(_) => {
                let dir = self.scratch.clone();
                let mut f = tempfile::tempfile_in(&dir).map_err(|source| {
                    Halt::Fatal(GuardError::Scratch {
                        dir: dir.clone(),
                        source,
                    })
                })?;
                let len = copy_to_scratch(&mut pr, &mut f, &dir)?;
                f.seek(io::SeekFrom::Start(0)).map_err(|source| {
                    Halt::Fatal(GuardError::Scratch {
                        dir: dir.clone(),
                        source,
                    })
                })?;
                archive::zip::inspect(self, &mut f, len, depth)?;
            }
            Kind::Tar => archive::tar::inspect(self, &mut pr, depth)?,
            Kind::Gzip => archive::gzip::inspect(self, &mut pr, u64::MAX, name, depth)?,
            _ if legacy => {
                let mut dec = crate::source::Gb18030Reader::new(&mut pr);
                self.content(kind, &mut dec, false)?;
                drain(&mut dec).map_err(Halt::Io)?;
            }
            _ => self.content(kind, &mut pr, false)?,
        }
        let rest = drain(&mut pr)?;
        if rest > 0 {
            return Err(self.reject(format!(
                "{rest} bytes after the end of the {} data would not be inspected",
                kind.mime()
            )));
        }
        Ok(())
    }

    /// Is `head` GBK/GB18030 text the profile lets the guard decode
    /// (`legacy_encodings = true`; not UTF-8, no NUL, valid GB18030)?
    /// A macro or embedded binary part of an office document, where
    /// `disarm` does not deal with it: `office.action` says what happens.
    fn embedded_part(&mut self, part: OfficePart) -> Result<(), Halt> {
        let (detector, what) = if part == OfficePart::Macro {
            ("office_macro", "a macro")
        } else {
            ("office_embedded", "an embedded object")
        };
        let loc = self.location(None, None, None);
        let action = self.profile.office_action;
        let taken = self.finding(
            FindingKind::Uninspectable,
            detector,
            loc,
            None,
            None,
            action,
        );
        if taken != Action::Review {
            self.add_reason(format!(
                "{}{what} in an office document cannot be inspected (office.action = \"{}\")",
                self.where_(),
                taken.as_str()
            ));
        }
        Ok(())
    }

    /// An OLE object or ActiveX control part of an office document under
    /// `disarm`: cut out of a Word document sent as the package itself
    /// when the profile strips (the body's references to it go with it,
    /// see `archive::ooxml`); refused otherwise.
    fn active_part(&mut self, name: &str, detector: &'static str) {
        let loc = self.location(None, None, None);
        let word = name.to_ascii_lowercase().starts_with("word/");
        let strip = self.office_strip
            && self.members.len() == 1
            && word
            && self.profile.disarm == Some(crate::profile::Disarm::Strip);
        if strip {
            self.verdict = self.verdict.max(Verdict::Masked);
            self.count_finding(FindingKind::Disarm, detector, loc, Action::Mask);
            self.strip_parts.push(name.to_string());
            self.stripped = true;
            return;
        }
        self.count_finding(FindingKind::Disarm, detector, loc, Action::Reject);
        self.verdict = Verdict::Reject;
        let what = if detector == "office_activex" {
            "an ActiveX control"
        } else {
            "an embedded OLE object (it can carry any program)"
        };
        let why = if self.profile.disarm == Some(crate::profile::Disarm::Refuse) {
            "the profile sets disarm = \"refuse\""
        } else if !word {
            "the guard strips embedded objects and controls from Word documents only, not from spreadsheets or presentations"
        } else {
            "the guard strips them only from an office document sent as the package itself, not inside an archive"
        };
        let r = format!("{}{what} in an office document: {why}", self.where_());
        self.add_reason(r);
    }

    /// A macro part of an office document under `disarm`: cut out when
    /// the document is the package itself and the profile strips (the zip
    /// handler rewrites the archive without it); refused otherwise.
    fn macro_part(&mut self, name: &str) {
        let loc = self.location(None, None, None);
        let strip = self.office_strip
            && self.members.len() == 1
            && self.profile.disarm == Some(crate::profile::Disarm::Strip);
        match self.profile.disarm {
            Some(crate::profile::Disarm::Strip) if strip => {
                // Not through `can_mask`: this finding's edit is the
                // rewrite of the archive, which the zip handler makes.
                self.verdict = self.verdict.max(Verdict::Masked);
                self.count_finding(FindingKind::Disarm, "office_macro", loc, Action::Mask);
                self.strip_parts.push(name.to_string());
                self.stripped = true;
            }
            mode => {
                self.count_finding(FindingKind::Disarm, "office_macro", loc, Action::Reject);
                self.verdict = Verdict::Reject;
                let why = if mode == Some(crate::profile::Disarm::Refuse) {
                    "the profile sets disarm = \"refuse\""
                } else {
                    "the guard strips macros only from an office document sent as the package itself, not inside an archive"
                };
                let r = format!("{}a macro in an office document: {why}", self.where_());
                self.add_reason(r);
            }
        }
    }

    fn legacy_text(&self, head: &[u8]) -> bool {
        self.profile.legacy_encodings
            && std::str::from_utf8(head).is_err()
            && memchr::memchr(0, head).is_none()
            && crate::sniff::legacy_chinese(head)
    }

    /// Is `kind` allowed at nesting level `depth` (0: the package)?
    fn check_allowed(&mut self, kind: Kind, depth: u32) -> Result<(), Halt> {
        let p = self.profile;
        if kind.is_archive() {
            let a = &p.archives;
            if !a.allowed {
                return Err(self.reject(format!(
                    "{} archives are not allowed by profile `{}` (archives.allowed)",
                    kind.mime(),
                    p.name()
                )));
            }
            let (fmt, ok) = match kind {
                Kind::Zip => ("zip", a.zip),
                Kind::Tar => ("tar", a.tar),
                _ => ("gzip", a.gzip),
            };
            if !ok {
                return Err(self.reject(format!(
                    "{fmt} is not in archives.formats of profile `{}`",
                    p.name()
                )));
            }
            if kind != Kind::Gzip && depth + 1 > a.max_depth {
                return Err(self.reject(format!(
                    "archives nested deeper than max_depth ({})",
                    a.max_depth
                )));
            }
            return Ok(());
        }
        if matches!(kind, Kind::Office(_)) && depth + 1 > p.archives.max_depth {
            return Err(self.reject(format!(
                "an office document nested deeper than archives.max_depth ({})",
                p.archives.max_depth
            )));
        }
        // JSON and GeoJSON are told apart only after parsing.
        let allowed = match kind {
            Kind::Json | Kind::GeoJson => {
                p.type_allowed(Kind::Json.mime()) || p.type_allowed(Kind::GeoJson.mime())
            }
            k => p.type_allowed(k.mime()),
        };
        if !allowed {
            return Err(self.reject(format!(
                "type {} is not in allowed_types of profile `{}`",
                kind.mime(),
                p.name()
            )));
        }
        Ok(())
    }

    /// Dirty words and personal data in a file or member name. `Ok(true)`
    /// when the name holds a finding (and must not be shown).
    fn scan_name(&mut self, name: &str) -> Result<bool, Halt> {
        let mut scan = ContentScan::new(self.profile, false);
        if !scan.is_active() {
            return Ok(false);
        }
        scan.scan(name.as_bytes(), &SegMap::Linear(0));
        if scan.word_hits.is_empty() && scan.pii_hits.is_empty() {
            return Ok(false);
        }
        let saved = self.mask_refusal;
        self.mask_refusal = Some("a name cannot be masked; rename the file");
        let res = self.record_hits(&scan, name.as_bytes(), &SegMap::Linear(0), &mut |_| {
            (None, Some("name".to_string()))
        });
        self.mask_refusal = saved;
        res.map(|_| true)
    }

    // ---- findings -------------------------------------------------------

    fn can_mask(&self) -> Result<(), &'static str> {
        if let Some(r) = self.mask_refusal {
            return Err(r);
        }
        if !self.members.is_empty() {
            return Err(MASK_IN_ARCHIVE);
        }
        if self.emitter.is_none() && !self.output_abandoned {
            return Err("masking failed earlier");
        }
        Ok(())
    }

    /// Will the next finding be listed (so its location is worth
    /// working out)?
    pub(crate) fn listing(&self) -> bool {
        self.findings.len() < FINDINGS_LISTED_MAX
    }

    pub(crate) fn location(
        &self,
        line: Option<u64>,
        field: Option<String>,
        offset: Option<u64>,
    ) -> Location {
        Location {
            member: (!self.members.is_empty()).then(|| self.members.join("!")),
            line,
            field,
            byte_offset: offset,
        }
    }

    pub(crate) fn where_(&self) -> String {
        if self.members.is_empty() {
            String::new()
        } else {
            format!("member {}: ", self.members.join("!"))
        }
    }

    /// Records a finding; returns the action taken (the profile's, or
    /// `reject` where it said mask and masking is impossible here).
    pub(crate) fn finding(
        &mut self,
        kind: FindingKind,
        detector: &'static str,
        location: Location,
        value: Option<&[u8]>,
        pattern: Option<String>,
        action: Action,
    ) -> Action {
        let mut taken = action;
        if action == Action::Mask {
            if let Err(why) = self.can_mask() {
                taken = Action::Reject;
                let r = format!(
                    "{}{} ({}): action is mask, but {why}",
                    self.where_(),
                    kind_label(kind),
                    detector
                );
                self.add_reason(r);
            }
        }
        self.verdict = self.verdict.max(taken.verdict());
        self.list_finding(kind, detector, location, value, pattern, taken);
        taken
    }

    /// Counts and lists a finding whose action was decided by the caller
    /// (the verdict too).
    fn count_finding(
        &mut self,
        kind: FindingKind,
        detector: &'static str,
        location: Location,
        taken: Action,
    ) {
        self.list_finding(kind, detector, location, None, None, taken);
    }

    fn list_finding(
        &mut self,
        kind: FindingKind,
        detector: &'static str,
        location: Location,
        value: Option<&[u8]>,
        pattern: Option<String>,
        taken: Action,
    ) {
        self.findings_total += 1;
        *self.tally.entry((kind, detector, taken)).or_insert(0) += 1;
        if self.findings.len() < FINDINGS_LISTED_MAX {
            let value_hash = value.map(|v| {
                let mut c = ring::hmac::Context::with_key(&self.guard.key);
                c.update(detector.as_bytes());
                c.update(&[0]);
                c.update(v);
                hex::encode(c.sign().as_ref())
            });
            self.findings.push(Finding {
                kind,
                detector: detector.to_string(),
                location,
                value_hash,
                pattern,
                action: taken,
            });
        }
    }

    /// Records the hits of the last `scan` of `seg`. Where the action is
    /// mask, registers edits on the original bytes (star masks for dirty
    /// words, kept prefix/suffix for personal data) unless `raw_edits` is
    /// false; returns the masked hits for callers that rewrite otherwise.
    pub(crate) fn record_hits(
        &mut self,
        scan: &ContentScan<'_>,
        seg: &[u8],
        map: &SegMap<'_>,
        locate: &mut dyn FnMut(u64) -> (Option<u64>, Option<String>),
    ) -> Result<Vec<Masked>, Halt> {
        let mut masked = Vec::new();
        let p = self.profile;
        if let Some(d) = p.dirty_words() {
            for h in &scan.word_hits {
                let loc = if self.listing() {
                    let (line, field) = locate(h.start);
                    self.location(line, field, Some(h.start))
                } else {
                    Location::default()
                };
                let src = d.words.source(h.pattern).to_string();
                let taken = self.finding(
                    FindingKind::DirtyWord,
                    "dirty_word",
                    loc,
                    None,
                    Some(src),
                    d.action,
                );
                if taken == Action::Mask {
                    masked.push(Masked {
                        start: h.start,
                        end: h.end,
                        op: Op::Star,
                    });
                }
            }
        }
        if let Some(rules) = p.pii() {
            for h in &scan.pii_hits {
                let start = map.raw(h.start);
                let end = map.raw(h.end);
                let loc = if self.listing() {
                    let (line, field) = locate(start);
                    self.location(line, field, Some(start))
                } else {
                    Location::default()
                };
                let taken = self.finding(
                    FindingKind::PersonalData,
                    h.detector.name(),
                    loc,
                    Some(&h.value),
                    None,
                    rules.action,
                );
                if taken == Action::Mask {
                    let token = fold_token(seg.get(h.start..h.end).unwrap_or(&[]));
                    let rule = rules.mask(h.detector);
                    let (kp, ks) = pii::keep_at(
                        seg,
                        h.start,
                        h.end,
                        h.detector,
                        rule.keep_prefix,
                        rule.keep_suffix,
                    );
                    // Counted here, written to the record once in `finish`:
                    // findings-dense data masks millions of values.
                    if let Some(n) = Detector::ALL
                        .iter()
                        .position(|d| *d == h.detector)
                        .and_then(|i| self.detector_masks.get_mut(i))
                    {
                        *n += 1;
                    }
                    let replacement = if h.detector == pii::Detector::Email {
                        pii::mask_email(&token, kp, ks)
                    } else {
                        pii::mask_token(&token, kp, ks)
                    };
                    masked.push(Masked {
                        start,
                        end,
                        op: Op::Replace(replacement),
                    });
                }
            }
        }
        Ok(masked)
    }

    // ---- de-identification ---------------------------------------------

    /// Adds `n` values to the de-identification record.
    pub(crate) fn applied(
        &mut self,
        technique: &'static str,
        target: String,
        rule: String,
        n: u64,
        epoch: Option<u32>,
    ) {
        let e = self
            .deid
            .entry((technique, target, rule))
            .or_insert((0, epoch));
        e.0 += n;
    }

    /// A column rule is about to change the package: possible only where
    /// masking is (not inside archives, not in XML); otherwise the package
    /// is rejected with the reason. Sets the verdict to at least masked.
    /// `what` names the rule and column, made only when it is refused.
    pub(crate) fn transforming(&mut self, what: impl FnOnce() -> String) -> Result<(), Halt> {
        if let Err(why) = self.can_mask() {
            let what = what();
            return Err(self.reject(format!("{what}: the rule changes the data, but {why}")));
        }
        self.verdict = self.verdict.max(Verdict::Masked);
        Ok(())
    }

    /// The channel's pseudonym key and its epoch; `None` when the guard
    /// has no pseudonym key.
    pub(crate) fn pseudonym_key(&mut self) -> Option<(u32, &ring::hmac::Key)> {
        let (epoch, master) = self.guard.pseudonyms.as_ref()?;
        if self.channel_key.is_none() {
            // One key per channel: the same value pseudonymized for two
            // channels gives two unrelated tokens, so releases can be
            // joined within a channel only.
            let mut c = ring::hmac::Context::with_key(master);
            c.update(b"ferry-pseudonym-v1\0");
            c.update(self.channel.as_bytes());
            let tag = c.sign();
            self.channel_key = Some(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, tag.as_ref()));
        }
        self.channel_key.as_ref().map(|k| (*epoch, k))
    }

    /// Structural rejection with a reason (prefixed with the member).
    pub(crate) fn reject(&mut self, reason: String) -> Halt {
        let r = format!("{}{reason}", self.where_());
        self.add_reason(r);
        self.verdict = Verdict::Reject;
        Halt::Rejected
    }

    pub(crate) fn add_reason(&mut self, r: String) {
        if self.reasons.len() < REASONS_MAX && !self.reasons.contains(&r) {
            self.reasons.push(r);
        }
    }

    /// The package was read whole (by the malware or YARA scan) before the
    /// inspection proper: its size and digest, kept should the scan end
    /// the inspection.
    pub(crate) fn read_whole(&mut self, bytes: u64, digest: String) {
        self.bytes_read = bytes;
        self.digest_before = Some(digest);
    }

    /// The verdict so far.
    pub(crate) fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Is the package already rejected (no point writing a masked copy)?
    pub(crate) fn rejected(&self) -> bool {
        self.verdict >= Verdict::Review
    }

    // ---- the masked package -------------------------------------------

    /// Registers an edit of the package's bytes `start..end`.
    pub(crate) fn edit(&mut self, start: u64, end: u64, op: Op) -> Result<(), Halt> {
        if !self.members.is_empty() || self.emitter.is_none() {
            return Ok(());
        }
        self.staged.push((start, end, op));
        Ok(())
    }

    /// Hands staged edits to the emitter in order of position.
    fn feed_staged(&mut self) -> Result<(), Halt> {
        let Some(em) = &mut self.emitter else {
            self.staged.clear();
            return Ok(());
        };
        self.staged.sort_by_key(|e| e.0);
        let mut r = Ok(());
        for (s, e, op) in self.staged.drain(..) {
            r = em.edit(s, e, op);
            if r.is_err() {
                break;
            }
        }
        self.staged.clear();
        self.emit_result(r)
    }

    /// Everything before `pos` is final: write it.
    pub(crate) fn flush_to(&mut self, pos: u64) -> Result<(), Halt> {
        if !self.members.is_empty() {
            return Ok(());
        }
        if self.rejected() {
            // A masked copy will not be used: stop writing it.
            self.emitter = None;
            self.output_abandoned = true;
            self.staged.clear();
            return Ok(());
        }
        self.feed_staged()?;
        let Some(em) = &mut self.emitter else {
            return Ok(());
        };
        let r = em.flush_to(pos);
        self.emit_result(r)
    }

    fn emit_result(&mut self, r: Result<(), EmitError>) -> Result<(), Halt> {
        match r {
            Ok(()) => Ok(()),
            Err(EmitError::Output(source)) => Err(Halt::Fatal(GuardError::Output {
                path: self.scratch.clone(),
                source,
            })),
            Err(EmitError::Input(e)) => Err(Halt::Io(e)),
            Err(EmitError::Order) => {
                self.emitter = None;
                Err(self.reject(
                    "masking failed (an edit overlapped bytes already written); rejected rather than passed half-masked".into(),
                ))
            }
        }
    }

    fn finish(mut self, content_type: &str) -> Result<(Report, Option<Sink>), GuardError> {
        if let Some(rules) = self.profile.pii() {
            for (d, n) in Detector::ALL.into_iter().zip(self.detector_masks) {
                if n > 0 {
                    let rule = rules.mask(d);
                    self.applied(
                        "mask",
                        format!("detector {}", d.name()),
                        format!("keep {} first, {} last", rule.keep_prefix, rule.keep_suffix),
                        n,
                        None,
                    );
                }
            }
        }
        if self.verdict == Verdict::Review && self.stripped {
            // A held package goes on as given once approved, so holding it
            // would let what `disarm` found through: refused instead.
            self.reject(
                "metadata or active content must be stripped (disarm = \"strip\"), but the package is also held for review, and a reviewed package goes on as given: strip it before sending, or send it under a profile that does not hold it".into(),
            );
        }
        let mut sink = None;
        let mut digest_after = None;
        if self.verdict == Verdict::Masked {
            if self.feed_staged().is_err() {
                self.emitter = None;
            }
            if let Some(em) = self.emitter.take() {
                match em.finish() {
                    Ok(Some((s, d))) => {
                        sink = Some(s);
                        digest_after = Some(d);
                    }
                    Ok(None) => digest_after = self.digest_before.clone(),
                    Err(EmitError::Output(source)) => {
                        return Err(GuardError::Output {
                            path: self.scratch.clone(),
                            source,
                        })
                    }
                    Err(EmitError::Input(e)) => {
                        return Err(GuardError::Input {
                            path: PathBuf::from("<package>"),
                            source: e,
                        })
                    }
                    Err(EmitError::Order) => {
                        self.reject(
                            "masking failed; rejected rather than passed half-masked".into(),
                        );
                    }
                }
            } else {
                self.reject("masking failed; rejected rather than passed half-masked".into());
            }
        }
        if self.verdict == Verdict::Pass || self.verdict == Verdict::Review {
            digest_after = self.digest_before.clone();
        }
        if self.verdict == Verdict::Reject {
            digest_after = None;
        }
        let mut reasons = self.reasons;
        for ((kind, detector, action), n) in &self.tally {
            let what = match action {
                Action::Mask if *kind == FindingKind::Disarm => "stripped",
                Action::Mask => "masked",
                Action::Reject => "rejected",
                Action::Review => "held for review",
            };
            let s = if *n == 1 { "" } else { "s" };
            reasons.push(format!(
                "{} ({detector}): {n} finding{s}, {what}",
                kind_label(*kind)
            ));
        }
        if self.findings_total > self.findings.len() as u64 {
            reasons.push(format!(
                "{} more findings not listed (the report lists the first {})",
                self.findings_total - self.findings.len() as u64,
                self.findings.len()
            ));
        }
        let mut report = Report {
            profile: self.profile.name().to_string(),
            verdict: self.verdict,
            reasons,
            findings: self.findings,
            findings_total: self.findings_total,
            detected_type: self.detected.map(|k| k.mime().to_string()),
            declared_type: content_type.to_string(),
            digest_before: self.digest_before,
            digest_after,
            bytes_read: self.bytes_read,
            bytes_expanded: self.budget.expanded.get(),
            members: self.budget.members.get(),
            // Held or refused: nothing was applied to what goes on.
            deidentification: if self.verdict >= Verdict::Review {
                BTreeMap::new()
            } else {
                self.deid
            }
            .into_iter()
            .map(|((technique, target, rule), (values, key_epoch))| {
                crate::report::Deidentification {
                    technique: technique.to_string(),
                    target,
                    rule,
                    values,
                    key_epoch,
                }
            })
            .collect(),
            malware: self.malware,
            yara: self.yara,
        };
        // The one place every report string passes: no package text with
        // a sensitive value leaves in a report (see `redact`).
        crate::redact::report(self.profile, &mut report);
        Ok((report, sink))
    }
}

/// A masking a format handler applies itself (for text and CSV: as an
/// edit on the original bytes).
pub(crate) struct Masked {
    pub start: u64,
    pub end: u64,
    pub op: Op,
}

pub(crate) const MASK_IN_ARCHIVE: &str =
    "the guard does not rewrite archives; unpack and send the members separately, or use action = \"review\"";

/// What a part of an office document is, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OfficePart {
    /// VBA project, ODF Basic or scripts: refused or held (`office.action`).
    Macro,
    /// A binary the guard cannot look into (OLE objects, fonts, metafiles,
    /// anything without a known extension): refused or held.
    Embedded,
    /// A part inspected as this type whatever its name says (`.rels`,
    /// `mimetype`, `.vml`, `.rdf`).
    As(Kind),
    /// Typed by its extension as in any archive.
    Plain,
}

/// Is this office part active content `disarm` deals with: an OLE object
/// (`embeddings/*.bin`) or any part of an ActiveX control (`activeX/`)?
/// Embedded documents of a known type (`embeddings/x.xlsx`) are not: they
/// are inspected as documents.
fn active_part(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower.contains("activex/") {
        return Some("office_activex");
    }
    (lower.contains("embeddings/") && lower.ends_with(".bin")).then_some("office_ole")
}

pub(crate) fn office_part(name: &str) -> OfficePart {
    let lower = name.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    if base.starts_with("vbaproject")
        || base.starts_with("vbadata")
        || lower.starts_with("basic/")
        || lower.starts_with("scripts/")
        || base.ends_with(".bas")
    {
        return OfficePart::Macro;
    }
    if lower == "mimetype" {
        return OfficePart::As(Kind::Text);
    }
    if base.ends_with(".rels") || base.ends_with(".vml") || base.ends_with(".rdf") {
        return OfficePart::As(Kind::Xml);
    }
    if lower.contains("embeddings/") || lower.contains("activex/") {
        // Embedded documents of a known type are inspected as such.
        return match Kind::from_name(name) {
            Ok(Some(Kind::Office(_) | Kind::Xml | Kind::Text | Kind::Csv)) => OfficePart::Plain,
            _ => OfficePart::Embedded,
        };
    }
    match Kind::from_name(name) {
        Ok(Some(_)) => OfficePart::Plain,
        _ => OfficePart::Embedded,
    }
}

fn kind_label(k: FindingKind) -> &'static str {
    match k {
        FindingKind::DirtyWord => "dirty word",
        FindingKind::PersonalData => "personal data",
        FindingKind::Geodata => "geodata",
        FindingKind::Uninspectable => "uninspectable content",
        FindingKind::Malware => "malware",
        FindingKind::Disarm => "metadata or active content",
        FindingKind::Yara => "YARA rule",
    }
}

fn digest_all(src: &dyn RandomRead) -> Result<String, Halt> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    loop {
        let n = src.read_at(&mut buf, pos)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

fn copy_to_scratch(r: &mut dyn Read, f: &mut std::fs::File, dir: &Path) -> Result<u64, Halt> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Halt::Io(e)),
        };
        f.write_all(&buf[..n]).map_err(|source| {
            Halt::Fatal(GuardError::Scratch {
                dir: dir.to_path_buf(),
                source,
            })
        })?;
        total += n as u64;
    }
    Ok(total)
}
