//! The accept loop: bounded connections, a deadline on every request head and on keep-alive idleness, and
//! graceful shutdown.
//!
//! Written here rather than taken from `axum::serve` because axum 0.8's loop installs no timer in hyper (so
//! hyper's header-read timeout never fires) and caps nothing: a client that connects and sends nothing, or
//! dribbles a request head, would hold its connection and task forever. hyper and hyper-util do the protocol
//! work and keep the deadline (given a timer); this file only decides when a connection is accepted.

#[cfg(doc)]
use crate::ServerConfig;
use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Each connection's kernel send buffer (Linux keeps twice this). Without a cap the kernel grows it to
/// megabytes for a peer that stops reading, and an event stream whose reader has stopped goes on being
/// written (every event, to every such reader) until that fills: measured, 100 such readers tripled the p99 of
/// acquires on a 2-core machine. With it such a stream stalls within a few thousand events and costs nothing
/// after; 128 KiB in flight still fills a 10 ms round trip at 100 Mbit/s.
const SEND_BUFFER: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then cancels `stopping`, stops accepting, lets every
/// connection finish its in-flight request and returns once all are closed.
///
/// `limits` = ([`ServerConfig::max_connections`], [`ServerConfig::header_read_timeout`]):
/// - at most that many connections are served at once; further ones wait in the listen backlog until one
///   closes;
/// - a connection must send each request head (the first one too) within the deadline, and may sit idle
///   between requests no longer than it; otherwise it is closed.
pub(crate) async fn serve<F>(
    listener: TcpListener,
    app: Router,
    limits: (usize, Duration),
    tls: Option<TlsAcceptor>,
    stopping: CancellationToken,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (max_connections, head_deadline) = limits;
    // The fields are public, so they may hold anything: a semaphore refuses more than MAX_PERMITS (it panics).
    let slots = Arc::new(Semaphore::new(max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_deadline)
        .keep_alive(true);
    let service = TowerToHyperService::new(app.map_request(|r: Request<Incoming>| r.map(Body::new)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let tcp = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: the listener itself is fine; back off a little
                    // instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small JSON answers must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER);
        let (http, service, watcher) = (http.clone(), service.clone(), graceful.watcher());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // hyper's head timer also runs before the first request: a connection that never sends a byte is
            // closed at the deadline too.
            let result = match tls {
                None => watcher.watch(http.serve_connection(TokioIo::new(tcp), service)).await,
                Some(acceptor) => match handshake(tcp, &acceptor, head_deadline).await {
                    Some(stream) => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    None => return,
                },
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests, answering waiters with 503");
    stopping.cancel();
    graceful.shutdown().await;
    Ok(())
}

/// A TLS handshake within `deadline`. A client speaking plain HTTP to the TLS port is answered with a 400 that
/// says so (a TLS client's first byte is 0x16, a handshake record; an HTTP request starts with a letter).
async fn handshake(tcp: TcpStream, acceptor: &TlsAcceptor, deadline: Duration) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0].is_ascii_alphabetic() => {
            plain_http_refused(tcp).await;
            return None;
        }
        Ok(Ok(1)) => {}
        _ => return None,
    }
    match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

async fn plain_http_refused(mut tcp: TcpStream) {
    // Read the request first: closing with unread bytes would reset the connection before the answer arrives.
    let mut head = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut head)).await;
    const BODY: &str =
        r#"{"success":false,"error":"this port speaks HTTPS: use an https:// URL","code":"invalid_request"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(answer.as_bytes())).await;
    let _ = tcp.shutdown().await;
}
