//! Spool collection on a schedule, and where a spool file ends up.
//!
//! A `[spool.NAME]` with a cron `schedule` is collected only when the
//! schedule fires: a collection stays open for [`COLLECTION_WINDOW`] so
//! that files can be seen to have stopped changing, then closes until the
//! next firing (a file still changing waits for it). `continuous` (or no
//! policy) collects all the time. The clock is passed in, so the schedule
//! is tested without waiting for wall-clock minutes.
//!
//! A taken file ends in `SPOOL/.done/` (a hard link to the queued copy, or
//! a copy across filesystems) with a `NAME.ferry.json` receipt; a refused
//! one in `SPOOL/.rejected/` with `NAME.reason.json`. Names are never
//! overwritten: a second `x.csv` becomes `x.1.csv`.

use ferry_policy::SpoolCollection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a scheduled collection stays open after its firing.
pub const COLLECTION_WINDOW: Duration = Duration::from_secs(5);

/// Whether the spool is being collected now.
#[derive(Debug, Default)]
pub struct SpoolClock {
    /// The schedule the next firing was computed from (a reload that
    /// changes it recomputes).
    schedule: Option<String>,
    next: Option<time::OffsetDateTime>,
    open_until: Option<Instant>,
}

impl SpoolClock {
    /// True while files should be taken. `now` is wall-clock time (for the
    /// cron expression), `mono` a monotonic instant (for the window).
    pub fn collecting(
        &mut self,
        coll: Option<&SpoolCollection>,
        now: time::OffsetDateTime,
        mono: Instant,
    ) -> bool {
        let Some(coll) = coll else { return true };
        let ferry_policy::Schedule::Cron(cron) = &coll.schedule else {
            return true;
        };
        if self.open_until.is_some_and(|t| mono < t) {
            return true;
        }
        self.open_until = None;
        let key = format!("{} {}", cron.expression, cron.time_zone);
        if self.schedule.as_deref() != Some(key.as_str()) {
            // First look, or the policy changed the schedule: a firing
            // missed while ferryd was down is not made up; the next counts.
            self.schedule = Some(key);
            self.next = coll.next_run_after(now);
        }
        match self.next {
            Some(t) if now >= t => {
                self.open_until = Some(mono + COLLECTION_WINDOW);
                self.next = coll.next_run_after(now);
                tracing::info!(spool = %coll.name, next = ?self.next, "scheduled spool collection");
                true
            }
            _ => false,
        }
    }
}

/// `dir/name`, or `dir/stem.N.ext` for the first N that is free.
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1u32..)
        .map(|n| dir.join(format!("{stem}.{n}{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Puts a taken file's record in `SPOOL/.done/`: the data (hard link to
/// the queued copy, or a copy) and a receipt. Best effort: the package is
/// already durable in the queue, so a failure here is logged, not fatal.
pub fn record_done(spool: &Path, queued: &Path, file_name: &str, receipt: &serde_json::Value) {
    let done = spool.join(".done");
    let result = (|| -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&done)?;
        let dest = free_name(&done, file_name);
        if std::fs::hard_link(queued, &dest).is_err() {
            std::fs::copy(queued, &dest)?;
        }
        let mut receipt_path = dest.clone().into_os_string();
        receipt_path.push(".ferry.json");
        std::fs::write(&receipt_path, format!("{receipt:#}\n"))?;
        Ok(dest)
    })();
    if let Err(e) = result {
        tracing::warn!(file = %file_name, error = %e, "could not record the taken file in .done/ (the package itself is queued)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u8, d: u8, h: u8, mi: u8, sec: u8) -> time::OffsetDateTime {
        let month = time::Month::try_from(mo).expect("month");
        time::Date::from_calendar_date(y, month, d)
            .and_then(|date| date.with_hms(h, mi, sec))
            .expect("date")
            .assume_utc()
    }

    fn collection(schedule: &str) -> SpoolCollection {
        let text = format!(
            "version = 1\n[policy]\nname = \"t\"\ntime_zone = \"Asia/Shanghai\"\n[identity.s]\nspool = \"night\"\n[spool.night]\ndir = \"/var/spool/ferry/night\"\nchannel = \"c\"\nschedule = \"{schedule}\"\n[channel.c]\ndirection = \"import\"\nlink = \"l\"\n[[rule]]\nid = \"R\"\neffect = \"allow\"\nidentities = [\"s\"]\nchannels = [\"c\"]\n"
        );
        let (p, _) = ferry_policy::parse_str(&text, "t.toml").expect("policy");
        p.spool_collections()[0].clone()
    }

    #[test]
    fn cron_spool_collects_only_in_the_window_after_each_firing() {
        // 01:30 Asia/Shanghai is 17:30 UTC the day before.
        let c = collection("30 1 * * *");
        let mut clock = SpoolClock::default();
        let t0 = Instant::now();
        let before = utc(2026, 11, 28, 17, 29, 0);
        assert!(!clock.collecting(Some(&c), before, t0));
        assert!(!clock.collecting(Some(&c), utc(2026, 11, 28, 17, 29, 59), t0));
        // Fires at 01:30 local; open for the window, then closed.
        let fire = utc(2026, 11, 28, 17, 30, 0);
        assert!(clock.collecting(Some(&c), fire, t0));
        assert!(clock.collecting(Some(&c), fire, t0 + Duration::from_secs(4)));
        assert!(!clock.collecting(
            Some(&c),
            utc(2026, 11, 28, 17, 30, 6),
            t0 + COLLECTION_WINDOW + Duration::from_millis(1)
        ));
        // Closed the rest of the day; fires again the next night.
        assert!(!clock.collecting(
            Some(&c),
            utc(2026, 11, 29, 12, 0, 0),
            t0 + Duration::from_secs(60)
        ));
        assert!(clock.collecting(
            Some(&c),
            utc(2026, 11, 29, 17, 30, 1),
            t0 + Duration::from_secs(120)
        ));
    }

    #[test]
    fn continuous_and_unconfigured_spools_always_collect() {
        let c = collection("continuous");
        let mut clock = SpoolClock::default();
        let now = utc(2026, 11, 28, 3, 0, 0);
        assert!(clock.collecting(Some(&c), now, Instant::now()));
        assert!(clock.collecting(None, now, Instant::now()));
    }

    #[test]
    fn a_missed_firing_is_not_made_up_and_a_changed_schedule_is_recomputed() {
        let mut clock = SpoolClock::default();
        let t0 = Instant::now();
        // ferryd starts after today's 01:30: nothing until tomorrow.
        let nightly = collection("30 1 * * *");
        assert!(!clock.collecting(Some(&nightly), utc(2026, 11, 28, 18, 0, 0), t0));
        // The policy now says every minute: the next minute fires.
        let minutely = collection("* * * * *");
        assert!(!clock.collecting(Some(&minutely), utc(2026, 11, 28, 18, 0, 30), t0));
        assert!(clock.collecting(Some(&minutely), utc(2026, 11, 28, 18, 1, 0), t0));
    }

    #[test]
    fn names_are_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(free_name(dir.path(), "x.csv"), dir.path().join("x.csv"));
        std::fs::write(dir.path().join("x.csv"), b"1").expect("write");
        assert_eq!(free_name(dir.path(), "x.csv"), dir.path().join("x.1.csv"));
        std::fs::write(dir.path().join("x.1.csv"), b"2").expect("write");
        assert_eq!(free_name(dir.path(), "x.csv"), dir.path().join("x.2.csv"));
        std::fs::write(dir.path().join("README"), b"3").expect("write");
        assert_eq!(free_name(dir.path(), "README"), dir.path().join("README.1"));
    }
}
