//! Failover on a replicated three-broker cluster (replication factor 3, min.insync.replicas 2),
//! under load, each test ending with every accepted event applied once, as sent. Its own test
//! binary, because it kills brokers; the tests take turns on the one cluster. Each prints a
//! `FAILOVER` line with its figures (REPORT.md quotes them).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// About 200 events/s: every partition busy, and a final check of seconds, not minutes.
const LANES: usize = 4;
const PAUSE: Duration = Duration::from_millis(50);

struct Running {
    sys: KafkaSystem,
    _server: Proc,
    workers: Vec<Proc>,
    stats: Arc<LoadStats>,
    load: tokio::task::JoinHandle<Ledger>,
}

/// A server (with `server_flags`) and `workers` workers on a topic of their own, replicated on
/// all three brokers, with a steady load flowing.
async fn start(brokers: &str, server_flags: &[&str], workers: usize) -> Running {
    all_nodes_up();
    let sys = KafkaSystem::new(brokers);
    let server = sys.server(0, server_flags);
    wait_healthy(&client(), &sys.base).await;
    let workers = (0..workers).map(|n| sys.worker(n, free_addr())).collect();
    let topic = sys.topic().to_owned();
    wait_fully_replicated(brokers, &[&topic]).await;
    let stats = Arc::new(LoadStats::default());
    let load = steady_load(&sys.base, "c", LANES, PAUSE, stats.clone());
    wait_flowing(&stats, 300).await;
    Running { sys, _server: server, workers, stats, load }
}

/// A run whose load has stopped: what got a 200, still to be checked.
struct Stopped {
    sys: KafkaSystem,
    _server: Proc,
    _workers: Vec<Proc>,
    stats: Arc<LoadStats>,
    ledger: Ledger,
}

impl Running {
    /// Lets the load flow on (the system recovered), then stops it.
    async fn stop_load(self) -> Stopped {
        wait_flowing(&self.stats, 300).await;
        self.stats.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let ledger = self.load.await.expect("load");
        Stopped { sys: self.sys, _server: self._server, _workers: self.workers, stats: self.stats, ledger }
    }

    async fn finish(self, name: &str, started: Instant, extra: &str) {
        self.stop_load().await.verify(name, started, extra).await;
    }
}

impl Stopped {
    async fn verify(self, name: &str, started: Instant, extra: &str) {
        let applied_by = Instant::now();
        verify(&client(), &self.sys.base, &self.ledger).await;
        let events: usize = self.ledger.values().map(Vec::len).sum();
        eprintln!(
            "FAILOVER {name}: accepted={} distinct_events={events} 5xx={} {extra} drained_after_stop_s={:.1} total_s={:.1} lost=0 doubled=0 wrong=0",
            self.stats.accepted(),
            self.stats.server_errors(),
            applied_by.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_of_a_busy_partition_killed_and_restarted() {
    let Some(brokers) = cluster_brokers() else { return };
    let _turn = cluster_turn();
    let started = Instant::now();
    let run = start(&brokers, &[], 1).await;
    let topic = run.sys.topic().to_owned();

    let leader = leader_of(&brokers, &topic, 0).await;
    let in_flight = run.stats.in_flight();
    kill_node(leader);
    let killed = Instant::now();
    let new_leader = wait_new_leader(&brokers, &topic, 0, leader).await;
    let elected = killed.elapsed();
    wait_flowing(&run.stats, 300).await;
    start_nodes(&[leader]);
    wait_fully_replicated(&brokers, &[&topic]).await;
    let recovered = killed.elapsed();

    assert_eq!(run.stats.server_errors(), 0, "with the spool, a leader's death costs no 5xx");
    let extra = format!(
        "killed_leader={leader} new_leader={new_leader} in_flight_at_kill={in_flight} leader_elected_s={:.1} back_in_sync_s={:.1}",
        elected.as_secs_f64(),
        recovered.as_secs_f64()
    );
    run.finish("leader-kill", started, &extra).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_brokers_killed_spool_answers_200_strict_answers_503() {
    let Some(brokers) = cluster_brokers() else { return };
    let _turn = cluster_turn();
    let started = Instant::now();
    let spooled = start(&brokers, &["--kafka-produce-timeout-ms", "2000"], 1).await;
    let strict = start(&brokers, &["--kafka-produce-timeout-ms", "2000", "--spool", "false"], 1).await;
    let http = client();

    let in_flight = spooled.stats.in_flight() + strict.stats.in_flight();
    let errors_before = strict.stats.server_errors();
    kill_node(2);
    kill_node(3);
    let killed = Instant::now();
    // min.insync.replicas is no longer met (nor is the controllers' majority): produce fails.
    let ready = format!("{}/readyz", spooled.sys.base);
    wait_for("the spooled server takes events into its spool", Duration::from_secs(60), async || {
        let (_, r) = get(&http, ready.clone()).await;
        (r["spool"]["depth"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    wait_for("the strict server answers 503", Duration::from_secs(60), async || (strict.stats.server_errors() > errors_before).then_some(())).await;
    let spooled_errors = spooled.stats.server_errors();
    let accepted_strict = strict.stats.accepted();
    start_nodes(&[2, 3]);
    let restarted = killed.elapsed();
    let (a, b) = (spooled.sys.topic().to_owned(), strict.sys.topic().to_owned());
    wait_fully_replicated(&brokers, &[&a, &b]).await;
    let recovered = killed.elapsed();
    // Events keep queueing behind the spool while it drains, so its depth reads 0 for sure
    // only once the load has stopped.
    let (spooled, strict) = (spooled.stop_load().await, strict.stop_load().await);
    let mut polls = 0;
    wait_for("the spool drained", Duration::from_secs(180), async || {
        let (_, r) = get(&http, ready.clone()).await;
        polls += 1;
        if polls % 25 == 0 {
            eprintln!("spool depth {} at {:.0}s after the kill", r["spool"]["depth"], killed.elapsed().as_secs_f64());
        }
        (r["spool"]["depth"] == 0).then_some(())
    })
    .await;
    let drained = killed.elapsed();

    assert_eq!(spooled_errors, 0, "with the spool, every webhook gets 200 while Kafka cannot take it");
    let strict_503 = strict.stats.server_errors() - errors_before;
    let extra = format!(
        "in_flight_at_kill={in_flight} strict_503_during_outage={strict_503} strict_accepted_before_restart={accepted_strict} \
         brokers_down_s={:.1} back_in_sync_s={:.1} spool_drained_s={:.1}",
        restarted.as_secs_f64(),
        recovered.as_secs_f64(),
        drained.as_secs_f64()
    );
    spooled.verify("two-of-three/spool", started, &extra).await;
    strict.verify("two-of-three/no-spool", started, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_while_a_leader_of_its_partitions_moves() {
    let Some(brokers) = cluster_brokers() else { return };
    let _turn = cluster_turn();
    let started = Instant::now();
    let mut run = start(&brokers, &[], 3).await;
    let topic = run.sys.topic().to_owned();
    let log = |n: usize| run.sys.dir.path().join(format!("worker-{n}.log"));
    let everything: std::collections::BTreeSet<i32> = (0..6).collect();
    let holds = |ns: &[usize]| ns.iter().filter_map(|n| assigned_partitions(&log(*n))).flatten().collect::<std::collections::BTreeSet<i32>>();
    wait_for("the group formed: three workers share the six partitions", Duration::from_secs(60), async || {
        ((0..3).all(|n| assigned_partitions(&log(n)).is_some_and(|p| !p.is_empty())) && holds(&[0, 1, 2]) == everything).then_some(())
    })
    .await;

    let victim_partition = *assigned_partitions(&log(1)).expect("worker 1 holds partitions").first().expect("one");
    let leader = leader_of(&brokers, &topic, victim_partition).await;
    let in_flight = run.stats.in_flight();
    run.workers[1].kill9();
    kill_node(leader);
    let killed = Instant::now();
    let new_leader = wait_new_leader(&brokers, &topic, victim_partition, leader).await;
    let elected = killed.elapsed();
    wait_for("the two workers left hold all six partitions", Duration::from_secs(60), async || (holds(&[0, 2]) == everything).then_some(())).await;
    let reassigned = killed.elapsed();
    start_nodes(&[leader]);
    wait_fully_replicated(&brokers, &[&topic]).await;

    assert_eq!(run.stats.server_errors(), 0, "with the spool, a leader's death costs no 5xx");
    let extra = format!(
        "partition={victim_partition} killed_leader={leader} new_leader={new_leader} in_flight_at_kill={in_flight} \
         leader_elected_s={:.1} partitions_reassigned_s={:.1}",
        elected.as_secs_f64(),
        reassigned.as_secs_f64()
    );
    run.finish("worker-and-leader-kill", started, &extra).await;
}

/// 5xx allowed during a rolling restart, as a share of accepted events: a controlled
/// shutdown moves leadership before the broker stops, so a produce should rarely fail.
const ROLLING_5XX_BUDGET: f64 = 0.01;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_brokers_under_constant_load() {
    let Some(brokers) = cluster_brokers() else { return };
    let _turn = cluster_turn();
    let started = Instant::now();
    let run = start(&brokers, &["--spool", "false"], 2).await;
    let topic = run.sys.topic().to_owned();

    let mut per_node = Vec::new();
    for node in NODES {
        let errors = run.stats.server_errors();
        let t = Instant::now();
        stop_node(node);
        start_nodes(&[node]);
        wait_fully_replicated(&brokers, &[&topic]).await;
        per_node.push(format!("node{node}:{:.1}s/{}x5xx", t.elapsed().as_secs_f64(), run.stats.server_errors() - errors));
        wait_flowing(&run.stats, 100).await;
    }

    let (errors, accepted) = (run.stats.server_errors(), run.stats.accepted());
    assert!(
        (errors as f64) <= ROLLING_5XX_BUDGET * accepted as f64,
        "{errors} 5xx for {accepted} accepted events: over the {ROLLING_5XX_BUDGET} budget"
    );
    run.finish("rolling-restart", started, &format!("restarts={}", per_node.join(","))).await;
}
