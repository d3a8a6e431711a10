//! Refunds, partial refunds and disputes (the states Stripe's events brought) on every store:
//! whatever order their events arrive in, and in whatever batches, one final payment and order.

mod common;

use std::sync::Arc;

use common::*;
use webhooks::domain::{EventType, NewOrder, PaymentEvent};
use webhooks::store::postgres::PostgresStore;
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::Store;

async fn stores() -> (Vec<(&'static str, Arc<dyn Store>)>, Option<FreshDatabase>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out: Vec<(&'static str, Arc<dyn Store>)> = vec![("sqlite", Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("sqlite")))];
    let mut db = None;
    if let Some(admin) = postgres_url() {
        let fresh = FreshDatabase::create(&admin).await;
        out.push(("postgres", Arc::new(PostgresStore::connect(&fresh.url, 4).await.expect("postgres"))));
        db = Some(fresh);
    }
    (out, db, dir)
}

fn new_order(id: &str) -> NewOrder {
    NewOrder { id: id.into(), user_id: "u".into(), items: vec!["i".into()], total_amount: 2000, currency: "USD".into() }
}

/// Every event type, two payments over one order, amounts that agree or not: the events in
/// their generated order against a shuffle, batched differently, the order created before the
/// first run and after the second.
#[test]
fn refunds_and_disputes_settle_the_same_in_any_arrival_order() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (all, db, _dir) = rt.block_on(stores());
    let types = EventType::ALL;
    let one = (0..types.len(), 0..2usize, prop_oneof![Just(2000i64), Just(1500)]);
    let events = proptest::collection::vec(one, 1..16).prop_flat_map(|v| {
        let n = v.len();
        (Just(v), Just((0..n).collect::<Vec<_>>()).prop_shuffle(), 1..6usize, 1..6usize)
    });
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&events, |(raw, shuffle, first_batch, second_batch)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(async {
                for (name, s) in &all {
                    let make = |side: &str| -> Vec<PaymentEvent> {
                        raw.iter()
                            .enumerate()
                            .map(|(i, &(t, p, amount))| PaymentEvent {
                                event_id: format!("evt_{case}{side}{i}"),
                                event_type: types[t],
                                payment_id: format!("pi_{case}{side}{p}"),
                                order_id: format!("o{case}{side}"),
                                amount,
                                currency: "USD".into(),
                                created_at: Some(i as i64),
                                received_at_us: 1,
                                request_id: None,
                                traceparent: None,
                            })
                            .collect()
                    };
                    let early = make("a");
                    let late: Vec<PaymentEvent> = shuffle.iter().map(|&i| make("b")[i].clone()).collect();
                    s.create_order(&new_order(&format!("o{case}a"))).await.expect("order");
                    for chunk in early.chunks(first_batch) {
                        s.apply_batch("c", chunk, &[]).await.expect("apply");
                    }
                    for chunk in late.chunks(second_batch) {
                        s.apply_batch("c", chunk, &[]).await.expect("apply");
                    }
                    s.create_order(&new_order(&format!("o{case}b"))).await.expect("order");
                    for p in 0..2 {
                        let key = |v: Option<webhooks::store::PaymentView>| v.map(|p| (p.status, p.amount, p.conflicted));
                        let a = s.payment(&format!("pi_{case}a{p}")).await.expect("read");
                        let b = s.payment(&format!("pi_{case}b{p}")).await.expect("read");
                        prop_assert_eq!(key(a), key(b), "{}: payment {}", name, p);
                    }
                    let a = s.order(&format!("o{case}a")).await.expect("read").map(|o| o.status);
                    let b = s.order(&format!("o{case}b")).await.expect("read").map(|o| o.status);
                    prop_assert_eq!(a, b, "{}: order", name);
                }
                Ok(())
            })
        })
        .expect("arrival order does not matter");
    drop(all);
    if let Some(db) = db {
        rt.block_on(db.drop_now());
    }
}

/// The states are stored and read back under their names on every store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disputed_order_reads_back_as_disputed() {
    let (all, db, _dir) = stores().await;
    for (name, s) in &all {
        s.create_order(&new_order("od")).await.expect("order");
        let ev = |id: &str, t| PaymentEvent {
            event_id: id.into(),
            event_type: t,
            payment_id: "pi_d".into(),
            order_id: "od".into(),
            amount: 2000,
            currency: "USD".into(),
            created_at: None,
            received_at_us: 1,
            request_id: None,
            traceparent: None,
        };
        s.apply_batch("c", &[ev("e1", EventType::Success), ev("e2", EventType::PartiallyRefunded)], &[]).await.expect("apply");
        assert_eq!(s.order("od").await.expect("read").expect("order").status, "partially_refunded", "{name}");
        s.apply_batch("c", &[ev("e3", EventType::Disputed)], &[]).await.expect("apply");
        let p = s.payment("pi_d").await.expect("read").expect("payment");
        assert_eq!((p.status.as_str(), p.events.len()), ("disputed", 3), "{name}");
        assert_eq!(s.order("od").await.expect("read").expect("order").status, "disputed", "{name}");
    }
    drop(all);
    if let Some(db) = db {
        db.drop_now().await;
    }
}
