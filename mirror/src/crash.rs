//! Crash points for the fault-injection tests: in a debug build, `AIRLOCK_CRASH_AT=<point>` makes
//! the process abort at that point, as `kill -9` or a power cut would stop it, so the tests can
//! check that every stage of the byte path leaves a store that restarts consistent. Release
//! builds compile this to nothing.

/// Aborts the process here if the tests asked for a crash at `point`.
#[inline]
pub(crate) fn point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("AIRLOCK_CRASH_AT").is_some_and(|v| v == point) {
        // No destructors, no flushes: exactly what a crash leaves behind.
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
