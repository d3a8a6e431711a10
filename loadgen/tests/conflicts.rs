//! scenarios/conflicts.toml against the real system: amounts and currencies that vary within
//! a payment and event ids reused with another payload end exactly as loadgen's oracle says;
//! and a system that lets the larger of two same-rank amounts win is caught.

use std::path::PathBuf;

mod faulty;

use loadgen::experiment::run;
use loadgen::scenario::Scenario;

fn scenario() -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/conflicts.toml");
    Scenario::load(&path).expect("scenarios/conflicts.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_amounts_and_reused_ids_end_as_the_oracle_says() {
    let s = scenario();
    let mut m = run::run(&s, false).await.expect("run");
    assert!(m.judge(&s.gates), "{}", m.summary());
    let v = &m.verification;
    assert!(v.conflicted_expected > 50, "too few conflicted payments to test the rule: {}", m.summary());
    assert!(v.reuses_checked > 20, "too few reused ids with both payloads accepted: {}", m.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_where_the_larger_amount_wins_is_caught() {
    let mut s = scenario();
    faulty::aim(&mut s, "--fault-larger-amount-wins");
    let mut m = run::run(&s, false).await.expect("run");
    assert!(!m.judge(&s.gates), "the oracle passed a wrong system: {}", m.summary());
    let v = &m.verification;
    assert!(v.wrong_payment_state > 0, "{}", m.summary());
    assert_eq!((v.lost, v.double_applied, m.unexpected_status), (0, 0, 0), "{}", m.summary());
}
