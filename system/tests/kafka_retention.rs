//! Acknowledged events Kafka deleted before the worker applied them (its committed offset
//! fell out of the topic's retention): the consumer starts again at the oldest event kept,
//! and the worker must say so, never skip them in silence. Retention's deletion is made at
//! once with DeleteRecords, which moves a partition's start exactly as retention does.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

/// Deletes every event but the last of each partition holding more than one.
async fn delete_all_but_the_last(brokers: &str, topic: &str, partitions: i32) {
    let watermarks: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = watermarks.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        if high - low >= 2 {
            tpl.add_partition_offset(topic, p, Offset::Offset(high - 1)).expect("offset");
        }
    }
    assert_eq!(tpl.count(), 1, "the order's events are on one partition");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin");
    admin.delete_records(&tpl, &AdminOptions::new()).await.expect("delete records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_deleted_past_the_committed_offset_are_reported_as_lost() {
    let Some(brokers) = kafka_brokers() else { return };
    let sys = KafkaSystem::new(&brokers);
    let http = client();
    let _server = sys.server(0, &[]);
    wait_healthy(&http, &sys.base).await;
    assert_eq!(post(&http, format!("{}/api/orders", sys.base), &order("order_r", 1000)).await.0, 201);
    let webhook = |n: usize| event("payment.failed", &format!("pay_r{n}"), "order_r", 1000, &format!("evt_r{n}"));

    // The first event applied and committed, then the worker stops.
    let m1 = free_addr();
    let mut first = sys.worker(1, m1);
    wait_healthy(&http, &format!("http://{m1}")).await;
    assert_eq!(post(&http, format!("{}/api/webhooks/payment", sys.base), &webhook(1)).await.0, 200);
    eventually(&http, format!("http://{m1}/api/stats"), Duration::from_secs(60), |s| s["worker"]["processed"].as_u64() >= Some(1)).await;
    assert!(first.terminate().is_some_and(|s| s.success()));

    // Four more acknowledged while no worker runs; retention takes three of them.
    for n in 2..=5 {
        assert_eq!(post(&http, format!("{}/api/webhooks/payment", sys.base), &webhook(n)).await.0, 200);
    }
    delete_all_but_the_last(&brokers, sys.topic(), 6).await;

    let m2 = free_addr();
    let _second = sys.worker(2, m2);
    let metrics = eventually_text(&http, &format!("http://{m2}/metrics"), |t| t.lines().any(|l| l.starts_with("webhooks_log_damaged_records_total 3"))).await;
    assert!(metrics.contains("webhooks_log_damaged_records_total 3"), "{metrics}");
    let log = std::fs::read_to_string(sys.dir.path().join("worker-2.log")).unwrap_or_default();
    assert!(log.contains("skipped offsets 1..4 (3 events)"), "the loss is not in the log:\n{log}");
    let (_, ready) = get(&http, format!("http://{m2}/readyz")).await;
    assert!(ready["alarms"]["kafka_events_lost"].as_str().is_some_and(|w| w.contains("skipped offsets 1..4")), "{ready}");
}

async fn eventually_text(http: &reqwest::Client, url: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(url).send().await {
            let text = r.text().await.unwrap_or_default();
            if check(&text) || std::time::Instant::now() > deadline {
                return text;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{url} did not answer");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
