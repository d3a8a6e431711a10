//! One queue suite, every backend: the same checks against the embedded segment log (real
//! files in a temporary directory), Kafka (a topic and consumer group of its own per test on
//! the real broker) and the Kafka-mode spool (the spooling producer over real files in front
//! of the real broker, with outages during which its broker is a producer pointed at a closed
//! port), through the `Producer` and `Consumer` interfaces the server and the worker use.
//!
//! Consumers are opened as the worker opens one after a restart: `resume` with the positions
//! the store recorded with the last committed batch (`Backend::stored`, replaced per partition
//! as `Store::apply_batch` does). Kafka keeps its own offsets and ignores them.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use webhooks::domain::{EventType, PaymentEvent};
use webhooks::metrics::Metrics;
use webhooks::queue::embedded::{EmbeddedConfig, EmbeddedConsumer, EmbeddedProducer};
use webhooks::queue::kafka::{KafkaConfig, KafkaConsumer, KafkaProducer};
use webhooks::queue::log::segment;
use webhooks::queue::spool::{SpoolConfig, SpoolingProducer};
use webhooks::queue::{last_positions, Consumer, Delivery, Position, Producer, QueueError};

/// Small segments, so that releases and the spool's drain delete whole files during the checks.
const SEGMENT_BYTES: u64 = 2048;
/// How long a check waits for deliveries it expects.
const WITHIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Log,
    Kafka,
    Spool,
}

struct Backend {
    kind: Kind,
    dir: tempfile::TempDir,
    /// Kafka and the spool: the test's own topic.
    kafka: Option<KafkaConfig>,
    group: String,
    /// The appender's wake-up for the consumer, shared as in `standalone`.
    wake: Arc<Notify>,
    /// What the store holds: the positions recorded with the last committed batch.
    stored: Vec<Position>,
}

async fn backends(test: &str) -> Vec<Backend> {
    // The drainer's and rdkafka's warnings appear with a failure's output (RUST_LOG=warn).
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let mut out = vec![Backend::new(Kind::Log, None, test)];
    if let Some(brokers) = common::kafka_brokers() {
        for kind in [Kind::Kafka, Kind::Spool] {
            let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
            let topic = format!("qs-{test}-{kind:?}-{}-{unique}", std::process::id());
            // Three partitions: per-key order must hold with keys spread over several.
            let cfg = KafkaConfig { brokers: brokers.clone(), topic, partitions: 3, replication_factor: None, min_insync_replicas: None, produce_timeout: Duration::from_secs(5), flush_interval: Duration::from_millis(2), ..Default::default() };
            out.push(Backend::new(kind, Some(cfg), test));
        }
    }
    out
}

impl Backend {
    fn new(kind: Kind, kafka: Option<KafkaConfig>, test: &str) -> Self {
        let group = format!("g-{}", kafka.as_ref().map_or(test, |k| k.topic.as_str()));
        Self { kind, dir: tempfile::tempdir().expect("temp dir"), kafka, group, wake: Arc::new(Notify::new()), stored: Vec::new() }
    }

    fn name(&self) -> String {
        format!("{:?}", self.kind)
    }

    /// The log's files, named as `StorageArgs` names them: `log/` for the embedded queue, `spool/` for the spool.
    fn log_config(&self, sub: &str) -> EmbeddedConfig {
        EmbeddedConfig { dir: self.dir.path().join(sub), legacy: self.dir.path().join(format!("{sub}.db")), segment_bytes: SEGMENT_BYTES, ..EmbeddedConfig::in_dir(self.dir.path()) }
    }

    fn kafka(&self) -> &KafkaConfig {
        self.kafka.as_ref().expect("a Kafka backend has a topic")
    }

    /// A producer opened afresh, from the files for the log and the spool.
    async fn producer(&self) -> Appender {
        let stop = CancellationToken::new();
        let (producer, broker): (Arc<dyn Producer>, _) = match self.kind {
            Kind::Log => (Arc::new(EmbeddedProducer::open(&self.log_config("log"), 0, Metrics::new(), self.wake.clone()).expect("open the log")), None),
            Kind::Kafka => (Arc::new(KafkaProducer::connect(self.kafka()).await.expect("connect to Kafka")), None),
            Kind::Spool => {
                let closed = common::free_addr().to_string();
                let unreachable = KafkaConfig { brokers: closed, produce_timeout: Duration::from_millis(300), ..self.kafka().clone() };
                let switch = Arc::new(Switch {
                    broker: KafkaProducer::connect(self.kafka()).await.expect("connect to Kafka"),
                    unreachable: KafkaProducer::new(&unreachable).expect("a producer for a closed port"),
                    outage: AtomicBool::new(false),
                });
                let cfg = SpoolConfig { log: self.log_config("spool"), max_events: 100_000 };
                let spool = SpoolingProducer::open(switch.clone(), &cfg, Metrics::new(), stop.clone()).await.expect("open the spool");
                (Arc::new(spool) as Arc<dyn Producer>, Some(switch))
            }
        };
        Appender { producer, broker, stop }
    }

    /// A consumer as a restarted worker opens one.
    async fn consumer(&self) -> Box<dyn Consumer> {
        let mut c: Box<dyn Consumer> = match self.kind {
            Kind::Log => Box::new(EmbeddedConsumer::open(&self.log_config("log"), self.wake.clone()).expect("open the log")),
            Kind::Kafka | Kind::Spool => Box::new(KafkaConsumer::join(self.kafka(), &self.group).await.expect("join the group")),
        };
        c.resume(&self.stored).await.expect("resume");
        c
    }

    /// The worker's step once the store committed `batch`: the store records its positions
    /// in the same transaction, then the queue is told.
    async fn commit(&mut self, c: &mut dyn Consumer, batch: &[Delivery]) {
        for p in last_positions(batch) {
            self.stored.retain(|s| s.partition != p.partition);
            self.stored.push(p);
        }
        c.commit(batch).await.unwrap_or_else(|e| panic!("{}: commit: {e}", self.name()));
    }

    /// How long a poll that must stay empty waits: a Kafka fetch takes longer than a file read.
    fn quiet(&self) -> Duration {
        match self.kind {
            Kind::Log => Duration::from_millis(200),
            Kind::Kafka | Kind::Spool => Duration::from_secs(1),
        }
    }
}

/// An open producer; dropping it stops the spool's drainer, as a server's shutdown does.
struct Appender {
    producer: Arc<dyn Producer>,
    /// The spool's broker, which the test can take away.
    broker: Option<Arc<Switch>>,
    stop: CancellationToken,
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Appender {
    /// Starts or ends a broker outage for the spool; the log and plain Kafka have no broker
    /// in front of them to lose (an outage of Kafka itself is an error, `kafka_outage.rs`).
    fn outage(&self, on: bool) {
        if let Some(s) = &self.broker {
            s.outage.store(on, Ordering::SeqCst);
        }
    }

    /// Waits until nothing is left in the spool (at once for the other backends).
    async fn drained(&self) {
        let deadline = Instant::now() + WITHIN;
        while self.producer.spool_depth().unwrap_or(0) > 0 {
            assert!(Instant::now() < deadline, "the spool did not drain within {WITHIN:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The spool's broker: the real one, or during an outage a producer pointed at a closed port,
/// whose appends fail after its produce timeout as they do when the broker is down. Each
/// `Appender` has its own, so the drainer of one that was dropped can never forward again.
struct Switch {
    broker: KafkaProducer,
    unreachable: KafkaProducer,
    outage: AtomicBool,
}

#[async_trait]
impl Producer for Switch {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        if self.outage.load(Ordering::SeqCst) {
            return self.unreachable.append(event).await;
        }
        self.broker.append(event).await
    }

    /// The drainer's batch goes to one side whole: a broker comes back between its sends, not
    /// in the middle of one batch's, which the real producer sends together.
    async fn append_all(&self, events: &[&PaymentEvent]) -> Result<(), QueueError> {
        if self.outage.load(Ordering::SeqCst) {
            return self.unreachable.append_all(events).await;
        }
        self.broker.append_all(events).await
    }

    async fn ready(&self) -> Result<(), QueueError> {
        self.broker.ready().await
    }
}

/// `orders` orders of two payments each, every payment pending, success then refunded,
/// interleaved across orders so that the log's single sequence mixes the keys.
fn events(tag: &str, orders: usize) -> Vec<PaymentEvent> {
    let mut out = Vec::new();
    for (step, event_type) in [EventType::Pending, EventType::Success, EventType::Refunded].into_iter().enumerate() {
        for o in 0..orders {
            for p in 0..2 {
                out.push(PaymentEvent {
                    event_id: format!("{tag}-o{o}-p{p}-{step}"),
                    event_type,
                    payment_id: format!("{tag}-o{o}-p{p}"),
                    order_id: format!("{tag}-o{o}"),
                    amount: 100,
                    currency: "USD".into(),
                    created_at: None,
                    received_at_us: 1,
                    request_id: None,
                    traceparent: None,
                });
            }
        }
    }
    out
}

/// Appends concurrently across orders and one after another within an order (the provider
/// sends an order's next event once the previous one got its 200): that is the order a key
/// must come out in.
async fn append(app: &Appender, events: &[PaymentEvent]) {
    let mut lanes: BTreeMap<&str, Vec<&PaymentEvent>> = BTreeMap::new();
    for e in events {
        lanes.entry(&e.order_id).or_default().push(e);
    }
    futures_util::future::join_all(lanes.into_values().map(|lane| async move {
        for e in lane {
            app.producer.append(e).await.unwrap_or_else(|err| panic!("append {}: {err}", e.event_id));
        }
    }))
    .await;
}

/// The first third before, the second during and the last third after a broker outage: for
/// the spool that is direct, spooled, then queued behind the spool until it drains.
async fn append_around_an_outage(app: &Appender, events: &[PaymentEvent]) {
    let third = events.len() / 3;
    append(app, &events[..third]).await;
    app.outage(true);
    append(app, &events[third..2 * third]).await;
    app.outage(false);
    append(app, &events[2 * third..]).await;
}

/// `events(tag, orders)` appended around an outage by a new producer, returned open: dropping
/// it would stop the spool's drainer.
async fn appended(b: &Backend, tag: &str, orders: usize) -> (Vec<PaymentEvent>, Appender) {
    let (evs, app) = (events(tag, orders), b.producer().await);
    append_around_an_outage(&app, &evs).await;
    (evs, app)
}

/// Exactly `n` deliveries, however many polls they take.
async fn take(name: &str, c: &mut dyn Consumer, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + WITHIN;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "{name}: {} of {n} deliveries within {WITHIN:?}: {:?}", got.len(), ids(&got));
        got.extend(c.poll(n - got.len(), Duration::from_millis(500)).await.unwrap_or_else(|e| panic!("{name}: poll: {e}")));
    }
    got
}

/// The next deliveries are exactly the events `want`, each once, per key in the order of
/// `appended`, and nothing follows them.
async fn expect(b: &Backend, c: &mut dyn Consumer, want: Vec<String>, appended: &[PaymentEvent]) -> Vec<Delivery> {
    let got = take(&b.name(), c, want.len()).await;
    assert_exactly(&b.name(), &got, want);
    assert_key_order(&b.name(), &got, appended);
    let more = c.poll(100, b.quiet()).await.expect("poll");
    assert!(more.is_empty(), "{}: nothing more was due, got {:?}", b.name(), ids(&more));
    got
}

fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.event.as_ref().map(|e| e.event_id.clone()).unwrap_or_else(|why| format!("<{why}>"))).collect()
}

fn event_ids<'a>(events: impl IntoIterator<Item = &'a PaymentEvent>) -> Vec<String> {
    events.into_iter().map(|e| e.event_id.clone()).collect()
}

/// The deliveries are exactly `want`, each once, in any interleaving of keys.
fn assert_exactly(name: &str, got: &[Delivery], want: Vec<String>) {
    let (mut got, mut want) = (ids(got), want);
    got.sort();
    want.sort();
    assert_eq!(got, want, "{name}: every event once, nothing else");
}

/// Per payment and per order, deliveries come in append order, and all of one order from one partition.
fn assert_key_order(name: &str, got: &[Delivery], appended: &[PaymentEvent]) {
    let rank: BTreeMap<&str, usize> = appended.iter().enumerate().map(|(i, e)| (e.event_id.as_str(), i)).collect();
    let mut last: BTreeMap<(&str, &str), (usize, &str)> = BTreeMap::new();
    let mut partition: BTreeMap<&str, i32> = BTreeMap::new();
    for d in got {
        let e = d.event.as_ref().unwrap_or_else(|why| panic!("{name}: undecodable delivery: {why}"));
        let r = rank[e.event_id.as_str()];
        for key in [("payment", e.payment_id.as_str()), ("order", e.order_id.as_str())] {
            if let Some((before, id)) = last.insert(key, (r, &e.event_id)) {
                assert!(before < r, "{name}: {} of {key:?} came after {id}, though appended before it", e.event_id);
            }
        }
        let p = *partition.entry(&e.order_id).or_insert(d.position.partition);
        assert_eq!(p, d.position.partition, "{name}: order {} on two partitions", e.order_id);
    }
}

/// An append that returned Ok is there for a consumer opened afterwards, from the files for
/// the log and the spool: the producer is dropped first and a new one opened, and it
/// continues after what is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_append_outlives_its_producer() {
    let all = backends("durable").await;
    for b in &all {
        let (first, late) = (events("d", 4), events("late", 1));
        {
            let app = b.producer().await;
            // The spool's share: acknowledged while the broker is away, so only in its files.
            app.outage(true);
            append(&app, &first).await;
            if b.kind == Kind::Spool {
                assert_eq!(app.producer.spool_depth(), Some(first.len() as u64), "every event of the outage waits in the spool");
            }
        }
        let app = b.producer().await;
        append(&app, &late).await;
        let mut c = b.consumer().await;
        let all_events: Vec<PaymentEvent> = first.iter().chain(&late).cloned().collect();
        expect(b, c.as_mut(), event_ids(&all_events), &all_events).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_comes_out_in_append_order() {
    let all = backends("order").await;
    for b in &all {
        let (evs, _app) = appended(b, "k", 6).await;
        let mut c = b.consumer().await;
        expect(b, c.as_mut(), event_ids(&evs), &evs).await;
    }
}

/// After a clean restart the next consumer starts behind the committed batch: nothing of it
/// again, everything after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_resumes_after_the_committed_position() {
    let mut all = backends("resume").await;
    for b in &mut all {
        let (evs, _app) = appended(b, "r", 5).await;
        let mut c = b.consumer().await;
        let first = take(&b.name(), c.as_mut(), evs.len()).await;
        b.commit(c.as_mut(), &first[..12]).await;
        c.close().await;
        drop(c);

        let mut c = b.consumer().await;
        expect(b, c.as_mut(), ids(&first[12..]), &evs).await;
    }
}

/// A consumer that dies without committing hands its events to the next, again and again
/// until one commits; nothing committed ever comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_events_are_redelivered_after_a_crash() {
    let mut all = backends("crash").await;
    for b in &mut all {
        let (evs, app) = appended(b, "c", 4).await;
        let mut c = b.consumer().await;
        let first = take(&b.name(), c.as_mut(), evs.len()).await;
        b.commit(c.as_mut(), &first[..6]).await;
        drop(c); // no commit, no close: the process died mid-batch
        let uncommitted = ids(&first[6..]);
        for attempt in 0..2 {
            let mut c = b.consumer().await;
            let again = expect(b, c.as_mut(), uncommitted.clone(), &evs).await;
            if attempt == 1 {
                b.commit(c.as_mut(), &again).await;
                c.close().await;
            }
        }
        // Only what is appended now is due; the committed events stay behind.
        let marker = events("after", 1);
        append(&app, &marker).await;
        let mut c = b.consumer().await;
        expect(b, c.as_mut(), event_ids(&marker), &marker).await;
    }
}

/// Depth counts what is appended and not yet committed, delivered or not; the spool's depth
/// counts what it acknowledged and the broker does not have yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_counts_what_is_appended_and_not_committed() {
    let mut all = backends("depth").await;
    for b in &mut all {
        let evs = events("q", 4);
        let app = b.producer().await;
        append(&app, &evs[..6]).await;
        app.outage(true);
        append(&app, &evs[6..12]).await;
        let spooled = app.producer.spool_depth();
        assert_eq!(spooled, (b.kind == Kind::Spool).then_some(6), "{}: acknowledged and not on the broker", b.name());
        app.outage(false);
        append(&app, &evs[12..]).await;
        app.drained().await;

        let mut c = b.consumer().await;
        // Asked once the consumer holds its events: a Kafka consumer knows its partitions
        // only after joining its group.
        let got = take(&b.name(), c.as_mut(), evs.len()).await;
        assert_eq!(c.depth().await, Some(24), "{}: delivered is not committed", b.name());
        b.commit(c.as_mut(), &got[..10]).await;
        assert_eq!(c.depth().await, Some(14), "{}: after committing 10", b.name());
        b.commit(c.as_mut(), &got[10..]).await;
        assert_eq!(c.depth().await, Some(0), "{}: all committed", b.name());
    }
}

/// Releasing storage after a commit (the worker does it once the store is durable) frees
/// only what is committed: a consumer that resumes after a crash gets all the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_commit_frees_nothing_uncommitted() {
    let mut all = backends("release").await;
    for b in &mut all {
        let (evs, app) = appended(b, "s", 10).await;
        app.drained().await;
        if b.kind == Kind::Spool {
            // The spool deletes what it forwarded as it goes, keeping the segment it writes to.
            let left = segment::list(&b.log_config("spool").dir).expect("list the spool");
            assert!(left.len() == 1 && left[0] > 1, "forwarded segments are deleted: {left:?}");
        }
        let mut c = b.consumer().await;
        // Polled and committed as the worker does, so the reader is where the commit is.
        let done = take(&b.name(), c.as_mut(), 40).await;
        b.commit(c.as_mut(), &done).await;
        // Kafka keeps its log by retention; only the embedded log frees storage on release.
        assert_eq!(c.wants_release(), b.kind == Kind::Log, "{}", b.name());
        if c.wants_release() {
            let dir = b.log_config("log").dir;
            let before = segment::list(&dir).expect("list the log");
            c.release().await.expect("release");
            let after = segment::list(&dir).expect("list the log");
            assert!(after.len() < before.len() && after[0] <= 41, "only segments wholly behind offset 40 go: {before:?} -> {after:?}");
        }
        drop(c); // a crash after the release
        let done = ids(&done);
        let rest: Vec<String> = event_ids(&evs).into_iter().filter(|id| !done.contains(id)).collect();
        let mut c = b.consumer().await;
        expect(b, c.as_mut(), rest, &evs).await;
    }
}
