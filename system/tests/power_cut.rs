//! A 200 means durable, tested the way Jepsen tests databases: the data directory is on faultfs,
//! whose power cut keeps of the unsynced writes only what a seeded write-back reached and
//! undoes directory entries never synced, and every process dies at the same instant. After
//! restarting on what reached the disk, every acknowledged event is applied exactly once.
//!
//! Each test runs with two fixed seeds (see `common::power::seeds`), chosen so that the cuts
//! between them persist none, some and all of the unsynced pages; a failure prints the command
//! that replays its seed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::power::*;
use common::*;
use faultfs::{FailedFsync, Op, Options, Target};

const CLIENTS: usize = 16;
/// The files the embedded queue fsyncs on every group commit: its segments.
const QUEUE_LOG: &str = ".seg";

/// Small segments, so that the log deletes consumed ones (after a store checkpoint) while
/// the power is cut: the store syncs only at those checkpoints.
const SMALL_SEGMENTS: [&str; 2] = ["--queue-segment-bytes", "65536"];

fn start_all(machine: &mut Machine, roles: &[&str]) -> Vec<Proc> {
    roles.iter().map(|r| machine.start(r, if *r == "worker" { &[] } else { &SMALL_SEGMENTS })).collect()
}

/// Load, cut, restart, several times over; then verify everything acknowledged in any round.
async fn repeated_cuts(machine: &mut Machine, roles: &[&str], rounds: usize) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    for round in 0..rounds {
        let mut procs = start_all(machine, roles);
        machine.wait_healthy().await;
        let (before, unanswered) = (tally.acked(), tally.unanswered());
        let load = Load::start(&machine.base, CLIENTS, tally.clone());
        until_acked(&tally, before + 1_500 + round * 500, Duration::from_secs(20)).await;
        // Cut while requests are in flight: some are answered, some cut off unanswered.
        machine.power_cut(&mut procs);
        load.stop().await;
        eprintln!("round {round}: {} acknowledged so far, {} requests in flight cut off", tally.acked(), tally.unanswered() - unanswered);
    }
    let _procs = start_all(machine, roles);
    verify(machine, &tally).await;
    let first = first_segment(machine);
    assert!(first > 1, "consumed segments were deleted during the run (the first left starts at offset {first})");
    tally
}

/// The first offset of the oldest segment on the disk.
fn first_segment(machine: &Machine) -> u64 {
    let dir = machine.disk().join("data/log");
    let names = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    names
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(QUEUE_LOG)?.parse().ok())
        .min()
        .expect("the log has a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_survives_repeated_power_cuts_under_load() {
    for seed in seeds(&[8, 9]) {
        let mut machine = Machine::new(seed);
        repeated_cuts(&mut machine, &["standalone"], 4).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_server_and_worker_survive_repeated_power_cuts_under_load() {
    for seed in seeds(&[6, 2]) {
        let mut machine = Machine::new(seed);
        repeated_cuts(&mut machine, &["server", "worker"], 3).await;
    }
}

/// The first hole of the power-cut issue, found in the SQLite log that the segment log replaced,
/// kept as a scenario every log must survive. A backlog builds up while no worker runs; a worker
/// then consumes part of it, truncating the log while the server is quiet, and its connection
/// checkpoints the WAL into `queue.db` (the backlog's rows with it). The server's next commits
/// restart the WAL over those frames. If the checkpoint never synced `queue.db`, a power cut
/// now loses the rest of the backlog: acknowledged, never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_after_a_quiet_checkpoint_loses_nothing() {
    for seed in seeds(&[7, 5]) {
        let mut machine = Machine::new(seed);
        let tally = Arc::new(Tally::default());
        let mut server = machine.start("server", &[]);
        machine.wait_healthy().await;
        let load = Load::start(&machine.base, CLIENTS, tally.clone());
        until_acked(&tally, 20_000, Duration::from_secs(90)).await;
        load.stop().await;
        let backlog = tally.ledger.lock().expect("ledger").clone();
        let stats = free_addr().to_string();
        let mut worker = machine.start("worker", &["--batch-size", "20", "--metrics-listen", &stats]);
        // Stopped part-way: two truncations (and their checkpoints) behind it, the rest of the
        // backlog still to apply.
        let http = client();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let reply = http.get(format!("http://{stats}/api/stats")).send().await;
            let stats_now: serde_json::Value = match reply {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null, // not listening yet
            };
            let processed = stats_now["worker"]["processed"].as_u64().unwrap_or(0);
            if processed >= 11_000 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the worker did not get through the backlog\n{}", machine.log_tail());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worker.kill9();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let load = Load::start(&machine.base, CLIENTS, tally.clone());
        until_acked(&tally, backlog.len() + 500, Duration::from_secs(20)).await;
        machine.power_cut(std::slice::from_mut(&mut server));
        load.stop().await;
        eprintln!("{} acknowledged, {} of them in the backlog", tally.acked(), backlog.len());
        let _restarted = [machine.start("server", &[]), machine.start("worker", &[])];
        verify(&machine, &tally).await;
    }
}

/// Disk full mid-load: 503 with Retry-After, nothing acknowledged lost, no healthy event
/// dead-lettered, and the system recovers by itself once space returns. The write that
/// crosses the limit is short, as on Linux, and small segments make the log roll while the
/// disk is full, with records still written into the zeros preallocated before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_dead_letters_nothing_and_recovers_by_itself() {
    for seed in seeds(&[14, 13]) {
        let mut machine = Machine::new(seed);
        let tally = Arc::new(Tally::default());
        // Few, quick retries: a worker that took the full disk for poison would dead-letter at once.
        let quick = ["--max-attempts", "2", "--retry-base-ms", "5", "--retry-cap-ms", "50", SMALL_SEGMENTS[0], SMALL_SEGMENTS[1]];
        let mut procs = vec![machine.start("standalone", &quick)];
        machine.wait_healthy().await;
        let load = Load::start(&machine.base, CLIENTS, tally.clone());
        until_acked(&tally, 1_000, Duration::from_secs(20)).await;
        machine.fs.limit_space(Target::All, 256 * 1024);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while tally.count(503) < 200 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(tally.count(503) >= 200, "a full disk must answer 503: {:?}\n{}", tally.statuses.lock().unwrap(), machine.log_tail());
        // Far longer than the worker's retries take, were it to take the full disk for poison.
        tokio::time::sleep(Duration::from_secs(2)).await;
        machine.fs.clear_faults();
        let during = tally.acked();
        until_acked(&tally, during + 1_000, Duration::from_secs(30)).await;
        load.stop().await;
        assert!(tally.acked() >= during + 1_000, "no recovery after space returned\n{}", machine.log_tail());
        assert_eq!(tally.retry_after_missing.load(std::sync::atomic::Ordering::Relaxed), 0, "every 503 carries Retry-After");
        eprintln!("{} acknowledged, {} answered 503 while the disk was full", tally.acked(), tally.count(503));
        verify(&machine, &tally).await;
        // And what was acknowledged is on disk, not only in memory.
        machine.power_cut(&mut procs);
        let _restarted = machine.start("standalone", &quick);
        verify(&machine, &tally).await;
    }
}

/// Fails the log's next fsync, under load, and waits for the 503 its group must get.
async fn fail_one_log_fsync(machine: &Machine, tally: &Tally) {
    machine.fs.fail(Op::Fsync, Target::file(QUEUE_LOG), Some(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tally.count(503) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(machine.fs.injected(), 1, "the fsync fault fired\n{}", machine.log_tail());
    assert!(tally.count(503) >= 1, "the group whose fsync failed got 503: {:?}\n{}", tally.statuses.lock().unwrap(), machine.log_tail());
}

/// After a fault: 1,000 more acknowledged by the restarted `procs`, a power cut, and every
/// acknowledged event applied once after the next start.
async fn cut_after_more_and_verify(machine: &mut Machine, mut procs: Vec<Proc>, load: Load, tally: &Tally) {
    let before = tally.acked();
    until_acked(tally, before + 1_000, Duration::from_secs(30)).await;
    machine.power_cut(&mut procs);
    load.stop().await;
    eprintln!("{} acknowledged, {} answered 503", tally.acked(), tally.count(503));
    let _restarted = machine.start("standalone", &[]);
    verify(machine, tally).await;
}

/// fsync fails once under load (and, as on Linux, the data it covered is gone): that group
/// must not be acknowledged. The log may go on after verifying itself, or refuse until the
/// process restarts; either way, nothing acknowledged before or after may be lost at a later
/// power cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_acknowledged() {
    for seed in seeds(&[10, 3]) {
        let mut machine = Machine::new(seed);
        let tally = Arc::new(Tally::default());
        let mut procs = vec![machine.start("standalone", &[])];
        machine.wait_healthy().await;
        let load = Load::start(&machine.base, CLIENTS, tally.clone());
        until_acked(&tally, 1_000, Duration::from_secs(20)).await;
        fail_one_log_fsync(&machine, &tally).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        machine.power_cut(&mut procs);
        let procs = vec![machine.start("standalone", &[])];
        cut_after_more_and_verify(&mut machine, procs, load, &tally).await;
    }
}

/// The other fsyncgate: after the failed fsync, the page cache keeps the log's unsynced pages
/// readable and clean (some file systems do). The process stops accepting; restarted without a
/// power cut, it finds them still there and must not take them for durable: the next cut loses
/// them, and anything acknowledged behind them must survive it. Many clients, so that the
/// failed group spans whole pages: a page the next group rewrites is written whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_a_failed_fsync_left_readable_are_not_taken_for_durable_after_a_restart() {
    for seed in seeds(&[12, 17]) {
        let mut machine = Machine::with(Options { seed, failed_fsync: FailedFsync::KeepPages, ..Options::default() });
        let tally = Arc::new(Tally::default());
        let mut server = machine.start("standalone", &[]);
        machine.wait_healthy().await;
        let load = Load::start(&machine.base, 4 * CLIENTS, tally.clone());
        until_acked(&tally, 1_000, Duration::from_secs(20)).await;
        fail_one_log_fsync(&machine, &tally).await;
        // A restart, not a power cut: the pages the failed fsync left behind are still readable.
        server.kill9();
        let procs = vec![machine.start("standalone", &[])];
        machine.wait_healthy().await;
        cut_after_more_and_verify(&mut machine, procs, load, &tally).await;
    }
}
