//! Wiring: builds the queue, the store, the HTTP app and the worker from the configuration,
//! and runs them until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Database, Exposure, ServerArgs, StorageArgs, WorkerArgs};
use crate::datadir::{self, DirLock, LockError, Role};
use crate::dlq::{self, DlqError, ReplayReport};
use crate::ingress::{self, AppState, Refusals, Verifier};
use crate::metrics::Metrics;
use crate::retention;
use crate::queue::embedded::{EmbeddedConsumer, EmbeddedProducer};
use crate::queue::log::identity;
use crate::queue::kafka::{KafkaConsumer, KafkaProducer};
use crate::queue::spool::SpoolingProducer;
use crate::queue::{Consumer, Producer, QueueError};
use crate::store::postgres::PostgresStore;
use crate::store::schema::Upgrade;
use crate::store::sqlite::{Durability, SqliteStore};
use crate::store::{DeadLetterFilter, Store, StoreError};
use crate::worker::{Worker, WorkerError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot open the queue: {0}")]
    Queue(#[from] QueueError),
    #[error("worker failed: {0}")]
    Worker(#[from] WorkerError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    DataDir(#[from] LockError),
    #[error(transparent)]
    Dlq(#[from] DlqError),
    #[error(transparent)]
    LogGap(#[from] crate::log_gap::GapError),
    #[error("backup: {0}")]
    Backup(#[from] crate::backup::BackupError),
}

/// Locks the data directory for those of `roles` that keep a log in it: the embedded queue
/// (server and worker), the server's spool. A SQLite store guards itself, so Kafka workers
/// sharing one, or keeping nothing here, may run side by side.
fn lock_data_dir(storage: &StorageArgs, roles: &[Role], server: Option<&ServerArgs>) -> Result<DirLock, AppError> {
    let embedded = storage.kafka().is_none();
    let spool = server.and_then(|s| storage.spool(s)).is_some();
    let roles: Vec<Role> = roles.iter().copied().filter(|r| embedded || (*r == Role::Server && spool)).collect();
    Ok(datadir::lock(&storage.data_dir, &roles)?)
}

/// The store of a server, a worker or a `dlq` command: created at the current schema when
/// empty, refused when at an older one (`webhooks migrate` upgrades it; see `store::schema`).
pub async fn open_store(storage: &StorageArgs) -> Result<Arc<dyn Store>, AppError> {
    open_store_as(storage, Upgrade::Refuse).await
}

/// With the embedded log a SQLite store syncs at checkpoints only: the log keeps every event
/// until the worker has made the store durable behind it. Kafka forgets what the worker
/// commits, so there every commit is synced.
async fn open_store_as(storage: &StorageArgs, upgrade: Upgrade) -> Result<Arc<dyn Store>, AppError> {
    match storage.database()? {
        Database::Postgres(url) => Ok(Arc::new(PostgresStore::connect_as(&url, storage.database_pool_size, upgrade).await?)),
        Database::Sqlite(path) => {
            std::fs::create_dir_all(&storage.data_dir)?;
            let durability = if storage.kafka().is_some() { Durability::EveryCommit } else { Durability::Checkpoint };
            let store = tokio::task::spawn_blocking(move || SqliteStore::open_as(&path, durability, upgrade))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
            Ok(Arc::new(store))
        }
    }
}

/// The store of a server. A Kafka-mode server acknowledges without the store (only reads and
/// orders use it), so it neither waits for PostgreSQL nor migrates it: it starts and serves
/// webhooks while the database is away. With the embedded log the server needs the store's
/// positions before it appends.
async fn open_server_store(storage: &StorageArgs) -> Result<Arc<dyn Store>, AppError> {
    match (storage.kafka(), storage.database()?) {
        (Some(_), Database::Postgres(url)) => Ok(Arc::new(PostgresStore::connect_lazily(&url, storage.database_pool_size)?)),
        _ => open_store(storage).await,
    }
}

/// `webhooks backup DIR`: the SQLite store and the logs beside it, consistent, while running.
pub async fn backup(storage: &StorageArgs, to: std::path::PathBuf) -> Result<crate::backup::Saved, AppError> {
    let Database::Sqlite(store) = storage.database()? else { return Err(crate::backup::BackupError::Postgres.into()) };
    let data_dir = storage.data_dir.clone();
    let saved = tokio::task::spawn_blocking(move || crate::backup::run(&store, &data_dir, &to)).await.map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(saved)
}

/// A worker over the embedded log must not resume behind the log's oldest segment.
async fn check_log_gap(storage: &StorageArgs, worker: &WorkerArgs, store: &dyn Store) -> Result<(), AppError> {
    if storage.kafka().is_some() {
        return Ok(());
    }
    Ok(crate::log_gap::check(store, &storage.embedded_queue(None).dir, &worker.consumer, worker.accept_log_gap).await?)
}

/// `webhooks migrate`: brings the store's schema up to date; returns the version it is at.
pub async fn migrate(storage: &StorageArgs) -> Result<u32, AppError> {
    Ok(match storage.database()? {
        Database::Postgres(url) => PostgresStore::connect(&url, 1).await?.schema_version().await?,
        Database::Sqlite(path) => {
            std::fs::create_dir_all(&storage.data_dir)?;
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await.map_err(|e| std::io::Error::other(e.to_string()))??;
            store.schema_version().await?
        }
    })
}

/// Samples the age of the oldest unapplied event and the queue depth on a timer, where a
/// worker reads the embedded log (Kafka's lag is the consumer group's, on the broker).
fn spawn_backlog(storage: &StorageArgs, store: Arc<dyn Store>, metrics: &Metrics, shutdown: &CancellationToken) {
    if storage.kafka().is_none() {
        crate::metrics::backlog::spawn(storage.embedded_queue(None).dir, store, metrics.clone(), shutdown.clone());
    }
}

/// The token the server stops on: `requested` (SIGTERM) first makes `/readyz` fail, then,
/// after `drain`, stops. Requests keep being served meanwhile, so the load balancer has
/// time to see the failing probe and stop sending before the listener closes.
fn drain_on(requested: CancellationToken, metrics: &Metrics, drain: Duration) -> CancellationToken {
    let stop = CancellationToken::new();
    let (metrics, stopping) = (metrics.clone(), stop.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = requested.cancelled() => {}
            _ = stopping.cancelled() => return,
        }
        metrics.health.start_draining();
        if !drain.is_zero() {
            tracing::info!(drain_ms = drain.as_millis() as u64, "draining: /readyz fails, requests are still served until the drain period ends");
            tokio::time::sleep(drain).await;
        }
        stopping.cancel();
    });
    stop
}

/// The queue's producer; a server in Kafka mode gets the broker-outage spool in front
/// (until `shutdown`), other users (`dlq replay`) the broker alone.
async fn open_producer(
    storage: &StorageArgs,
    server: Option<&ServerArgs>,
    store: &dyn Store,
    metrics: &Metrics,
    wake: Arc<Notify>,
    shutdown: &CancellationToken,
) -> Result<Arc<dyn Producer>, AppError> {
    if let Some(kafka) = storage.kafka() {
        let broker = Arc::new(KafkaProducer::connect(&kafka).await?);
        return match server.and_then(|s| storage.spool(s)) {
            Some(spool) => {
                std::fs::create_dir_all(&storage.data_dir)?;
                Ok(Arc::new(SpoolingProducer::open(broker, &spool, metrics.clone(), shutdown.clone()).await?))
            }
            None => Ok(broker),
        };
    }
    let cfg = storage.embedded_queue(server);
    let log = identity::load_or_create(&cfg.dir).map_err(|e| QueueError::Storage(e.to_string()))?;
    let stored = store.log_position(&log).await?;
    Ok(Arc::new(EmbeddedProducer::open(&cfg, stored, metrics.clone(), wake)?))
}

async fn open_consumer(storage: &StorageArgs, group: &str, wake: Arc<Notify>, metrics: &Metrics) -> Result<Box<dyn Consumer>, AppError> {
    if let Some(kafka) = storage.kafka() {
        return Ok(Box::new(KafkaConsumer::join(&kafka, group).await?.reporting_to(metrics)));
    }
    std::fs::create_dir_all(&storage.data_dir)?;
    Ok(Box::new(EmbeddedConsumer::open(&storage.embedded_queue(None), wake)?))
}

fn verifier(server: &ServerArgs) -> Result<Verifier, AppError> {
    Ok(Verifier::new(&server.webhook_secret, &server.stripe_webhook_secret, server.signature_tolerance_secs).map_err(ConfigError::from)?)
}

/// Refuses to serve an open API where other machines can reach it (unless `--insecure`);
/// warns about each open surface. Before anything is opened, so a refusal leaves no trace.
fn exposure(server: &ServerArgs, listener: &TcpListener) -> Result<Arc<Exposure>, AppError> {
    let addr = listener.local_addr()?;
    let exposure = server.exposure(addr)?;
    exposure.warn(addr);
    Ok(Arc::new(exposure))
}

/// Serves HTTP until `shutdown`, then finishes in-flight requests.
async fn serve(listener: TcpListener, state: AppState, limits: ingress::Limits, shutdown: CancellationToken) -> Result<(), AppError> {
    tracing::info!(addr = %listener.local_addr()?, "listening");
    ingress::serve::serve(listener, ingress::router(state, limits), limits.header_timeout, shutdown).await?;
    Ok(())
}

/// Server and worker in one process over the embedded queue.
pub async fn standalone(storage: StorageArgs, server: ServerArgs, worker: WorkerArgs, listener: TcpListener, shutdown: CancellationToken) -> Result<(), AppError> {
    let exposure = exposure(&server, &listener)?;
    let _lock = lock_data_dir(&storage, &[Role::Server, Role::Worker], Some(&server))?;
    datadir::record_server_url(&storage.data_dir, listener.local_addr()?)?;
    let metrics = Metrics::new();
    metrics.health.set_stall_after(worker.stall_after());
    let shutdown = drain_on(shutdown, &metrics, server.drain());
    let wake = Arc::new(Notify::new());
    // One process owns this data directory: it may upgrade the schema, so that the
    // one-command start keeps working across releases.
    let store = open_store_as(&storage, Upgrade::Migrate).await?;
    let state = AppState {
        producer: open_producer(&storage, Some(&server), store.as_ref(), &metrics, wake.clone(), &shutdown).await?,
        store: store.clone(),
        verifier: Arc::new(verifier(&server)?),
        metrics: metrics.clone(),
        max_body: server.max_body_bytes,
        admin_token: server.admin_token().map(Arc::from),
        exposure,
        refusals: Arc::new(Refusals::default()),
        stripe: Arc::new(server.stripe()),
    };
    check_log_gap(&storage, &worker, state.store.as_ref()).await?;
    let worker_stop = CancellationToken::new();
    retention::spawn_purge(state.store.clone(), metrics.clone(), worker.retention(), worker_stop.clone());
    retention::spawn_gauges(storage.data_dir.clone(), metrics.clone(), worker_stop.clone());
    spawn_backlog(&storage, state.store.clone(), &metrics, &worker_stop);
    let consumer = open_consumer(&storage, &worker.consumer, wake, &metrics).await?;
    let worker = Worker::new(consumer, store, metrics, worker.config(), worker_stop.clone());
    let worker = tokio::spawn(worker.run());
    let served = serve(listener, state, server.limits(), shutdown).await;
    // Requests are finished and acknowledged; now let the worker finish its batch.
    worker_stop.cancel();
    let worked = worker.await.map_err(|e| std::io::Error::other(e.to_string()))?;
    served?;
    worked?;
    Ok(())
}

/// The HTTP half: validates, verifies, appends to the queue.
pub async fn server(storage: StorageArgs, server: ServerArgs, listener: TcpListener, shutdown: CancellationToken) -> Result<(), AppError> {
    let exposure = exposure(&server, &listener)?;
    let _lock = lock_data_dir(&storage, &[Role::Server], Some(&server))?;
    datadir::record_server_url(&storage.data_dir, listener.local_addr()?)?;
    let metrics = Metrics::new();
    let shutdown = drain_on(shutdown, &metrics, server.drain());
    retention::spawn_gauges(storage.data_dir.clone(), metrics.clone(), shutdown.clone());
    let store = open_server_store(&storage).await?;
    let state = AppState {
        producer: open_producer(&storage, Some(&server), store.as_ref(), &metrics, Arc::new(Notify::new()), &shutdown).await?,
        store,
        verifier: Arc::new(verifier(&server)?),
        metrics,
        max_body: server.max_body_bytes,
        admin_token: server.admin_token().map(Arc::from),
        exposure,
        refusals: Arc::new(Refusals::default()),
        stripe: Arc::new(server.stripe()),
    };
    serve(listener, state, server.limits(), shutdown).await
}

/// The processing half: consumes the queue and applies events to the store.
/// `metrics_listen`: where this worker-only process serves /healthz, /metrics and /api/stats.
pub async fn worker(storage: StorageArgs, worker: WorkerArgs, metrics_listen: Option<SocketAddr>, shutdown: CancellationToken) -> Result<(), AppError> {
    let _lock = lock_data_dir(&storage, &[Role::Worker], None)?;
    let store = open_store(&storage).await?;
    check_log_gap(&storage, &worker, store.as_ref()).await?;
    let metrics = Metrics::new();
    let consumer = open_consumer(&storage, &worker.consumer, Arc::new(Notify::new()), &metrics).await?;
    retention::spawn_purge(store.clone(), metrics.clone(), worker.retention(), shutdown.clone());
    retention::spawn_gauges(storage.data_dir.clone(), metrics.clone(), shutdown.clone());
    spawn_backlog(&storage, store.clone(), &metrics, &shutdown);
    metrics.health.set_stall_after(worker.stall_after());
    if let Some(addr) = metrics_listen {
        let listener = ingress::serve::bind(addr, 1024)?;
        tracing::info!(%addr, "worker metrics listening");
        let header_timeout = Duration::from_secs(10);
        tokio::spawn(ingress::serve::serve(listener, ingress::worker_routes(metrics.clone(), store.clone()), header_timeout, shutdown.clone()));
    }
    Worker::new(consumer, store, metrics, worker.config(), shutdown).run().await?;
    Ok(())
}

/// Where `webhooks dlq replay` sends its events when a running server writes the log.
#[derive(Debug, Clone, Default)]
pub struct ReplayVia {
    /// The server's base URL; by default the one it recorded in the data directory.
    pub server: Option<String>,
    pub admin_token: Option<String>,
}

/// How a replay went: what was replayed, and through which server if not here.
pub struct Replayed {
    pub report: ReplayReport,
    pub through: Option<String>,
}

/// `webhooks dlq replay`: puts matching dead letters back on the configured queue. A log has
/// one writer: when a server writes it, the replay goes through that server's API.
pub async fn replay_dead_letters(storage: StorageArgs, filter: DeadLetterFilter, via: ReplayVia) -> Result<Replayed, AppError> {
    let store = open_store(&storage).await?;
    let producer = match open_producer(&storage, None, store.as_ref(), &Metrics::new(), Arc::new(Notify::new()), &CancellationToken::new()).await {
        Ok(producer) => producer,
        Err(AppError::Queue(QueueError::Busy(held))) => {
            let Some(url) = via.server.or_else(|| datadir::server_url(&storage.data_dir)) else {
                return Err(AppError::Queue(QueueError::Busy(format!("{held}; pass --server with its URL to replay through it"))));
            };
            let report = dlq::replay_via_server(&url, via.admin_token.as_deref(), &filter).await?;
            return Ok(Replayed { report, through: Some(url) });
        }
        Err(e) => return Err(e),
    };
    let report = dlq::replay(store.as_ref(), producer.as_ref(), &filter).await?;
    Ok(Replayed { report, through: None })
}
