//! Retention over both stores: old records of applied events and old replayed dead letters
//! are purged; recent ones, and dead letters waiting for an operator, are kept.

mod common;

use std::sync::Arc;

use common::*;
use webhooks::domain::{EventType, PaymentEvent};
use webhooks::queue::Position;
use webhooks::store::postgres::PostgresStore;
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::{now_us, DeadLetter, DeadLetterFilter, Purged, Store};

fn ev(id: &str, payment: &str) -> PaymentEvent {
    PaymentEvent {
        event_id: id.into(),
        event_type: EventType::Pending,
        payment_id: payment.into(),
        order_id: format!("o-{payment}"),
        amount: 100,
        currency: "USD".into(),
        created_at: None,
        received_at_us: 1,
        request_id: None,
        traceparent: None,
    }
}

fn letter(id: &str) -> DeadLetter {
    DeadLetter::for_event(&ev(id, &format!("dl-{id}")), "failed".into(), 8)
}

async fn purges_what_is_past_retention_and_keeps_the_rest(store: Arc<dyn Store>) {
    let old: Vec<_> = (0..12).map(|i| ev(&format!("old{i}"), &format!("p{i}"))).collect();
    store.apply_batch("w", &old, &[Position { partition: 0, offset: 12 }]).await.expect("apply");
    store.dead_letter("w", &[letter("d1"), letter("d2")], &[]).await.expect("dead letters");
    let (_, listed) = store.dead_letters(&DeadLetterFilter::default()).await.expect("list");
    let replayed = listed.iter().find(|d| d.event_id == "d1").expect("d1");
    store.mark_replayed(&[(replayed.id, replayed.attempts)]).await.expect("replayed");

    let cut = now_us() + 1;
    let recent = ev("recent", "p0");
    store.apply_batch("w", std::slice::from_ref(&recent), &[Position { partition: 0, offset: 13 }]).await.expect("apply later");
    let purged = store.purge(Some(cut - 1), Some(cut)).await.expect("purge");
    assert_eq!(purged, Purged { applied_events: 12, dead_letters: 1 });
    assert_eq!(store.purge(Some(cut - 1), Some(cut)).await.expect("again"), Purged::default(), "nothing left to purge");

    let p0 = store.payment("p0").await.expect("read").expect("payments are kept");
    let ids: Vec<_> = p0.events.iter().map(|e| e.event_id.as_str()).collect();
    assert!(!ids.contains(&"old0"), "{ids:?}");
    let (_, left) = store.dead_letters(&DeadLetterFilter { include_replayed: true, ..Default::default() }).await.expect("list");
    assert_eq!(left.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["d2"], "a dead letter never replayed waits for an operator");
    assert_eq!(store.purge(None, None).await.expect("nothing asked"), Purged::default());
}

#[tokio::test]
async fn sqlite_purges_past_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("sqlite"));
    purges_what_is_past_retention_and_keeps_the_rest(store).await;
}

#[tokio::test]
async fn postgres_purges_past_retention() {
    let Some(admin) = postgres_url() else { return };
    let db = FreshDatabase::create(&admin).await;
    let store = Arc::new(PostgresStore::connect(&db.url, 2).await.expect("postgres"));
    purges_what_is_past_retention_and_keeps_the_rest(store.clone()).await;
    drop(store);
    db.drop_now().await;
}
