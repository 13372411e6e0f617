//! Whether the kernel clock is disciplined by a time service (NTP,
//! chrony, systemd-timesyncd), from `adjtimex`: the same flag that
//! `timedatectl`'s `NTPSynchronized` reports, readable without systemd.
//! Epoch keys and certificate validity both hang on the clock.
// The workspace denies unsafe code; this module is one of hardening's three
// exceptions: adjtimex(2) has no safe wrapper. Each block has a SAFETY line.
#![allow(unsafe_code)]

/// `Some(true)` when a time service keeps the clock synchronized,
/// `Some(false)` when the kernel marks it unsynchronized, `None` when the
/// kernel would not say.
pub fn kernel_clock_synchronized() -> Option<bool> {
    // SAFETY: an all-zero timex is a valid argument; with modes 0 the call
    // only reads the kernel's clock state into it.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, exclusively borrowed timex for the call.
    let state = unsafe { libc::adjtimex(&mut t) };
    if state < 0 {
        return None;
    }
    Some(state != libc::TIME_ERROR && t.status & libc::STA_UNSYNC == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_answers() {
        // Synchronized or not depends on the machine; that it answers
        // does not.
        assert!(super::kernel_clock_synchronized().is_some());
    }
}
