//! The HTTP server's threads: one single-threaded tokio runtime per serving thread,
//! each serving the connections handed to it.
//!
//! One acceptor (on the first thread) hands each new connection to the next thread in
//! turn; from then on the connection, the requests on it, their tasks and the upstream
//! connections they use (`basalt_providers::HttpClient` keeps a pool per thread) stay
//! on that thread. A work-stealing runtime instead wakes the other thread for most
//! task hand-offs, and under proxy load those wake-ups (futexes, reschedule IPIs) were
//! a large share of the server's CPU (benches/README.md, proxy overhead). CPU-heavy
//! work (embedding, indexing, parsing documents) runs on the blocking pools and the
//! engines' own threads, never on these.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// A connection handed from the acceptor to a serving thread.
type Handoff = (std::net::TcpStream, SocketAddr);

/// Serves `router` on `listener` with `threads` serving threads until `main` (run on
/// the first thread, after the server is up) returns; then stops accepting, lets the
/// requests in flight finish, and returns.
pub fn run(
    listener: std::net::TcpListener,
    router: Router,
    threads: usize,
    main: impl Future<Output = ()>,
) -> Result<()> {
    let local = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let mut inboxes = Vec::with_capacity(threads.max(1));
    let mut workers = Vec::new();
    let (first_inbox, first_handoffs) = mpsc::unbounded_channel();
    inboxes.push(first_inbox);
    for i in 1..threads {
        let (inbox, handoffs) = mpsc::unbounded_channel();
        inboxes.push(inbox);
        let router = router.clone();
        let stopped = stopped.clone();
        let worker = std::thread::Builder::new()
            .name(format!("basalt-http-{i}"))
            .spawn(move || -> Result<()> {
                runtime()?.block_on(serve_handoffs(handoffs, local, router, stopped))
            })
            .context("cannot start a serving thread")?;
        workers.push(worker);
    }
    let served = runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let acceptor = tokio::spawn(accept(listener, inboxes, stopped.clone()));
        let serving = tokio::spawn(serve_handoffs(first_handoffs, local, router, stopped));
        main.await;
        let _ = stop.send(true);
        acceptor.abort();
        serving.await.context("the first serving thread failed")?
    });
    for worker in workers {
        match worker.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("a serving thread panicked"),
        }
    }
    served
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
        // A serving thread that has stopped drops what it is handed: the connection
        // closes, which is what a stopping server does.
        let _ = inbox.send((stream, peer));
    }
}

/// One serving thread: axum over the connections handed to this thread.
async fn serve_handoffs(
    handoffs: mpsc::UnboundedReceiver<Handoff>,
    local: SocketAddr,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let listener = HandedOver { handoffs, local };
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}

/// The connections handed to one serving thread, as an axum listener.
struct HandedOver {
    handoffs: mpsc::UnboundedReceiver<Handoff>,
    local: SocketAddr,
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
                // The acceptor has stopped: nothing more will come.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
