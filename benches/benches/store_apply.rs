//! Worker batch apply on SQLite at batch sizes 1, 100 and 1,000: one transaction (and one
//! fsync) per batch, so the cost per event should fall with the batch size.

use std::sync::atomic::{AtomicUsize, Ordering};

use benches::event;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webhooks::domain::PaymentEvent;
use webhooks::queue::Position;
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::Store;

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("store");
    // Fresh ids every iteration, so each event is applied, never skipped as a duplicate.
    let next = AtomicUsize::new(0);
    let mut g = c.benchmark_group("sqlite_apply_batch");
    g.sample_size(20);
    for size in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &n| {
            b.to_async(&rt).iter(|| {
                let start = next.fetch_add(n, Ordering::Relaxed);
                let events: Vec<PaymentEvent> = (start..start + n).map(event).collect();
                let store = &store;
                async move {
                    let pos = [Position { partition: 0, offset: (start + n) as i64 }];
                    store.apply_batch("bench", &events, &pos).await.expect("apply")
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
