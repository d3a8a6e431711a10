//! The three-node Kafka cluster of `scripts/services.sh up kafka-cluster`: where partitions
//! lead, waiting for conditions on it, and a steady load that retries 5xx as a provider does.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::*;

/// Cluster brokers from KAFKA_CLUSTER_TEST_BROKERS (scripts/env.sh); skipped without it
/// unless REQUIRE_SERVICES=1.
pub fn cluster_brokers() -> Option<String> {
    match std::env::var("KAFKA_CLUSTER_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => panic!("KAFKA_CLUSTER_TEST_BROKERS is not set but REQUIRE_SERVICES=1"),
        _ => {
            eprintln!("skipped: KAFKA_CLUSTER_TEST_BROKERS not set (scripts/services.sh up kafka-cluster; source scripts/env.sh)");
            None
        }
    }
}

/// The tests of one binary take turns: each one kills brokers of the one cluster. A test that
/// failed holding it must not stop the others, hence the poison is ignored.
pub fn cluster_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub const NODES: [i32; 3] = [1, 2, 3];

/// Starts the nodes that are down (a previous test may have failed with some killed).
pub fn all_nodes_up() {
    services(&["start", "kafka-cluster", "1", "2", "3"]);
}

pub fn kill_node(node: i32) {
    services(&["kill", "kafka-cluster", &node.to_string()]);
}

pub fn stop_node(node: i32) {
    services(&["down", "kafka-cluster", &node.to_string()]);
}

pub fn start_nodes(nodes: &[i32]) {
    let mut args = vec!["start".to_string(), "kafka-cluster".into()];
    args.extend(nodes.iter().map(i32::to_string));
    services(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// One partition as the cluster's metadata shows it.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub id: i32,
    /// -1 while there is none.
    pub leader: i32,
    pub isr: Vec<i32>,
}

/// The partitions of `topic`; empty when the metadata cannot be had (the cluster is down).
pub async fn partitions(brokers: &str, topic: &str) -> Vec<PartitionView> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let Ok(client) = ClientConfig::new().set("bootstrap.servers", &brokers).create::<BaseConsumer>() else { return Vec::new() };
        let Ok(md) = client.fetch_metadata(Some(&topic), Duration::from_secs(3)) else { return Vec::new() };
        md.topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions())
            .map(|p| PartitionView { id: p.id(), leader: p.leader(), isr: p.isr().to_vec() })
            .collect()
    })
    .await
    .expect("metadata task")
}

/// Polls `check` every 200 ms until it holds; panics saying `what` after `within`.
pub async fn wait_for<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every partition of each topic has a leader and all three replicas in sync.
pub async fn wait_fully_replicated(brokers: &str, topics: &[&str]) {
    for topic in topics {
        wait_for(&format!("{topic}: every partition led, three replicas in sync"), Duration::from_secs(120), async || {
            let ps = partitions(brokers, topic).await;
            (!ps.is_empty() && ps.iter().all(|p| p.leader >= 0 && p.isr.len() == NODES.len())).then_some(())
        })
        .await;
    }
}

/// Waits until `partition` is led by a broker other than `old`; returns it.
pub async fn wait_new_leader(brokers: &str, topic: &str, partition: i32, old: i32) -> i32 {
    wait_for(&format!("{topic}/{partition}: a leader other than {old}"), Duration::from_secs(60), async || {
        partitions(brokers, topic).await.iter().find(|p| p.id == partition).map(|p| p.leader).filter(|l| *l >= 0 && *l != old)
    })
    .await
}

pub async fn leader_of(brokers: &str, topic: &str, partition: i32) -> i32 {
    wait_for(&format!("{topic}/{partition} has a leader"), Duration::from_secs(60), async || {
        partitions(brokers, topic).await.iter().find(|p| p.id == partition).map(|p| p.leader).filter(|l| *l >= 0)
    })
    .await
}

/// The partitions a worker holds now, from the last assignment in its log.
pub fn assigned_partitions(log: &std::path::Path) -> Option<BTreeSet<i32>> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.contains("kafka partitions assigned") || l.contains("kafka partitions revoked"))?;
    if line.contains("revoked") {
        return Some(BTreeSet::new());
    }
    let list = line.split("partitions=").nth(1)?.split_whitespace().next().unwrap_or("");
    Some(list.split(',').filter_map(|p| p.parse().ok()).collect())
}

/// Counters of a steady load, readable while it runs.
#[derive(Default)]
pub struct LoadStats {
    pub accepted: AtomicU64,
    /// Answers 5xx (each retried, as the provider would).
    pub server_errors: AtomicU64,
    /// Requests sent and not yet answered.
    pub in_flight: AtomicU64,
    pub stop: AtomicBool,
}

impl LoadStats {
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
    pub fn server_errors(&self) -> u64 {
        self.server_errors.load(Ordering::SeqCst)
    }
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// At most this many payments per lane, and never past this time: the load is bounded.
const MAX_PAYMENTS_PER_LANE: usize = 5_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(300);

/// `lanes` senders, each sending a payment's pending then success (and the success again,
/// a provider's duplicate), every event only after the previous one got its 200; a 5xx or a
/// refused connection is counted and the same event resent after `Retry-After`-like 200 ms.
/// A lane rests `pause` between payments, so that the load stays steady rather than the most
/// the machine can take (which would make the final check long). Runs until `stats.stop`;
/// returns the ledger of what got a 200.
pub fn steady_load(base: &str, prefix: &str, lanes: usize, pause: Duration, stats: Arc<LoadStats>) -> tokio::task::JoinHandle<Ledger> {
    let (url, prefix) = (format!("{base}/api/webhooks/payment"), prefix.to_owned());
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        let until = Instant::now() + MAX_LOAD_TIME;
        for lane in 0..lanes {
            let (http, url, stats, prefix) = (client(), url.clone(), stats.clone(), prefix.clone());
            tasks.spawn(async move {
                let mut ledger = Ledger::new();
                for n in 0..MAX_PAYMENTS_PER_LANE {
                    if stats.stop.load(Ordering::SeqCst) || Instant::now() > until {
                        break;
                    }
                    let (p, o) = (format!("{prefix}p{lane}-{n}"), format!("{prefix}o{lane}-{n}"));
                    for (t, id) in [("payment.pending", format!("{p}-1")), ("payment.success", format!("{p}-2")), ("payment.success", format!("{p}-2"))] {
                        deliver(&http, &url, &event(t, &p, &o, 100, &id), &stats, until).await;
                        note_accepted(&mut ledger, &p, &id);
                    }
                    tokio::time::sleep(pause).await;
                }
                ledger
            });
        }
        let mut all = Ledger::new();
        while let Some(lane) = tasks.join_next().await {
            all.extend(lane.expect("lane"));
        }
        all
    })
}

/// Sends until a 200, as a provider retries; only 5xx and connection errors are retried.
async fn deliver(http: &reqwest::Client, url: &str, body: &Value, stats: &LoadStats, until: Instant) {
    loop {
        stats.in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = http.post(url).json(body).send().await;
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        match answer.map(|r| r.status().as_u16()) {
            Ok(200) => {
                stats.accepted.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(s) if s >= 500 => {
                stats.server_errors.fetch_add(1, Ordering::SeqCst);
            }
            Ok(s) => panic!("a valid event answered {s}: {body}"),
            Err(e) => assert!(e.is_connect() || e.is_timeout(), "request failed: {e}"),
        }
        assert!(Instant::now() < until, "{body} never got a 200");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `more` further events were accepted: the load flows.
pub async fn wait_flowing(stats: &LoadStats, more: u64) {
    let target = stats.accepted() + more;
    wait_for(&format!("{more} more events accepted"), Duration::from_secs(120), async || (stats.accepted() >= target).then_some(())).await;
}

/// Every accepted event applied once (nothing lost, nothing doubled), and each one applied
/// as sent (nothing wrong: a success overtaking its pending would be stale).
pub async fn verify(http: &reqwest::Client, base: &str, ledger: &Ledger) {
    assert_exactly_once(http, base, ledger).await;
    for payment in ledger.keys() {
        let (_, p) = get(http, format!("{base}/api/payments/{payment}")).await;
        let outcomes: Vec<&str> = p["events"].as_array().into_iter().flatten().filter_map(|e| e["outcome"].as_str()).collect();
        assert!(outcomes.iter().all(|o| *o == "applied"), "events of {payment} not applied as sent: {p}");
    }
}
