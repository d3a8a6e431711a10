//! `webhooks`: the command line. Parses flags, sets up logging and signals, calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use webhooks::app;
use webhooks::config::{ServerArgs, StorageArgs, WorkerArgs};

/// Payment webhook processing: durable ingress, queue, transactional idempotent worker.
#[derive(Debug, Parser)]
#[command(name = "webhooks", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
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
        Command::Worker { storage, worker } => app::worker(storage, worker, shutdown).await?,
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn bind(server: &ServerArgs) -> anyhow::Result<TcpListener> {
    TcpListener::bind(server.listen).await.with_context(|| format!("cannot listen on {}", server.listen))
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
