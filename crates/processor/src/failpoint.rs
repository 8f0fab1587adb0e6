//! Crash points between the commit protocol's steps, for the crash test.
//!
//! Compiled only with the `failpoints` feature. `STOREFOLD_FAILPOINT=<name>:<n>`
//! aborts the process (no destructors, no flushing: like `kill -9`) the n-th
//! time the named point is reached. Names: `after_changelog`, `after_marker`,
//! `after_state`, `after_outbox`, `after_outbox_deleted`, `after_offsets`,
//! `mid_restore`, `after_fence`.

#[cfg(feature = "failpoints")]
mod imp {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    pub(crate) fn hit(name: &str) {
        let spec = SPEC.get_or_init(|| {
            let v = std::env::var("STOREFOLD_FAILPOINT").ok()?;
            let (n, c) = v.split_once(':')?;
            Some((n.to_string(), c.parse().ok()?))
        });
        if let Some((n, count)) = spec
            && n == name
            && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= *count
        {
            tracing::warn!(failpoint = name, "failpoint reached: aborting the process");
            std::process::abort();
        }
    }
}

/// Reaches the named crash point (a no-op without the `failpoints` feature).
#[inline]
pub(crate) fn hit(_name: &str) {
    #[cfg(feature = "failpoints")]
    imp::hit(_name);
}
