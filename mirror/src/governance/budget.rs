//! What anonymous clients can make Airlock do. Any client may ask for any name, and an unapproved
//! name becomes a review request (an index record, an audit line) and a background prefetch of up
//! to `prefetch_max_bytes`. So every part of that is capped:
//! - new review requests per client and hour (`requests_per_client_hour`), and request records in
//!   total (`max_requests`): past either, the client is refused as not approved, and nothing is
//!   recorded;
//! - prefetches run at most [`PREFETCH_CONCURRENCY`] at a time;
//! - prefetched bytes per rolling day (`prefetch_quota_bytes`): a prefetch reserves its cap before
//!   it starts and gives back what it did not use; past the quota, requests are still recorded but
//!   not prefetched (the reviewer's `airlock approve` fetches them).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Prefetches running at once.
pub(crate) const PREFETCH_CONCURRENCY: usize = 2;

/// Clients tracked at once for the per-client budget; beyond, the stalest are forgotten.
const MAX_CLIENTS: usize = 100_000;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The limits, from `[governance]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub per_client_hour: usize,
    pub max_requests: usize,
    pub prefetch_quota: u64,
}

/// The running counts against [`Limits`].
pub(crate) struct Budget {
    limits: Limits,
    records: AtomicUsize,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// Per client: when its last over-budget refusal was audited, and how many since were not.
    refused: Mutex<HashMap<String, (Instant, u64)>>,
    /// (when, bytes) of prefetch reservations in the last day.
    prefetched: Mutex<VecDeque<(Instant, u64)>>,
    /// Bounds concurrent prefetches.
    pub(crate) prefetch_slots: tokio::sync::Semaphore,
}

/// Why a new request was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverBudget {
    /// This client asked for too many new names this hour.
    Client,
    /// The mirror holds `max_requests` request records.
    Total,
}

/// A prefetch's reservation against the daily quota.
#[derive(Debug)]
pub(crate) struct Reservation {
    at: Instant,
    bytes: u64,
}

impl Budget {
    pub(crate) fn new(limits: Limits, existing_records: usize) -> Self {
        Budget {
            limits,
            records: AtomicUsize::new(existing_records),
            recent: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            prefetched: Mutex::new(VecDeque::new()),
            prefetch_slots: tokio::sync::Semaphore::new(PREFETCH_CONCURRENCY),
        }
    }

    /// Takes one new request from `client`'s budget, or says which budget is spent.
    pub(crate) fn take_request(&self, client: &str, now: Instant) -> Result<(), OverBudget> {
        self.take_client(client, now)?;
        self.count_record();
        Ok(())
    }

    /// Counts one new request record (its client was charged by [`Budget::take_client`]).
    pub(crate) fn count_record(&self) {
        self.records.fetch_add(1, Ordering::Relaxed);
    }

    /// Charges `client` one new name (or says which budget is spent) without counting a record:
    /// an unapproved name's revision is looked up upstream before anything is recorded, and that
    /// lookup is what a client flooding distinct names costs, whether or not the name exists.
    pub(crate) fn take_client(&self, client: &str, now: Instant) -> Result<(), OverBudget> {
        if self.records.load(Ordering::Relaxed) >= self.limits.max_requests {
            return Err(OverBudget::Total);
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MAX_CLIENTS && !recent.contains_key(client) {
            recent.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < HOUR));
            if recent.len() >= MAX_CLIENTS {
                // Still full of clients active this hour: a flood from many addresses. Refusing
                // the newcomer keeps memory bounded; the total cap still protects the index.
                return Err(OverBudget::Client);
            }
        }
        let times = recent.entry(client.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            times.pop_front();
        }
        if times.len() >= self.limits.per_client_hour {
            return Err(OverBudget::Client);
        }
        times.push_back(now);
        Ok(())
    }

    /// An over-budget refusal of `client`: `Some(n)` if it should be audited now (the first in a
    /// minute for this client), `n` being the refusals since the last audited one that were not;
    /// `None` if it is only counted. So a flood of distinct names costs one audit line a minute.
    pub(crate) fn note_refused(&self, client: &str, now: Instant) -> Option<u64> {
        const WINDOW: Duration = Duration::from_secs(60);
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.len() >= MAX_CLIENTS && !refused.contains_key(client) {
            refused.retain(|_, (t, _)| now.duration_since(*t) < WINDOW);
            if refused.len() >= MAX_CLIENTS {
                return None;
            }
        }
        match refused.get_mut(client) {
            Some((t, n)) if now.duration_since(*t) < WINDOW => {
                *n += 1;
                None
            }
            Some((t, n)) => {
                let skipped = *n;
                *t = now;
                *n = 0;
                Some(skipped)
            }
            None => {
                refused.insert(client.to_owned(), (now, 0));
                Some(0)
            }
        }
    }

    /// Reserves `cap` bytes of today's prefetch quota, if that much is left.
    pub(crate) fn reserve_prefetch(&self, cap: u64, now: Instant) -> Option<Reservation> {
        let mut done = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
        while done
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= DAY)
        {
            done.pop_front();
        }
        let used: u64 = done.iter().map(|(_, b)| b).sum();
        if used.saturating_add(cap) > self.limits.prefetch_quota {
            return None;
        }
        done.push_back((now, cap));
        Some(Reservation {
            at: now,
            bytes: cap,
        })
    }

    /// Settles a reservation at what the prefetch really fetched.
    pub(crate) fn settle_prefetch(&self, r: Reservation, used: u64) {
        let mut done = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = done.iter_mut().find(|(t, b)| *t == r.at && *b == r.bytes) {
            slot.1 = used.min(r.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget::new(
            Limits {
                per_client_hour: 3,
                max_requests: 5,
                prefetch_quota: 100,
            },
            0,
        )
    }

    #[test]
    fn per_client_budget_refills_after_an_hour_and_the_total_cap_holds() {
        let b = budget();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.take_request("10.0.0.1", t0).expect("within budget");
        }
        assert_eq!(b.take_request("10.0.0.1", t0), Err(OverBudget::Client));
        b.take_request("10.0.0.2", t0)
            .expect("another client has its own budget");
        b.take_request("10.0.0.1", t0 + HOUR)
            .expect("an hour later");
        assert_eq!(
            b.take_request("10.0.0.3", t0 + HOUR),
            Err(OverBudget::Total)
        );
    }

    #[test]
    fn over_budget_refusals_are_audited_once_a_minute_per_client() {
        let b = budget();
        let t0 = Instant::now();
        assert_eq!(b.note_refused("c", t0), Some(0));
        for _ in 0..9_999 {
            assert_eq!(b.note_refused("c", t0), None);
        }
        assert_eq!(b.note_refused("d", t0), Some(0));
        assert_eq!(
            b.note_refused("c", t0 + Duration::from_secs(60)),
            Some(9_999)
        );
    }

    #[test]
    fn prefetch_quota_reserves_the_cap_and_gives_back_the_rest() {
        let b = budget();
        let t0 = Instant::now();
        let r = b.reserve_prefetch(60, t0).expect("fits");
        assert!(b.reserve_prefetch(60, t0).is_none(), "60 + 60 > 100");
        b.settle_prefetch(r, 10);
        let r2 = b.reserve_prefetch(60, t0).expect("10 + 60 fits");
        b.settle_prefetch(r2, 60);
        assert!(b.reserve_prefetch(60, t0).is_none());
        assert!(b.reserve_prefetch(60, t0 + DAY).is_some(), "a day later");
    }
}
