//! Decisions: may this identity push this package on this channel now?
//!
//! Deny by default. Deny rules override allow rules (as Cedar's `forbid`
//! overrides `permit`); among allow rules the first in file order decides.
//! A deny names every reason, and tells "forbidden by rule R" apart from
//! "no rule allows it", so an administrator reading the audit log knows
//! whether to fix the request or the policy.

use crate::model::*;
use crate::when::Instant;
use crate::when::Window;
use serde::Serialize;
use std::fmt;
use time::OffsetDateTime;

/// Longest file name accepted (bytes), as most file systems.
pub const FILE_NAME_MAX_BYTES: usize = 255;

/// One package someone wants to push.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// Who pushes.
    pub identity: Subject,
    /// Channel name.
    pub channel: String,
    /// Bare file name (no directories).
    pub file_name: String,
    /// Declared media type, e.g. `text/csv` (parameters are ignored).
    pub content_type: String,
    /// Package size.
    pub size_bytes: u64,
    /// When (the daemon passes "now"; `explain --at` any time).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Counting period of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Packages or bytes per minute.
    Minute,
    /// Packages or bytes per day.
    Day,
}

impl Period {
    fn seconds(self) -> u64 {
        match self {
            Period::Minute => 60,
            Period::Day => 86_400,
        }
    }
}

/// Whose counter: an `[identity.NAME]` entry (all certificates it matches
/// share it) or a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "scope", content = "name", rename_all = "lowercase")]
pub enum UsageScope<'a> {
    /// `[identity.NAME]`.
    Identity(&'a str),
    /// `[channel.NAME]`.
    Channel(&'a str),
}

/// What a counter holds now, in the current period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packages accepted in the current period.
    pub packages: u64,
    /// Bytes accepted in the current period.
    pub bytes: u64,
    /// When the period's counts drop; `None` means a full period from now.
    pub resets_at: Option<OffsetDateTime>,
}

/// The daemon's usage counters, read at decision time.
pub trait Usage {
    /// The counter of `scope` for `period`.
    fn counter(&self, scope: UsageScope<'_>, period: Period) -> Counter;
}

/// No usage at all (for `explain` and tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUsage;

impl Usage for NoUsage {
    fn counter(&self, _: UsageScope<'_>, _: Period) -> Counter {
        Counter::default()
    }
}

/// A counter the daemon must add an accepted package to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", content = "name", rename_all = "lowercase")]
pub enum Charge {
    /// `[identity.NAME]`.
    Identity(String),
    /// `[channel.NAME]`.
    Channel(String),
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Push it (after approvals, if the decision asks for them).
    Allow,
    /// Refuse it.
    Deny,
    /// Allowed, but not now: keep it until `hold_until` (a window opens).
    Hold,
}

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// Package count.
    Packages,
    /// Byte count.
    Bytes,
}

/// One reason behind a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The channel does not exist in this policy.
    UnknownChannel {
        /// As requested.
        channel: String,
        /// A close channel name.
        suggestion: Option<String>,
    },
    /// The file name is not a bare, safe file name.
    InvalidFileName {
        /// What is wrong.
        why: String,
    },
    /// A deny rule matched: forbidden by rule R.
    ForbiddenByRule {
        /// The rule.
        rule_id: String,
        /// `file:line`.
        defined_at: String,
    },
    /// No allow rule matched (deny by default).
    NoRuleAllows {
        /// Identity label.
        identity: String,
        /// Channel.
        channel: String,
    },
    /// The certificate matches no `[identity.NAME]` at all.
    UnknownIdentity {
        /// Identity label.
        identity: String,
    },
    /// An allow rule for this identity and channel did not apply, and why.
    RuleDidNotApply {
        /// The rule.
        rule_id: String,
        /// Why not.
        why: String,
    },
    /// Allowed, but outside every window.
    WindowClosed {
        /// Window names.
        windows: Vec<String>,
        /// Next opening.
        #[serde(with = "time::serde::rfc3339::option")]
        opens_at: Option<OffsetDateTime>,
    },
    /// A rate or quota limit is reached.
    QuotaExceeded {
        /// Whose counter.
        scope: Charge,
        /// Minute or day.
        period: Period,
        /// Packages or bytes.
        measure: Measure,
        /// The limit.
        limit: u64,
        /// Already used in this period.
        used: u64,
        /// Seconds until it may fit; `None` when the package alone exceeds
        /// the limit and never fits.
        retry_after_s: Option<u64>,
    },
    /// The request time cannot be represented.
    TimeOutOfRange,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::UnknownChannel {
                channel,
                suggestion,
            } => {
                write!(f, "unknown channel `{channel}`")?;
                match suggestion {
                    Some(s) => write!(f, ", did you mean `{s}`?"),
                    None => Ok(()),
                }
            }
            Reason::InvalidFileName { why } => write!(f, "invalid file name: {why}"),
            Reason::ForbiddenByRule {
                rule_id,
                defined_at,
            } => {
                write!(f, "forbidden by rule `{rule_id}` ({defined_at})")
            }
            Reason::NoRuleAllows { identity, channel } => {
                write!(
                    f,
                    "no rule allows {identity} to push on channel `{channel}`"
                )
            }
            Reason::UnknownIdentity { identity } => {
                write!(f, "{identity} matches no [identity.NAME] in the policy")
            }
            Reason::RuleDidNotApply { rule_id, why } => {
                write!(f, "rule `{rule_id}` does not apply: {why}")
            }
            Reason::WindowClosed { windows, opens_at } => {
                write!(f, "outside window(s) {}", windows.join(", "))?;
                match opens_at {
                    Some(t) => write!(f, "; next opening {}", rfc3339(*t)),
                    None => Ok(()),
                }
            }
            Reason::QuotaExceeded {
                scope,
                period,
                measure,
                limit,
                used,
                retry_after_s,
            } => {
                let (kind, name) = match scope {
                    Charge::Identity(n) => ("identity", n),
                    Charge::Channel(n) => ("channel", n),
                };
                let m = match measure {
                    Measure::Packages => "packages",
                    Measure::Bytes => "bytes",
                };
                let p = match period {
                    Period::Minute => "minute",
                    Period::Day => "day",
                };
                write!(
                    f,
                    "quota exceeded: {kind} `{name}` {m}_per_{p} = {limit}, used {used}"
                )?;
                match retry_after_s {
                    Some(s) => write!(f, "; retry after {s} s"),
                    None => write!(f, "; this package alone exceeds the limit"),
                }
            }
            Reason::TimeOutOfRange => write!(f, "the request time is out of range"),
        }
    }
}

use ferry_common::rfc3339::format as rfc3339;

/// What one step of evaluation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepOutcome {
    /// The rule is not for this identity.
    Skipped,
    /// The rule matched and forbids.
    Forbids,
    /// The rule matched and allows.
    Allows,
    /// The rule would allow, but its window is closed.
    WindowClosed,
    /// The rule is for this identity and channel, but a condition failed.
    NotApplicable,
    /// A channel-level check (window or quota).
    Channel,
}

/// One line of the trace `ferryctl policy explain` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    /// The rule, for rule steps.
    pub rule_id: Option<String>,
    /// What happened.
    pub outcome: StepOutcome,
    /// In words.
    pub detail: String,
}

/// A decision, owned: the daemon keeps it with the package, so a reload
/// does not change what an in-flight package was granted.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Allow, deny or hold.
    pub verdict: Verdict,
    /// The deciding rule: the allowing rule, or the first forbidding one.
    pub rule_id: Option<String>,
    /// Every reason (empty for a plain allow).
    pub reasons: Vec<Reason>,
    /// For `Hold`: when to try again.
    #[serde(with = "time::serde::rfc3339::option")]
    pub hold_until: Option<OffsetDateTime>,
    /// Content profile for the ingress guard.
    pub profile: Option<String>,
    /// Content profile for the egress guard.
    pub egress_profile: Option<String>,
    /// Approvals needed before sending.
    pub approval: Option<ApprovalRequirement>,
    /// Counters to add the package to once accepted.
    pub charges: Vec<Charge>,
    /// The policy's hash, for the audit record.
    pub policy_hash: String,
    /// How the decision was reached.
    pub trace: Vec<TraceStep>,
}

impl Decision {
    fn new(policy: &Policy) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            rule_id: None,
            reasons: Vec::new(),
            hold_until: None,
            profile: None,
            egress_profile: None,
            approval: None,
            charges: Vec::new(),
            policy_hash: policy.hash.clone(),
            trace: Vec::new(),
        }
    }

    fn deny(mut self, reason: Reason) -> Decision {
        self.verdict = Verdict::Deny;
        self.reasons.push(reason);
        self
    }

    /// True for `Allow`.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

fn check_file_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty".into());
    }
    if name.len() > FILE_NAME_MAX_BYTES {
        return Some(format!("longer than {FILE_NAME_MAX_BYTES} bytes"));
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` is not a file name"));
    }
    if name.contains(['/', '\\']) {
        return Some("contains a path separator; send a bare file name".into());
    }
    if name.chars().any(char::is_control) {
        return Some("contains control characters".into());
    }
    None
}

use crate::when::{instant as to_timestamp, offset_date_time as to_offset};

/// Which windows of a list are open, and the earliest next opening.
fn windows_state(windows: &[Window], ids: &[usize], ts: Instant) -> (bool, Option<Instant>) {
    if ids.is_empty() {
        return (true, None);
    }
    let mut next: Option<Instant> = None;
    for &i in ids {
        let w = &windows[i];
        if w.is_open(ts) {
            return (true, None);
        }
        if let Some(t) = w.next_opening(ts) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    (false, next)
}

fn window_names(windows: &[Window], ids: &[usize]) -> Vec<String> {
    ids.iter().map(|&i| windows[i].name.clone()).collect()
}

impl Policy {
    /// Decides a request. The trace covers the rules written for this
    /// identity and channel; [`Policy::explain`] traces every rule.
    pub fn decide(&self, req: &Request, usage: &dyn Usage) -> Decision {
        self.evaluate(req, usage, false)
    }

    /// Like [`Policy::decide`], with a step for every rule considered.
    pub fn explain(&self, req: &Request, usage: &dyn Usage) -> Decision {
        self.evaluate(req, usage, true)
    }

    /// Like [`Policy::decide`], for a sender whose package is kept until a
    /// closed window opens instead of being refused: a `Hold` carries what
    /// an `Allow` inside the windows would (the allowing rule, profiles,
    /// approvals, charges) and is checked against the same quotas, so a
    /// package over a quota is denied even while the window is closed.
    /// Deny rules are evaluated at `req.at`, windows and all.
    pub fn decide_holding(&self, req: &Request, usage: &dyn Usage) -> Decision {
        let d = self.decide(req, usage);
        if d.verdict != Verdict::Hold {
            return d;
        }
        let inside = self.decide_inside_windows(req, usage);
        if inside.verdict != Verdict::Allow {
            return inside;
        }
        Decision {
            verdict: Verdict::Hold,
            hold_until: d.hold_until,
            reasons: d.reasons,
            trace: d.trace,
            ..inside
        }
    }

    /// Decides `req` as if the windows of its channel and of the allow
    /// rules were open (deny rules keep theirs): what a held package is
    /// granted, and whether a held package may still go when its window
    /// opens. Never `Hold`.
    pub fn decide_inside_windows(&self, req: &Request, usage: &dyn Usage) -> Decision {
        self.evaluate_at(req, usage, false, true)
    }

    fn evaluate(&self, req: &Request, usage: &dyn Usage, full: bool) -> Decision {
        self.evaluate_at(req, usage, full, false)
    }

    fn evaluate_at(
        &self,
        req: &Request,
        usage: &dyn Usage,
        full: bool,
        inside_windows: bool,
    ) -> Decision {
        let d = Decision::new(self);
        if let Some(why) = check_file_name(&req.file_name) {
            return d.deny(Reason::InvalidFileName { why });
        }
        let Some(&ch) = self.channel_index.get(req.channel.as_str()) else {
            let names: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
            return d.deny(Reason::UnknownChannel {
                channel: req.channel.clone(),
                suggestion: crate::diag::suggest(&req.channel, &names).map(str::to_string),
            });
        };
        let Some(ts) = to_timestamp(req.at) else {
            return d.deny(Reason::TimeOutOfRange);
        };
        let matched: Vec<bool> = self
            .identities
            .iter()
            .map(|m| m.matches(&req.identity))
            .collect();
        let content_type = req
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let scope = Scope {
            ch,
            ts,
            matched: &matched,
            content_type: &content_type,
            inside_windows,
        };
        self.evaluate_rules(d, req, usage, full, &scope)
    }

    fn evaluate_rules(
        &self,
        mut d: Decision,
        req: &Request,
        usage: &dyn Usage,
        full: bool,
        scope: &Scope<'_>,
    ) -> Decision {
        let Scope {
            ch,
            ts,
            matched,
            content_type,
            inside_windows,
        } = *scope;
        let channel = &self.channels[ch];
        let mut allow: Option<usize> = None;
        let mut hold: Option<(usize, Option<Instant>)> = None;
        let mut forbids: Vec<usize> = Vec::new();
        let mut misses: Vec<Reason> = Vec::new();
        for &ri in &self.rules_by_channel[ch] {
            let r = &self.rules[ri];
            let for_identity = match &r.identities {
                Selector::Any => true,
                Selector::Some(ids) => ids.iter().any(|&i| matched[i]),
            };
            if !for_identity {
                if full {
                    d.trace.push(TraceStep {
                        rule_id: Some(r.id.to_string()),
                        outcome: StepOutcome::Skipped,
                        detail: format!("{} rule for other identities", effect_word(r.effect)),
                    });
                }
                continue;
            }
            let why = mismatch(r, &req.file_name, content_type, req.size_bytes);
            if let Some(why) = why {
                d.trace.push(TraceStep {
                    rule_id: Some(r.id.to_string()),
                    outcome: StepOutcome::NotApplicable,
                    detail: why.clone(),
                });
                if r.effect == Effect::Allow {
                    misses.push(Reason::RuleDidNotApply {
                        rule_id: r.id.to_string(),
                        why,
                    });
                }
                continue;
            }
            let (open, next) = windows_state(&self.windows, &r.windows, ts);
            // Inside the windows only an allow rule's window counts as open:
            // a deny rule with a window forbids exactly when it says.
            let open = open || (inside_windows && r.effect == Effect::Allow);
            if !open {
                d.trace.push(TraceStep {
                    rule_id: Some(r.id.to_string()),
                    outcome: StepOutcome::WindowClosed,
                    detail: format!(
                        "matches, but outside its window(s) {}",
                        window_names(&self.windows, &r.windows).join(", ")
                    ),
                });
                if r.effect == Effect::Allow && hold.is_none() {
                    hold = Some((ri, next));
                }
                continue;
            }
            match r.effect {
                Effect::Deny => {
                    d.trace.push(TraceStep {
                        rule_id: Some(r.id.to_string()),
                        outcome: StepOutcome::Forbids,
                        detail: format!("deny rule matches ({})", r.defined_at),
                    });
                    forbids.push(ri);
                }
                Effect::Allow => {
                    d.trace.push(TraceStep {
                        rule_id: Some(r.id.to_string()),
                        outcome: StepOutcome::Allows,
                        detail: if allow.is_some() {
                            "allow rule matches, but an earlier one already decides".into()
                        } else {
                            format!("allow rule matches ({})", r.defined_at)
                        },
                    });
                    allow.get_or_insert(ri);
                }
            }
        }

        if !forbids.is_empty() {
            d.verdict = Verdict::Deny;
            d.rule_id = Some(self.rules[forbids[0]].id.to_string());
            for ri in forbids {
                let r = &self.rules[ri];
                d.reasons.push(Reason::ForbiddenByRule {
                    rule_id: r.id.to_string(),
                    defined_at: r.defined_at.clone(),
                });
            }
            return d;
        }

        let Some(ri) = allow.or(hold.map(|h| h.0)) else {
            d.verdict = Verdict::Deny;
            if !matched.iter().any(|m| *m) {
                d.reasons.push(Reason::UnknownIdentity {
                    identity: req.identity.label(),
                });
            }
            d.reasons.push(Reason::NoRuleAllows {
                identity: req.identity.label(),
                channel: channel.name.clone(),
            });
            d.reasons.append(&mut misses);
            return d;
        };
        d.rule_id = Some(self.rules[ri].id.to_string());

        // The allowing rule's own window is closed: hold until it opens.
        if allow.is_none() {
            let r = &self.rules[ri];
            let next = hold.and_then(|h| h.1).and_then(to_offset);
            d.verdict = Verdict::Hold;
            d.hold_until = next;
            d.reasons.push(Reason::WindowClosed {
                windows: window_names(&self.windows, &r.windows),
                opens_at: next,
            });
            return d;
        }

        let (open, next) = windows_state(&self.windows, &channel.window_ids, ts);
        if !open && !inside_windows {
            let next = next.and_then(to_offset);
            d.trace.push(TraceStep {
                rule_id: None,
                outcome: StepOutcome::Channel,
                detail: format!("channel `{}` is outside its window(s)", channel.name),
            });
            d.verdict = Verdict::Hold;
            d.hold_until = next;
            d.reasons.push(Reason::WindowClosed {
                windows: channel.windows.clone(),
                opens_at: next,
            });
            return d;
        }

        // Quotas: every matching identity entry with limits, and the channel.
        let mut scopes: Vec<(UsageScope<'_>, &Limits)> = Vec::new();
        for (i, m) in self.identities.iter().enumerate() {
            if matched[i] && !m.limits.is_unlimited() {
                scopes.push((UsageScope::Identity(&m.name), &m.limits));
            }
        }
        if !channel.limits.is_unlimited() {
            scopes.push((UsageScope::Channel(&channel.name), &channel.limits));
        }
        for (scope, limits) in &scopes {
            let charge = match scope {
                UsageScope::Identity(n) => Charge::Identity(n.to_string()),
                UsageScope::Channel(n) => Charge::Channel(n.to_string()),
            };
            for (period, packages, bytes) in [
                (
                    Period::Minute,
                    limits.packages_per_minute,
                    limits.bytes_per_minute,
                ),
                (Period::Day, limits.packages_per_day, limits.bytes_per_day),
            ] {
                if packages.is_none() && bytes.is_none() {
                    continue;
                }
                let c = usage.counter(*scope, period);
                let retry = || {
                    Some(match c.resets_at {
                        Some(r) => (r - req.at).whole_seconds().max(1) as u64,
                        None => period.seconds(),
                    })
                };
                if let Some(limit) = packages {
                    if c.packages.saturating_add(1) > limit {
                        d.reasons.push(Reason::QuotaExceeded {
                            scope: charge.clone(),
                            period,
                            measure: Measure::Packages,
                            limit,
                            used: c.packages,
                            retry_after_s: retry(),
                        });
                    }
                }
                if let Some(limit) = bytes {
                    if c.bytes.saturating_add(req.size_bytes) > limit {
                        d.reasons.push(Reason::QuotaExceeded {
                            scope: charge.clone(),
                            period,
                            measure: Measure::Bytes,
                            limit,
                            used: c.bytes,
                            retry_after_s: if req.size_bytes > limit {
                                None
                            } else {
                                retry()
                            },
                        });
                    }
                }
            }
            d.charges.push(charge);
        }
        if !d.reasons.is_empty() {
            d.trace.push(TraceStep {
                rule_id: None,
                outcome: StepOutcome::Channel,
                detail: "a rate or quota limit is reached".into(),
            });
            d.verdict = Verdict::Deny;
            d.charges.clear();
            return d;
        }

        d.verdict = Verdict::Allow;
        d.profile = channel.profile.clone();
        d.egress_profile = channel.egress_profile.clone();
        d.approval = channel.approval.clone();
        d
    }
}

/// What one evaluation is about, besides the request.
#[derive(Clone, Copy)]
struct Scope<'a> {
    /// The channel's index.
    ch: usize,
    /// The request's time.
    ts: Instant,
    /// Which identities match the sender.
    matched: &'a [bool],
    /// The request's media type, lowercase, without parameters.
    content_type: &'a str,
    /// Treat the windows of the channel and of allow rules as open.
    inside_windows: bool,
}

fn effect_word(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

/// Why a rule's conditions do not match, or `None` when they all do.
fn mismatch(r: &Rule, name: &str, content_type: &str, size: u64) -> Option<String> {
    let mut why: Vec<String> = Vec::new();
    if let Some(types) = &r.content_types {
        if !types.iter().any(|t| t.is_match(content_type)) {
            why.push(format!(
                "content type `{content_type}` is not one of {}",
                types
                    .iter()
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(names) = &r.names {
        if !names.iter().any(|g| g.is_match(name)) {
            why.push(format!(
                "file name `{name}` matches none of {}",
                names
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(max) = r.max_bytes {
        if size > max {
            why.push(format!(
                "{size} bytes is more than max_package_bytes = {max}"
            ));
        }
    }
    if let Some(min) = r.min_bytes {
        if size < min {
            why.push(format!(
                "{size} bytes is less than min_package_bytes = {min}"
            ));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Whether any allow rule lets a spool's local identity push on its channel.
pub(crate) fn spool_can_push(policy: &Policy, s: &SpoolCollection) -> bool {
    let subject = Subject::spool(&s.name);
    let Some(&ch) = policy.channel_index.get(&s.channel) else {
        return false;
    };
    policy.rules_by_channel[ch].iter().any(|&ri| {
        let r = &policy.rules[ri];
        r.effect == Effect::Allow
            && match &r.identities {
                Selector::Any => true,
                Selector::Some(ids) => ids.iter().any(|&i| policy.identities[i].matches(&subject)),
            }
    })
}
