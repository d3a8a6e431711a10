//! The scale-out deployment: one server and two workers in a consumer group over Kafka,
//! sharing one PostgreSQL store; duplicates and out-of-order arrivals; exactly once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_over_kafka_and_one_postgres_apply_everything_exactly_once() {
    let (Some(brokers), Some(admin)) = (kafka_brokers(), postgres_url()) else { return };
    let db = FreshDatabase::create(&admin).await;
    let sys = KafkaSystem::new(&brokers);
    let http = client();
    let pg = ["--database", db.url.as_str()];
    let _server = sys.server(0, &pg);
    wait_healthy(&http, &sys.base).await;
    let (m1, m2) = (free_addr(), free_addr());
    let _w1 = sys.worker_with(1, m1, &pg);
    let _w2 = sys.worker_with(2, m2, &pg);
    wait_healthy(&http, &format!("http://{m1}")).await;
    wait_healthy(&http, &format!("http://{m2}")).await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Every third payment's events arrive success-first.
    let mut events: Vec<Value> = workload("kp", 1500);
    for pair in events.chunks_mut(2).step_by(3) {
        if pair.len() == 2 && pair[0]["payment_id"] == pair[1]["payment_id"] {
            pair.swap(0, 1);
        }
    }
    let ledger = send_all(&http, &sys.base, events).await;
    assert!(ledger.values().map(Vec::len).sum::<usize>() >= 3000);
    assert_exactly_once(&http, &sys.base, &ledger).await;
    for payment in ledger.keys().take(300) {
        let (_, p) = get(&http, format!("{}/api/payments/{payment}", sys.base)).await;
        assert_eq!(p["status"], "success", "final state whatever the arrival order: {p}");
    }
    for m in [m1, m2] {
        let (_, stats) = get(&http, format!("http://{m}/api/stats")).await;
        assert!(stats["worker"]["processed"].as_u64() > Some(0), "worker at {m} did no work: {stats}");
    }
    db.drop_now().await;
}
