//! scenarios/stripe.toml against the real system: Stripe's envelopes with redeliveries,
//! shuffled deliveries, partial refunds, disputes and unhandled types end exactly as loadgen's
//! oracle says; and a system that lets a late event undo a later state is caught.

use std::path::PathBuf;

mod faulty;

use loadgen::experiment::run;
use loadgen::scenario::Scenario;

fn scenario() -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/stripe.toml");
    let mut s = Scenario::load(&path).expect("scenarios/stripe.toml");
    // Long enough for every story, refund and dispute to occur many times over.
    s.load.phases[0].duration_s = 3.0;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_events_end_as_the_oracle_says() {
    let s = scenario();
    let mut m = run::run(&s, false).await.expect("run");
    assert!(m.judge(&s.gates), "{}", m.summary());
    let v = &m.verification;
    assert!(v.payments_checked > 1000, "{}", m.summary());
    assert!(v.ignored_checked > 100, "too few unhandled types to check they are ignored: {}", m.summary());
    let statuses = m.statuses.clone();
    assert!(["400", "401", "422"].iter().all(|code| statuses.get(*code).is_some_and(|n| *n > 0)), "every kind of refusal was sent: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_that_skips_the_stale_rule_is_caught_on_stripe_events() {
    let mut s = scenario();
    faulty::aim(&mut s, "--fault-skip-stale-rule");
    let mut m = run::run(&s, false).await.expect("run");
    assert!(!m.judge(&s.gates), "the oracle passed a wrong system: {}", m.summary());
    assert!(m.verification.wrong_payment_state > 0, "{}", m.summary());
}
