//! The Kafka-mode spool under a power cut: the broker is down, the server acknowledges events
//! into its local spool on faultfs, then the power goes. After the broker and the processes
//! come back, every acknowledged event reaches Kafka and is applied exactly once. Its own test
//! binary, because it stops the shared broker.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::power::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_events_survive_a_power_cut_during_a_broker_outage() {
    let Some(brokers) = kafka_brokers() else { return };
    let mut machine = Machine::new(seeds(&[11])[0]);
    let topic = format!("t-pc-{}-{}", std::process::id(), machine.listen.rsplit(':').next().unwrap_or("0"));
    let group = format!("g-{topic}");
    let metrics = free_addr().to_string();
    let kafka = ["--kafka-brokers", brokers.as_str(), "--kafka-topic", topic.as_str()];
    let server_args: Vec<&str> = kafka.iter().copied().chain(["--kafka-produce-timeout-ms", "1000"]).collect();
    let worker_args: Vec<&str> = kafka.iter().copied().chain(["--consumer", group.as_str(), "--metrics-listen", metrics.as_str()]).collect();

    let tally = Arc::new(Tally::default());
    let mut procs = vec![machine.start("server", &server_args), machine.start("worker", &worker_args)];
    machine.wait_healthy().await;
    let load = Load::start(&machine.base, 8, tally.clone());
    until_acked(&tally, 300, Duration::from_secs(20)).await;
    services(&["down", "kafka"]);
    let direct = tally.acked();
    until_acked(&tally, direct + 1_000, Duration::from_secs(30)).await;
    machine.power_cut(&mut procs);
    load.stop().await;
    let spooled = tally.acked() - direct;
    eprintln!("{direct} acknowledged via the broker, {spooled} during the outage");
    assert!(spooled >= 1_000, "the outage's events were acknowledged from the spool\n{}", machine.log_tail());

    services(&["up", "kafka"]);
    let _procs = [machine.start("server", &server_args), machine.start("worker", &worker_args)];
    verify(&machine, &tally).await;
}
