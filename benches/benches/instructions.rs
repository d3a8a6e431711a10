//! Instruction counts of the hot paths under Valgrind's Callgrind (gungraun): the same figure
//! on a busy shared machine as on an idle one, so CI can gate on a few percent (see
//! scripts/instructions.sh).
//!
//! Set-up (opening the log and the store, building requests and events) is outside the
//! counted region. Work that the measured call hands to another thread is counted too: the
//! embedded log's appender thread (the durable append), and the SQLite store's writer thread,
//! which runs its transaction (see `ALL_THREADS`). The Kafka produce path is counted on
//! our side of librdkafka only (see `Delivered`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use benches::{body, event, now_secs, STANDARD_SECRET};
use gungraun::{library_benchmark, library_benchmark_group, main, Callgrind, LibraryBenchmarkConfig};
use http::Request;
use loadgen::scenario::{Scenario, Scheme};
use loadgen::workload::sign::Signer;
use loadgen::workload::generator::{Generator, Planned, Renderer};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tower::ServiceExt;
use webhooks::domain::PaymentEvent;
use webhooks::ingress::signature::sign;
use webhooks::ingress::{router, AppState, Limits, Verifier};
use webhooks::metrics::Metrics;
use webhooks::queue::embedded::{EmbeddedConfig, EmbeddedProducer};
use webhooks::queue::kafka::producer::{self, answer, produce_group, Record, Refused, Sink};
use webhooks::queue::{Position, Producer};
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::Store;

/// Work the measured call hands to another thread is counted there. The SQLite benchmark
/// counts every other thread whole (`thread_start`; Rust's thread entry point is passed to
/// pthread_create, so never inlined): in set-up its store's threads only wait, and the
/// measured transaction runs on the writer's. The handler counts the log's appender loop only:
/// the SQLite store in its state takes no part in a request, and what its two connections do
/// as the set-up is dropped (which one closes last, frees its schema, checkpoints) differs
/// from run to run by 4 % of the handler's count.
const ALL_THREADS: &str = "--toggle-collect=*thread_start*";
const APPENDER: &str = "--toggle-collect=webhooks::queue::log::appender::run";

fn counting(toggle: &str) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::with_args([toggle]));
    config
}

/// Requests per handler run: one at a time, so each is its own group commit.
const REQUESTS: usize = 20;
const BATCH: usize = 1000;
const RENDERS: u64 = 1000;
/// Events in one Kafka produce group: enough that a group shares its produce request.
const GROUP: usize = 64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// What a handler run needs; returned by the run, so that dropping it is not counted.
struct Ingress {
    rt: Runtime,
    app: Router,
    requests: Vec<Request<Body>>,
    _dir: tempfile::TempDir,
}

fn ingress() -> Ingress {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Metrics::new();
    let producer: Arc<dyn Producer> =
        Arc::new(rt.block_on(async { EmbeddedProducer::open(&EmbeddedConfig::in_dir(dir.path()), 0, metrics.clone(), Arc::new(Notify::new())) }).expect("queue"));
    let state = AppState {
        producer,
        store: Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store")),
        verifier: Arc::new(Verifier::new(STANDARD_SECRET, "", 300).expect("secret")),
        metrics,
        max_body: 64 * 1024,
        admin_token: None,
        exposure: Default::default(),
        refusals: Default::default(),
        stripe: Default::default(),
    };
    let limits = Limits { max_in_flight: 4096, request_timeout: Duration::from_secs(10), header_timeout: Duration::from_secs(10) };
    let app = rt.block_on(async { router(state, limits) });
    let ts = now_secs();
    let requests = (0..REQUESTS)
        .map(|i| {
            let (b, id) = (body(i), format!("msg_{i}"));
            let sig = sign::standard(STANDARD_SECRET, &id, ts, b.as_bytes()).expect("sign");
            Request::post("/api/webhooks/payment")
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig)
                .body(Body::from(b))
                .expect("request")
        })
        .collect();
    Ingress { rt, app, requests, _dir: dir }
}

// Signed request bytes through the whole axum handler to a durable (fsync'd) append.
#[library_benchmark]
#[bench::signed_20_requests(setup = ingress, config = counting(APPENDER))]
fn handler_to_durable_append(mut s: Ingress) -> Ingress {
    for r in std::mem::take(&mut s.requests) {
        let response = s.rt.block_on(s.app.clone().oneshot(r)).expect("infallible");
        assert_eq!(response.status(), 200);
    }
    s
}

struct Batch {
    rt: Runtime,
    store: SqliteStore,
    events: Vec<PaymentEvent>,
    _dir: tempfile::TempDir,
}

fn batch() -> Batch {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("store");
    Batch { rt: runtime(), store, events: (0..BATCH).map(event).collect(), _dir: dir }
}

// One worker transaction of 1,000 new events on SQLite.
#[library_benchmark]
#[bench::events_1000(setup = batch, config = counting(ALL_THREADS))]
fn sqlite_apply_batch(s: Batch) -> Batch {
    let pos = [Position { partition: 0, offset: BATCH as i64 }];
    s.rt.block_on(s.store.apply_batch("bench", &s.events, &pos)).expect("apply");
    s
}

/// librdkafka replaced by what it does last for a record: its delivery report, at once.
/// librdkafka's threads wake as the scheduler lets them, so counting them would gate on
/// the machine's load; what is ours is the same on every run.
struct Delivered;

impl Sink for Delivered {
    fn send<'a>(&self, record: Record<'a>) -> Result<(), Refused<'a>> {
        answer(record.delivery_opaque, Ok(()));
        Ok(())
    }

    fn flush(&self, _: Duration) {}
}

fn group_events() -> Vec<PaymentEvent> {
    (0..GROUP).map(event).collect()
}

// Our side of a Kafka produce: each event encoded into its request, the group handed over
// record by record with its key and headers, and each request woken by its delivery report.
#[library_benchmark]
#[bench::group_64(setup = group_events)]
fn kafka_produce_group(events: Vec<PaymentEvent>) -> Vec<PaymentEvent> {
    let mut group = Vec::with_capacity(events.len());
    let mut acked = Vec::with_capacity(events.len());
    for e in &events {
        let (request, waits) = producer::Request::new(black_box(e)).expect("encodes");
        group.push(request);
        acked.push(waits);
    }
    produce_group(&Delivered, "payments", &mut group);
    for mut a in acked {
        assert!(matches!(a.try_recv(), Ok(Ok(()))), "every request answered");
    }
    events
}

const WORKLOAD: &str = "name = \"bench\"\n[target]\nurl = \"http://127.0.0.1:1\"\n[workload]\norders = 1000\nduplicate_fraction = 0.1\n[load]\n[[load.phases]]\nkind = \"constant\"\nrate = 1000\nduration_s = 1\n";

fn planned() -> (Renderer, Vec<Planned>) {
    let s = Scenario::parse(WORKLOAD).expect("scenario");
    let mut g = Generator::new(&s.workload, 1, "bench".into(), RENDERS);
    let signer = Signer::new(Scheme::Standard, STANDARD_SECRET).expect("secret");
    let ts = now_secs();
    let planned = (0..RENDERS).map(|_| g.next(ts)).collect();
    (Renderer::new(g.ids.clone(), signer), planned)
}

// loadgen's per-request build: body, message id and HMAC written into reused buffers.
#[library_benchmark]
#[bench::requests_1000(setup = planned)]
fn loadgen_render((mut r, planned): (Renderer, Vec<Planned>)) -> Renderer {
    for p in &planned {
        r.render(black_box(p));
    }
    r
}

library_benchmark_group!(name = hot_paths; benchmarks = handler_to_durable_append, sqlite_apply_batch, loadgen_render, kafka_produce_group);

main!(
    config = LibraryBenchmarkConfig::default().tool(Callgrind::with_args(["--cache-sim=no"]));
    library_benchmark_groups = hot_paths
);
