//! The Kafka queue: a partitioned topic keyed by `order_id` (every event of one order on one
//! partition, in order), produced with `acks=all` and idempotence, consumed by a consumer
//! group with manual offset commits, and a `<topic>.dlq` dead-letter topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Consumer, Delivery, Position, QueueError};
use crate::metrics::Metrics;

pub mod client;
pub mod producer;
mod retention;
mod topics;
pub use producer::KafkaProducer;
use retention::RetentionWatch;
pub use topics::{effective_retention, ensure_topics, TopicSettings};

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub partitions: i32,
    /// Unset: one replica per broker, at most three.
    pub replication_factor: Option<i32>,
    /// Unset: two when there are three replicas or more, else one.
    pub min_insync_replicas: Option<i32>,
    /// A produce not acknowledged within this time is answered 503.
    pub produce_timeout: Duration,
    /// Under load, the server's producer sends a group at most once per this interval.
    pub flush_interval: Duration,
    /// How the clients reach the brokers (TLS, SASL), and the operator's own properties.
    pub client: client::ClientSettings,
    /// Create missing topics at start; otherwise only check that they exist.
    pub create_topics: bool,
    /// `retention.ms` of the topics created.
    pub retention: Duration,
    /// The worker warns once its oldest unapplied event is this fraction of the retention old.
    pub retention_warn_fraction: f64,
}

/// The flags' defaults, for code that builds a configuration without them (tests, benches).
impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            topic: "payment-events".into(),
            partitions: 6,
            replication_factor: None,
            min_insync_replicas: None,
            produce_timeout: Duration::from_secs(5),
            flush_interval: Duration::from_millis(2),
            client: client::ClientSettings::default(),
            create_topics: true,
            retention: DEFAULT_RETENTION,
            retention_warn_fraction: 0.5,
        }
    }
}

/// A week: well past the three days Stripe retries a webhook for, so that a worker outage
/// the provider would still cover is covered by the topic too.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl KafkaConfig {
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }
}

fn unavailable(e: KafkaError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// What every producer shares: durable (`acks=all`), idempotent (a retried request is
/// written once, in order) and bounded by the produce timeout. Uncompressed: lz4 doubled
/// the CPU of the server's broker thread for events of a few hundred bytes
/// (docs/measurements/2026-12-05-kafka-group-commit.md); the bytes it saves are the broker's.
/// The operator's properties come after these (the producer's own linger and Nagle settings
/// after them).
fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = client::common(&cfg.brokers, &cfg.client);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "none")
        .set("message.timeout.ms", cfg.produce_timeout.as_millis().max(1).to_string());
    client::with_properties(&mut c, &cfg.client);
    c
}

/// Logs rebalances. Offsets are committed synchronously after every applied batch, and a
/// rebalance can only happen inside `recv`, between batches: so when partitions are revoked,
/// everything done is already committed and nothing undone ever is. Where a partition
/// continues after a change is learnt again by the retention watch.
pub struct RebalanceLog {
    watch: Arc<RetentionWatch>,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(?rebalance, "kafka rebalance starting");
    }
    /// Which partitions this worker holds, one line per change: what an operator (or a
    /// failover test) needs to tell which worker a partition's events wait for.
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = %partition_list(tpl), "kafka partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(partitions = %partition_list(tpl), "kafka partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance failed"),
        }
        if let Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) = rebalance {
            self.watch.forget(&tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>());
        }
    }
}

fn partition_list(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| e.partition().to_string()).collect::<Vec<_>>().join(",")
}

/// The worker's side: one member of the consumer group.
pub struct KafkaConsumer {
    consumer: StreamConsumer<RebalanceLog>,
    /// Made for the first dead letter: an idle librdkafka producer still wakes its threads
    /// (6-7 % of a Kafka worker's CPU samples, docs/measurements/2026-12-06-kafka-cost.md).
    dlq: tokio::sync::OnceCell<FutureProducer>,
    cfg: KafkaConfig,
    lag: Option<Lag>,
    watch: Arc<RetentionWatch>,
    /// Where skipped offsets are counted, once [`KafkaConsumer::reporting_to`] is called.
    metrics: Option<Metrics>,
}

const LAG_REFRESH: Duration = Duration::from_secs(5);

/// What depth is counted from: per assigned partition, its end offset as last asked and the
/// group's committed offset, kept current by this consumer's own commits.
struct Lag {
    at: std::time::Instant,
    ends: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
}

impl Lag {
    fn fetch(consumer: &StreamConsumer<RebalanceLog>) -> Option<Self> {
        let committed = consumer.committed(Duration::from_secs(1)).ok()?;
        let mut lag = Self { at: std::time::Instant::now(), ends: BTreeMap::new(), committed: BTreeMap::new() };
        for e in committed.elements() {
            let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)).ok()?;
            // Nothing committed yet: the group starts at the earliest offset still kept.
            let from = match e.offset() {
                Offset::Offset(o) => o.max(low),
                _ => low,
            };
            lag.ends.insert(e.partition(), high);
            lag.committed.insert(e.partition(), from);
        }
        Some(lag)
    }

    fn total(&self) -> u64 {
        self.ends.iter().map(|(p, end)| (end - self.committed.get(p).copied().unwrap_or(*end)).max(0) as u64).sum()
    }
}

impl KafkaConsumer {
    pub async fn join(cfg: &KafkaConfig, group: &str) -> Result<Self, QueueError> {
        ensure_topics(cfg).await?;
        let retention = effective_retention(cfg).await?;
        match retention {
            Some(r) => tracing::info!(topic = %cfg.topic, retention_s = r.as_secs(), warn_fraction = cfg.retention_warn_fraction, "the topic's retention"),
            None => tracing::info!(topic = %cfg.topic, "the topic keeps events forever (retention.ms -1)"),
        }
        let watch = Arc::new(RetentionWatch::new(retention, cfg.retention_warn_fraction));
        let mut c = client::common(&cfg.brokers, &cfg.client);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The broker answers a fetch once it has 64 KiB or after 10 ms, not per record:
            // fewer fetch round trips for the worker's and the broker's CPU, at most 10 ms later.
            .set("fetch.min.bytes", "65536")
            .set("fetch.wait.max.ms", "10")
            // The broker's minimum: a worker that died is replaced within seconds.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1500");
        let consumer: StreamConsumer<RebalanceLog> =
            client::with_properties(&mut c, &cfg.client).create_with_context(RebalanceLog { watch: watch.clone() }).map_err(unavailable)?;
        consumer.subscribe(&[&cfg.topic]).map_err(unavailable)?;
        Ok(Self { consumer, dlq: tokio::sync::OnceCell::new(), cfg: cfg.clone(), lag: None, watch, metrics: None })
    }

    /// Reports to `metrics`: offsets skipped, and the age of the oldest unapplied event
    /// against the topic's retention, refreshed on a timer while this consumer lives.
    pub fn reporting_to(mut self, metrics: &Metrics) -> Self {
        retention::spawn_refresh(Arc::downgrade(&self.watch), metrics.clone());
        self.metrics = Some(metrics.clone());
        self
    }

    /// Tells the retention watch of a delivery as it is taken (a rebalance inside the next
    /// `recv` must find it), with the group's committed offset when the partition just came.
    fn watch_delivery(&self, d: &Delivery, timestamp_ms: Option<i64>) {
        let Position { partition, offset } = d.position;
        let committed = if self.watch.needs_start(partition) { self.committed_offset(partition) } else { None };
        if let Some(gap) = self.watch.delivered(partition, offset, timestamp_ms, committed) {
            retention::report_gap(self.metrics.as_ref(), gap);
        }
    }

    fn committed_offset(&self, partition: i32) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.topic, partition);
        let consumer = &self.consumer;
        let tpl = tokio::task::block_in_place(|| consumer.committed_offsets(tpl, Duration::from_secs(5))).ok()?;
        match tpl.elements().first()?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    fn delivery(m: &BorrowedMessage<'_>) -> Delivery {
        let mut d = Delivery::decode(Position { partition: m.partition(), offset: m.offset() }, m.payload().unwrap_or_default().to_vec());
        if let Some(h) = m.headers() {
            d.headers = h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect();
        }
        d
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    /// The group's committed offsets are authoritative; a batch applied but not committed
    /// before a crash is delivered again and recognised by its event ids.
    async fn resume(&mut self, _stored: &[Position]) -> Result<(), QueueError> {
        Ok(())
    }

    /// Errors from `recv` are librdkafka's events (a broker went away, all brokers down):
    /// it reconnects by itself, so they are logged and skipped. Returning them would make
    /// the worker back off once per queued event and fall minutes behind after an outage.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut batch = Vec::new();
        while batch.len() < max {
            // Wait for the first message; then take only what is already fetched.
            let timeout = if batch.is_empty() { deadline.saturating_duration_since(tokio::time::Instant::now()) } else { Duration::from_millis(1) };
            match tokio::time::timeout(timeout, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(m)) => {
                    let d = Self::delivery(&m);
                    self.watch_delivery(&d, m.timestamp().to_millis());
                    batch.push(d);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer event; librdkafka reconnects by itself");
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        Ok(batch)
    }

    async fn commit(&mut self, batch: &[Delivery]) -> Result<(), QueueError> {
        let mut tpl = TopicPartitionList::new();
        for p in super::last_positions(batch) {
            tpl.add_partition_offset(&self.cfg.topic, p.partition, Offset::Offset(p.offset + 1)).map_err(unavailable)?;
        }
        // Applied, whether or not the broker takes the commit.
        self.watch.committed(super::last_positions(batch).iter().map(|p| p.partition));
        let consumer = &self.consumer;
        tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync)).map_err(unavailable)?;
        if let Some(lag) = &mut self.lag {
            for p in super::last_positions(batch) {
                if let Some(c) = lag.committed.get_mut(&p.partition) {
                    *c = (*c).max(p.offset + 1);
                }
            }
        }
        Ok(())
    }

    /// Events after the committed offsets of the assigned partitions: delivered but not yet
    /// committed ones count. Asking the broker costs a round trip per partition, so the end
    /// offsets are refreshed at most every few seconds; this consumer's commits count at once.
    async fn depth(&mut self) -> Option<u64> {
        if self.lag.as_ref().is_none_or(|l| l.at.elapsed() >= LAG_REFRESH) {
            let consumer = &self.consumer;
            self.lag = Some(tokio::task::block_in_place(|| Lag::fetch(consumer))?);
        }
        self.lag.as_ref().map(Lag::total)
    }

    async fn close(&mut self) {
        self.consumer.unsubscribe();
    }

    async fn publish_dead_letter(&self, d: &Delivery, error: &str) -> Result<(), QueueError> {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &d.headers {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let (partition, offset) = (d.position.partition.to_string(), d.position.offset.to_string());
        headers = headers
            .insert(Header { key: "x-error", value: Some(error.as_bytes()) })
            .insert(Header { key: "x-source-partition", value: Some(partition.as_bytes()) })
            .insert(Header { key: "x-source-offset", value: Some(offset.as_bytes()) });
        let topic = self.cfg.dlq_topic();
        let record: FutureRecord<'_, (), Vec<u8>> = FutureRecord::to(&topic).payload(&d.raw).headers(headers);
        let dlq = self.dlq.get_or_try_init(|| async { producer::plain(&self.cfg) }).await?;
        dlq.send(record, Timeout::After(self.cfg.produce_timeout)).await.map(|_| ()).map_err(|(e, _)| unavailable(e))
    }
}
