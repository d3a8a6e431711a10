//! The HTTP/1.1 server loop. `axum::serve` has no header-read timeout, and a client that
//! trickles its headers must not hold a connection forever, so connections are served with
//! hyper directly: header-read timeout, TCP_NODELAY, and a graceful shutdown that lets
//! requests in flight finish.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tower::Layer;

/// Listens with room for `backlog` connections that the kernel completed and the accept loop
/// has not taken yet (capped by `net.core.somaxconn`). The standard library's 128 overflows
/// when a client opens hundreds of connections at once: the kernel drops the handshake and
/// the client's retransmitted SYN comes about half a second later, an acknowledgement that
/// looks like a stall of the server.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As the standard library does: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves until `shutdown`; a connection whose request headers do not arrive within
/// `header_timeout` is closed.
pub async fn serve(listener: TcpListener, app: Router, header_timeout: Duration, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and similar: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        // What `into_make_service_with_connect_info` would add: the peer, for per-address limits and logs.
        let app = Extension(ConnectInfo(peer)).layer(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections a server has not accepted yet, as a burst of new clients makes them: the
    /// kernel completes each handshake only while the listen queue has room.
    async fn handshakes_completed(listener: &TcpListener, clients: usize) -> usize {
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..clients {
            // A dropped SYN is retried after a second; anything under that completed at once.
            match tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => held.push(stream),
                _ => break,
            }
        }
        held.len()
    }

    #[tokio::test]
    async fn a_burst_of_new_connections_fits_in_the_listen_queue() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        assert_eq!(handshakes_completed(&listener, 400).await, 400);
    }

    /// What the fix is for: the standard library's queue of 128 drops the rest of the burst.
    #[tokio::test]
    async fn a_queue_of_128_overflows_under_the_same_burst() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 128).unwrap();
        assert!(handshakes_completed(&listener, 400).await < 400);
    }
}
