//! The worker's retry and dead-letter policy against fakes, with paused time: pure logic,
//! no database. The real stores are covered by the integration tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::domain::{CreateOutcome, EventType, NewOrder};
use crate::queue::Position;
use crate::store::{ConsumerName, DeadLetterFilter, DeadLetterView, OrderView, PaymentView};

#[derive(Default)]
struct FakeStore {
    /// Batches fail transiently this many times before succeeding.
    transient_failures: AtomicU32,
    /// Batches fail this many times as a full disk does: writes fail, `SELECT 1` still works.
    disk_full_failures: AtomicU32,
    /// Any batch containing this event id fails permanently.
    poison: Option<String>,
    /// While false, every call (ping included) fails: an outage.
    up: AtomicBool,
    applied: Mutex<Vec<String>>,
    dead: Mutex<Vec<String>>,
    positions: Mutex<Vec<Position>>,
}

impl FakeStore {
    fn new(poison: Option<&str>, transient_failures: u32) -> Arc<Self> {
        Arc::new(Self { poison: poison.map(str::to_owned), transient_failures: transient_failures.into(), up: true.into(), ..Default::default() })
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Transient("connection refused".into()))
        }
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn apply_batch(&self, _: &ConsumerName, events: &[PaymentEvent], positions: &[Position]) -> Result<Vec<Applied>, StoreError> {
        self.check_up()?;
        if self.transient_failures.load(Ordering::SeqCst) > 0 {
            self.transient_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Transient("database is locked".into()));
        }
        if self.disk_full_failures.load(Ordering::SeqCst) > 0 {
            self.disk_full_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("database or disk is full".into()));
        }
        if events.iter().any(|e| Some(&e.event_id) == self.poison.as_ref()) {
            return Err(StoreError::Permanent("CHECK constraint failed".into()));
        }
        self.applied.lock().unwrap().extend(events.iter().map(|e| e.event_id.clone()));
        self.positions.lock().unwrap().extend_from_slice(positions);
        Ok(events.iter().map(|_| Applied::Applied).collect())
    }
    async fn dead_letter(&self, _: &ConsumerName, letters: &[DeadLetter], positions: &[Position]) -> Result<(), StoreError> {
        self.check_up()?;
        self.dead.lock().unwrap().extend(letters.iter().map(|l| l.event_id.clone()));
        self.positions.lock().unwrap().extend_from_slice(positions);
        Ok(())
    }
    async fn positions(&self, _: &ConsumerName) -> Result<Vec<Position>, StoreError> {
        Ok(vec![])
    }
    async fn log_position(&self, _: &str) -> Result<u64, StoreError> {
        Ok(self.positions.lock().unwrap().iter().map(|p| p.offset.max(0) as u64).max().unwrap_or(0))
    }
    async fn create_order(&self, _: &NewOrder) -> Result<CreateOutcome, StoreError> {
        unreachable!("the worker does not create orders")
    }
    async fn order(&self, _: &str) -> Result<Option<OrderView>, StoreError> {
        Ok(None)
    }
    async fn payment(&self, _: &str) -> Result<Option<PaymentView>, StoreError> {
        Ok(None)
    }
    async fn dead_letters(&self, _: &DeadLetterFilter) -> Result<(u64, Vec<DeadLetterView>), StoreError> {
        Ok((0, vec![]))
    }
    async fn mark_replayed(&self, _: &[(i64, u32)]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check_up()
    }
}

/// Hands out prepared batches, records commits, and stops the worker when it runs dry.
struct FakeQueue {
    batches: Mutex<VecDeque<Vec<Delivery>>>,
    committed: Arc<Mutex<Vec<i64>>>,
    done: CancellationToken,
    /// Commits fail this many times first, as while a broker is away.
    failing_commits: u32,
    /// This poll (counting from 1) fails, as a read error in the log does.
    failing_poll: Option<u32>,
    polls: u32,
}

#[async_trait]
impl Consumer for FakeQueue {
    async fn resume(&mut self, _: &[Position]) -> Result<(), QueueError> {
        Ok(())
    }
    async fn poll(&mut self, _: usize, _: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.polls += 1;
        if self.failing_poll == Some(self.polls) {
            return Err(QueueError::Storage("read segment: EIO".into()));
        }
        let next = self.batches.lock().unwrap().pop_front();
        if next.is_none() {
            self.done.cancel();
        }
        Ok(next.unwrap_or_default())
    }
    async fn commit(&mut self, batch: &[Delivery]) -> Result<(), QueueError> {
        if self.failing_commits > 0 {
            self.failing_commits -= 1;
            return Err(QueueError::Unavailable("broker down".into()));
        }
        self.committed.lock().unwrap().extend(batch.iter().map(|d| d.position.offset));
        Ok(())
    }
    async fn depth(&mut self) -> Option<u64> {
        None
    }
}

fn delivery(offset: i64) -> Delivery {
    let event = PaymentEvent {
        event_id: format!("e{offset}"),
        event_type: EventType::Success,
        payment_id: format!("p{offset}"),
        order_id: "o".into(),
        amount: 1,
        currency: "USD".into(),
        created_at: None,
        received_at_us: 0,
        request_id: None,
        traceparent: None,
    };
    Delivery::decode(Position { partition: 0, offset }, serde_json::to_vec(&event).unwrap())
}

async fn run(store: Arc<FakeStore>, batches: Vec<Vec<Delivery>>) -> Vec<i64> {
    run_with(store, batches, 0).await
}

async fn run_with(store: Arc<FakeStore>, batches: Vec<Vec<Delivery>>, failing_commits: u32) -> Vec<i64> {
    // Each prepared batch is one transaction: no lingering merges them.
    run_config(store, batches, failing_commits, Duration::ZERO).await
}

async fn run_config(store: Arc<FakeStore>, batches: Vec<Vec<Delivery>>, failing_commits: u32, linger: Duration) -> Vec<i64> {
    run_queue(store, batches, failing_commits, None, linger).await
}

async fn run_queue(store: Arc<FakeStore>, batches: Vec<Vec<Delivery>>, failing_commits: u32, failing_poll: Option<u32>, linger: Duration) -> Vec<i64> {
    let done = CancellationToken::new();
    let committed = Arc::new(Mutex::new(Vec::new()));
    let queue = FakeQueue { batches: Mutex::new(batches.into()), committed: committed.clone(), done: done.clone(), failing_commits, failing_poll, polls: 0 };
    let retry = RetryPolicy { base: Duration::from_millis(10), cap: Duration::from_secs(1), max_attempts: 4 };
    let cfg = WorkerConfig { retry, linger, ..Default::default() };
    Worker::new(Box::new(queue), store, Metrics::new(), cfg, done).run().await.expect("worker ran");
    let c = committed.lock().unwrap().clone();
    c
}

/// A poll that failed while a batch filled (linger) once dropped the batch in hand, and the
/// next poll went on after it: its events were committed past without being applied.
#[tokio::test(start_paused = true)]
async fn a_poll_failing_while_a_batch_fills_keeps_the_batch() {
    let store = FakeStore::new(None, 0);
    let batches = vec![vec![delivery(1)], vec![delivery(2)], vec![delivery(3)]];
    let committed = run_queue(store.clone(), batches, 0, Some(3), Duration::from_millis(5)).await;
    assert_eq!(*store.applied.lock().unwrap(), ["e1", "e2", "e3"]);
    assert_eq!(committed, [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_and_the_batch_commits_once() {
    let store = FakeStore::new(None, 3);
    let committed = run(store.clone(), vec![vec![delivery(1), delivery(2)]]).await;
    assert_eq!(*store.applied.lock().unwrap(), ["e1", "e2"]);
    assert!(store.dead.lock().unwrap().is_empty());
    assert_eq!(committed, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_poison_event_is_dead_lettered_alone_and_the_partition_moves_on() {
    let store = FakeStore::new(Some("e2"), 0);
    let committed = run(store.clone(), vec![vec![delivery(1), delivery(2), delivery(3)], vec![delivery(4)]]).await;
    assert_eq!(*store.applied.lock().unwrap(), ["e1", "e3", "e4"]);
    assert_eq!(*store.dead.lock().unwrap(), ["e2"]);
    assert_eq!(committed, [1, 2, 3, 4]);
    // The dead letter's position was stored with it, so a restart does not redo it.
    assert!(store.positions.lock().unwrap().contains(&Position { partition: 0, offset: 2 }));
}

#[tokio::test(start_paused = true)]
async fn undecodable_messages_are_dead_lettered_without_touching_the_rest() {
    let store = FakeStore::new(None, 0);
    let garbage = Delivery::decode(Position { partition: 0, offset: 2 }, b"not json".to_vec());
    let committed = run(store.clone(), vec![vec![delivery(1), garbage, delivery(3)]]).await;
    assert_eq!(*store.applied.lock().unwrap(), ["e1", "e3"]);
    assert_eq!(*store.dead.lock().unwrap(), ["undecodable:0:2"]);
    assert_eq!(committed, [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn an_outage_dead_letters_nothing_and_the_batch_applies_when_the_store_returns() {
    let store = FakeStore::new(None, 0);
    store.up.store(false, Ordering::SeqCst);
    let revive = {
        let store = store.clone();
        tokio::spawn(async move {
            // Far longer than all retry attempts together: the worker must keep waiting.
            tokio::time::sleep(Duration::from_secs(60)).await;
            store.up.store(true, Ordering::SeqCst);
        })
    };
    let committed = run(store.clone(), vec![vec![delivery(1), delivery(2)]]).await;
    revive.await.unwrap();
    assert_eq!(*store.applied.lock().unwrap(), ["e1", "e2"]);
    assert!(store.dead.lock().unwrap().is_empty(), "an outage is not a poison event");
    assert_eq!(committed, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_queue_commit_does_not_stop_the_worker() {
    let store = FakeStore::new(None, 0);
    let committed = run_with(store.clone(), vec![vec![delivery(1)], vec![delivery(2)]], 1).await;
    // The first batch's commit failed (it would be redelivered and deduplicated); the worker
    // went on with the next batch instead of exiting.
    assert_eq!(*store.applied.lock().unwrap(), ["e1", "e2"]);
    assert_eq!(committed, [2]);
}

#[tokio::test(start_paused = true)]
async fn a_full_disk_is_waited_out_although_the_store_answers_pings() {
    let store = FakeStore::new(None, 0);
    // Far more failures than the policy's attempts: were the worker to ask only `ping`, it
    // would take every event for poison.
    store.disk_full_failures.store(40, Ordering::SeqCst);
    let committed = run(store.clone(), vec![vec![delivery(1), delivery(2)]]).await;
    assert_eq!(*store.applied.lock().unwrap(), ["e1", "e2"]);
    assert!(store.dead.lock().unwrap().is_empty(), "a full disk is not a poison event");
    assert_eq!(committed, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_first_event_is_applied_at_once_and_events_that_keep_coming_fill_one_batch() {
    let store = FakeStore::new(None, 0);
    let polls = vec![vec![delivery(1)], vec![delivery(2)], vec![delivery(3)], vec![delivery(4)]];
    let committed = run_config(store.clone(), polls, 0, Duration::from_millis(2)).await;
    assert_eq!(committed, [1, 2, 3, 4]);
    // One stored position per transaction: the first event alone, then the rest together.
    let positions: Vec<i64> = store.positions.lock().unwrap().iter().map(|p| p.offset).collect();
    assert_eq!(positions, [1, 4]);
}
