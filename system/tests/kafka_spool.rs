//! The broker stopped mid-run under load, with the spool on (the default in Kafka mode):
//! every webhook still gets 200, the outage's events wait in the local spool, and after the
//! broker returns every one of them is applied exactly once and in order per payment. Its
//! own test binary, because it stops the shared broker.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Payments sent by `lanes` concurrent senders, each event of a payment only after the
/// previous one got its 200, until `stop`: so per payment, acknowledgement order is send order.
async fn send_in_lanes(http: reqwest::Client, url: String, lanes: usize, stop: Arc<AtomicBool>) -> Ledger {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
        tasks.spawn(async move {
            let mut ledger = Ledger::new();
            for n in 0..500 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (p, o) = (format!("sp{lane}-{n}"), format!("so{lane}-{n}"));
                for (t, id) in [("payment.pending", format!("{p}-1")), ("payment.success", format!("{p}-2")), ("payment.success", format!("{p}-2"))] {
                    let (status, body) = post(&http, url.clone(), &event(t, &p, &o, 100, &id)).await;
                    assert_eq!(status, 200, "every webhook is acknowledged, broker or not: {body}");
                    note_accepted(&mut ledger, &p, &id);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ledger
        });
    }
    let mut all = Ledger::new();
    while let Some(lane) = tasks.join_next().await {
        all.extend(lane.expect("lane"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_under_load_is_spooled_and_applied_once_in_order() {
    let Some(brokers) = kafka_brokers() else { return };
    let sys = KafkaSystem::new(&brokers);
    let http = client();
    let _server = sys.server(0, &["--kafka-produce-timeout-ms", "2000"]);
    wait_healthy(&http, &sys.base).await;
    let _worker = sys.worker(0, free_addr());

    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(send_in_lanes(http.clone(), format!("{}/api/webhooks/payment", sys.base), 16, stop.clone()));
    let most_spooled = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn({
        let (http, url, most, stop) = (http.clone(), format!("{}/readyz", sys.base), most_spooled.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let (_, ready) = get(&http, url.clone()).await;
                most.fetch_max(ready["spool"]["depth"].as_u64().unwrap_or(0), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    services(&["down", "kafka"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    services(&["up", "kafka"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let ledger = sender.await.expect("sender");
    watcher.await.expect("watcher");
    assert!(most_spooled.load(Ordering::SeqCst) > 0, "the outage's events went to the spool");

    assert_exactly_once(&http, &sys.base, &ledger).await;
    for payment in ledger.keys() {
        let (_, p) = get(&http, format!("{}/api/payments/{payment}", sys.base)).await;
        let outcomes: Vec<&str> = p["events"].as_array().into_iter().flatten().filter_map(|e| e["outcome"].as_str()).collect();
        // Pending was acknowledged before success was sent: had success overtaken it, pending would be stale.
        assert!(outcomes.iter().all(|o| *o == "applied"), "events of {payment} reached the worker out of order: {p}");
    }
    let (_, ready) = get(&http, format!("{}/readyz", sys.base)).await;
    assert_eq!(ready["spool"]["depth"], 0, "the spool drained: {ready}");
}
