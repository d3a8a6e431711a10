//! The whole ingress handler in process (no socket): body limit, parse, validate, signature,
//! durable append, JSON response. Requests are issued concurrently so that group commit works
//! as it does under real load.

use std::sync::Arc;

use axum::body::Body;
use benches::{body, now_secs, STANDARD_SECRET};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Request;
use tokio::sync::Notify;
use tower::ServiceExt;
use webhooks::ingress::signature::sign;
use webhooks::ingress::{router, AppState, Limits, Verifier};
use webhooks::metrics::Metrics;
use webhooks::queue::embedded::{EmbeddedConfig, EmbeddedProducer};
use webhooks::queue::Producer;
use webhooks::store::sqlite::SqliteStore;

const CONCURRENCY: usize = 64;

fn request(i: usize, signed: bool) -> Request<Body> {
    let b = body(i);
    let mut r = Request::post("/api/webhooks/payment").header("content-type", "application/json");
    if signed {
        let (id, ts) = (format!("msg_{i}"), now_secs());
        let sig = sign::standard(STANDARD_SECRET, &id, ts, b.as_bytes()).expect("sign");
        r = r.header("webhook-id", id).header("webhook-timestamp", ts.to_string()).header("webhook-signature", sig);
    }
    r.body(Body::from(b)).expect("request")
}

fn handler(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Metrics::new();
    let producer: Arc<dyn Producer> = Arc::new(
        rt.block_on(async { EmbeddedProducer::open(&EmbeddedConfig::in_dir(dir.path()), 0, metrics.clone(), Arc::new(Notify::new())) })
            .expect("queue"),
    );
    let state = |verifier: Verifier| AppState {
        producer: producer.clone(),
        store: Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store")),
        verifier: Arc::new(verifier),
        metrics: metrics.clone(),
        max_body: 64 * 1024,
        admin_token: None,
        exposure: Default::default(),
        refusals: Default::default(),
        stripe: Default::default(),
    };
    let mut g = c.benchmark_group("ingress_handler");
    g.sample_size(20);
    g.throughput(Throughput::Elements(CONCURRENCY as u64));
    for (name, signed) in [("unsigned", false), ("standard_webhooks_signed", true)] {
        let verifier = if signed { Verifier::new(STANDARD_SECRET, "", 300).expect("secret") } else { Verifier::default() };
        let app = rt.block_on(async { router(state(verifier), Limits { max_in_flight: 4096, request_timeout: std::time::Duration::from_secs(10), header_timeout: std::time::Duration::from_secs(10) }) });
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let app = app.clone();
                async move {
                    let calls: Vec<_> = (0..CONCURRENCY).map(|i| tokio::spawn(app.clone().oneshot(request(i, signed)))).collect();
                    for call in calls {
                        let response = call.await.expect("task").expect("infallible");
                        assert_eq!(response.status(), 200);
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, handler);
criterion_main!(benches);
