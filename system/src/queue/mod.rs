//! The queue between ingress and the worker: one interface, two backends.
//!
//! - [`embedded`]: a durable segment log ([`log`]) in the data directory, group commit (the default).
//! - `kafka`: a partitioned Apache Kafka topic with a consumer group.
//! - [`spool`]: in front of Kafka on the server, a local durable log for when the broker is down.
//! - [`cap`]: the byte cap of either log: past it appends are refused (503), never dropped.
//!
//! A producer acknowledges an append only once the event is durable; a consumer hands out
//! batches and is told to commit only after the store has committed their effects.

pub mod cap;
pub mod embedded;
pub mod log;
pub mod kafka;
mod legacy;
pub mod spool;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::PaymentEvent;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// Too many appends are waiting: shed load rather than grow memory.
    #[error("queue is full")]
    Full,
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("queue append timed out")]
    Timeout,
    #[error("queue storage error: {0}")]
    Storage(String),
    /// Another process writes this queue (the embedded log's writer lock).
    #[error("{0}")]
    Busy(String),
}

/// A place in the queue: a partition and an offset within it (the embedded log has one partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// One message handed to the worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub position: Position,
    /// The decoded event, or why the bytes could not be decoded (a poison message).
    pub event: Result<PaymentEvent, String>,
    /// The bytes as stored, kept for dead letters.
    pub raw: Vec<u8>,
    /// Transport headers (Kafka), carried over to the dead-letter topic.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Delivery {
    pub fn decode(position: Position, raw: Vec<u8>) -> Self {
        let event = serde_json::from_slice(&raw).map_err(|e| format!("undecodable message: {e}"));
        Self { position, event, raw, headers: Vec::new() }
    }
}

/// The server's side: append events durably.
#[async_trait]
pub trait Producer: Send + Sync {
    /// Returns once the event is durable; an error means it is not stored.
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError>;
    /// Appends a batch pipelined, queued in its order; the spool's drainer forwards this way.
    /// An error means some of the batch may not be stored, and the rest may be.
    async fn append_all(&self, events: &[&PaymentEvent]) -> Result<(), QueueError> {
        futures_util::future::join_all(events.iter().map(|e| self.append(e))).await.into_iter().collect()
    }
    /// Whether appends can currently succeed.
    async fn ready(&self) -> Result<(), QueueError>;
    /// Events acknowledged but waiting in a local spool for the broker, when there is one.
    fn spool_depth(&self) -> Option<u64> {
        None
    }
}

/// The worker's side: read batches, commit positions after their effects are durable.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// The identity of the log this consumer reads, when positions into it are kept by the
    /// store: they are stored under it, so a position into another log is never used.
    fn log_id(&self) -> Option<String> {
        None
    }
    /// Continues after the positions the store recorded with the last applied batch.
    /// Backends that keep their own committed offsets (Kafka) may ignore them.
    async fn resume(&mut self, stored: &[Position]) -> Result<(), QueueError>;
    /// Up to `max` deliveries; waits at most `wait` when nothing is available.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// Marks everything in `batch` as done. Called only after the store committed it.
    async fn commit(&mut self, batch: &[Delivery]) -> Result<(), QueueError>;
    /// Whether committed events hold storage that [`Consumer::release`] would free.
    fn wants_release(&self) -> bool {
        false
    }
    /// Frees the storage of committed events. Called only once the store has made the
    /// effects of every committed batch durable (`Store::make_durable`), because the events
    /// are gone for good afterwards.
    async fn release(&mut self) -> Result<(), QueueError> {
        Ok(())
    }
    /// Events appended but not yet committed, when the backend knows.
    async fn depth(&mut self) -> Option<u64>;
    /// Finishes cleanly: commits what is pending and leaves any group.
    async fn close(&mut self) {}
    /// Publishes a dead-lettered delivery where the backend keeps them (Kafka's `<topic>.dlq`);
    /// the store's dead-letter table has it already.
    async fn publish_dead_letter(&self, _delivery: &Delivery, _error: &str) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The highest position per partition in a batch: what a commit records.
pub fn last_positions(batch: &[Delivery]) -> Vec<Position> {
    let mut out: Vec<Position> = Vec::new();
    for d in batch {
        match out.iter_mut().find(|p| p.partition == d.position.partition) {
            Some(p) => p.offset = p.offset.max(d.position.offset),
            None => out.push(d.position),
        }
    }
    out
}

/// The same event shape for every queue test: one order, ids numbered by `i`.
#[cfg(test)]
pub(crate) fn test_event(i: usize) -> PaymentEvent {
    PaymentEvent {
        event_id: format!("evt_{i}"),
        event_type: crate::domain::EventType::Success,
        payment_id: format!("pay_{i}"),
        order_id: "order_1".into(),
        amount: 100,
        currency: "USD".into(),
        created_at: None,
        received_at_us: 1,
        request_id: None,
        traceparent: None,
    }
}
