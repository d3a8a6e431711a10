//! Durable produce to a real Kafka broker (acks=all) with 1, 16 and 256 concurrent
//! producers. Needs KAFKA_TEST_BROKERS (scripts/services.sh up kafka; source scripts/env.sh);
//! without it the bench prints why it is skipped and measures nothing.

use std::sync::Arc;
use std::time::Duration;

use benches::event;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webhooks::queue::kafka::{KafkaConfig, KafkaProducer};
use webhooks::queue::Producer;

fn produce(c: &mut Criterion) {
    let Ok(brokers) = std::env::var("KAFKA_TEST_BROKERS") else {
        eprintln!("kafka_produce: skipped, KAFKA_TEST_BROKERS is not set (no reachable broker)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cfg = KafkaConfig {
        brokers,
        topic: format!("bench-{}", std::process::id()),
        partitions: 6,
        replication_factor: None,
        min_insync_replicas: None,
        produce_timeout: Duration::from_secs(10),
        flush_interval: Duration::from_millis(2),
        ..Default::default()
    };
    let producer = match rt.block_on(KafkaProducer::connect(&cfg)) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("kafka_produce: skipped, broker not reachable: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("kafka_produce");
    g.sample_size(10);
    for producers in [1usize, 16, 256] {
        g.throughput(Throughput::Elements(producers as u64));
        g.bench_with_input(BenchmarkId::from_parameter(producers), &producers, |b, &n| {
            b.to_async(&rt).iter(|| {
                let producer = producer.clone();
                async move {
                    let sends: Vec<_> = (0..n)
                        .map(|i| {
                            let p = producer.clone();
                            tokio::spawn(async move { p.append(&event(i)).await })
                        })
                        .collect();
                    for s in sends {
                        s.await.expect("task").expect("acknowledged");
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, produce);
criterion_main!(benches);
