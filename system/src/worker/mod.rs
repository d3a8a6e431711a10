//! The worker: poll a batch, apply it in one store transaction together with the queue
//! position, then commit the position on the queue. Transient store errors are retried
//! with backoff; an event that keeps failing while the store is otherwise healthy goes
//! to dead letters so that one poison event cannot stall its partition. When the store
//! itself is down, nothing is dead-lettered: the worker waits for it.

pub mod retry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::domain::PaymentEvent;
use crate::metrics::Metrics;
use crate::queue::{last_positions, Consumer, Delivery, QueueError};
use crate::store::{now_us, Applied, DeadLetter, Store, StoreError};
use crate::traces;
pub use retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The name positions are stored under (the consumer group for Kafka).
    pub consumer: String,
    pub batch_size: usize,
    /// How long a batch may wait to fill while events keep arriving.
    pub linger: Duration,
    /// How long one poll waits for the first event.
    pub poll_wait: Duration,
    pub retry: RetryPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { consumer: "webhooks-worker".into(), batch_size: 1000, linger: Duration::from_millis(2), poll_wait: Duration::from_millis(100), retry: RetryPolicy::default() }
    }
}

pub struct Worker {
    consumer: Box<dyn Consumer>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    cfg: WorkerConfig,
    shutdown: CancellationToken,
    /// When the last batch was taken: a batch within a linger of it means events keep coming.
    last_batch: Option<tokio::time::Instant>,
    /// Polls failed in a row.
    poll_failures: u32,
    /// Draws the backoff's jitter; seeded by the simulator, from the OS otherwise.
    jitter: Mutex<StdRng>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The batch was not applied because shutdown came while the store was unavailable.
struct Interrupted;

enum Failure {
    /// The store works but this keeps failing: dead-letter it.
    Poison(StoreError),
    Interrupted,
}

/// What one turn of the loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Applied and committed this many deliveries (0: nothing came, or the poll failed).
    Applied(usize),
    /// Shutdown came while the store was unavailable; the batch in hand was not applied.
    Stopped,
}

impl Worker {
    pub fn new(consumer: Box<dyn Consumer>, store: Arc<dyn Store>, metrics: Metrics, cfg: WorkerConfig, shutdown: CancellationToken) -> Self {
        metrics.mark_worker_here();
        let jitter = Mutex::new(rand::make_rng());
        Self { consumer, store, metrics, cfg, shutdown, last_batch: None, poll_failures: 0, jitter }
    }

    /// Draws the backoff's jitter from `seed`, so that a simulated run replays.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = Mutex::new(StdRng::seed_from_u64(seed));
        self
    }

    /// Runs until shutdown; the batch in hand when shutdown comes is finished and committed.
    pub async fn run(mut self) -> Result<(), WorkerError> {
        self.start().await?;
        while !self.shutdown.is_cancelled() && self.step().await != Step::Stopped {}
        self.consumer.close().await;
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Binds the stored positions to the log and resumes the queue after them.
    pub async fn start(&mut self) -> Result<(), WorkerError> {
        self.bind_positions_to_log().await?;
        let stored = self.store.positions(&self.cfg.consumer).await?;
        self.consumer.resume(&stored).await?;
        Ok(())
    }

    /// One turn of the loop: poll a batch, apply it, commit it, release what the store made
    /// durable. The simulator calls it directly, between its own steps.
    pub async fn step(&mut self) -> Step {
        self.metrics.health.beat();
        let shutdown = self.shutdown.clone();
        let polled = tokio::select! {
            polled = self.next_batch() => polled,
            _ = shutdown.cancelled() => return Step::Stopped,
        };
        let batch = match polled {
            Ok(batch) => batch,
            Err(e) => {
                self.poll_failures += 1;
                tracing::warn!(error = %e, "queue poll failed; backing off");
                self.pause(self.delay(self.poll_failures)).await;
                return Step::Applied(0);
            }
        };
        self.poll_failures = 0;
        if !batch.is_empty() {
            if self.process(&batch).await.is_err() {
                return Step::Stopped;
            }
            // The effects are durable; a commit that fails (broker away) only means the
            // batch may be delivered again, and its event ids make that harmless.
            if let Err(e) = self.consumer.commit(&batch).await {
                tracing::warn!(error = %e, "queue commit failed; the batch may be redelivered and deduplicated");
            }
            if self.consumer.wants_release() {
                self.release().await;
            }
        }
        // An empty poll means the worker caught up; a full one, that it may be lagging.
        if batch.is_empty() || batch.len() == self.cfg.batch_size {
            if let Some(depth) = self.consumer.depth().await {
                self.metrics.queue_depth.set(depth as i64);
            }
        }
        Step::Applied(batch.len())
    }

    fn delay(&self, attempt: u32) -> Duration {
        match self.jitter.lock() {
            Ok(mut rng) => self.cfg.retry.delay_from(attempt, &mut *rng),
            Err(_) => self.cfg.retry.ceiling(attempt),
        }
    }

    /// A poll's events; while events keep arriving (the previous batch was taken less than a
    /// linger ago), more polls fill the batch until it is full or the linger is over.
    async fn next_batch(&mut self) -> Result<Vec<Delivery>, QueueError> {
        let max = self.cfg.batch_size;
        let mut batch = self.consumer.poll(max, self.cfg.poll_wait).await?;
        if batch.is_empty() {
            return Ok(batch);
        }
        let busy = self.last_batch.is_some_and(|at| at.elapsed() < self.cfg.linger);
        let deadline = tokio::time::Instant::now() + self.cfg.linger;
        while busy && batch.len() < max {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let more = match self.consumer.poll(max - batch.len(), left).await {
                Ok(more) => more,
                // What was taken is applied and committed first: dropped here, it would be
                // skipped, since the next poll goes on after it. The error comes back then.
                Err(e) => {
                    tracing::warn!(error = %e, events = batch.len(), "queue poll failed while a batch filled; applying what was taken");
                    break;
                }
            };
            // A poll comes back empty only once it has waited out what was left.
            if more.is_empty() {
                break;
            }
            batch.extend(more);
        }
        self.last_batch = Some(tokio::time::Instant::now());
        Ok(batch)
    }

    /// Positions into a log are stored under the consumer's name and the log's identity, so
    /// that positions of another log (a replaced data directory, a second instance on the same
    /// database) are never applied to this one: this log is then read from its beginning.
    async fn bind_positions_to_log(&mut self) -> Result<(), WorkerError> {
        let Some(log) = self.consumer.log_id() else { return Ok(()) };
        let legacy = self.store.positions(&self.cfg.consumer).await?;
        self.cfg.consumer = format!("{}@{log}", self.cfg.consumer);
        let own = self.store.positions(&self.cfg.consumer).await?;
        if own.is_empty() {
            if !legacy.is_empty() {
                tracing::warn!(consumer = %self.cfg.consumer, ?legacy, "ignoring positions stored without a log identity; reading this log from its beginning (repeats are skipped as duplicates)");
            }
            tracing::info!(consumer = %self.cfg.consumer, "no stored position for this log: reading it from its beginning");
        }
        Ok(())
    }

    /// Lets the queue free committed events once the store has synced their effects. A
    /// failure only keeps them (and delays reclaiming the disk); it is tried again later.
    async fn release(&mut self) {
        if let Err(e) = self.store.make_durable().await {
            tracing::warn!(error = %e, "store checkpoint failed; keeping the consumed events on the queue");
            return;
        }
        if let Err(e) = self.consumer.release().await {
            tracing::warn!(error = %e, "could not free consumed events on the queue");
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    async fn process(&self, batch: &[Delivery]) -> Result<(), Interrupted> {
        let started = Instant::now();
        let positions = last_positions(batch);
        let (events, undecoded): (Vec<_>, Vec<_>) = batch.iter().partition(|d| d.event.is_ok());
        let events: Vec<PaymentEvent> = events.into_iter().filter_map(|d| d.event.clone().ok()).collect();
        if !undecoded.is_empty() {
            let letters: Vec<_> = undecoded.iter().map(|d| undecodable(d)).collect();
            self.until_stored(|| self.store.dead_letter(&self.cfg.consumer, &letters, &[])).await?;
            self.metrics.worker_outcome("dead_lettered", letters.len() as u64);
            for (d, letter) in undecoded.iter().zip(&letters) {
                self.publish_dead_letter(d, &letter.error).await;
            }
        }
        let spans = apply_spans(&events);
        match self.with_retries(|| self.store.apply_batch(&self.cfg.consumer, &events, &positions)).await {
            Ok(outcomes) => {
                for (span, outcome) in spans.iter().zip(&outcomes) {
                    span.record("outcome", label(outcome));
                }
                self.record(&events, &outcomes);
                let decoded = batch.iter().filter(|d| d.event.is_ok());
                for (d, outcome) in decoded.zip(&outcomes) {
                    if let Applied::DeadLettered(error) | Applied::IdReused(error) = outcome {
                        self.publish_dead_letter(d, error).await;
                    }
                }
            }
            Err(Failure::Poison(e)) => {
                for span in &spans {
                    span.record("outcome", "applied_alone");
                }
                tracing::warn!(error = %e, events = events.len(), "batch failed; applying its events one by one");
                self.isolate(batch).await?;
            }
            Err(Failure::Interrupted) => return Err(Interrupted),
        }
        self.metrics.worker_batches.inc();
        self.metrics.worker_batch_size.observe(batch.len() as f64);
        self.metrics.worker_apply_latency.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Applies each event in its own transaction so that only the poison ones are dead-lettered.
    /// Its retries and dead letter are logged in the event's span, which names its request.
    async fn isolate(&self, batch: &[Delivery]) -> Result<(), Interrupted> {
        for d in batch {
            let Ok(event) = &d.event else { continue };
            let span = apply_span(event);
            self.apply_alone(d, event, &span).instrument(span.clone()).await?;
        }
        Ok(())
    }

    async fn apply_alone(&self, d: &Delivery, event: &PaymentEvent, span: &Span) -> Result<(), Interrupted> {
        let one = std::slice::from_ref(event);
        let positions = last_positions(std::slice::from_ref(d));
        match self.with_retries(|| self.store.apply_batch(&self.cfg.consumer, one, &positions)).await {
            Ok(outcomes) => {
                if let Some(outcome) = outcomes.first() {
                    span.record("outcome", label(outcome));
                }
                self.record(one, &outcomes)
            }
            Err(Failure::Interrupted) => return Err(Interrupted),
            Err(Failure::Poison(e)) => {
                span.record("outcome", "dead_lettered");
                tracing::error!(event_id = %event.event_id, request_id = request_id(event), error = %e, "event dead-lettered");
                let letter = [DeadLetter::for_event(event, e.to_string(), self.cfg.retry.max_attempts)];
                self.until_stored(|| self.store.dead_letter(&self.cfg.consumer, &letter, &positions)).await?;
                self.metrics.worker_outcome("dead_lettered", 1);
                self.publish_dead_letter(d, &letter[0].error).await;
            }
        }
        Ok(())
    }

    /// Retries transient errors up to the policy's attempts. When attempts run out, or the
    /// error is permanent, the event is poison, but only if the store answers a ping. An
    /// outage (the store reports itself unavailable, or does not answer a ping) is waited out
    /// however long it lasts, rather than dead-letter healthy events.
    async fn with_retries<T, F, Fut>(&self, mut op: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < self.cfg.retry.max_attempts => {
                    tracing::debug!(error = %e, attempt, "transient store error; retrying");
                }
                Err(e) if !e.is_outage() && self.store.ping().await.is_ok() => return Err(Failure::Poison(e)),
                Err(_) if self.shutdown.is_cancelled() => return Err(Failure::Interrupted),
                Err(e) => {
                    tracing::warn!(error = %e, "store unavailable; waiting for it");
                    attempt = attempt.min(self.cfg.retry.max_attempts.saturating_sub(1));
                }
            }
            self.metrics.worker_retries.inc();
            self.pause(self.delay(attempt)).await;
        }
    }

    /// Writes that must not be skipped (dead letters) wait out any store failure, unless shutdown comes.
    async fn until_stored<F, Fut>(&self, mut op: F) -> Result<(), Interrupted>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(()) => return Ok(()),
                Err(_) if self.shutdown.is_cancelled() => return Err(Interrupted),
                Err(e) => tracing::warn!(error = %e, attempt, "could not record dead letter; retrying"),
            }
            self.pause(self.delay(attempt.min(self.cfg.retry.max_attempts))).await;
        }
    }

    /// Best effort: the store's dead-letter table is the record; the backend's copy is for
    /// operators' tooling, so a failure here is logged and does not hold the partition.
    async fn publish_dead_letter(&self, d: &Delivery, error: &str) {
        if let Err(e) = self.consumer.publish_dead_letter(d, error).await {
            tracing::warn!(error = %e, offset = d.position.offset, "could not publish dead letter to the queue");
        }
    }

    fn record(&self, events: &[PaymentEvent], outcomes: &[Applied]) {
        let now = now_us();
        for (e, o) in events.iter().zip(outcomes) {
            self.metrics.worker_outcome(label(o), 1);
            let request_id = request_id(e);
            match o {
                Applied::Conflict => {
                    tracing::warn!(event_id = %e.event_id, request_id, payment_id = %e.payment_id, amount = e.amount, currency = %e.currency, "payment conflicted: events of one rank disagree on amount or currency")
                }
                Applied::IdReused(error) => tracing::warn!(event_id = %e.event_id, request_id, %error, "event id reused for another event; dead-lettered"),
                Applied::DeadLettered(error) => tracing::warn!(event_id = %e.event_id, request_id, %error, "event dead-lettered"),
                _ => {}
            }
            if matches!(o, Applied::Applied | Applied::Stale | Applied::Conflict) {
                self.metrics.record_e2e(now.saturating_sub(e.received_at_us).max(0) as u64);
            }
        }
    }
}

fn label(outcome: &Applied) -> &'static str {
    match outcome {
        Applied::Applied => "applied",
        Applied::Stale => "stale",
        Applied::Duplicate => "duplicate",
        Applied::Conflict | Applied::IdReused(_) => "conflict",
        Applied::DeadLettered(_) => "dead_lettered",
    }
}

/// The id of the request that delivered the event; empty for records older than it.
fn request_id(event: &PaymentEvent) -> &str {
    event.request_id.as_deref().unwrap_or_default()
}

/// The event's `webhook.apply` span, a child of its request's span through the queue record.
fn apply_span(event: &PaymentEvent) -> Span {
    let span = tracing::info_span!("webhook.apply", request_id = request_id(event), event_id = %event.event_id, outcome = tracing::field::Empty, otel.kind = "consumer");
    traces::set_parent(&span, event.traceparent.as_deref());
    span
}

/// A span per event of a batch while spans are exported, ended with the batch's transaction;
/// none otherwise, so a batch costs nothing more when no one collects them.
fn apply_spans(events: &[PaymentEvent]) -> Vec<Span> {
    if !traces::exporting() {
        return Vec::new();
    }
    events.iter().map(apply_span).collect()
}

fn undecodable(d: &Delivery) -> DeadLetter {
    DeadLetter {
        event_id: format!("undecodable:{}:{}", d.position.partition, d.position.offset),
        payment_id: None,
        order_id: None,
        payload: String::from_utf8_lossy(&d.raw).into_owned(),
        error: d.event.as_ref().err().cloned().unwrap_or_default(),
        attempts: 1,
    }
}

#[cfg(test)]
mod tests;
