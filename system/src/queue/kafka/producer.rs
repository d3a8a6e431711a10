//! The server's producer: group commit in front of librdkafka, as the log's appender does it.
//!
//! Appends wait in a channel while a group is on its way to the broker; the next group is
//! everything that piled up meanwhile. One thread produces a whole group into librdkafka, then
//! flushes it: librdkafka sends at once, without waiting out `linger.ms`, one produce request
//! per broker for the group, and the broker's answer acknowledges the group together (one
//! delivery-report event; each request's answer is woken from it). So a lone request goes out
//! at once, and under load the groups grow with the round trip instead of with a timer.
//!
//! Under load a group may also wait for company: flushes start at most once per
//! `KafkaConfig::flush_interval` while groups overlap and are small, which bounds the produce
//! requests a second (each one a wake-up of librdkafka's broker thread, the broker and the
//! delivery-report thread) at the cost of that much added latency; a request after a quiet
//! moment, or from a lone client, is sent at once.
//!
//! A flush that takes longer than [`FLUSH_WAIT`] (a broker slow or away) does not hold the
//! line: the next group goes out behind it, and each message still ends with its own delivery
//! report, success or `message.timeout.ms`. Per order key, events keep the order they were
//! queued in: one thread produces, and idempotence keeps a partition's order on retries.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::sync::{mpsc, oneshot};

use super::{ensure_topics, unavailable, KafkaConfig};
use crate::domain::PaymentEvent;
use crate::queue::{Producer, QueueError};

/// Most events in one group; bounds one produce request.
const MAX_GROUP: usize = 4096;
/// Appends waiting beyond this are refused at once, below librdkafka's own queue limit.
const MAX_WAITING: usize = 50_000;
/// How long one group may hold the next one back while the broker has not answered it.
const FLUSH_WAIT: Duration = Duration::from_millis(20);
/// A group this large shares its produce request well enough: no waiting for more.
const FULL_ENOUGH: usize = 64;

/// Where a record's delivery report goes: the request waiting for it.
pub type Ack = oneshot::Sender<Result<(), KafkaError>>;
/// What a request waits on.
pub type Acked = oneshot::Receiver<Result<(), KafkaError>>;
/// One record as handed to librdkafka: order key, event, headers, and its request's answer.
pub type Record<'a> = BaseRecord<'a, str, [u8], Box<Ack>>;
/// A record the client would not take, with why.
pub type Refused<'a> = (KafkaError, Record<'a>);

/// Answers each message's request from its delivery report.
pub struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Ack>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Box<Ack>) {
        answer(ack, result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// Wakes the request a delivery report belongs to; it may have stopped waiting.
pub fn answer(ack: Box<Ack>, result: Result<(), KafkaError>) {
    let _ = ack.send(result);
}

/// Where the producer thread hands its groups: librdkafka's client. A seam so that the
/// instruction-count bench counts our side of the produce path alone: librdkafka's own
/// threads wake as the scheduler lets them, so their counts swing from run to run.
pub trait Sink {
    /// Hands one record over; a refused record comes back with the error.
    fn send<'a>(&self, record: Record<'a>) -> Result<(), Refused<'a>>;
    /// Sends what was handed over and waits until each record has its delivery report or
    /// `wait` is over.
    fn flush(&self, wait: Duration);
}

impl Sink for ThreadedProducer<Acks> {
    fn send<'a>(&self, record: Record<'a>) -> Result<(), Refused<'a>> {
        ThreadedProducer::send(self, record)
    }

    /// librdkafka sends without linger only while a flush waits, so the wait is its own
    /// (rdkafka's flush waits zero, then polls).
    fn flush(&self, wait: Duration) {
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the pointer is the live client `self` holds for the duration of the call;
        // rd_kafka_flush is thread-safe, and with delivery reports as events it only waits
        // for the poll thread to serve them.
        let _ = unsafe { rdkafka::bindings::rd_kafka_flush(self.client().native_ptr(), ms) };
    }
}

/// One append waiting for its group: the event encoded for the topic.
pub struct Request {
    key: String,
    payload: Vec<u8>,
    event_id: String,
    received_at_us: String,
    /// A header too, so that Kafka's own tools find a request's record without decoding it.
    request_id: Option<String>,
    ack: Ack,
}

impl Request {
    pub fn new(event: &PaymentEvent) -> Result<(Self, Acked), QueueError> {
        let payload = serde_json::to_vec(event).map_err(|e| QueueError::Storage(e.to_string()))?;
        let (ack, acked) = oneshot::channel();
        let request = Request {
            key: event.order_id.clone(),
            payload,
            event_id: event.event_id.clone(),
            received_at_us: event.received_at_us.to_string(),
            request_id: event.request_id.clone(),
            ack,
        };
        Ok((request, acked))
    }
}

/// librdkafka's settings for the grouped producer; each was chosen by measurement
/// (docs/measurements/2026-12-05-kafka-group-commit.md).
fn client(cfg: &KafkaConfig) -> Result<ThreadedProducer<Acks>, QueueError> {
    super::base_config(cfg)
        // Only a flush sends a group: linger is the fallback for messages produced while
        // no flush runs (behind a slow one), long enough to batch them.
        .set("linger.ms", "5")
        // A produce request is written at once, not held for the previous one's TCP ack.
        .set("socket.nagle.disable", "true")
        .create_with_context(Acks)
        .map_err(unavailable)
}

/// The server's side: 200 only after the broker acknowledged the write to all in-sync replicas.
pub struct KafkaProducer {
    /// `None` only while dropping.
    tx: Option<mpsc::Sender<Request>>,
    client: ThreadedProducer<Acks>,
    thread: Option<std::thread::JoinHandle<()>>,
    cfg: KafkaConfig,
}

impl Drop for KafkaProducer {
    /// Stops the thread once what was queued is produced and flushed (within the produce timeout).
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the kafka producer thread panicked");
            }
        }
    }
}

impl KafkaProducer {
    pub async fn connect(cfg: &KafkaConfig) -> Result<Self, QueueError> {
        ensure_topics(cfg).await?;
        Self::new(cfg)
    }

    /// Without creating the topics, so it can be made while no broker answers: its appends
    /// then fail after the produce timeout, as during an outage.
    pub fn new(cfg: &KafkaConfig) -> Result<Self, QueueError> {
        let client = client(cfg)?;
        let (tx, rx) = mpsc::channel(MAX_WAITING);
        let (producer, cfg2) = (client.clone(), cfg.clone());
        let thread = std::thread::Builder::new()
            .name("kafka-producer".into())
            .spawn(move || run(&producer, &cfg2, rx))
            .map_err(|e| QueueError::Unavailable(format!("cannot start the kafka producer thread: {e}")))?;
        Ok(Self { tx: Some(tx), client, thread: Some(thread), cfg: cfg.clone() })
    }

    fn stopped() -> QueueError {
        QueueError::Unavailable("the kafka producer stopped".into())
    }
}

#[async_trait::async_trait]
impl Producer for KafkaProducer {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        let (request, acked) = Request::new(event)?;
        let tx = self.tx.as_ref().ok_or_else(Self::stopped)?;
        tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => Self::stopped(),
        })?;
        // message.timeout.ms bounds the delivery, but librdkafka checks it only now and
        // then: the outer timeout makes the answer arrive within the promised time.
        match tokio::time::timeout(self.cfg.produce_timeout + Duration::from_millis(500), acked).await {
            Err(_) | Ok(Ok(Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)))) => Err(QueueError::Timeout),
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(unavailable(e)),
            Ok(Err(_)) => Err(Self::stopped()),
        }
    }

    async fn ready(&self) -> Result<(), QueueError> {
        let client = self.client.clone();
        let topic = self.cfg.topic.clone();
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(Some(&topic), Duration::from_secs(2)).map(|_| ()))
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))?
            .map_err(unavailable)
    }
}

fn run(producer: &impl Sink, cfg: &KafkaConfig, mut rx: mpsc::Receiver<Request>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut last: Option<(Instant, usize)> = None;
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        take_waiting(&mut rx, &mut group);
        if let Some(wait) = last.and_then(|(at, len)| company_wait(at, len, group.len(), cfg.flush_interval)) {
            std::thread::sleep(wait);
            take_waiting(&mut rx, &mut group);
        }
        last = Some((Instant::now(), group.len()));
        produce_group(producer, &cfg.topic, &mut group);
        producer.flush(FLUSH_WAIT);
    }
    producer.flush(cfg.produce_timeout);
    tracing::debug!("kafka producer stopped");
}

fn take_waiting(rx: &mut mpsc::Receiver<Request>, group: &mut Vec<Request>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) => break,
        }
    }
}

/// How long a group waits for company, if at all: only while groups overlap (a lone client
/// sending one event after another's acknowledgement would wait out every interval alone)
/// and are still small (once they fill, waiting would only cap a closed-loop client's rate).
fn company_wait(last_start: Instant, last_len: usize, len: usize, interval: Duration) -> Option<Duration> {
    if last_len.max(len) < 2 || last_len.max(len) >= FULL_ENOUGH {
        return None;
    }
    interval.checked_sub(last_start.elapsed()).filter(|d| !d.is_zero())
}

/// Hands a group to the sink in queue order, leaving `group` empty for the next one.
pub fn produce_group(sink: &impl Sink, topic: &str, group: &mut Vec<Request>) {
    for r in group.drain(..) {
        produce(sink, topic, r);
    }
}

fn produce(sink: &impl Sink, topic: &str, r: Request) {
    // The request gave up waiting (and spooled the event or answered 503): sending it now
    // would only deliver it twice.
    if r.ack.is_closed() {
        return;
    }
    let mut headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header { key: "event_id", value: Some(r.event_id.as_bytes()) })
        .insert(Header { key: "received_at_us", value: Some(r.received_at_us.as_bytes()) });
    if let Some(id) = &r.request_id {
        headers = headers.insert(Header { key: "request_id", value: Some(id.as_bytes()) });
    }
    let record = BaseRecord::with_opaque_to(topic, Box::new(r.ack)).key(r.key.as_str()).payload(r.payload.as_slice()).headers(headers);
    if let Err((e, record)) = sink.send(record) {
        answer(record.delivery_opaque, Err(e));
    }
}

/// For the DLQ and other rare producers: the event path's settings without the group.
pub(super) fn plain(cfg: &KafkaConfig) -> Result<rdkafka::producer::FutureProducer, QueueError> {
    super::base_config(cfg).set("linger.ms", "5").create().map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers as _;

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn overlapping_small_groups_wait_for_company_and_others_go_at_once() {
        let now = Instant::now();
        assert!(company_wait(now, 3, 1, LONG).is_some(), "the previous group overlapped: wait");
        assert!(company_wait(now, 1, 5, LONG).is_some(), "this group overlaps: wait");
        assert_eq!(company_wait(now, 1, 1, LONG), None, "a lone client is never held");
        assert_eq!(company_wait(now, FULL_ENOUGH, 3, LONG), None, "groups fill without waiting");
        assert_eq!(company_wait(now, 3, 3, Duration::ZERO), None, "no interval, no wait");
    }

    /// Keeps the key and the event id header of what it is handed; refuses the event "refused".
    #[derive(Default)]
    struct Recorder(std::cell::RefCell<Vec<(String, String)>>);

    impl Sink for Recorder {
        fn send<'a>(&self, record: Record<'a>) -> Result<(), Refused<'a>> {
            let key = record.key.unwrap_or_default().to_owned();
            let header = record.headers.as_ref().and_then(|h| h.iter().find(|h| h.key == "event_id")).and_then(|h| h.value);
            let id = String::from_utf8_lossy(header.unwrap_or_default()).into_owned();
            if id == "refused" {
                return Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record));
            }
            self.0.borrow_mut().push((key, id));
            answer(record.delivery_opaque, Ok(()));
            Ok(())
        }

        fn flush(&self, _: Duration) {}
    }

    fn event(id: &str, order: &str) -> PaymentEvent {
        PaymentEvent { event_id: id.into(), order_id: order.into(), ..crate::queue::test_event(0) }
    }

    #[test]
    fn a_group_goes_in_queue_order_and_each_request_gets_its_own_answer() {
        let sink = Recorder::default();
        let mut group = Vec::new();
        let mut acked = Vec::new();
        for (id, order) in [("e1", "o1"), ("gave_up", "o1"), ("e2", "o2"), ("refused", "o1"), ("e3", "o1")] {
            let (r, a) = Request::new(&event(id, order)).expect("encodes");
            group.push(r);
            acked.push(a);
        }
        drop(acked.remove(1));
        produce_group(&sink, "topic", &mut group);
        assert!(group.is_empty(), "the group is left empty for the next one");
        let sent = sink.0.take();
        let sent: Vec<_> = sent.iter().map(|(k, id)| (k.as_str(), id.as_str())).collect();
        assert_eq!(sent, [("o1", "e1"), ("o2", "e2"), ("o1", "e3")], "a request that stopped waiting is not sent");
        let answers: Vec<_> = acked.iter_mut().map(|a| a.try_recv().expect("answered").is_ok()).collect();
        assert_eq!(answers, [true, true, false, true], "the refused request is answered with its error");
    }

    /// Keeps each record's request id header, if any.
    #[derive(Default)]
    struct RequestIds(std::cell::RefCell<Vec<Option<String>>>);

    impl Sink for RequestIds {
        fn send<'a>(&self, record: Record<'a>) -> Result<(), Refused<'a>> {
            let header = record.headers.as_ref().and_then(|h| h.iter().find(|h| h.key == "request_id")).and_then(|h| h.value);
            self.0.borrow_mut().push(header.map(|v| String::from_utf8_lossy(v).into_owned()));
            answer(record.delivery_opaque, Ok(()));
            Ok(())
        }

        fn flush(&self, _: Duration) {}
    }

    #[test]
    fn a_record_names_its_request_in_a_header_when_the_event_has_one() {
        let sink = RequestIds::default();
        let traced = PaymentEvent { request_id: Some("req-7".into()), ..event("e1", "o1") };
        let (mut group, _waiting): (Vec<Request>, Vec<Acked>) = [traced, event("e2", "o1")].iter().map(|e| Request::new(e).expect("encodes")).unzip();
        produce_group(&sink, "topic", &mut group);
        assert_eq!(sink.0.take(), [Some("req-7".to_owned()), None]);
    }
}
