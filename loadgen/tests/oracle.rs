//! The oracle can fail: the same hostile, fully shuffled scenario passes against the real
//! system and is caught against a system that skips the stale-event rule (a late `pending`
//! undoes a `success`). The faulty binary is `webhooks` built with the `fault-injection`
//! feature (the `webhooks-fault` binary target, built by scripts/test.sh), or
//! $WEBHOOKS_FAULT_BIN.

mod faulty;

use loadgen::experiment::run;
use loadgen::scenario::Scenario;

const SCENARIO: &str = r#"
name = "oracle"
seed = 9

[target]
spawn = "standalone"

[signing]
scheme = "standard"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[workload]
orders = 200
duplicate_fraction = 0.1
out_of_order_fraction = 1.0
mismatch_fraction = 0.1

[load]
max_in_flight = 32

[[load.phases]]
kind = "constant"
rate = 600
duration_s = 2

[drain]
timeout_s = 60

[gates]
max_lost = 0
max_double_applied = 0
max_wrong_state = 0
max_unexpected_status = 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_system_passes_the_shuffled_scenario() {
    let s = Scenario::parse(SCENARIO).expect("scenario");
    let mut m = run::run(&s, false).await.expect("run");
    assert!(m.judge(&s.gates), "{}", m.summary());
    assert!(m.verification.payments_checked > 200, "{}", m.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_that_skips_the_stale_rule_is_caught() {
    let mut s = Scenario::parse(SCENARIO).expect("scenario");
    faulty::aim(&mut s, "--fault-skip-stale-rule");
    let mut m = run::run(&s, false).await.expect("run");
    let pass = m.judge(&s.gates);
    let v = &m.verification;
    assert!(!pass, "the oracle passed a wrong system: {}", m.summary());
    assert!(v.wrong_payment_state > 0, "{}", m.summary());
    // Nothing else went wrong: the verdict names the broken rule, not a lost or doubled event.
    assert_eq!((v.lost, v.double_applied, m.unexpected_status), (0, 0, 0), "{}", m.summary());
}
