//! The one rule for text that comes from the package: no report string
//! carries a sensitive value, however it got there.
//!
//! Member names, XML element and attribute names, CSV headers, JSON keys,
//! parse errors and the declared content type are all text the sender
//! chose. Handlers already avoid quoting such text where it is known to
//! hold a finding (members by `#N`, columns by number), but a reason is
//! often written *because* the text is bad, before it was scanned. So the
//! finished report passes through [`report`] — the single place, called
//! by `Ctx::finish` for every inspection — which scans every free-text
//! string of the report (reasons, finding locations, the declared type)
//! with the profile's dirty words and **every** personal-data detector
//! (whether or not the profile enables it) and replaces each hit with
//! [`REDACTED`]. Hashes, detector names, verdicts and numbers are made by
//! the guard and are left alone.

use crate::pii::{self, Detectors};
use crate::profile::Profile;
use crate::report::Report;
use crate::scan::{ContentScan, SegMap};

/// What a redacted value is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// Scans strings for values a report must not hold.
pub(crate) struct Redactor<'p> {
    scan: ContentScan<'p>,
    ranges: Vec<(usize, usize)>,
    view: Vec<u8>,
    hits: Vec<pii::PiiHit>,
    all: Detectors,
}

impl<'p> Redactor<'p> {
    pub(crate) fn new(profile: &'p Profile) -> Redactor<'p> {
        Redactor {
            scan: ContentScan::for_reports(profile),
            ranges: Vec::new(),
            view: Vec::new(),
            hits: Vec::new(),
            all: pii::Detector::ALL
                .into_iter()
                .fold(Detectors::default(), Detectors::with),
        }
    }

    /// Replaces every dirty word and personal-data value in `s` with
    /// [`REDACTED`]; true when something was replaced.
    pub(crate) fn clean(&mut self, s: &mut String) -> bool {
        if s.is_empty() {
            return false;
        }
        self.scan.reset();
        self.scan.scan(s.as_bytes(), &SegMap::Linear(0));
        self.ranges.clear();
        let len = s.len();
        let clamp = |x: u64| usize::try_from(x).unwrap_or(len).min(len);
        for h in &self.scan.word_hits {
            self.ranges.push((clamp(h.start), clamp(h.end)));
        }
        for h in &self.scan.pii_hits {
            self.ranges.push((h.start.min(len), h.end.min(len)));
        }
        // The detectors want word boundaries (`x13812345678` is not a
        // phone number in content); in a report, a value glued to letters
        // is still the value. So scan again with ASCII letters turned into
        // spaces (`X` after a digit kept: an identity number may end with
        // it).
        self.view.clear();
        let mut prev = 0u8;
        for b in s.bytes() {
            let keep_x = (b == b'X' || b == b'x') && prev.is_ascii_digit();
            self.view.push(if b.is_ascii_alphabetic() && !keep_x {
                b' '
            } else {
                b
            });
            prev = b;
        }
        self.hits.clear();
        pii::scan_with(&self.view, self.all, &mut self.hits, false);
        for h in &self.hits {
            self.ranges.push((h.start.min(len), h.end.min(len)));
        }
        if self.ranges.is_empty() {
            return false;
        }
        self.ranges.sort_unstable();
        let mut out = String::with_capacity(len);
        let mut at = 0usize;
        for &(mut a, mut b) in &self.ranges {
            // Whole characters only (a hit's bounds are byte offsets).
            while a > 0 && !s.is_char_boundary(a) {
                a -= 1;
            }
            while b < len && !s.is_char_boundary(b) {
                b += 1;
            }
            if b <= at {
                continue;
            }
            if a >= at {
                out.push_str(&s[at..a]);
                out.push_str(REDACTED);
            }
            at = b;
        }
        out.push_str(&s[at..]);
        *s = out;
        true
    }
}

/// Applies the rule to every string of `r` that may hold package text.
pub(crate) fn report(profile: &Profile, r: &mut Report) {
    let mut red = Redactor::new(profile);
    for s in &mut r.reasons {
        red.clean(s);
    }
    red.clean(&mut r.declared_type);
    for d in &mut r.deidentification {
        red.clean(&mut d.target);
    }
    for f in &mut r.findings {
        if let Some(m) = &mut f.location.member {
            red.clean(m);
        }
        if let Some(x) = &mut f.location.field {
            red.clean(x);
        }
    }
}
