//! A sanitized environment: only the variables the daemon reads survive,
//! so that nothing the caller left behind (`LD_PRELOAD`, `MALLOC_*`,
//! proxies, locale tricks, leaked secrets) steers a library later.

/// Removes every environment variable not named in `keep`; returns the
/// names removed (never the values: one may be a secret).
///
/// Call it before any thread exists: changing the environment while
/// another thread reads it is undefined behaviour in glibc.
pub fn sanitize_environment(keep: &[&str]) -> Vec<String> {
    let mut removed = Vec::new();
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if !keep.iter().any(|k| *k == text) {
            removed.push(text.into_owned());
            std::env::remove_var(&name);
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{child, Role};

    #[test]
    fn only_kept_variables_survive() {
        match child("environment::tests::only_kept_variables_survive") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                std::env::set_var("LD_PRELOAD", "/tmp/evil.so");
                std::env::set_var("RUST_LOG", "debug");
                let removed = sanitize_environment(&["RUST_LOG"]);
                assert!(removed.contains(&"LD_PRELOAD".to_owned()), "{removed:?}");
                assert!(std::env::var_os("LD_PRELOAD").is_none());
                assert!(std::env::var_os("PATH").is_none());
                assert_eq!(std::env::var("RUST_LOG").unwrap(), "debug");
                let left: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
                assert_eq!(left, vec![std::ffi::OsString::from("RUST_LOG")]);
            }
        }
    }
}
