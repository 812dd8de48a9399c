//! Internal failures at the protocol mapping points. The client is told the kind of failure (a
//! stable short code and a reason in words) and a reference; the server log gets one line with
//! the same code and reference and the detail (paths under the data directory, library error
//! text), which never goes to a client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use mirror::MirrorError;

/// Logs `e` once (at `error`) and returns what the client is told.
pub fn report(e: &MirrorError, protocol: &'static str) -> String {
    let reference = next_reference();
    let code = e.code();
    tracing::error!(%code, %reference, %protocol, error = %e, "internal error");
    format!(
        "airlock: internal error {code} (ref {reference}): {}; the mirror's operators can find \
         the detail in its log under this reference",
        e.public_reason()
    )
}

/// A short reference, unique within a run and unlikely to repeat across restarts: a per-process
/// base from the start time plus a counter.
fn next_reference() -> String {
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // Spread the start time over the reference's range (splitmix64's finaliser).
        let mut z = now ^ u64::from(std::process::id()).rotate_left(32);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}", (base.wrapping_add(n)) & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_client_text_carries_no_detail() {
        let e = mirror::MirrorError::Io {
            path: "/srv/airlock-data/blobs/sha256/ab/abcd".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let shown = super::report(&e, "hf");
        assert!(shown.contains("E-IO"), "{shown}");
        assert!(!shown.contains("/srv"), "{shown}");
        assert!(!shown.to_lowercase().contains("permission"), "{shown}");
    }

    #[test]
    fn references_differ() {
        assert_ne!(super::next_reference(), super::next_reference());
    }
}
