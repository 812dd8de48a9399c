//! Single-flight: at most one task per key, however many callers ask at once. The task is spawned
//! on the engine runtime and owned by the map, not by any caller, so a client that disconnects does
//! not cancel a fetch others are waiting for; every waiter gets the same outcome.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How far a task has come, for callers who want to say "come back in N seconds" and for the
/// admin API's list of in-flight fetches.
#[derive(Debug)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    started: Instant,
    /// What is being fetched (set by the task, for logs and the admin API).
    label: OnceLock<String>,
    /// Seconds expected after the last byte (scan, promote), estimated from the size.
    after_secs: AtomicU64,
    /// Recent `(when, done)` samples: the rate is measured over this window, so an ETA follows the
    /// link as it is now, not as it was when the fetch started.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

/// How far back the transfer rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A snapshot of a task's progress.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgressReport {
    /// What is being fetched.
    pub artifact: String,
    /// Bytes received.
    pub bytes: u64,
    /// Bytes declared.
    pub total: u64,
    /// Bytes per second over the last few seconds (0 before any byte).
    pub rate_bytes_per_sec: u64,
    /// Seconds since the fetch started.
    pub elapsed_secs: u64,
    /// Estimated seconds until it is verified and servable; absent before any byte arrived.
    pub eta_secs: Option<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            started: Instant::now(),
            label: OnceLock::new(),
            after_secs: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

impl Progress {
    /// Records how many of `total` units are done.
    pub fn set(&self, done: u64, total: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Adds `n` done units; returns the new count.
    pub fn add(&self, n: u64) -> u64 {
        self.done.fetch_add(n, Ordering::Relaxed) + n
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Names the task and says how many seconds its work after the last byte should take.
    pub fn describe(&self, label: &str, total: u64, after_secs: u64) {
        let _ = self.label.set(label.to_owned());
        self.total.store(total, Ordering::Relaxed);
        self.after_secs.store(after_secs, Ordering::Relaxed);
    }

    /// Records a rate sample (called about once a second by the task's watchdog).
    pub fn sample(&self) {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((now, self.done()));
        while s.len() > 2 && s.front().is_some_and(|(t, _)| now - *t > RATE_WINDOW) {
            s.pop_front();
        }
    }

    /// Units per second: over the sample window when there is one, else since the start.
    pub fn rate(&self) -> f64 {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some((t0, d0)), Some((t1, d1))) = (s.front(), s.back()) {
            let dt = (*t1 - *t0).as_secs_f64();
            if dt >= 1.0 {
                return d1.saturating_sub(*d0) as f64 / dt;
            }
        }
        drop(s);
        let elapsed = self.started.elapsed().as_secs_f64();
        if elapsed > 0.0 {
            self.done() as f64 / elapsed
        } else {
            0.0
        }
    }

    /// Seconds until done: remaining ÷ measured rate, plus the work after the last byte. `None`
    /// while there is nothing to measure (no byte yet, or a rate of zero).
    pub fn eta_secs(&self) -> Option<u64> {
        let done = self.done();
        let total = self.total.load(Ordering::Relaxed);
        let after = self.after_secs.load(Ordering::Relaxed);
        if done > 0 && done >= total {
            return Some(after.max(1));
        }
        let rate = self.rate();
        if done == 0 || rate < 1.0 {
            return None;
        }
        Some(((total - done) as f64 / rate).ceil() as u64 + after)
    }

    /// Seconds since the task started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A snapshot for logs and the admin API.
    pub fn report(&self) -> ProgressReport {
        ProgressReport {
            artifact: self.label.get().cloned().unwrap_or_default(),
            bytes: self.done(),
            total: self.total.load(Ordering::Relaxed),
            rate_bytes_per_sec: self.rate() as u64,
            elapsed_secs: self.elapsed().as_secs(),
            eta_secs: self.eta_secs(),
        }
    }
}

/// A map of in-flight tasks.
pub struct SingleFlight<K, V> {
    map: Arc<Mutex<HashMap<K, Joined<V>>>>,
    rt: tokio::runtime::Handle,
    /// Callers waiting on a running task now (for `/metrics`).
    waiting: Arc<AtomicI64>,
}

struct Joined<V> {
    rx: watch::Receiver<Option<V>>,
    progress: Arc<Progress>,
    waiting: Arc<AtomicI64>,
}

impl<V> Clone for Joined<V> {
    fn clone(&self) -> Self {
        Joined {
            rx: self.rx.clone(),
            progress: self.progress.clone(),
            waiting: self.waiting.clone(),
        }
    }
}

/// Counts a caller as waiting until dropped (a caller whose request is cancelled mid-wait too).
struct Waiting(Arc<AtomicI64>);

impl Waiting {
    fn new(count: &Arc<AtomicI64>) -> Waiting {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A caller's handle on a task.
pub struct Flight<V>(FlightInner<V>);

enum FlightInner<V> {
    Done(V),
    Running(Joined<V>),
}

/// What waiting produced.
pub enum Waited<V> {
    /// The task finished with this value.
    Done(V),
    /// Still running after the wait.
    Running {
        /// Seconds until done, from the measured progress; `None` before there is any to measure.
        eta_secs: Option<u64>,
        /// Seconds the task has been running.
        elapsed_secs: u64,
    },
    /// The task died without an outcome (a panic: a bug, reported rather than hung on).
    Lost,
}

struct Leave<K: Hash + Eq, V> {
    map: Arc<Mutex<HashMap<K, Joined<V>>>>,
    key: Option<K>,
}

impl<K: Hash + Eq, V> Drop for Leave<K, V> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&k);
        }
    }
}

impl<K: Hash + Eq + Clone + Send + 'static, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    /// A map whose tasks run on `rt`.
    pub fn new(rt: tokio::runtime::Handle) -> Self {
        SingleFlight {
            map: Arc::new(Mutex::new(HashMap::new())),
            rt,
            waiting: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Joins the task for `key`, starting it with `make` if none runs. `settled` (an index read)
    /// is consulted first, on a blocking thread and without the map's lock, so neither the event
    /// loop nor every other caller of this map waits for the disk: a result recorded by a task
    /// that just finished is returned instead of starting a second task (the task records its
    /// result before it leaves the map). Between that read and taking the lock another caller may
    /// have started a task: it is joined. The one window left — a task that started *and* ended
    /// between the two — costs a redundant task, never a wrong answer (promotion of an existing
    /// blob is a no-op).
    pub async fn join<S, F, Fut>(&self, key: K, settled: S, make: F) -> Flight<V>
    where
        S: FnOnce() -> Option<V> + Send + 'static,
        F: FnOnce(Arc<Progress>) -> Fut + Send,
        Fut: Future<Output = V> + Send + 'static,
    {
        if let Some(j) = self.running(&key) {
            return Flight(FlightInner::Running(j));
        }
        // A settled read that panicked counts as "nothing recorded": the task then runs again.
        if let Ok(Some(v)) = self.rt.spawn_blocking(settled).await {
            return Flight(FlightInner::Done(v));
        }
        // A poisoned lock only means another thread panicked while holding it; the map itself is
        // still consistent (every mutation is a single insert or remove).
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = map.get(&key) {
            return Flight(FlightInner::Running(j.clone()));
        }
        let (tx, rx) = watch::channel(None);
        let progress = Arc::new(Progress::default());
        let joined = Joined {
            rx,
            progress: progress.clone(),
            waiting: self.waiting.clone(),
        };
        map.insert(key.clone(), joined.clone());
        drop(map);
        let fut = make(progress);
        let map = self.map.clone();
        self.rt.spawn(async move {
            // Leave the map however the task ends (a panic included), but only after publishing:
            // a caller arriving in between still finds the entry and reads the published value.
            let _leave = Leave {
                map,
                key: Some(key),
            };
            let v = fut.await;
            let _ = tx.send(Some(v));
        });
        Flight(FlightInner::Running(joined))
    }

    /// The task running for `key`, if any.
    fn running(&self, key: &K) -> Option<Joined<V>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    /// The progress of every task in flight.
    pub fn in_flight(&self) -> Vec<Arc<Progress>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|j| j.progress.clone()).collect()
    }

    /// Callers waiting on a task in flight now (the one that started it included).
    pub fn waiting(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Number of tasks in flight.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is in flight.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V: Clone> Flight<V> {
    /// Waits at most `limit` for the outcome.
    pub async fn wait(self, limit: Duration) -> Waited<V> {
        let mut j = match self.0 {
            FlightInner::Done(v) => return Waited::Done(v),
            FlightInner::Running(j) => j,
        };
        let _waiting = Waiting::new(&j.waiting);
        let outcome = tokio::time::timeout(limit, j.rx.wait_for(|v| v.is_some())).await;
        match outcome {
            Ok(Ok(v)) => match v.clone() {
                Some(v) => Waited::Done(v),
                None => Waited::Lost,
            },
            Ok(Err(_)) => Waited::Lost,
            Err(_) => Waited::Running {
                eta_secs: j.progress.eta_secs(),
                elapsed_secs: j.progress.elapsed().as_secs(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn eta_is_remaining_over_the_measured_rate_plus_the_checks() {
        let p = Progress::default();
        p.describe("f", 1000, 3);
        assert_eq!(
            p.eta_secs(),
            None,
            "nothing to measure before the first byte"
        );
        p.sample();
        std::thread::sleep(Duration::from_millis(1100));
        p.add(100);
        p.sample();
        // ~90 bytes/s over the window: 900 remaining bytes take ~10 s, plus 3 s of checks.
        let eta = p.eta_secs().unwrap();
        assert!((11..=14).contains(&eta), "eta {eta}");
        p.add(900);
        assert_eq!(
            p.eta_secs(),
            Some(3),
            "all bytes in: only the checks remain"
        );
        let r = p.report();
        assert_eq!((r.artifact.as_str(), r.bytes, r.total), ("f", 1000, 1000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_task_for_many_callers() {
        let sf: Arc<SingleFlight<&'static str, u32>> =
            Arc::new(SingleFlight::new(tokio::runtime::Handle::current()));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut waits = Vec::new();
        for _ in 0..50 {
            let runs = runs.clone();
            let f = sf
                .join(
                    "k",
                    || None,
                    move |_| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        7
                    },
                )
                .await;
            waits.push(tokio::spawn(f.wait(Duration::from_secs(5))));
        }
        for w in waits {
            assert!(matches!(w.await.unwrap(), Waited::Done(7)));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(sf.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn settled_runs_off_the_callers_thread_and_outside_the_lock() {
        let sf: SingleFlight<u8, u32> = SingleFlight::new(tokio::runtime::Handle::current());
        let (map, caller) = (sf.map.clone(), std::thread::current().id());
        let seen = Arc::new(Mutex::new(None));
        let seen2 = seen.clone();
        let f = sf
            .join(
                1,
                move || {
                    let unlocked = map.try_lock().is_ok();
                    *seen2.lock().unwrap() =
                        Some((unlocked, std::thread::current().id() != caller));
                    Some(4)
                },
                |_| async { 0 },
            )
            .await;
        assert!(matches!(
            f.wait(Duration::from_secs(1)).await,
            Waited::Done(4)
        ));
        assert_eq!(
            *seen.lock().unwrap(),
            Some((true, true)),
            "(lock free, on another thread)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_wait_reports_running_and_panics_are_lost_not_hung() {
        let sf: SingleFlight<u8, u32> = SingleFlight::new(tokio::runtime::Handle::current());
        let f = sf
            .join(
                1,
                || None,
                |_| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    1
                },
            )
            .await;
        assert!(matches!(
            f.wait(Duration::from_millis(10)).await,
            Waited::Running { .. }
        ));
        let f = sf.join(2, || None, |_| async { panic!("boom") }).await;
        assert!(matches!(f.wait(Duration::from_secs(5)).await, Waited::Lost));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let f = sf.join(2, || None, |_| async { 5 }).await;
        assert!(
            matches!(f.wait(Duration::from_secs(5)).await, Waited::Done(5)),
            "a dead task must not block its key"
        );
        let f = sf.join(3, || Some(9), |_| async { 1 }).await;
        assert!(matches!(
            f.wait(Duration::from_secs(1)).await,
            Waited::Done(9)
        ));
    }
}
