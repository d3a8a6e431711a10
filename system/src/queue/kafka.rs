//! The Kafka queue: a partitioned topic keyed by `order_id` (every event of one order on one
//! partition, in order), produced with `acks=all` and idempotence, consumed by a consumer
//! group with manual offset commits, and a `<topic>.dlq` dead-letter topic.

use std::collections::BTreeMap;
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

pub mod producer;
mod topics;
pub use producer::KafkaProducer;
pub use topics::{ensure_topics, TopicSettings};

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
}

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
fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "none")
        .set("message.timeout.ms", cfg.produce_timeout.as_millis().max(1).to_string());
    c
}

/// Logs rebalances. Offsets are committed synchronously after every applied batch, and a
/// rebalance can only happen inside `recv`, between batches: so when partitions are revoked,
/// everything done is already committed and nothing undone ever is.
pub struct RebalanceLog;

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
    }
}

fn partition_list(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| e.partition().to_string()).collect::<Vec<_>>().join(",")
}

/// The worker's side: one member of the consumer group.
pub struct KafkaConsumer {
    consumer: StreamConsumer<RebalanceLog>,
    dlq: FutureProducer,
    cfg: KafkaConfig,
    lag: Option<Lag>,
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
        let consumer: StreamConsumer<RebalanceLog> = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The broker answers a fetch once it has 64 KiB or after 10 ms, not per record:
            // fewer fetch round trips for the worker's and the broker's CPU, at most 10 ms later.
            .set("fetch.min.bytes", "65536")
            .set("fetch.wait.max.ms", "10")
            // The broker's minimum: a worker that died is replaced within seconds.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1500")
            .create_with_context(RebalanceLog)
            .map_err(unavailable)?;
        consumer.subscribe(&[&cfg.topic]).map_err(unavailable)?;
        Ok(Self { consumer, dlq: producer::plain(cfg)?, cfg: cfg.clone(), lag: None })
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
                Ok(Ok(m)) => batch.push(Self::delivery(&m)),
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
        self.dlq.send(record, Timeout::After(self.cfg.produce_timeout)).await.map(|_| ()).map_err(|(e, _)| unavailable(e))
    }
}
