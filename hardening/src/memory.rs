//! Keeping long-lived secrets off swap and out of core dumps: `mlock` and
//! `MADV_DONTDUMP` on the pages that hold them.
//!
//! Targeted, not `mlockall`: ferryd's data buffers are large and need not
//! be locked, while key-encryption keys and private keys are small. Pages
//! are never unlocked again, because other allocations may share them;
//! leaving a page locked costs only its share of `RLIMIT_MEMLOCK`.
// The workspace denies unsafe code; this module is one of hardening's three
// exceptions: mlock(2), madvise(2) and sysconf(3) on raw pages have no safe wrapper. Each block has a SAFETY line.
#![allow(unsafe_code)]

/// What protecting a buffer achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// The pages are locked in memory (no swap).
    pub locked: bool,
    /// The pages are excluded from core dumps.
    pub excluded_from_dumps: bool,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Locks the pages under `buf` and excludes them from core dumps. Failure
/// (no `CAP_IPC_LOCK` and a small `RLIMIT_MEMLOCK`, say) is reported, not
/// fatal: the caller logs it, and the process-wide `PR_SET_DUMPABLE` and
/// `RLIMIT_CORE` settings still keep secrets out of dumps.
pub fn protect(buf: &[u8]) -> Protection {
    if buf.is_empty() {
        return Protection {
            locked: true,
            excluded_from_dumps: true,
        };
    }
    let page = page_size();
    let start = buf.as_ptr() as usize & !(page - 1);
    let end = (buf.as_ptr() as usize + buf.len()).div_ceil(page) * page;
    let len = end - start;
    // SAFETY: [start, end) covers whole pages that contain `buf`, which is
    // mapped for as long as the borrow lasts; mlock and madvise only change
    // paging attributes of mapped pages and never read or write through the
    // pointer.
    let locked = unsafe { libc::mlock(start as *const libc::c_void, len) } == 0;
    // SAFETY: as above; MADV_DONTDUMP does not change the pages' contents.
    let excluded =
        unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTDUMP) } == 0;
    Protection {
        locked,
        excluded_from_dumps: excluded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages show up as locked in /proc/self/smaps, and marked `dd`
    /// (do not dump) in their VmFlags.
    #[test]
    fn protected_pages_are_locked_and_not_dumped() {
        let secret = vec![0x5au8; 64 * 1024];
        let p = protect(&secret);
        assert!(p.excluded_from_dumps, "madvise(MADV_DONTDUMP) failed");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let addr = secret.as_ptr() as usize;
        let mut in_mapping = false;
        let mut flags = String::new();
        let mut locked_kb = 0u64;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        in_mapping = (a..b).contains(&addr);
                        continue;
                    }
                }
            }
            if in_mapping {
                if let Some(v) = line.strip_prefix("VmFlags:") {
                    flags = v.to_owned();
                }
                if let Some(v) = line.strip_prefix("Locked:") {
                    locked_kb = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                }
            }
        }
        assert!(
            flags.split_whitespace().any(|f| f == "dd"),
            "VmFlags: {flags}"
        );
        if p.locked {
            assert!(locked_kb >= 64, "Locked: {locked_kb} kB");
        }
    }
}
