//! The Kafka backend against a real broker: server and workers as separate processes, each
//! test on its own topic and consumer group.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_curl_flow_over_kafka() {
    let Some(brokers) = kafka_brokers() else { return };
    let sys = KafkaSystem::new(&brokers);
    let http = client();
    let _server = sys.server(0, &[]);
    wait_healthy(&http, &sys.base).await;
    let metrics = free_addr();
    let _worker = sys.worker(0, metrics);
    assert_eq!(post(&http, format!("{}/api/orders", sys.base), &order("order_12345", 1000)).await.0, 201);
    let (s, _) = post(&http, format!("{}/api/webhooks/payment", sys.base), &event("payment.success", "pay_xyz789", "order_12345", 1000, "evt_k1")).await;
    assert_eq!(s, 200);
    eventually(&http, format!("{}/api/orders/order_12345", sys.base), Duration::from_secs(60), |o| o["status"] == "paid").await;
    let (_, ready) = get(&http, format!("{}/readyz", sys.base)).await;
    assert_eq!(ready["queue"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_partitions_and_apply_everything_once() {
    let Some(brokers) = kafka_brokers() else { return };
    let sys = KafkaSystem::new(&brokers);
    let http = client();
    let _server = sys.server(0, &[]);
    wait_healthy(&http, &sys.base).await;
    let (m1, m2) = (free_addr(), free_addr());
    let mut w1 = sys.worker(1, m1);
    let mut w2 = sys.worker(2, m2);
    wait_healthy(&http, &format!("http://{m1}")).await;
    wait_healthy(&http, &format!("http://{m2}")).await;
    // Both members must have joined before the load, or one may get every partition.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let ledger = send_all(&http, &sys.base, workload("two", 1500)).await;
    assert_exactly_once(&http, &sys.base, &ledger).await;
    for m in [m1, m2] {
        let (_, stats) = get(&http, format!("http://{m}/api/stats")).await;
        assert!(stats["worker"]["processed"].as_u64() > Some(0), "worker at {m} did no work: {stats}");
    }
    assert!(w1.terminate().is_some_and(|s| s.success()));
    assert!(w2.terminate().is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_by_the_other_and_nothing_is_lost_or_doubled() {
    let Some(brokers) = kafka_brokers() else { return };
    let sys = KafkaSystem::new(&brokers);
    let http = client();
    let _server = sys.server(0, &[]);
    wait_healthy(&http, &sys.base).await;
    let (m1, m2) = (free_addr(), free_addr());
    let mut doomed = sys.worker(1, m1);
    let _survivor = sys.worker(2, m2);
    wait_healthy(&http, &format!("http://{m2}")).await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let sender = tokio::spawn({
        let (http, base) = (http.clone(), sys.base.clone());
        async move { send_all(&http, &base, workload("kill", 1500)).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.kill9();
    let ledger = sender.await.expect("sender");
    assert_exactly_once(&http, &sys.base, &ledger).await;
}
