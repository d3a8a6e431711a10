//! Worker batch apply at batch sizes 1, 100 and 1,000, on SQLite and on PostgreSQL: one
//! transaction per batch (one fsync on SQLite, a fixed number of round trips on PostgreSQL),
//! so the cost per event should fall with the batch size. PostgreSQL needs TEST_DATABASE_URL
//! (scripts/services.sh up postgres; source scripts/env.sh); without it that half prints why
//! it is skipped and measures nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

use benches::event;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use webhooks::domain::PaymentEvent;
use webhooks::queue::Position;
use webhooks::store::postgres::PostgresStore;
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::Store;

fn bench_store(c: &mut Criterion, rt: &Runtime, group: &str, store: &dyn Store) {
    // Fresh ids every iteration, so each event is applied, never skipped as a duplicate.
    let next = AtomicUsize::new(0);
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    for size in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &n| {
            b.to_async(rt).iter(|| {
                let start = next.fetch_add(n, Ordering::Relaxed);
                let events: Vec<PaymentEvent> = (start..start + n).map(event).collect();
                async move {
                    let pos = [Position { partition: 0, offset: (start + n) as i64 }];
                    store.apply_batch("bench", &events, &pos).await.expect("apply")
                }
            })
        });
    }
    g.finish();
}

fn sqlite(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("store");
    bench_store(c, &rt, "sqlite_apply_batch", &store);
}

fn postgres(c: &mut Criterion) {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("postgres_apply_batch: skipped, TEST_DATABASE_URL is not set (no reachable PostgreSQL)");
        return;
    };
    let rt = Runtime::new().expect("runtime");
    // A database of its own, so that the bench neither reads nor leaves rows in another's.
    let name = format!("wh_bench_{}", std::process::id());
    let run = |sql: String| {
        let admin = admin.clone();
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client.batch_execute(&sql).await
        })
    };
    if let Err(e) = run(format!("CREATE DATABASE {name}")) {
        eprintln!("postgres_apply_batch: skipped, cannot create a database: {e}");
        return;
    }
    let url = format!("{}/{name}", admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin));
    match rt.block_on(PostgresStore::connect(&url, 2)) {
        Ok(store) => bench_store(c, &rt, "postgres_apply_batch", &store),
        Err(e) => eprintln!("postgres_apply_batch: skipped, cannot connect: {e}"),
    }
    let _ = run(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

criterion_group!(benches, sqlite, postgres);
criterion_main!(benches);
