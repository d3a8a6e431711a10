//! loadgen against the real system: spawns `webhooks standalone` (built by
//! `cargo build --release -p system`), runs a small scenario with duplicates, out-of-order
//! deliveries, invalid payloads, forged signatures and failing events, and checks the verdict.

use loadgen::experiment::run;
use loadgen::scenario::Scenario;

const SCENARIO: &str = r#"
name = "it"
seed = 5

[target]
spawn = "standalone"

[signing]
scheme = "standard"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[workload]
orders = 300
duplicate_fraction = 0.3
out_of_order_fraction = 0.3
invalid_fraction = 0.05
bad_signature_fraction = 0.05
mismatch_fraction = 0.1
unknown_order_fraction = 0.1
failing_fraction = 0.02

[load]
max_in_flight = 64

[[load.phases]]
kind = "ramp"
from = 200
to = 1500
duration_s = 3

[drain]
timeout_s = 60

[gates]
max_lost = 0
max_double_applied = 0
max_wrong_state = 0
max_unexpected_status = 0
max_invalid_accepted = 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_hostile_scenario_ends_with_nothing_lost_or_doubled() {
    let s = Scenario::parse(SCENARIO).expect("scenario");
    let mut m = run::run(&s, false).await.expect("run");
    let pass = m.judge(&s.gates);
    let v = &m.verification;
    assert!(pass, "{}", m.summary());
    assert_eq!((v.lost, v.double_applied, v.wrong_state()), (0, 0, 0), "{}", m.summary());
    assert!(v.payments_checked > 500 && v.orders_checked == 300, "{}", m.summary());
    assert!(v.dead_letters_found > 0, "failing events reached dead letters: {}", m.summary());
    assert!(m.statuses.get("401").is_some_and(|n| *n > 0) && m.statuses.get("422").is_some(), "{:?}", m.statuses);
    assert_eq!(m.system.clean_exit, Some(true), "graceful shutdown");
    assert!(m.drained);
}
