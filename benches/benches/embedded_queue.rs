//! Durable appends to the embedded queue with 1, 16 and 256 concurrent appenders: group
//! commit should make the cost per event fall as concurrency rises (one fsync per group).

use std::sync::Arc;

use benches::event;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::sync::Notify;
use webhooks::metrics::Metrics;
use webhooks::queue::embedded::{EmbeddedConfig, EmbeddedProducer};
use webhooks::queue::Producer;

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = EmbeddedConfig::in_dir(dir.path());
    let producer = Arc::new(rt.block_on(async { EmbeddedProducer::open(&cfg, 0, Metrics::new(), Arc::new(Notify::new())) }).expect("queue"));
    let mut g = c.benchmark_group("embedded_queue_append");
    g.sample_size(20);
    for appenders in [1usize, 16, 256] {
        g.throughput(Throughput::Elements(appenders as u64));
        g.bench_with_input(BenchmarkId::from_parameter(appenders), &appenders, |b, &n| {
            b.to_async(&rt).iter(|| {
                let producer = producer.clone();
                async move {
                    let tasks: Vec<_> = (0..n)
                        .map(|i| {
                            let p = producer.clone();
                            tokio::spawn(async move { p.append(&event(i)).await })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task").expect("append");
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
