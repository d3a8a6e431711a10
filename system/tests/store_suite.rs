//! One store suite, every backend: the same checks against SQLite (a temp file), PostgreSQL
//! (a fresh database per test) and the simulator's store model, through the `Store`
//! interface the worker uses. The model stands in for both stores in every simulated
//! schedule; held to the same expectations here, it cannot drift from them.

mod common;

use std::sync::Arc;

use common::*;
use simulator::rng::Rng;
use simulator::store::{Kind, StoreFaults, StoreModel};
use simulator::trace::Trace;
use webhooks::domain::{CreateOutcome, EventType, NewOrder, PaymentEvent};
use webhooks::queue::Position;
use webhooks::store::postgres::PostgresStore;
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::{Applied, DeadLetter, DeadLetterFilter, Store};

/// Two handles on one database, as two workers would have.
struct Backend {
    name: &'static str,
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    db: Option<FreshDatabase>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    // One model, two handles: the model is one database in memory, whoever asks.
    let model: Arc<dyn Store> = Arc::new(StoreModel::new(Kind::Sqlite, Rng::new(1), StoreFaults::default(), Trace::default()));
    let mut out = vec![
        Backend {
            name: "sqlite",
            a: Arc::new(SqliteStore::open(&path).expect("sqlite")),
            b: Arc::new(SqliteStore::open(&path).expect("sqlite")),
            _dir: Some(dir),
            db: None,
        },
        Backend { name: "model", a: model.clone(), b: model, _dir: None, db: None },
    ];
    if let Some(admin) = postgres_url() {
        let db = FreshDatabase::create(&admin).await;
        out.push(Backend {
            name: "postgres",
            a: Arc::new(PostgresStore::connect(&db.url, 4).await.expect("postgres")),
            b: Arc::new(PostgresStore::connect(&db.url, 4).await.expect("postgres")),
            _dir: None,
            db: Some(db),
        });
    }
    out
}

async fn finish(backends: Vec<Backend>) {
    for b in backends {
        if let Some(db) = b.db {
            drop((b.a, b.b));
            db.drop_now().await;
        }
    }
}

fn ev(id: &str, t: EventType, payment: &str, order: &str, amount: i64) -> PaymentEvent {
    PaymentEvent { event_id: id.into(), event_type: t, payment_id: payment.into(), order_id: order.into(), amount, currency: "USD".into(), created_at: None, received_at_us: 1, request_id: None, traceparent: None }
}

fn order(id: &str, total: i64) -> NewOrder {
    NewOrder { id: id.into(), user_id: "u".into(), items: vec!["i".into()], total_amount: total, currency: "USD".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_out_of_order_and_positions() {
    let all = backends().await;
    for b in &all {
        let s = &b.a;
        assert_eq!(s.create_order(&order("o1", 100)).await.unwrap(), CreateOutcome::Created, "{}", b.name);
        let batch = [
            ev("e3", EventType::Refunded, "p1", "o1", 100),
            ev("e1", EventType::Pending, "p1", "o1", 100),
            ev("e1", EventType::Pending, "p1", "o1", 100),
            ev("e2", EventType::Success, "p1", "o1", 100),
        ];
        let out = s.apply_batch("c", &batch, &[Position { partition: 0, offset: 4 }]).await.unwrap();
        assert_eq!(out, [Applied::Applied, Applied::Stale, Applied::Duplicate, Applied::Stale], "{}", b.name);
        assert_eq!(s.apply_batch("c", &batch[..1], &[]).await.unwrap(), [Applied::Duplicate], "{}", b.name);
        let p = s.payment("p1").await.unwrap().unwrap();
        assert_eq!((p.status.as_str(), p.applied_events, p.events.len()), ("refunded", 3, 3), "{}", b.name);
        assert_eq!(s.order("o1").await.unwrap().unwrap().status, "refunded", "{}", b.name);
        assert_eq!(s.positions("c").await.unwrap(), [Position { partition: 0, offset: 4 }], "{}", b.name);
    }
    finish(all).await;
}

/// Positions commit with the batch or the dead letters that reached them; the log's position
/// is the highest any consumer of that log stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_commit_with_batches_and_dead_letters() {
    let all = backends().await;
    for b in &all {
        let s = &b.a;
        let at = |offset| [Position { partition: 0, offset }];
        s.apply_batch("w@log1", &[ev("q1", EventType::Success, "pq1", "oq", 10)], &at(3)).await.unwrap();
        let letter = DeadLetter::for_event(&ev("q2", EventType::Success, "pq2", "oq", 10), "store error: poison".into(), 3);
        s.dead_letter("x@log1", &[letter], &at(7)).await.unwrap();
        s.apply_batch("w@log2", &[], &at(50)).await.unwrap();
        assert_eq!(s.positions("w@log1").await.unwrap(), at(3), "{}", b.name);
        assert_eq!(s.positions("x@log1").await.unwrap(), at(7), "{}", b.name);
        assert_eq!(s.positions("nobody@log1").await.unwrap(), Vec::<Position>::new(), "{}", b.name);
        let logs = (s.log_position("log1").await.unwrap(), s.log_position("log2").await.unwrap(), s.log_position("log3").await.unwrap());
        assert_eq!(logs, (7, 50, 0), "{}", b.name);
        s.apply_batch("w@log1", &[ev("q1", EventType::Success, "pq1", "oq", 10)], &at(9)).await.unwrap();
        assert_eq!((s.positions("w@log1").await.unwrap(), s.log_position("log1").await.unwrap()), (at(9).to_vec(), 9), "{}: a duplicate's batch still moves the position", b.name);
        let (n, letters) = s.dead_letters(&DeadLetterFilter::default()).await.unwrap();
        assert_eq!((n, letters[0].event_id.as_str(), letters[0].attempts), (1, "q2", 3), "{}", b.name);
    }
    finish(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_mismatches_late_orders_and_conflicts() {
    let all = backends().await;
    for b in &all {
        let s = &b.a;
        s.create_order(&order("o2", 100)).await.unwrap();
        assert_eq!(s.create_order(&order("o2", 100)).await.unwrap(), CreateOutcome::AlreadyExists);
        assert_eq!(s.create_order(&order("o2", 101)).await.unwrap(), CreateOutcome::Conflict);
        s.apply_batch("c", &[ev("m1", EventType::Success, "p2", "o2", 99)], &[]).await.unwrap();
        assert_eq!(s.order("o2").await.unwrap().unwrap().status, "payment_mismatch", "{}", b.name);
        s.apply_batch("c", &[ev("l1", EventType::Success, "p3", "o3", 50)], &[]).await.unwrap();
        assert!(s.order("o3").await.unwrap().is_none());
        s.create_order(&order("o3", 50)).await.unwrap();
        assert_eq!(s.order("o3").await.unwrap().unwrap().status, "paid", "{}: a late order picks up its payment", b.name);
        let out = s.apply_batch("c", &[ev("x1", EventType::Success, "p3", "other", 50)], &[]).await.unwrap();
        assert!(matches!(out[0], Applied::DeadLettered(_)), "{}", b.name);
        let (n, items) = s.dead_letters(&DeadLetterFilter::default()).await.unwrap();
        assert_eq!((n, items[0].event_id.as_str()), (1, "x1"), "{}", b.name);
        // Replayed, and dead-lettered again before the replay was noted: it stays waiting.
        s.apply_batch("c", &[ev("x1", EventType::Success, "p3", "other", 50)], &[]).await.unwrap();
        s.mark_replayed(&[(items[0].id, items[0].attempts)]).await.unwrap();
        assert_eq!(s.dead_letters(&DeadLetterFilter::default()).await.unwrap().0, 1, "{}: failed again since it was listed", b.name);
        let (_, again) = s.dead_letters(&DeadLetterFilter::default()).await.unwrap();
        s.mark_replayed(&[(again[0].id, again[0].attempts)]).await.unwrap();
        assert_eq!(s.dead_letters(&DeadLetterFilter::default()).await.unwrap().0, 0, "{}", b.name);
        assert!(s.ping().await.is_ok());
    }
    finish(all).await;
}

/// The console shows a payment's dead letters among its events and filters the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_filter_by_payment_order_and_error() {
    let all = backends().await;
    for b in &all {
        let s = &b.a;
        let letters = [
            DeadLetter::for_event(&ev("d1", EventType::Success, "pa", "oa", 10), "conflict: event id reused with another payload".into(), 1),
            DeadLetter::for_event(&ev("d2", EventType::Success, "pa", "oa", 10), "payment belongs to another order".into(), 1),
            DeadLetter::for_event(&ev("d3", EventType::Success, "pb", "ob", 10), "conflict: event id reused with another payload".into(), 1),
        ];
        s.dead_letter("c", &letters, &[]).await.unwrap();
        let ids = |f: DeadLetterFilter| async move {
            let (n, items) = s.dead_letters(&f).await.unwrap();
            (n, items.into_iter().map(|d| d.event_id).collect::<Vec<_>>())
        };
        let of = |p: &str| DeadLetterFilter { payment_id: Some(p.into()), ..Default::default() };
        assert_eq!(ids(of("pa")).await, (2, vec!["d2".into(), "d1".into()]), "{}", b.name);
        assert_eq!(ids(of("nobody")).await, (0, vec![]), "{}", b.name);
        let by_order = DeadLetterFilter { order_id: Some("ob".into()), ..Default::default() };
        assert_eq!(ids(by_order).await, (1, vec!["d3".into()]), "{}", b.name);
        let conflicts = DeadLetterFilter { error_prefix: Some("conflict:".into()), limit: Some(1), ..Default::default() };
        assert_eq!(ids(conflicts).await, (2, vec!["d3".into()]), "{}: count is of all matches, items up to the limit", b.name);
        let both = DeadLetterFilter { error_prefix: Some("conflict:".into()), payment_id: Some("pa".into()), ..Default::default() };
        assert_eq!(ids(both).await, (1, vec!["d1".into()]), "{}", b.name);
    }
    finish(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_racing_on_the_same_events_apply_each_once() {
    let all = backends().await;
    for b in &all {
        for round in 0..20 {
            let e = [ev(&format!("r{round}"), EventType::Success, &format!("pr{round}"), "or", 10)];
            let (x, y) = tokio::join!(b.a.apply_batch("w1", &e, &[]), b.b.apply_batch("w2", &e, &[]));
            let outcomes = [x.unwrap().remove(0), y.unwrap().remove(0)];
            assert!(outcomes.contains(&Applied::Applied) && outcomes.contains(&Applied::Duplicate), "{}: {outcomes:?}", b.name);
            let p = b.a.payment(&format!("pr{round}")).await.unwrap().unwrap();
            assert_eq!((p.applied_events, p.events.len()), (1, 1), "{}", b.name);
        }
        // Overlapping batches over shared payments, in opposite orders: exactly once, right states.
        let events: Vec<PaymentEvent> = (0..200)
            .flat_map(|i| [ev(&format!("b{i}-1"), EventType::Pending, &format!("pb{}", i % 50), "ob", 10), ev(&format!("b{i}-2"), EventType::Success, &format!("pb{}", i % 50), "ob", 10)])
            .collect();
        let mut reversed = events.clone();
        reversed.reverse();
        let (x, y) = tokio::join!(b.a.apply_batch("w1", &events, &[]), b.b.apply_batch("w2", &reversed, &[]));
        let applied = |o: Vec<Applied>| o.into_iter().filter(|a| !matches!(a, Applied::Duplicate)).count();
        assert_eq!(applied(x.unwrap()) + applied(y.unwrap()), events.len(), "{}: every event processed by exactly one store", b.name);
        for i in 0..50 {
            let p = b.a.payment(&format!("pb{i}")).await.unwrap().unwrap();
            assert_eq!((p.status.as_str(), p.applied_events, p.events.len()), ("success", 8, 8), "{}", b.name);
        }
    }
    finish(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_rank_disagreements_settle_on_the_smaller_pair_in_any_order() {
    let all = backends().await;
    for b in &all {
        let s = &b.a;
        for (payment, order_id, amounts) in [("pc", "oc", [100, 90]), ("pd", "od", [90, 100])] {
            s.create_order(&order(order_id, 100)).await.unwrap();
            for (n, amount) in amounts.into_iter().enumerate() {
                s.apply_batch("c", &[ev(&format!("{payment}{n}"), EventType::Success, payment, order_id, amount)], &[]).await.unwrap();
            }
            let p = s.payment(payment).await.unwrap().unwrap();
            assert_eq!((p.status.as_str(), p.amount, p.applied_events), ("success", 90, 2), "{}: {payment}", b.name);
            assert_eq!(p.events.iter().find(|e| e.event_id == format!("{payment}1")).unwrap().outcome, "conflict", "{}", b.name);
            assert_eq!(s.order(order_id).await.unwrap().unwrap().status, "payment_conflict", "{}: {payment}", b.name);
            let again = s.apply_batch("c", &[ev(&format!("{payment}1"), EventType::Success, payment, order_id, amounts[1])], &[]).await.unwrap();
            assert_eq!(again, [Applied::Duplicate], "{}: the conflicting event redelivered", b.name);
        }
        // A refund is the next rank: it defines the payment and wins on the order.
        s.apply_batch("c", &[ev("pc-refund", EventType::Refunded, "pc", "oc", 100)], &[]).await.unwrap();
        let p = s.payment("pc").await.unwrap().unwrap();
        assert_eq!((p.status.as_str(), p.amount), ("refunded", 100), "{}", b.name);
        assert_eq!(s.order("oc").await.unwrap().unwrap().status, "refunded", "{}", b.name);
    }
    finish(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_reused_for_another_event_is_dead_lettered_not_dropped() {
    let all = backends().await;
    for b in &all {
        let s = &b.a;
        s.create_order(&order("or1", 100)).await.unwrap();
        s.apply_batch("c", &[ev("reused", EventType::Success, "pr1", "or1", 100)], &[]).await.unwrap();
        let batch = [
            ev("reused", EventType::Success, "pr1", "or1", 100),
            ev("reused", EventType::Success, "pr1", "or1", 1),
            ev("reused", EventType::Refunded, "pr2", "or1", 100),
            ev("fresh", EventType::Pending, "pr3", "or1", 5),
            ev("fresh", EventType::Pending, "pr3", "or1", 6),
        ];
        let out = s.apply_batch("c", &batch, &[]).await.unwrap();
        assert_eq!(out[0], Applied::Duplicate, "{}: the identical event again", b.name);
        for (i, o) in out.iter().enumerate().skip(1).filter(|(i, _)| *i != 3) {
            assert!(!matches!(o, Applied::Duplicate | Applied::Applied | Applied::Stale), "{}: event {i} must not vanish: {o:?}", b.name);
        }
        let (n, letters) = s.dead_letters(&DeadLetterFilter::default()).await.unwrap();
        assert_eq!(n, 2, "{}: one letter per reused id, updated on repeat: {letters:?}", b.name);
        assert!(letters.iter().all(|l| l.error.starts_with("conflict: event id reused")), "{}: {letters:?}", b.name);
        let p = s.payment("pr1").await.unwrap().unwrap();
        assert_eq!((p.status.as_str(), p.amount, p.applied_events), ("success", 100, 1), "{}: nothing applied", b.name);
        assert!(s.payment("pr2").await.unwrap().is_none(), "{}", b.name);
        assert_eq!(s.payment("pr3").await.unwrap().unwrap().amount, 5, "{}", b.name);
    }
    finish(all).await;
}

/// The same events, all with distinct ids, in two arrival orders and batchings, one with the
/// orders created first and one with them created after their payments: the same final state.
#[test]
fn final_state_does_not_depend_on_arrival_order() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let all = rt.block_on(backends());
    let types = [EventType::Pending, EventType::Failed, EventType::Success, EventType::Refunded];
    let one = (0..4usize, 0..4usize, prop_oneof![Just(100i64), Just(90)], prop_oneof![Just("USD"), Just("EUR")]);
    let events = proptest::collection::vec(one, 1..24).prop_flat_map(|v| {
        let n = v.len();
        (Just(v), Just((0..n).collect::<Vec<_>>()).prop_shuffle(), 1..8usize, 1..8usize)
    });
    let mut runner = TestRunner::new(Config { cases: 32, failure_persistence: None, ..Config::default() });
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&events, |(raw, shuffle, first_batch, second_batch)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(async {
                for b in &all {
                    let make = |side: &str| -> Vec<PaymentEvent> {
                        raw.iter()
                            .enumerate()
                            .map(|(i, &(t, p, amount, currency))| PaymentEvent {
                                currency: currency.into(),
                                ..ev(&format!("c{case}{side}e{i}"), types[t], &format!("c{case}{side}p{p}"), &format!("c{case}{side}o{}", p % 2), amount)
                            })
                            .collect()
                    };
                    let early = make("a");
                    let late: Vec<PaymentEvent> = shuffle.iter().map(|&i| make("b")[i].clone()).collect();
                    for o in 0..2 {
                        b.a.create_order(&order(&format!("c{case}ao{o}"), 100)).await.expect("order");
                    }
                    for chunk in early.chunks(first_batch) {
                        b.a.apply_batch("c", chunk, &[]).await.expect("apply");
                    }
                    for chunk in late.chunks(second_batch) {
                        b.b.apply_batch("c", chunk, &[]).await.expect("apply");
                    }
                    for o in 0..2 {
                        b.b.create_order(&order(&format!("c{case}bo{o}"), 100)).await.expect("order");
                    }
                    for n in 0..4 {
                        let key = |v: Option<webhooks::store::PaymentView>| v.map(|p| (p.status, p.amount, p.currency, p.applied_events));
                        let (x, y) = (b.a.payment(&format!("c{case}ap{n}")).await.expect("read"), b.a.payment(&format!("c{case}bp{n}")).await.expect("read"));
                        prop_assert_eq!(key(x), key(y), "{}: payment {}", b.name, n);
                    }
                    for n in 0..2 {
                        let (x, y) = (b.a.order(&format!("c{case}ao{n}")).await.expect("read"), b.a.order(&format!("c{case}bo{n}")).await.expect("read"));
                        prop_assert_eq!(x.map(|o| o.status), y.map(|o| o.status), "{}: order {}", b.name, n);
                    }
                }
                Ok(())
            })
        })
        .expect("arrival order does not matter");
    rt.block_on(finish(all));
}

/// Whole batches against one event per batch, on a separate SQLite store: the same outcome
/// for every event and the same final rows, for random streams with repeats, out-of-order
/// types, unknown orders and payments that claim the wrong order.
#[test]
fn batches_decide_as_event_by_event_does() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let all = rt.block_on(backends());
    let types = [EventType::Pending, EventType::Failed, EventType::Success, EventType::Refunded];
    let stream = proptest::collection::vec((0..4usize, 0..6usize, 0..4usize, prop_oneof![Just(100i64), Just(90)], 0..30usize, 0..4usize, prop_oneof![Just("USD"), Just("EUR")]), 1..60);
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    // Every case gets ids of its own, so that the stores need no reset between cases.
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&(stream, 1..40usize), |(raw, batch_size)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = |kind: &str, n: usize| format!("c{case}{kind}{n}");
            // Events repeat an earlier one when `back` points back into the stream, some of
            // them reusing its id for another amount or type.
            let mut events: Vec<PaymentEvent> = Vec::new();
            for (i, &(t, p, o, amount, back, reuse, currency)) in raw.iter().enumerate() {
                let e = match events.get(i.wrapping_sub(1 + back)) {
                    Some(earlier) if back < 5 && reuse == 0 => PaymentEvent { amount: earlier.amount + 1, ..earlier.clone() },
                    Some(earlier) if back < 5 && reuse == 1 => PaymentEvent { event_type: types[t], ..earlier.clone() },
                    Some(earlier) if back < 5 => earlier.clone(),
                    _ => PaymentEvent { currency: currency.into(), ..ev(&id("e", i), types[t], &id("p", p), &id("o", (p + o / 3) % 4), amount) },
                };
                events.push(e);
            }
            rt.block_on(async {
                let dir = tempfile::tempdir().expect("temp dir");
                let reference = SqliteStore::open(&dir.path().join("ref.db")).expect("sqlite");
                // Orders 0..3 exist, order 3 never does.
                let stores = all.iter().map(|b| &*b.a).chain([&reference as &dyn Store]);
                for s in stores {
                    for o in 0..3 {
                        s.create_order(&order(&id("o", o), 100)).await.expect("order");
                    }
                }
                let mut expected = Vec::new();
                for e in &events {
                    expected.extend(reference.apply_batch("ref", std::slice::from_ref(e), &[]).await.expect("apply"));
                }
                for b in &all {
                    let mut got = Vec::new();
                    for chunk in events.chunks(batch_size) {
                        got.extend(b.a.apply_batch("c", chunk, &[]).await.expect("apply"));
                    }
                    prop_assert_eq!(&got, &expected, "{}: outcomes", b.name);
                    for n in 0..6 {
                        let (x, y) = (b.a.payment(&id("p", n)).await.expect("read"), reference.payment(&id("p", n)).await.expect("read"));
                        let key = |v: Option<webhooks::store::PaymentView>| v.map(|p| (p.status, p.amount, p.currency, p.applied_events, p.events.len()));
                        prop_assert_eq!(key(x), key(y), "{}: payment {}", b.name, n);
                    }
                    for n in 0..4 {
                        let (x, y) = (b.a.order(&id("o", n)).await.expect("read"), reference.order(&id("o", n)).await.expect("read"));
                        prop_assert_eq!(x.map(|o| o.status), y.map(|o| o.status), "{}: order {}", b.name, n);
                    }
                }
                Ok(())
            })
        })
        .expect("batches and single events agree");
    rt.block_on(finish(all));
}
