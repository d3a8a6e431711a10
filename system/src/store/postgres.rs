//! The PostgreSQL store: the same tables and semantics as SQLite, for many workers on many
//! machines. Each batch is one transaction of a fixed number of round trips whatever its
//! size: lock its keys, read the rows it touches, decide in memory ([`super::batch`]), write
//! one multi-row statement per table. Two workers racing on the same payment or order
//! serialize on transaction-scoped advisory locks taken in one global order (so they cannot
//! deadlock), and the `payment_events` primary key makes a second application of an event
//! impossible even if they did not.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use super::batch::{PaymentRow, Plan, Snapshot};
use super::schema::Upgrade;
use super::{Applied, ConsumerName, Purged, DeadLetter, DeadLetterFilter, DeadLetterView, EventRecord, OrderView, PaymentSummary, PaymentView, Store, StoreError};
use crate::domain::redelivery::Recorded;
use crate::domain::state::{status_from_payments, Outcome};
use crate::domain::{CreateOutcome, EventType, NewOrder, OrderStatus, OrderTerms, Payment, PaymentEvent, PaymentStatus};
use crate::queue::Position;

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE orders (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, items TEXT NOT NULL,
    total_amount BIGINT NOT NULL CHECK (total_amount >= 0), currency TEXT NOT NULL, status TEXT NOT NULL,
    created_at_us BIGINT NOT NULL, updated_at_us BIGINT NOT NULL
);
CREATE TABLE payments (
    id TEXT PRIMARY KEY, order_id TEXT NOT NULL, status TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0), currency TEXT NOT NULL, applied_events BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL, updated_at_us BIGINT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);
CREATE TABLE payment_events (
    event_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL, event_type TEXT NOT NULL, amount BIGINT NOT NULL,
    currency TEXT NOT NULL, outcome TEXT NOT NULL, received_at_us BIGINT NOT NULL, applied_at_us BIGINT NOT NULL
);
CREATE INDEX payment_events_by_payment ON payment_events (payment_id);
CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, payment_id TEXT, order_id TEXT, payload TEXT NOT NULL,
    error TEXT NOT NULL, attempts INTEGER NOT NULL, failed_at_us BIGINT NOT NULL, replayed_at_us BIGINT
);
CREATE INDEX dead_letters_by_time ON dead_letters (failed_at_us);
CREATE TABLE consumer_positions (
    consumer TEXT NOT NULL, partition INTEGER NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (consumer, partition)
);
"#,
    // Two events of one rank disagreed on amount or currency (domain::state::same_rank).
    "ALTER TABLE payments ADD COLUMN conflicted BOOLEAN NOT NULL DEFAULT FALSE;",
    // The provider's created time of the event that set the state (domain::state::precedence).
    "ALTER TABLE payments ADD COLUMN created BIGINT;",
];

/// Serializes concurrent start-ups migrating the same database.
const MIGRATION_LOCK: i64 = 0x7765_6268_6f6f_6b73;

pub struct PostgresStore {
    pool: Pool,
}

fn classify(e: tokio_postgres::Error) -> StoreError {
    // Display of tokio_postgres errors never includes the connection string.
    match e.code() {
        // I/O, closed connection, a refused TLS handshake: the causes say which.
        None => StoreError::Unavailable(with_causes(&e)),
        Some(c) if [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(c) => {
            StoreError::Unavailable(e.to_string())
        }
        // Connection exceptions, and insufficient resources (disk full, out of memory).
        Some(c) if c.code().starts_with("08") || c.code().starts_with("53") => StoreError::Unavailable(e.to_string()),
        Some(c) if [SqlState::T_R_SERIALIZATION_FAILURE, SqlState::T_R_DEADLOCK_DETECTED].contains(c) => {
            StoreError::Transient(e.to_string())
        }
        Some(_) => StoreError::Permanent(e.to_string()),
    }
}

/// An error and its causes ("error performing TLS handshake: ... certificate verify failed").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => classify(e),
        other => StoreError::Transient(other.to_string()),
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Permanent(format!("unknown {what} {value:?} in the database"))
}

impl PostgresStore {
    /// Connects and brings the schema up to date (`webhooks migrate`, `standalone`); refuses a
    /// schema newer than this binary knows.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect_as(url, pool_size, Upgrade::Migrate).await
    }

    /// Connects, creating the schema in an empty database; an older schema is migrated or
    /// refused, as `upgrade` says.
    pub async fn connect_as(url: &str, pool_size: usize, upgrade: Upgrade) -> Result<Self, StoreError> {
        let store = Self::connect_lazily(url, pool_size)?;
        store.migrate(upgrade).await?;
        Ok(store)
    }

    /// A pool that connects on first use, without migrating: for a role that must start and
    /// serve while the database is away (a Kafka-mode server acknowledges without it).
    pub fn connect_lazily(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let (config, tls) = super::postgres_tls::config(url)?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(pool_size.max(1)).build().map_err(|e| StoreError::Permanent(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The TLS version of a connection of the pool, `None` when it is not encrypted.
    pub async fn tls_version(&self) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client.query_opt("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl", &[]).await.map_err(classify)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let v: i32 = client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[]).await.map_err(classify)?.get(0);
        Ok(v as u32)
    }

    async fn migrate(&self, upgrade: Upgrade) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(classify)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(classify)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").await.map_err(classify)?;
        let current: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[]).await.map_err(classify)?.get(0);
        super::schema::check(current as u32, MIGRATIONS.len(), upgrade)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.batch_execute(sql).await.map_err(classify)?;
            tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&(i as i32 + 1)]).await.map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }
}

/// Locks every key once, in one global order, for the rest of the transaction, in one round
/// trip. Since PostgreSQL 9.6 a volatile function in the select list runs after the sort, so
/// the locks are taken in hash order by every worker, and two workers cannot deadlock.
async fn lock_keys(tx: &Transaction<'_>, keys: Vec<String>) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k) AS keys ORDER BY h",
        &[&keys],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

/// The rows the batch touches, in three pipelined queries.
async fn read_snapshot(tx: &Transaction<'_>, events: &[PaymentEvent]) -> Result<Snapshot, StoreError> {
    let event_ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let payment_ids: Vec<&str> = events.iter().map(|e| e.payment_id.as_str()).collect();
    let order_ids: Vec<&str> = events.iter().map(|e| e.order_id.as_str()).collect();
    // Bound first: the pipelined futures borrow their parameters.
    let (e, p, o): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) = ([&event_ids], [&payment_ids], [&order_ids]);
    // A recorded event's order is its payment's: a payment never moves to another order.
    let (recorded, payments, orders) = tokio::try_join!(
        tx.query(
            "SELECT e.event_id, e.payment_id, p.order_id, e.event_type, e.amount, e.currency
             FROM payment_events e JOIN payments p ON p.id = e.payment_id WHERE e.event_id = ANY($1)",
            &e
        ),
        tx.query("SELECT id, order_id, status, amount, currency, conflicted, created FROM payments WHERE id = ANY($1)", &p),
        tx.query("SELECT id, total_amount, currency, status FROM orders WHERE id = ANY($1)", &o),
    )
    .map_err(classify)?;
    let payments = payments
        .iter()
        .map(|r| {
            let status: String = r.get(2);
            let status = PaymentStatus::parse(&status).ok_or_else(|| corrupt("payment status", &status))?;
            Ok((r.get(0), Payment { order_id: r.get(1), status, amount: r.get(3), currency: r.get(4), conflicted: r.get(5), created: r.get(6) }))
        })
        .collect::<Result<_, StoreError>>()?;
    let recorded = recorded
        .iter()
        .map(|r| {
            let event_type: String = r.get(3);
            let event_type = EventType::parse(&event_type).ok_or_else(|| corrupt("event type", &event_type))?;
            Ok((r.get(0), Recorded { payment_id: r.get(1), order_id: r.get(2), event_type, amount: r.get(4), currency: r.get(5) }))
        })
        .collect::<Result<_, StoreError>>()?;
    let orders = orders
        .iter()
        .map(|r| {
            let status: String = r.get(3);
            let status = OrderStatus::parse(&status).ok_or_else(|| corrupt("order status", &status))?;
            Ok((r.get(0), OrderTerms { total_amount: r.get(1), currency: r.get(2), status }))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Snapshot { recorded, payments, orders })
}

async fn insert_dead_letter(tx: &Transaction<'_>, d: &DeadLetter, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO dead_letters (event_id, payment_id, order_id, payload, error, attempts, failed_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, failed_at_us = excluded.failed_at_us,
             attempts = dead_letters.attempts + excluded.attempts, replayed_at_us = NULL",
        &[&d.event_id, &d.payment_id, &d.order_id, &d.payload, &d.error, &(d.attempts as i32), &now],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

/// The batch's net effect in one multi-row statement per table, pipelined.
async fn write_plan(tx: &Transaction<'_>, plan: &Plan<'_>, now: i64) -> Result<(), StoreError> {
    let dead_letters = async {
        for d in &plan.dead_letters {
            insert_dead_letter(tx, d, now).await?;
        }
        Ok(())
    };
    tokio::try_join!(upsert_payments(tx, &plan.payments, now), insert_events(tx, &plan.events, now), update_orders(tx, &plan.orders, now), dead_letters)?;
    Ok(())
}

async fn upsert_payments(tx: &Transaction<'_>, rows: &[PaymentRow], now: i64) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let orders: Vec<&str> = rows.iter().map(|r| r.payment.order_id.as_str()).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.payment.status.as_str()).collect();
    let amounts: Vec<i64> = rows.iter().map(|r| r.payment.amount).collect();
    let currencies: Vec<&str> = rows.iter().map(|r| r.payment.currency.as_str()).collect();
    let recorded: Vec<i64> = rows.iter().map(|r| r.recorded).collect();
    let conflicted: Vec<bool> = rows.iter().map(|r| r.payment.conflicted).collect();
    let created: Vec<Option<i64>> = rows.iter().map(|r| r.payment.created).collect();
    tx.execute(
        "INSERT INTO payments (id, order_id, status, amount, currency, applied_events, conflicted, created, created_at_us, updated_at_us)
         SELECT id, order_id, status, amount, currency, n, conflicted, created, $8, $8
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bool[], $9::bigint[])
             AS u(id, order_id, status, amount, currency, n, conflicted, created)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, amount = excluded.amount, currency = excluded.currency,
             conflicted = excluded.conflicted, created = excluded.created,
             applied_events = payments.applied_events + excluded.applied_events, updated_at_us = excluded.updated_at_us",
        &[&ids, &orders, &statuses, &amounts, &currencies, &recorded, &conflicted, &now, &created],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

async fn insert_events(tx: &Transaction<'_>, rows: &[(&PaymentEvent, Outcome)], now: i64) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|(e, _)| e.event_id.as_str()).collect();
    let payments: Vec<&str> = rows.iter().map(|(e, _)| e.payment_id.as_str()).collect();
    let types: Vec<&str> = rows.iter().map(|(e, _)| e.event_type.as_str()).collect();
    let amounts: Vec<i64> = rows.iter().map(|(e, _)| e.amount).collect();
    let currencies: Vec<&str> = rows.iter().map(|(e, _)| e.currency.as_str()).collect();
    let outcomes: Vec<&str> = rows.iter().map(|(_, o)| o.as_str()).collect();
    let received: Vec<i64> = rows.iter().map(|(e, _)| e.received_at_us).collect();
    tx.execute(
        "INSERT INTO payment_events (event_id, payment_id, event_type, amount, currency, outcome, received_at_us, applied_at_us)
         SELECT *, $8 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[])",
        &[&ids, &payments, &types, &amounts, &currencies, &outcomes, &received, &now],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

async fn update_orders(tx: &Transaction<'_>, rows: &[(String, OrderStatus)], now: i64) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let statuses: Vec<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
    tx.execute(
        "UPDATE orders AS o SET status = u.status, updated_at_us = $3 FROM unnest($1::text[], $2::text[]) AS u(id, status) WHERE o.id = u.id",
        &[&ids, &statuses, &now],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

async fn save_positions(tx: &Transaction<'_>, consumer: &str, positions: &[Position]) -> Result<(), StoreError> {
    for p in positions {
        tx.execute(
            "INSERT INTO consumer_positions (consumer, partition, position) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, partition) DO UPDATE SET position = excluded.position",
            &[&consumer, &p.partition, &p.offset],
        )
        .await
        .map_err(classify)?;
    }
    Ok(())
}

async fn payments_of_order(c: &impl deadpool_postgres::GenericClient, order_id: &str) -> Result<Vec<(String, Payment)>, StoreError> {
    let rows = c.query("SELECT id, status, amount, currency, conflicted, created FROM payments WHERE order_id = $1 ORDER BY id", &[&order_id]).await.map_err(classify)?;
    rows.iter()
        .map(|r| {
            let status: String = r.get(1);
            let status = PaymentStatus::parse(&status).ok_or_else(|| corrupt("payment status", &status))?;
            Ok((r.get(0), Payment { order_id: order_id.to_owned(), status, amount: r.get(2), currency: r.get(3), conflicted: r.get(4), created: r.get(5) }))
        })
        .collect()
}

#[async_trait]
impl Store for PostgresStore {
    async fn apply_batch(&self, consumer: &ConsumerName, events: &[PaymentEvent], positions: &[Position]) -> Result<Vec<Applied>, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(classify)?;
        let keys = events.iter().flat_map(|e| [format!("p:{}", e.payment_id), format!("o:{}", e.order_id)]).collect();
        lock_keys(&tx, keys).await?;
        let plan = read_snapshot(&tx, events).await?.plan(events);
        write_plan(&tx, &plan, super::now_us()).await?;
        save_positions(&tx, consumer, positions).await?;
        tx.commit().await.map_err(classify)?;
        Ok(plan.outcomes)
    }

    async fn dead_letter(&self, consumer: &ConsumerName, letters: &[DeadLetter], positions: &[Position]) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(classify)?;
        let now = super::now_us();
        for d in letters {
            insert_dead_letter(&tx, d, now).await?;
        }
        save_positions(&tx, consumer, positions).await?;
        tx.commit().await.map_err(classify)
    }

    async fn positions(&self, consumer: &ConsumerName) -> Result<Vec<Position>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client.query("SELECT partition, position FROM consumer_positions WHERE consumer = $1", &[&consumer]).await.map_err(classify)?;
        Ok(rows.iter().map(|r| Position { partition: r.get(0), offset: r.get(1) }).collect())
    }

    async fn log_position(&self, log_id: &str) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let pattern = format!("%@{log_id}");
        let sql = "SELECT COALESCE(MAX(position), 0) FROM consumer_positions WHERE consumer LIKE $1 AND partition = 0";
        let row = client.query_one(sql, &[&pattern]).await.map_err(classify)?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn create_order(&self, o: &NewOrder) -> Result<CreateOutcome, StoreError> {
        let items = serde_json::to_string(&o.items).map_err(|e| StoreError::Permanent(e.to_string()))?;
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(classify)?;
        // The same lock a worker takes for this order: its payments cannot change meanwhile.
        lock_keys(&tx, vec![format!("o:{}", o.id)]).await?;
        if let Some(r) = tx.query_opt("SELECT user_id, items, total_amount, currency FROM orders WHERE id = $1", &[&o.id]).await.map_err(classify)? {
            let same = (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, i64>(2), r.get::<_, String>(3)) == (o.user_id.clone(), items, o.total_amount, o.currency.clone());
            return Ok(if same { CreateOutcome::AlreadyExists } else { CreateOutcome::Conflict });
        }
        let terms = OrderTerms { total_amount: o.total_amount, currency: o.currency.clone(), status: OrderStatus::Pending };
        let payments = payments_of_order(&tx, &o.id).await?;
        let status = status_from_payments(&terms, payments.iter().map(|(_, p)| p));
        let now = super::now_us();
        tx.execute(
            "INSERT INTO orders (id, user_id, items, total_amount, currency, status, created_at_us, updated_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            &[&o.id, &o.user_id, &items, &o.total_amount, &o.currency, &status.as_str(), &now],
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(CreateOutcome::Created)
    }

    async fn order(&self, id: &str) -> Result<Option<OrderView>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let Some(r) = client.query_opt("SELECT user_id, items, total_amount, currency, status FROM orders WHERE id = $1", &[&id]).await.map_err(classify)? else {
            return Ok(None);
        };
        let items: String = r.get(1);
        let items: Vec<String> = serde_json::from_str(&items).map_err(|_| corrupt("items", &items))?;
        let payments = payments_of_order(&client, id)
            .await?
            .into_iter()
            .map(|(payment_id, p)| PaymentSummary::of(payment_id, p))
            .collect();
        Ok(Some(OrderView { id: id.into(), user_id: r.get(0), items, total_amount: r.get(2), currency: r.get(3), status: r.get(4), payments }))
    }

    async fn payment(&self, id: &str) -> Result<Option<PaymentView>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let Some(r) = client.query_opt("SELECT order_id, status, amount, currency, applied_events, conflicted FROM payments WHERE id = $1", &[&id]).await.map_err(classify)? else {
            return Ok(None);
        };
        let events = client
            .query(
                "SELECT event_id, event_type, outcome, received_at_us, applied_at_us FROM payment_events WHERE payment_id = $1 ORDER BY applied_at_us, event_id",
                &[&id],
            )
            .await
            .map_err(classify)?
            .iter()
            .map(|e| EventRecord { event_id: e.get(0), event_type: e.get(1), outcome: e.get(2), received_at_us: e.get(3), applied_at_us: e.get(4) })
            .collect();
        Ok(Some(PaymentView { id: id.into(), order_id: r.get(0), status: r.get(1), amount: r.get(2), currency: r.get(3), conflicted: r.get(5), applied_events: r.get(4), events }))
    }

    async fn dead_letters(&self, f: &DeadLetterFilter) -> Result<(u64, Vec<DeadLetterView>), StoreError> {
        const MATCH: &str = "($1::BIGINT IS NULL OR id = $1) AND ($2::BIGINT IS NULL OR failed_at_us >= $2) AND ($3 OR replayed_at_us IS NULL)
            AND ($4::TEXT IS NULL OR payment_id = $4) AND ($5::TEXT IS NULL OR order_id = $5) AND ($6::TEXT IS NULL OR left(error, length($6)) = $6)";
        let client = self.pool.get().await.map_err(pool_error)?;
        let count: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM dead_letters WHERE {MATCH}"), &[&f.id, &f.since_us, &f.include_replayed, &f.payment_id, &f.order_id, &f.error_prefix])
            .await
            .map_err(classify)?
            .get(0);
        let limit = i64::from(f.limit());
        let rows = client
            .query(
                &format!("SELECT id, event_id, payment_id, order_id, error, attempts, failed_at_us, payload, replayed_at_us FROM dead_letters WHERE {MATCH} ORDER BY id DESC LIMIT $7"),
                &[&f.id, &f.since_us, &f.include_replayed, &f.payment_id, &f.order_id, &f.error_prefix, &limit],
            )
            .await
            .map_err(classify)?;
        let items = rows
            .iter()
            .map(|r| DeadLetterView {
                id: r.get(0),
                event_id: r.get(1),
                payment_id: r.get(2),
                order_id: r.get(3),
                error: r.get(4),
                attempts: r.get::<_, i32>(5) as u32,
                failed_at_us: r.get(6),
                payload: r.get(7),
                replayed_at_us: r.get(8),
            })
            .collect();
        Ok((count as u64, items))
    }

    async fn mark_replayed(&self, letters: &[(i64, u32)]) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let ids: Vec<i64> = letters.iter().map(|l| l.0).collect();
        let attempts: Vec<i32> = letters.iter().map(|l| l.1 as i32).collect();
        let sql = "UPDATE dead_letters d SET replayed_at_us = $1 FROM UNNEST($2::BIGINT[], $3::INT[]) AS l(id, attempts)
                   WHERE d.id = l.id AND d.attempts = l.attempts";
        client.execute(sql, &[&super::now_us(), &ids, &attempts]).await.map_err(classify)?;
        Ok(())
    }

    async fn purge(&self, applied_before_us: Option<i64>, replayed_before_us: Option<i64>) -> Result<Purged, StoreError> {
        let events = "DELETE FROM payment_events WHERE ctid IN (SELECT ctid FROM payment_events WHERE applied_at_us < $1 LIMIT $2)";
        let letters = "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE replayed_at_us < $1 LIMIT $2)";
        let client = self.pool.get().await.map_err(pool_error)?;
        let mut purged = Purged::default();
        for (sql, before, count) in [(events, applied_before_us, &mut purged.applied_events), (letters, replayed_before_us, &mut purged.dead_letters)] {
            let Some(before) = before else { continue };
            loop {
                let deleted = client.execute(sql, &[&before, &super::PURGE_CHUNK]).await.map_err(classify)?;
                *count += deleted;
                if (deleted as i64) < super::PURGE_CHUNK {
                    break;
                }
            }
        }
        Ok(purged)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        tokio::time::timeout(std::time::Duration::from_secs(2), client.simple_query("SELECT 1"))
            .await
            .map_err(|_| StoreError::Transient("ping timed out".into()))?
            .map_err(classify)?;
        Ok(())
    }
}
