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

use anyhow::{Context, Result};
use axum::Router;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

/// A connection handed from the acceptor to a serving thread.
type Handoff = (std::net::TcpStream, SocketAddr);

/// Serves `router` on `listener` with `threads` serving threads until `main` (run on
/// the calling thread, after the server is up) returns; then stops accepting, lets the
/// requests in flight finish, and returns.
pub fn run(
    listener: std::net::TcpListener,
    router: Router,
    threads: usize,
    main: impl Future<Output = ()>,
) -> Result<()> {
    let local = listener.local_addr()?;
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
            .spawn(move || runtime.block_on(serve_handoffs(handoffs, local, router)))
            .context("cannot start a serving thread")?;
        workers.push(worker);
    }
    let (stop, stopped) = watch::channel(false);
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let acceptor = tokio::spawn(accept(listener, inboxes, stopped));
        main.await;
        let _ = stop.send(true);
        // The acceptor returns and drops the inboxes: each serving thread then serves
        // what it was handed, drains, and exits. Meanwhile this runtime keeps running
        // the background tasks and driving connections created on it.
        let _ = acceptor.await;
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
        let _ = inbox.send((stream, peer));
    }
}

/// One serving thread: axum over the connections handed to this thread, until the
/// acceptor has stopped and every connection handed over is served.
async fn serve_handoffs(
    handoffs: mpsc::UnboundedReceiver<Handoff>,
    local: SocketAddr,
    router: Router,
) -> Result<()> {
    let (drained, all_handed_over) = oneshot::channel();
    let listener = HandedOver {
        handoffs,
        local,
        drained: Some(drained),
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = all_handed_over.await;
        })
        .await?;
    Ok(())
}

/// The connections handed to one serving thread, as an axum listener.
struct HandedOver {
    handoffs: mpsc::UnboundedReceiver<Handoff>,
    local: SocketAddr,
    /// Told when the acceptor has stopped and nothing is left to hand over: the
    /// graceful stop starts only then, so no connection accepted is left unanswered.
    drained: Option<oneshot::Sender<()>>,
}

impl axum::serve::Listener for HandedOver {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.handoffs.recv().await {
                Some((stream, peer)) => match TcpStream::from_std(stream) {
                    Ok(io) => return (io, peer),
                    Err(e) => tracing::warn!("cannot take over a connection: {e}"),
                },
                None => {
                    if let Some(drained) = self.drained.take() {
                        let _ = drained.send(());
                    }
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
