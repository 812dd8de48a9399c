//! Folding repeated downloads into one audit entry per (client, version, file) and window.
//!
//! "Who downloaded this version" needs one entry per client and file, not one per request: ollama
//! fetches a layer in 16 ranged parts, `HfFileSystem` reads in ranges, and a busy client pulls the
//! same small file thousands of times. So the first request of a window is audited at once (and
//! is durable before anything else happens to it), and the requests that follow within the window
//! are counted and written as one [`AuditEvent::DownloadRepeats`] entry when the window closes.
//! Only those counts can be lost, to a crash before the window closes; every first download of a
//! window is on the chain.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use signing::{AuditEvent, Timestamp};

/// How many windows may be open at once. Beyond it, requests are audited one by one again (the
/// old behaviour), so memory stays bounded whatever the clients do.
const MAX_OPEN: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    client: String,
    name: String,
    revision: String,
    file: String,
}

struct Window {
    opened: Instant,
    since: Timestamp,
    /// The first download's event, the template of the repeats entry.
    first: AuditEvent,
    repeats: u64,
}

/// Open windows of audited downloads.
pub(crate) struct DownloadFold {
    window: Duration,
    open: Mutex<HashMap<Key, Window>>,
}

impl DownloadFold {
    /// Windows of `window`; zero audits every request.
    pub(crate) fn new(window: Duration) -> Self {
        DownloadFold {
            window,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A download by `who` (the client's budget key: its name when known, so one client is one
    /// window wherever it connects from) happened at `time` (`now` on the monotonic clock): the
    /// entries to append, in order (none if it only adds to an open window's count).
    pub(crate) fn record(
        &self,
        who: &str,
        event: AuditEvent,
        time: Timestamp,
        now: Instant,
    ) -> Vec<AuditEvent> {
        let AuditEvent::Download {
            name,
            revision,
            file,
            ..
        } = &event
        else {
            return vec![event];
        };
        if self.window.is_zero() {
            return vec![event];
        }
        let key = Key {
            client: who.to_owned(),
            name: name.clone(),
            revision: revision.clone(),
            file: file.clone(),
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        if let Some(w) = open.get_mut(&key) {
            if now.duration_since(w.opened) < self.window {
                w.repeats += 1;
                return out;
            }
            if let Some(w) = open.remove(&key) {
                out.extend(repeats_entry(w));
            }
        }
        if open.len() >= MAX_OPEN {
            out.extend(self.close_expired_locked(&mut open, now));
        }
        if open.len() < MAX_OPEN {
            open.insert(
                key,
                Window {
                    opened: now,
                    since: time,
                    first: event.clone(),
                    repeats: 0,
                },
            );
        }
        out.push(event);
        out
    }

    /// Closes the windows that have run their time: their repeats entries, to append.
    pub(crate) fn close_expired(&self, now: Instant) -> Vec<AuditEvent> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        self.close_expired_locked(&mut open, now)
    }

    /// Closes every window (at shutdown).
    pub(crate) fn close_all(&self) -> Vec<AuditEvent> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.drain().filter_map(|(_, w)| repeats_entry(w)).collect()
    }

    fn close_expired_locked(
        &self,
        open: &mut HashMap<Key, Window>,
        now: Instant,
    ) -> Vec<AuditEvent> {
        let expired: Vec<Key> = open
            .iter()
            .filter(|(_, w)| now.duration_since(w.opened) >= self.window)
            .map(|(k, _)| k.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|k| open.remove(&k))
            .filter_map(repeats_entry)
            .collect()
    }
}

/// The entry that reports a closed window's repeats (none if there were none).
fn repeats_entry(w: Window) -> Option<AuditEvent> {
    if w.repeats == 0 {
        return None;
    }
    let AuditEvent::Download {
        client,
        name,
        revision,
        file,
        digest,
        approval,
    } = w.first
    else {
        return None;
    };
    Some(AuditEvent::DownloadRepeats {
        client,
        name,
        revision,
        file,
        digest,
        approval,
        count: w.repeats,
        since: w.since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::Digest;

    fn dl(client: &str, file: &str) -> AuditEvent {
        AuditEvent::Download {
            client: client.into(),
            name: "acme/tiny".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            file: file.into(),
            digest: Digest::of(file.as_bytes()),
            approval: None,
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_795_000_000 + secs).expect("in range")
    }

    #[test]
    fn sixteen_ranged_parts_are_one_download_and_one_count() {
        let fold = DownloadFold::new(Duration::from_secs(60));
        let start = Instant::now();
        let mut appended = Vec::new();
        for i in 0..16 {
            appended.extend(fold.record(
                "10.0.0.1",
                dl("10.0.0.1", "layer"),
                t(i),
                start + Duration::from_secs(i as u64),
            ));
        }
        // Another client and another file are their own downloads.
        appended.extend(fold.record("10.0.0.2", dl("10.0.0.2", "layer"), t(1), start));
        appended.extend(fold.record("10.0.0.1", dl("10.0.0.1", "config"), t(1), start));
        assert_eq!(appended.len(), 3);
        assert!(fold
            .close_expired(start + Duration::from_secs(59))
            .is_empty());
        let closed = fold.close_expired(start + Duration::from_secs(60));
        assert_eq!(closed.len(), 1, "only the window with repeats reports");
        match &closed[0] {
            AuditEvent::DownloadRepeats {
                client,
                count,
                since,
                ..
            } => {
                assert_eq!((client.as_str(), *count, *since), ("10.0.0.1", 15, t(0)));
            }
            other => panic!("{other:?}"),
        }
        assert!(fold.close_all().is_empty());
    }

    #[test]
    fn a_download_after_the_window_closes_it_and_opens_the_next() {
        let fold = DownloadFold::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(fold.record("c", dl("c", "f"), t(0), start).len(), 1);
        assert!(fold
            .record("c", dl("c", "f"), t(1), start + Duration::from_secs(1))
            .is_empty());
        let out = fold.record("c", dl("c", "f"), t(11), start + Duration::from_secs(11));
        assert!(matches!(
            out[0],
            AuditEvent::DownloadRepeats { count: 1, .. }
        ));
        assert!(matches!(out[1], AuditEvent::Download { .. }));
        assert!(fold
            .record("c", dl("c", "f"), t(12), start + Duration::from_secs(12))
            .is_empty());
        assert!(matches!(
            fold.close_all()[..],
            [AuditEvent::DownloadRepeats { count: 1, .. }]
        ));
    }

    #[test]
    fn zero_window_audits_every_request() {
        let fold = DownloadFold::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(fold.record("c", dl("c", "f"), t(0), now).len(), 1);
        }
        assert!(fold.close_all().is_empty());
    }
}
