//! Kafka as managed services offer it: the local broker's SASL_SSL listener, with TLS from a
//! CA of our own and a SCRAM-SHA-512 user (scripts/services.sh makes them; scripts/env.sh names
//! them), and topics an operator made rather than the server.

mod common;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::*;
use webhooks::queue::kafka::{ensure_topics, KafkaConfig};

/// The secure listener and its credentials; skipped without them unless REQUIRE_SERVICES=1.
struct Secure {
    brokers: String,
    ca: String,
    user: String,
    password: String,
}

fn secure() -> Option<Secure> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("KAFKA_SECURE_TEST_BROKERS"), var("KAFKA_TEST_CA"), var("KAFKA_TEST_SASL_USERNAME"), var("KAFKA_TEST_SASL_PASSWORD")) {
        (Some(brokers), Some(ca), Some(user), Some(password)) if std::path::Path::new(&ca).exists() => Some(Secure { brokers, ca, user, password }),
        _ if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => panic!("the SASL_SSL listener's settings are not set (or KAFKA_TEST_CA is no file) but REQUIRE_SERVICES=1"),
        _ => {
            eprintln!("skipped: KAFKA_SECURE_TEST_BROKERS not set (run scripts/services.sh up and source scripts/env.sh)");
            None
        }
    }
}

impl Secure {
    fn flags<'a>(&'a self, password: &'a str) -> Vec<&'a str> {
        vec![
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            &self.user,
            "--kafka-sasl-password",
            password,
            "--kafka-ssl-ca-location",
            &self.ca,
        ]
    }
}

/// The exit status once the process stops on its own, or `None` if it still runs after `limit`.
fn exits_within(p: &mut Proc, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn log_of(sys: &KafkaSystem, name: &str) -> String {
    std::fs::read_to_string(sys.dir.path().join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_worker_over_tls_and_scram_apply_events_and_read_the_topics_retention() {
    let Some(s) = secure() else { return };
    let sys = KafkaSystem::new(&s.brokers);
    let http = client();
    // Three days and an hour: the retention the topics are created with, read back by the worker.
    let mut server_flags = s.flags(&s.password);
    server_flags.extend(["--kafka-retention-ms", "262800000"]);
    let _server = sys.server(0, &server_flags);
    wait_healthy(&http, &sys.base).await;
    // The server made the topics: the worker only checks them, as one without admin rights would.
    let mut worker_flags = s.flags(&s.password);
    worker_flags.extend(["--kafka-create-topics", "false"]);
    let metrics = free_addr();
    let _worker = sys.worker_with(0, metrics, &worker_flags);

    assert_eq!(post(&http, format!("{}/api/orders", sys.base), &order("order_tls", 1000)).await.0, 201);
    let (status, _) = post(&http, format!("{}/api/webhooks/payment", sys.base), &event("payment.success", "pay_tls", "order_tls", 1000, "evt_tls")).await;
    assert_eq!(status, 200);
    eventually(&http, format!("{}/api/orders/order_tls", sys.base), Duration::from_secs(60), |o| o["status"] == "paid").await;

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http.get(format!("http://{metrics}/metrics")).send().await.expect("metrics").text().await.expect("text");
        if text.lines().any(|l| l == "webhooks_kafka_retention_seconds 262800") {
            assert!(text.lines().any(|l| l.starts_with("webhooks_kafka_oldest_unconsumed_age_seconds ")), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not report the topic's retention:\n{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let worker_log = log_of(&sys, "worker-0.log");
    assert!(!worker_log.contains(&s.password), "the password was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_start_with_the_brokers_reason() {
    let Some(s) = secure() else { return };
    let sys = KafkaSystem::new(&s.brokers);
    let mut server = sys.server(0, &s.flags("not-the-password"));
    let status = exits_within(&mut server, Duration::from_secs(60)).expect("a server that cannot log in must stop");
    assert!(!status.success());
    let log = log_of(&sys, "server-0.log");
    assert!(log.contains("Authentication failed") || log.contains("authentication"), "no reason given:\n{log}");
    assert!(!log.contains("not-the-password"), "the password was logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_topic_creation_a_missing_topic_or_other_partitions_refuse_to_start() {
    let Some(s) = secure() else { return };
    let sys = KafkaSystem::new(&s.brokers);
    let mut flags = s.flags(&s.password);
    flags.extend(["--kafka-create-topics", "false"]);
    let mut server = sys.server(0, &flags);
    let status = exits_within(&mut server, Duration::from_secs(60)).expect("a server without its topic must stop");
    assert!(!status.success());
    let log = log_of(&sys, "server-0.log");
    assert!(log.contains("does not exist and --kafka-create-topics is false"), "{log}");

    // The operator made the topic with 6 partitions; a worker told 3 must not guess.
    let Some(plain) = kafka_brokers() else { return };
    let made = KafkaConfig { brokers: plain, topic: sys.topic().to_owned(), ..Default::default() };
    ensure_topics(&made).await.expect("create the topics");
    flags.extend(["--kafka-partitions", "3"]);
    let mut worker = sys.worker_with(0, free_addr(), &flags);
    let status = exits_within(&mut worker, Duration::from_secs(60)).expect("a worker told other partitions must stop");
    assert!(!status.success());
    let log = log_of(&sys, "worker-0.log");
    assert!(log.contains("has 6 partitions but --kafka-partitions is 3"), "{log}");
}

/// What clap refuses before anything is opened: no broker needed.
#[test]
fn guarded_properties_and_missing_sasl_settings_stop_the_start_with_the_reason() {
    let refuse = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_webhooks"))
            .args(["server", "--listen", "127.0.0.1:0", "--kafka-brokers", "127.0.0.1:1"])
            .args(args)
            .env_remove("KAFKA_PROPERTIES")
            .envs(env.iter().copied())
            .output()
            .expect("run webhooks");
        assert!(!out.status.success(), "{args:?} {env:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = refuse(&["--kafka-property", "linger.ms=1", "--kafka-property", "enable.idempotence=false"], &[]);
    assert!(e.contains("enable.idempotence cannot be changed"), "{e}");
    let e = refuse(&[], &[("KAFKA_PROPERTIES", "client.id=ours\nacks=1")]);
    assert!(e.contains("acks cannot be changed"), "{e}");
    let e = refuse(&["--kafka-security-protocol", "sasl_ssl", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-password", "x"], &[]);
    assert!(e.contains("--kafka-sasl-username"), "{e}");
}
