//! `webhooks`: the command line. Parses flags, sets up logging and signals, calls the library.

use std::net::SocketAddr;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use webhooks::store::{now_us, DeadLetterFilter};
use webhooks::logging::{self, LogFormat};
use webhooks::traces::OtlpConfig;
use webhooks::{app, dlq};
use webhooks::config::{ServerArgs, StorageArgs, WorkerArgs};

/// Payment webhook processing: durable ingress, queue, transactional idempotent worker.
#[derive(Debug, Parser)]
#[command(name = "webhooks", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Test-only: apply stale events (see `webhooks::fault`).
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true, global = true, env = "WEBHOOKS_FAULT_SKIP_STALE_RULE")]
    fault_skip_stale_rule: bool,
    /// Test-only: the larger of two disagreeing same-rank amounts wins.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true, global = true, env = "WEBHOOKS_FAULT_LARGER_AMOUNT_WINS")]
    fault_larger_amount_wins: bool,
    /// Test-only: CPU microseconds burnt per webhook, to show that the CI speed gates trip.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true, global = true, env = "WEBHOOKS_FAULT_BUSY_US", default_value_t = 0)]
    fault_busy_us: u64,
    /// Log lines as text (coloured only on a terminal, never with NO_COLOR set) or as JSON
    /// objects for log shippers.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Export traces to this OpenTelemetry collector (OTLP over HTTP, the base URL: spans go
    /// to <endpoint>/v1/traces). Unset: no spans are made or sent.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    otlp_endpoint: Option<String>,
    /// The service name the exported spans carry.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "webhooks", global = true)]
    otel_service_name: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Server and worker in one process, embedded queue and SQLite: nothing else to run.
    Standalone {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// The HTTP server alone: receives, verifies and queues webhooks.
    Server {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The worker alone: applies queued events to the database.
    Worker {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        worker: WorkerArgs,
        /// Where this process serves /healthz, /metrics and /api/stats (off when unset).
        #[arg(long, env = "WORKER_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Brings the store's schema up to date, then exits: run it once per upgrade, before the
    /// new processes start. A newer schema than this binary knows is refused.
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Copies the SQLite store and the logs beside it into a new directory, consistent with
    /// each other, while the system runs. PostgreSQL: see docs/operations.md.
    Backup {
        #[command(flatten)]
        storage: StorageArgs,
        /// A new or empty directory for the copy.
        to: std::path::PathBuf,
    },
    /// Dead letters: events the worker gave up on.
    Dlq {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// List dead letters, newest first.
    List {
        /// Only those that failed since: unix seconds, or an age like 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Include those already replayed.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one dead letter with its payload.
    Show { id: i64 },
    /// Put dead letters back on the queue (idempotent: an applied event does nothing).
    Replay {
        /// The dead letter to replay.
        #[arg(required_unless_present_any = ["all", "since"], conflicts_with_all = ["all", "since"])]
        id: Option<i64>,
        /// Every dead letter not yet replayed.
        #[arg(long)]
        all: bool,
        /// Those that failed since: unix seconds, or an age like 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// The running server to replay through when one writes the data directory's log (a
        /// log has one writer); by default the address that server recorded in the directory.
        #[arg(long, env = "WEBHOOKS_SERVER_URL")]
        server: Option<String>,
        /// The server's admin token, for replaying through it.
        #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
}

#[tokio::main]
pub(crate) async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let otlp = cli.otlp_endpoint.clone().map(|endpoint| OtlpConfig { endpoint, service_name: cli.otel_service_name.clone() });
    let _traces = logging::init(cli.log_format, "info", otlp.as_ref())?;
    #[cfg(feature = "fault-injection")]
    inject_faults(&cli);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match cli.command {
        Command::Standalone { storage, server, worker } => {
            let listener = bind(&server).await?;
            app::standalone(storage, server, worker, listener, shutdown).await?
        }
        Command::Server { storage, server } => {
            let listener = bind(&server).await?;
            app::server(storage, server, listener, shutdown).await?
        }
        Command::Worker { storage, worker, metrics_listen } => app::worker(storage, worker, metrics_listen, shutdown).await?,
        Command::Dlq { storage, action } => return dlq(storage, action).await,
        Command::Backup { storage, to } => {
            let saved = app::backup(&storage, to.clone()).await?;
            let at = |o: Option<u64>| o.map(|o| o.to_string()).unwrap_or_else(|| "none".into());
            println!("backed up into {}: the store at log position {}, {} log file(s) from offset {}", to.display(), at(saved.position), saved.log_files, at(saved.oldest_segment));
            return Ok(());
        }
        Command::Migrate { storage } => {
            let version = app::migrate(&storage).await?;
            println!("the store's schema is at version {version}");
            return Ok(());
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Refuses an open API on an address other machines can reach before anything is opened,
/// as a usage error (exit 2) that says what to set; the library checks again, for its callers.
async fn bind(server: &ServerArgs) -> anyhow::Result<TcpListener> {
    if let Err(refused) = server.exposure(server.listen) {
        Cli::command().error(ErrorKind::MissingRequiredArgument, refused).exit();
    }
    webhooks::ingress::serve::bind(server.listen, server.listen_backlog).with_context(|| format!("cannot listen on {}", server.listen))
}

#[cfg(feature = "fault-injection")]
fn inject_faults(cli: &Cli) {
    if cli.fault_skip_stale_rule {
        tracing::warn!("fault injection: the stale-event rule is OFF; this system is wrong on purpose");
        webhooks::fault::skip_stale_rule();
    }
    if cli.fault_larger_amount_wins {
        tracing::warn!("fault injection: the larger same-rank amount wins; this system is wrong on purpose");
        webhooks::fault::let_larger_amount_win();
    }
    if cli.fault_busy_us > 0 {
        tracing::warn!(us = cli.fault_busy_us, "fault injection: CPU burnt per webhook; this system is slow on purpose");
        webhooks::fault::busy_per_event(cli.fault_busy_us);
    }
}

/// SIGINT or SIGTERM starts a graceful shutdown; a second signal is left to the default
/// handler of the runtime (the process keeps draining).
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested: finishing in-flight requests and the current batch");
    shutdown.cancel();
}

async fn dlq(storage: StorageArgs, action: DlqAction) -> anyhow::Result<()> {
    let since = |s: Option<String>| -> anyhow::Result<Option<i64>> {
        s.map(|s| dlq::parse_since(&s, now_us()).map_err(anyhow::Error::msg)).transpose()
    };
    match action {
        DlqAction::List { since: s, all, limit } => {
            let filter = DeadLetterFilter { since_us: since(s)?, include_replayed: all, limit: Some(limit), ..Default::default() };
            let (count, items) = app::open_store(&storage).await?.dead_letters(&filter).await?;
            println!("{count} dead letter(s) match; showing {}", items.len());
            for d in items {
                let replayed = if d.replayed_at_us.is_some() { " (replayed)" } else { "" };
                let request = dlq::request_id(&d.payload).map(|r| format!("  request={r}")).unwrap_or_default();
                println!("{:>8}  {}  {}  attempts={}{request}  {}{replayed}", d.id, d.event_id, d.failed_at_us, d.attempts, d.error);
            }
        }
        DlqAction::Show { id } => {
            let filter = DeadLetterFilter { id: Some(id), include_replayed: true, ..Default::default() };
            let (_, items) = app::open_store(&storage).await?.dead_letters(&filter).await?;
            let d = items.into_iter().next().with_context(|| format!("no dead letter {id}"))?;
            println!("{}", serde_json::to_string_pretty(&d)?);
        }
        DlqAction::Replay { id, all, since: s, server, admin_token } => {
            let filter = DeadLetterFilter { id, since_us: since(s)?, include_replayed: id.is_some(), limit: Some(DeadLetterFilter::MAX_LIMIT), ..Default::default() };
            debug_assert!(all || id.is_some() || filter.since_us.is_some());
            let replayed = app::replay_dead_letters(storage, filter, app::ReplayVia { server, admin_token }).await?;
            let report = replayed.report;
            let through = replayed.through.map(|url| format!(" through the running server at {url}")).unwrap_or_default();
            println!("replayed {} event(s){through}, skipped {}", report.replayed.len(), report.skipped.len());
            for (id, why) in report.skipped {
                println!("skipped {id}: {why}");
            }
        }
    }
    Ok(())
}
