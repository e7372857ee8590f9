//! The HTTP server's threads: one single-threaded tokio runtime per serving thread,
//! each serving the connections handed to it.
//!
//! An acceptor on the calling thread (which also runs the background tasks) hands each
//! new connection to the next serving thread in turn; from then on the connection, the
//! requests on it, their tasks and the upstream connections they use
//! (`basalt_providers::HttpClient` keeps a pool per thread) stay on that thread. A
//! work-stealing runtime instead wakes the other thread for most task hand-offs, and
//! under proxy load those wake-ups (futexes, reschedule IPIs) were a large share of the
//! server's CPU (benches/README.md, proxy overhead). Blocking and long work (embedding,
//! indexing, parsing documents, guardrail checks of long texts, the engines) runs on
//! the blocking pools and the engines' own threads. A request's other CPU work (JSON,
//! SigV4, short guardrail checks) runs on its serving thread, and with no work stealing
//! a long one delays the other connections of that thread.
//!
//! Stopping: the acceptor stops, each serving thread serves every connection already
//! handed to it, lets its requests finish, and exits; the calling thread's runtime
//! stays up until they all have.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use basalt_edge::auth::OverTls;

/// A connection handed from the acceptor to a serving thread, with the TLS acceptor
/// of its listener when it is an HTTPS one.
type Handoff = (std::net::TcpStream, SocketAddr, Option<TlsAcceptor>);

/// A listening socket and, for HTTPS, its TLS acceptor.
pub struct Listener {
    pub socket: std::net::TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Serves `router` on `listener` with `threads` serving threads until `main` (run on
/// the calling thread, after the server is up) returns; then stops accepting, lets the
/// requests in flight finish, and returns.
pub fn run(
    listeners: Vec<Listener>,
    router: Router,
    threads: usize,
    limits: ConnectionLimits,
    main: impl Future<Output = ()>,
) -> Result<()> {
    let mut inboxes = Vec::with_capacity(threads.max(1));
    let mut workers = Vec::with_capacity(threads.max(1));
    for i in 0..threads.max(1) {
        let (inbox, handoffs) = mpsc::unbounded_channel();
        inboxes.push(inbox);
        let router = router.clone();
        // Built here, so a runtime that cannot be built stops the start-up instead of
        // leaving a thread that silently drops its share of the connections.
        let runtime = runtime()?;
        let worker = std::thread::Builder::new()
            .name(format!("basalt-http-{i}"))
            .spawn(move || runtime.block_on(serve_handoffs(handoffs, router, limits)))
            .context("cannot start a serving thread")?;
        workers.push(worker);
    }
    let (stop, stopped) = watch::channel(false);
    runtime()?.block_on(async move {
        let mut acceptors = Vec::with_capacity(listeners.len());
        for listener in listeners {
            let socket = tokio::net::TcpListener::from_std(listener.socket)?;
            acceptors.push(tokio::spawn(accept(
                socket,
                listener.tls,
                inboxes.clone(),
                stopped.clone(),
            )));
        }
        drop(inboxes);
        main.await;
        let _ = stop.send(true);
        // The acceptors return and drop the inboxes: each serving thread then serves
        // what it was handed, drains, and exits. Meanwhile this runtime keeps running
        // the background tasks and driving connections created on it.
        for acceptor in acceptors {
            let _ = acceptor.await;
        }
        tokio::task::spawn_blocking(move || {
            for worker in workers {
                match worker.join() {
                    Ok(result) => result?,
                    Err(_) => anyhow::bail!("a serving thread panicked"),
                }
            }
            Ok(())
        })
        .await
        .context("cannot wait for the serving threads")?
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a serving runtime")
}

/// Accepts connections and hands them to the serving threads in turn.
async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand over a connection: {e}");
                continue;
            }
        };
        let inbox = &inboxes[next % inboxes.len()];
        next = next.wrapping_add(1);
        // Serving threads stop only after the acceptor has; should one have failed,
        // the connection closes.
        let _ = inbox.send((stream, peer, tls.clone()));
    }
}

/// Per-connection HTTP settings: the timeouts that keep a slow or idle client from
/// holding a connection forever.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// To send a request's headers; also how long a keep-alive connection may sit
    /// idle between requests (HTTP/1.1).
    pub header_timeout: Duration,
    /// Headers a request may have (more are refused by the HTTP layer with 431).
    pub max_headers: usize,
}

/// One serving thread: the connections handed to this thread, each served by hyper
/// (HTTP/1.1, or HTTP/2 with prior knowledge) until the acceptor has stopped and every
/// connection handed over is served.
async fn serve_handoffs(
    mut handoffs: mpsc::UnboundedReceiver<Handoff>,
    router: Router,
    limits: ConnectionLimits,
) -> Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = std::sync::Arc::new(builder);
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer, tls)) = handoffs.recv().await {
        let io = match TcpStream::from_std(stream) {
            Ok(io) => io,
            Err(e) => {
                tracing::warn!("cannot take over a connection: {e}");
                continue;
            }
        };
        let over_tls = tls.is_some();
        // The peer's address reaches the middleware (per-address budgets) as axum's
        // `ConnectInfo`, as `into_make_service_with_connect_info` would put it.
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::extract::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    if over_tls {
                        request.extensions_mut().insert(OverTls);
                    }
                    request
                });
        let service = TowerToHyperService::new(service);
        match tls {
            None => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                tokio::spawn(graceful.watch(connection));
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task, within the header
                // time limit, so a slow one holds up nothing else.
                let watcher = graceful.watcher();
                let builder = std::sync::Arc::clone(&builder);
                let handshake_timeout = limits.header_timeout;
                tokio::spawn(async move {
                    let tls_stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                        .into_owned();
                    let _ = watcher.watch(connection).await;
                });
            }
        }
    }
    // The acceptor has stopped and nothing is left to hand over: idle connections
    // close, requests in flight finish.
    graceful.shutdown().await;
    Ok(())
}
