//! The engine's Prometheus metrics: upstream traffic, fetches, scan verdicts, store size and audit
//! appends. One [`Metrics`] is built per [`crate::Mirror`] (no global registry, so tests can run
//! two mirrors in one process); the HTTP front doors keep their own request counters beside it and
//! `/metrics` encodes both.
//!
//! Every label takes its value from a short fixed set (a source, a status class, a verdict), never
//! from a name, a path or a client, so the number of series stays bounded whatever is asked.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Which upstream.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct UpstreamLabels {
    /// `hf` or `ollama`.
    pub upstream: &'static str,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `error` (no answer).
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    upstream: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// `promoted`, `refused` (a check failed), `failed` (upstream or disk error).
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    /// `clean` or `refused`.
    verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// How a fetch ended, for the duration histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FetchOutcome {
    Promoted,
    Refused,
    Failed,
}

/// The engine's metrics.
pub struct Metrics {
    registry: Registry,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_bytes: Family<SourceLabel, Counter>,
    fetch_seconds: Family<OutcomeLabel, Histogram>,
    fetches_in_flight: Gauge,
    flight_waiters: Gauge,
    scan_verdicts: Family<VerdictLabel, Counter>,
    refusals: Family<ReasonLabel, Counter>,
    store_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Counter::default())
    }
}

impl Metrics {
    /// A fresh set, registered under `airlock_…`; `audit_appends` is the governance audit log's
    /// own counter (it counts where the appends happen).
    pub(crate) fn new(audit_appends: Counter) -> Metrics {
        let mut registry = Registry::with_prefix("airlock");
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests sent to an upstream, by upstream and answer class",
            upstream_requests.clone(),
        );
        let upstream_bytes = Family::<SourceLabel, Counter>::default();
        registry.register(
            "upstream_bytes",
            "File and blob bytes received from an upstream",
            upstream_bytes.clone(),
        );
        // From 50 ms to about 7 hours: a small config file and a 100 GB shard both land in a
        // bucket of their own.
        let fetch_seconds = Family::<OutcomeLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.05, 4.0, 10))) as fn() -> Histogram,
        );
        registry.register(
            "fetch_duration_seconds",
            "Upstream fetches, from first request to promotion or refusal, by outcome",
            fetch_seconds.clone(),
        );
        let fetches_in_flight = Gauge::default();
        registry.register(
            "fetches_in_flight",
            "File and blob fetches running now",
            fetches_in_flight.clone(),
        );
        let flight_waiters = Gauge::default();
        registry.register(
            "single_flight_waiters",
            "Requests waiting on a fetch another request started",
            flight_waiters.clone(),
        );
        let scan_verdicts = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "scan_verdicts",
            "Files scanned after fetch, by verdict",
            scan_verdicts.clone(),
        );
        let refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "refusals",
            "Refusals answered to clients, by reason class",
            refusals.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes of promoted blobs in the store",
            store_bytes.clone(),
        );
        registry.register(
            "audit_appends",
            "Entries appended to the audit log",
            audit_appends,
        );
        Metrics {
            registry,
            upstream_requests,
            upstream_bytes,
            fetch_seconds,
            fetches_in_flight,
            flight_waiters,
            scan_verdicts,
            refusals,
            store_bytes,
        }
    }

    /// An upstream answered with `status` (`None`: no answer at all).
    pub(crate) fn upstream_request(&self, upstream: &'static str, status: Option<u16>) {
        let status = match status {
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "error",
        };
        self.upstream_requests
            .get_or_create(&UpstreamLabels { upstream, status })
            .inc();
    }

    /// `n` file bytes arrived from `upstream`.
    pub(crate) fn upstream_bytes(&self, upstream: &'static str, n: u64) {
        self.upstream_bytes
            .get_or_create(&SourceLabel { upstream })
            .inc_by(n);
    }

    /// A fetch started; the guard marks its end (however it ends, a cancellation included).
    pub(crate) fn fetch_started(&self) -> InFlight {
        self.fetches_in_flight.inc();
        InFlight(self.fetches_in_flight.clone())
    }

    /// A fetch ended after `secs`.
    pub(crate) fn fetch_finished(&self, outcome: FetchOutcome, secs: f64) {
        let outcome = match outcome {
            FetchOutcome::Promoted => "promoted",
            FetchOutcome::Refused => "refused",
            FetchOutcome::Failed => "failed",
        };
        self.fetch_seconds
            .get_or_create(&OutcomeLabel { outcome })
            .observe(secs);
    }

    /// The scanner's verdict on a fetched file.
    pub(crate) fn scan_verdict(&self, clean: bool) {
        let verdict = if clean { "clean" } else { "refused" };
        self.scan_verdicts
            .get_or_create(&VerdictLabel { verdict })
            .inc();
    }

    /// A refusal was answered to a client, of class `reason` ([`crate::Refusal::class`], or the
    /// front door's own `client_token` for a missing or unknown client token). Counted by the
    /// front door once per answer, whichever engine path produced it.
    pub fn refused_class(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The text exposition of the engine's metrics (OpenMetrics, without the closing `# EOF`, so
    /// the caller can append its own). `store_bytes` and `waiters` are sampled now.
    pub(crate) fn encode(&self, out: &mut String, store_bytes: u64, waiters: i64) {
        self.store_bytes
            .set(i64::try_from(store_bytes).unwrap_or(i64::MAX));
        self.flight_waiters.set(waiters);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}

/// Marks a fetch as running until dropped.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_and_encode() {
        let audit = Counter::default();
        let m = Metrics::new(audit.clone());
        m.upstream_request("hf", Some(200));
        m.upstream_request("hf", Some(404));
        m.upstream_request("hf", None);
        m.upstream_bytes("ollama", 10);
        {
            let _f = m.fetch_started();
            m.fetch_finished(FetchOutcome::Promoted, 0.2);
        }
        m.scan_verdict(false);
        audit.inc();
        m.refused_class("client_token");
        let mut out = String::new();
        m.encode(&mut out, 1234, 2);
        for want in [
            "airlock_upstream_requests_total{upstream=\"hf\",status=\"2xx\"} 1",
            "airlock_upstream_requests_total{upstream=\"hf\",status=\"error\"} 1",
            "airlock_upstream_bytes_total{upstream=\"ollama\"} 10",
            "airlock_fetch_duration_seconds_count{outcome=\"promoted\"} 1",
            "airlock_fetches_in_flight 0",
            "airlock_single_flight_waiters 2",
            "airlock_scan_verdicts_total{verdict=\"refused\"} 1",
            "airlock_store_bytes 1234",
            "airlock_audit_appends_total 1",
            "airlock_refusals_total{reason=\"client_token\"} 1",
        ] {
            assert!(out.contains(want), "{want} missing from:\n{out}");
        }
        assert!(!out.contains("# EOF"));
    }
}
