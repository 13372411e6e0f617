//! Send pacing for the one-way link.
//!
//! The egress host cannot slow the sender down (there is no back channel),
//! so the sender must never burst faster than the receiver drains its
//! socket. A token bucket whose credit is capped at `burst_bytes` gives a
//! steady rate, and an idle link does not save up credit for a later burst.
//! Time is passed in, so the logic is tested without sleeping.

use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Token bucket in "theoretical arrival time" form: `full_at` is the moment
/// the bucket would be full again, so the available credit at `now` is
/// `burst - rate * (full_at - now)`, never more than `burst`.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate_bytes_per_s: u64,
    burst_bytes: u64,
    /// `None`: full (nothing sent yet, or idle for long enough).
    full_at: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rate_bytes_per_s` (0 = unpaced) that lets at most
    /// `burst_bytes` go out back to back.
    pub fn new(rate_bytes_per_s: u64, burst_bytes: u64) -> Pacer {
        Pacer {
            rate_bytes_per_s,
            burst_bytes,
            full_at: None,
        }
    }

    /// The configured rate; 0 means unpaced.
    pub fn rate_bytes_per_s(&self) -> u64 {
        self.rate_bytes_per_s
    }

    /// How long to wait from `now` before sending `bytes`. The bytes are
    /// accounted as sent at `now + delay`, so the caller must send them then
    /// (or give up the slot).
    ///
    /// A send larger than the burst is allowed once the bucket is full and
    /// leaves it in debt, so large batches still average out to the rate.
    pub fn delay(&mut self, now: Instant, bytes: u64) -> Duration {
        if self.rate_bytes_per_s == 0 {
            return Duration::ZERO;
        }
        let full_at = match self.full_at {
            Some(t) if t > now => t,
            // Full: no credit beyond the burst survives idle time.
            _ => now,
        };
        // The send may start once enough of the bucket has refilled:
        // credit(t) >= bytes  <=>  t >= full_at - (burst - bytes) / rate.
        let headroom = self.duration_for(self.burst_bytes.saturating_sub(bytes));
        let start = match full_at.checked_sub(headroom) {
            Some(t) if t > now => t,
            _ => now,
        };
        self.full_at = Some(full_at.max(start) + self.duration_for(bytes));
        start - now
    }

    fn duration_for(&self, bytes: u64) -> Duration {
        let nanos = u128::from(bytes) * NANOS_PER_SECOND / u128::from(self.rate_bytes_per_s);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_zero_never_delays() {
        let mut p = Pacer::new(0, 0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(p.delay(now, 1 << 30), Duration::ZERO);
        }
    }

    #[test]
    fn long_idle_allows_no_more_than_the_burst() {
        let rate = 1_000_000;
        let burst = 10_000;
        let mut p = Pacer::new(rate, burst);
        let t0 = Instant::now();
        // Use the bucket, then stay idle for an hour.
        assert_eq!(p.delay(t0, burst), Duration::ZERO);
        let later = t0 + Duration::from_secs(3600);
        let mut sent_without_waiting = 0;
        while p.delay(later, 1000).is_zero() {
            sent_without_waiting += 1000;
            assert!(
                sent_without_waiting <= burst,
                "credit built up beyond the burst"
            );
        }
        assert_eq!(sent_without_waiting, burst);
    }

    #[test]
    fn first_send_is_immediate_then_waits() {
        let mut p = Pacer::new(1000, 1000);
        let t0 = Instant::now();
        assert_eq!(p.delay(t0, 1000), Duration::ZERO);
        // The next 500 bytes need half a second of refill.
        assert_eq!(p.delay(t0, 500), Duration::from_millis(500));
        // And the accounting moved to t0 + 0.5 s: 500 more wait until 1 s.
        assert_eq!(
            p.delay(t0 + Duration::from_millis(500), 500),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn steady_state_matches_rate_within_one_percent() {
        let rate: u64 = 50_000_000;
        let datagram = 1472;
        let burst = 64 * datagram;
        let mut p = Pacer::new(rate, burst);
        let t0 = Instant::now();
        let mut now = t0;
        let mut sent = 0u64;
        loop {
            // Batches of varying size, as the sender produces them.
            let bytes = datagram * (1 + (sent / datagram) % 64);
            let wait = p.delay(now, bytes);
            now += wait;
            if now - t0 >= Duration::from_secs(1) {
                break;
            }
            sent += bytes;
        }
        // One second at the rate, plus the initial full bucket at most.
        let steady = sent.saturating_sub(burst);
        let error = (steady as f64 - rate as f64).abs() / rate as f64;
        assert!(
            error < 0.01,
            "sent {sent} in one simulated second at {rate} B/s"
        );
    }

    #[test]
    fn oversized_send_goes_out_when_full_and_leaves_debt() {
        let mut p = Pacer::new(1000, 100);
        let t0 = Instant::now();
        assert_eq!(p.delay(t0, 1000), Duration::ZERO);
        // 1000 bytes of debt at 1000 B/s: the bucket is back to a 100-byte
        // credit one second later.
        assert_eq!(p.delay(t0, 100), Duration::from_secs(1));
    }

    #[test]
    fn callers_that_arrive_late_get_no_extra_credit() {
        let mut p = Pacer::new(1000, 100);
        let t0 = Instant::now();
        assert_eq!(p.delay(t0, 100), Duration::ZERO);
        // Arriving 10 s late refills to the burst only.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(p.delay(t1, 100), Duration::ZERO);
        assert_eq!(p.delay(t1, 100), Duration::from_millis(100));
    }
}
