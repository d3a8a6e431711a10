//! Counters and latency histograms: Prometheus text at `/metrics`, HDR percentiles at `/api/stats`.
//!
//! Prometheus histograms have fixed buckets, fine for dashboards; the HDR histograms keep
//! exact percentiles (3 significant digits) for the load generator's reports.

pub mod backlog;
pub mod stripe;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram as Hdr;
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlarmLabels {
    pub alarm: &'static str,
}

/// Every outcome the worker counts.
const WORKER_OUTCOMES: [&str; 5] = ["applied", "stale", "duplicate", "conflict", "dead_lettered"];

/// Every metric the process exposes; one shared set per process, cloned by reference
/// because every request touches it.
#[derive(Clone, Default)]
pub struct Metrics(Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;
    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }
}

pub struct MetricSet {
    registry: Arc<Registry>,
    pub http_requests: Family<RouteLabels, Counter>,
    pub webhooks_accepted: Counter,
    pub webhooks_rejected: Family<ReasonLabels, Counter>,
    /// Management API requests refused (401, or 429 once an address spent its bad tokens), by reason.
    pub admin_refused: Family<ReasonLabels, Counter>,
    /// Webhook signatures refused, by reason; `webhooks_rejected` counts them all as bad_signature.
    pub signatures_refused: Family<ReasonLabels, Counter>,
    pub ingress_latency: Histogram,
    pub queue_append_latency: Histogram,
    pub queue_append_batch: Histogram,
    pub queue_depth: Gauge,
    pub spool_depth: Gauge,
    pub worker_events: Family<OutcomeLabels, Counter>,
    pub worker_batches: Counter,
    pub worker_batch_size: Histogram,
    pub worker_apply_latency: Histogram,
    pub worker_retries: Counter,
    pub e2e_latency: Histogram,
    /// Acknowledged records the log found damaged or gone: payments that may never apply.
    pub log_damaged_records: Counter,
    /// Offsets recovery cut at the log's end that may have held acknowledged records.
    pub log_possibly_lost_records: Counter,
    /// Stripe events ignored by type, API versions seen, events left for an operator.
    pub stripe: stripe::StripeCounters,
    /// Draining after SIGTERM, and the worker loop's last turn: what the probes report.
    pub health: crate::health::Health,
    /// The data directory's filesystem and the logs in it, refreshed on a timer (`retention`).
    pub disk_size_bytes: Gauge,
    pub disk_free_bytes: Gauge,
    pub log_bytes: Gauge,
    /// The byte cap of the log (or the spool) this process appends to, and the appends it refused.
    pub log_cap_bytes: Gauge,
    pub log_cap_refused: Counter,
    /// Seconds since the oldest event not yet applied was received (0 when none waits);
    /// sampled on a timer ([`backlog`]), so it keeps rising while the store is down.
    pub oldest_unapplied_seconds: Gauge,
    /// 1 while an alarm is raised (see [`MetricSet::set_alarm`]).
    alarms: Family<AlarmLabels, Gauge>,
    /// The Kafka topic's retention (0: unknown or forever) and the age of the worker's oldest
    /// unapplied event in it, by record timestamp (queue::kafka::retention).
    pub kafka_retention_seconds: Gauge,
    pub kafka_oldest_unconsumed_age_seconds: Gauge,
    /// Rows the retention purge deleted.
    pub purged_events: Counter,
    pub purged_dead_letters: Counter,
    /// 1 while a server drains after SIGTERM (its `/readyz` fails).
    draining: Gauge,
    /// Seconds since the worker loop last advanced; set when scraped.
    worker_stalled_seconds: Gauge,
    /// Why the process serves on in a state an operator must look at (`/readyz` shows it).
    degraded: Arc<Mutex<Vec<String>>>,
    ack_hdr: Arc<Mutex<Hdr<u64>>>,
    e2e_hdr: Arc<Mutex<Hdr<u64>>>,
    /// Whether a worker runs in this process, so that `/api/stats` says "unknown" instead of 0.
    worker_here: Arc<std::sync::atomic::AtomicBool>,
}

fn seconds_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn hdr() -> Arc<Mutex<Hdr<u64>>> {
    // 1 µs .. 1 h at 3 significant digits; the bounds are constants, so this cannot fail.
    Arc::new(Mutex::new(Hdr::new_with_bounds(1, 3_600_000_000, 3).expect("static HDR bounds")))
}

impl Default for MetricSet {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricSet {
    fn new() -> Self {
        let mut r = Registry::with_prefix("webhooks");
        let m = Self {
            registry: Arc::new(Registry::default()),
            http_requests: Family::default(),
            webhooks_accepted: Counter::default(),
            webhooks_rejected: Family::default(),
            admin_refused: Family::default(),
            signatures_refused: Family::default(),
            ingress_latency: seconds_histogram(),
            queue_append_latency: seconds_histogram(),
            queue_append_batch: size_histogram(),
            queue_depth: Gauge::default(),
            spool_depth: Gauge::default(),
            worker_events: Family::default(),
            worker_batches: Counter::default(),
            worker_batch_size: size_histogram(),
            worker_apply_latency: seconds_histogram(),
            worker_retries: Counter::default(),
            e2e_latency: seconds_histogram(),
            log_damaged_records: Counter::default(),
            log_possibly_lost_records: Counter::default(),
            stripe: Default::default(),
            health: Default::default(),
            disk_size_bytes: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            log_bytes: Gauge::default(),
            log_cap_bytes: Gauge::default(),
            log_cap_refused: Counter::default(),
            oldest_unapplied_seconds: Gauge::default(),
            alarms: Family::default(),
            kafka_retention_seconds: Gauge::default(),
            kafka_oldest_unconsumed_age_seconds: Gauge::default(),
            purged_events: Counter::default(),
            purged_dead_letters: Counter::default(),
            draining: Gauge::default(),
            worker_stalled_seconds: Gauge::default(),
            degraded: Default::default(),
            ack_hdr: hdr(),
            e2e_hdr: hdr(),
            worker_here: Default::default(),
        };
        r.register("http_requests", "HTTP requests by route and status", m.http_requests.clone());
        r.register("accepted", "Webhooks durably queued and acknowledged", m.webhooks_accepted.clone());
        r.register("rejected", "Webhooks refused, by reason", m.webhooks_rejected.clone());
        r.register("admin_refused", "Management API requests refused: missing or wrong token (401), throttled (429)", m.admin_refused.clone());
        r.register("signature_refused", "Webhook signatures refused, by reason", m.signatures_refused.clone());
        r.register("ingress_latency_seconds", "Webhook request to acknowledgement", m.ingress_latency.clone());
        r.register("queue_append_latency_seconds", "Queue append until durable", m.queue_append_latency.clone());
        r.register("queue_append_batch_size", "Events per group commit", m.queue_append_batch.clone());
        r.register("queue_depth", "Events queued and not yet processed (consumer lag)", m.queue_depth.clone());
        r.register("spool_depth", "Events acknowledged while the broker was unreachable, waiting in the local spool", m.spool_depth.clone());
        r.register("worker_events", "Events processed by the worker, by outcome", m.worker_events.clone());
        r.register("worker_batches", "Batches committed by the worker", m.worker_batches.clone());
        r.register("worker_batch_size", "Events per worker batch", m.worker_batch_size.clone());
        r.register("worker_apply_latency_seconds", "Store transaction per batch", m.worker_apply_latency.clone());
        r.register("worker_retries", "Batch attempts retried after transient errors", m.worker_retries.clone());
        r.register("e2e_latency_seconds", "Ingress acceptance to worker commit", m.e2e_latency.clone());
        r.register("log_damaged_records", "Acknowledged records found damaged or gone in the log; see /readyz and the error log", m.log_damaged_records.clone());
        r.register("log_possibly_lost_records", "Offsets recovery cut at the log's end, a torn write or damaged acknowledged records; see the warn log", m.log_possibly_lost_records.clone());
        r.register("disk_size_bytes", "Size of the filesystem holding the data directory", m.disk_size_bytes.clone());
        r.register("disk_free_bytes", "Bytes available to this process on the filesystem holding the data directory", m.disk_free_bytes.clone());
        r.register("log_bytes", "Bytes in the embedded log and the Kafka-mode spool", m.log_bytes.clone());
        r.register("log_cap_bytes", "The byte cap of the embedded log or the spool: past it webhooks get 503 + Retry-After", m.log_cap_bytes.clone());
        r.register("log_cap_refused", "Webhooks refused (503) because the log or the spool was at its byte cap", m.log_cap_refused.clone());
        r.register(
            "oldest_unapplied_seconds",
            "Seconds since the oldest event acknowledged and not yet applied was received; 0 when none waits",
            m.oldest_unapplied_seconds.clone(),
        );
        r.register("alarm", "1 while the named alarm is raised; /readyz says why", m.alarms.clone());
        r.register("kafka_retention_seconds", "retention.ms of the Kafka topic, in seconds, as the worker read it at start; 0 when unknown or unlimited", m.kafka_retention_seconds.clone());
        r.register(
            "kafka_oldest_unconsumed_age_seconds",
            "Age (record timestamp) of the oldest Kafka event this worker holds and has not applied; past the topic's retention, events are deleted unapplied",
            m.kafka_oldest_unconsumed_age_seconds.clone(),
        );
        r.register("purged_events", "Records of applied events deleted past their retention", m.purged_events.clone());
        r.register("purged_dead_letters", "Replayed dead letters deleted past their retention", m.purged_dead_letters.clone());
        r.register("draining", "1 while the server drains after SIGTERM: /readyz fails, requests are still served", m.draining.clone());
        r.register(
            "worker_seconds_since_progress",
            "Seconds since the worker loop last advanced (only where a worker runs)",
            m.worker_stalled_seconds.clone(),
        );
        m.stripe.register(&mut r);
        Self { registry: Arc::new(r), ..m }
    }

    /// Records damage an operator must act on: counted, and shown by `/readyz` until restart.
    pub fn degrade(&self, records: u64, why: String) {
        self.log_damaged_records.inc_by(records);
        if let Ok(mut d) = self.degraded.lock() {
            d.push(why);
        }
    }

    /// Raises (`Some(why)`) or clears an alarm: the `alarm` gauge and `/readyz`. True when
    /// that changed whether it is raised, for the caller to log the change once.
    pub fn set_alarm(&self, name: &'static str, why: Option<String>) -> bool {
        self.alarms.get_or_create(&AlarmLabels { alarm: name }).set(why.is_some() as i64);
        self.health.set_alarm(name, why)
    }

    pub fn degraded(&self) -> Vec<String> {
        self.degraded.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn worker_here(&self) -> bool {
        self.worker_here.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn mark_worker_here(&self) {
        // Each outcome exposed from the start at 0: `increase()` misses the first dead letter
        // of a series that appears with it.
        for outcome in WORKER_OUTCOMES {
            let _ = self.worker_events.get_or_create(&OutcomeLabels { outcome });
        }
        self.worker_here.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn record_ack(&self, elapsed: Duration) {
        self.ingress_latency.observe(elapsed.as_secs_f64());
        record(&self.ack_hdr, elapsed.as_micros() as u64);
    }

    pub fn record_e2e(&self, micros: u64) {
        self.e2e_latency.observe(micros as f64 / 1e6);
        record(&self.e2e_hdr, micros);
    }

    pub fn reject(&self, reason: &str) {
        self.webhooks_rejected.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    pub fn admin_refusal(&self, reason: &str) {
        self.admin_refused.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    pub fn signature_refusal(&self, reason: &str) {
        self.signatures_refused.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    pub fn worker_outcome(&self, outcome: &'static str, n: u64) {
        self.worker_events.get_or_create(&OutcomeLabels { outcome }).inc_by(n);
    }

    fn worker_count(&self, outcome: &'static str) -> u64 {
        self.worker_events.get_or_create(&OutcomeLabels { outcome }).get()
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.draining.set(self.health.draining() as i64);
        if self.worker_here.load(std::sync::atomic::Ordering::Relaxed) {
            self.worker_stalled_seconds.set(self.health.since_last_turn().as_secs() as i64);
        }
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The ack and end-to-end histograms whole, in HdrHistogram's own V2-deflate format and
    /// base64: a reader can subtract two of them to get a window, or add several processes'
    /// exactly, which percentiles cannot do. The end-to-end one only where a worker runs.
    pub fn histograms(&self) -> Histograms {
        let worker_here = self.worker_here.load(std::sync::atomic::Ordering::Relaxed);
        Histograms { ack_latency_us: serialized(&self.ack_hdr), e2e_latency_us: worker_here.then(|| serialized(&self.e2e_hdr)).flatten() }
    }

    pub fn stats(&self, reasons: &Reasons) -> Stats {
        let rejected = by_reason(&self.webhooks_rejected, reasons.rejected);
        let worker_here = self.worker_here.load(std::sync::atomic::Ordering::Relaxed);
        let (applied, stale, dead) = (self.worker_count("applied"), self.worker_count("stale"), self.worker_count("dead_lettered"));
        let conflicts = self.worker_count("conflict");
        Stats {
            ingress: IngressStats {
                accepted: self.webhooks_accepted.get(),
                rejected,
                ack_latency_us: Percentiles::of(&self.ack_hdr),
                stripe: self.stripe.stats(),
            },
            worker: worker_here.then(|| WorkerStats {
                processed: applied + stale + conflicts + dead,
                applied,
                stale,
                conflicts,
                duplicates: self.worker_count("duplicate"),
                dead_lettered: dead,
                batches: self.worker_batches.get(),
                retries: self.worker_retries.get(),
                e2e_latency_us: Percentiles::of(&self.e2e_hdr),
            }),
            queue: QueueStats { depth: worker_here.then(|| self.queue_depth.get().max(0) as u64), spool_depth: None },
            auth: AuthStats {
                admin_refused: by_reason(&self.admin_refused, reasons.admin),
                signatures_refused: by_reason(&self.signatures_refused, reasons.signatures),
            },
            histograms: None,
        }
    }

}

/// The label values of the reason families, which a family cannot list: the HTTP side, which
/// refuses, names them.
#[derive(Debug, Default)]
pub struct Reasons<'a> {
    pub rejected: &'a [&'a str],
    pub admin: &'a [&'a str],
    pub signatures: &'a [&'a str],
}

/// The non-zero counts of `family`. It has no iterator; the reasons are a small closed set.
fn by_reason(family: &Family<ReasonLabels, Counter>, reasons: &[&str]) -> std::collections::BTreeMap<String, u64> {
    reasons
        .iter()
        .map(|r| (r.to_string(), family.get_or_create(&ReasonLabels { reason: r.to_string() }).get()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `None` only if the lock is poisoned or the encoder fails, neither of which a reader can mend.
fn serialized(h: &Mutex<Hdr<u64>>) -> Option<String> {
    use base64::Engine as _;
    use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
    let copy = h.lock().ok()?.clone();
    let mut bytes = Vec::with_capacity(4 * 1024);
    V2DeflateSerializer::new().serialize(&copy, &mut bytes).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn record(h: &Mutex<Hdr<u64>>, micros: u64) {
    if let Ok(mut h) = h.lock() {
        h.saturating_record(micros.max(1));
    }
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub ingress: IngressStats,
    pub worker: Option<WorkerStats>,
    pub queue: QueueStats,
    pub auth: AuthStats,
    /// Only when asked for (`/api/stats?histograms=true`): encoding costs more than the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histograms: Option<Histograms>,
}

/// Latency histograms since the process started, in microseconds, each base64 of
/// HdrHistogram's V2-deflate serialization (readable by every HdrHistogram implementation).
#[derive(Debug, Serialize)]
pub struct Histograms {
    pub ack_latency_us: Option<String>,
    pub e2e_latency_us: Option<String>,
}

/// What callers without the right secrets were refused, by reason (reasons never seen are left out).
#[derive(Debug, Serialize)]
pub struct AuthStats {
    pub admin_refused: std::collections::BTreeMap<String, u64>,
    pub signatures_refused: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct IngressStats {
    pub accepted: u64,
    pub rejected: std::collections::BTreeMap<String, u64>,
    pub ack_latency_us: Percentiles,
    pub stripe: stripe::StripeStats,
}

#[derive(Debug, Serialize)]
pub struct WorkerStats {
    pub processed: u64,
    pub applied: u64,
    pub stale: u64,
    /// Events that disagree with their payment's rank, and event ids reused for another event.
    pub conflicts: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub batches: u64,
    pub retries: u64,
    pub e2e_latency_us: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct QueueStats {
    pub depth: Option<u64>,
    /// Events acknowledged while the broker was down, still in the local spool; `None` where
    /// there is no spool (embedded queue, worker-only process).
    pub spool_depth: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Mutex<Hdr<u64>>) -> Self {
        let Ok(h) = h.lock() else { return Self::default() };
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;

    use super::*;

    fn decode(b64: &str) -> Hdr<u64> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        Deserializer::new().deserialize(&mut bytes.as_slice()).expect("an HdrHistogram V2 serialization")
    }

    #[test]
    fn the_histograms_go_out_whole_and_the_end_to_end_one_only_where_a_worker_runs() {
        let m = Metrics::new();
        for ms in [1, 2, 300] {
            m.record_ack(Duration::from_millis(ms));
        }
        m.record_e2e(5_000);
        let h = m.histograms();
        let ack = decode(h.ack_latency_us.as_deref().expect("ack histogram"));
        assert_eq!(ack.len(), 3);
        assert!(ack.equivalent(ack.max(), 300_000), "{}", ack.max());
        assert!(h.e2e_latency_us.is_none(), "no worker here: no end-to-end histogram");
        m.mark_worker_here();
        let e2e = decode(m.histograms().e2e_latency_us.as_deref().expect("end-to-end histogram"));
        assert_eq!((e2e.len(), e2e.value_at_quantile(0.5)), (1, e2e.highest_equivalent(5_000)));
        assert!(serde_json::to_value(m.stats(&Reasons::default())).expect("json").get("histograms").is_none(), "only when asked for");
    }
}
