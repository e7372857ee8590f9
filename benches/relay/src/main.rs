//! `bench-relay --listen ADDR --upstream URL [--threads N]`: answers every POST by
//! sending its body to `URL` and relaying the upstream's status, content type and body.
//!
//! The floor of `benches/proxy.sh`. It has Basalt's HTTP stack and thread layout (one
//! single-threaded runtime per serving thread, a reqwest pool per thread, mimalloc)
//! and none of Basalt's work (no auth, no parsing or translation, no metering), so the
//! distance between its row and Basalt's is what Basalt itself costs per request.

use std::cell::RefCell;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

thread_local! {
    /// This thread's upstream connection pool.
    static CLIENT: RefCell<Option<reqwest::Client>> = const { RefCell::new(None) };
}

struct Args {
    listen: String,
    upstream: reqwest::Url,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut threads = 2;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--upstream" => upstream = Some(value.parse().map_err(|e| format!("--upstream: {e}"))?),
            "--threads" => threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        threads,
    })
}

fn client() -> Result<reqwest::Client, String> {
    CLIENT.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| e.to_string())?;
        *slot = Some(c.clone());
        Ok(c)
    })
}

async fn relay(State(upstream): State<reqwest::Url>, headers: HeaderMap, body: Bytes) -> Response {
    match forward(upstream, headers, body).await {
        Ok(response) => response,
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

async fn forward(
    upstream: reqwest::Url,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let mut request = client()?.post(upstream).body(body);
    if let Some(v) = headers.get(header::CONTENT_TYPE) {
        request = request.header(header::CONTENT_TYPE, v);
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    let mut response = (status, bytes).into_response();
    if let Some(v) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(response)
}

fn serve(listener: std::net::TcpListener, upstream: reqwest::Url) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| e.to_string())?
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        let app = Router::new().fallback(post(relay)).with_state(upstream);
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let listener = std::net::TcpListener::bind(&args.listen).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    // Every serving thread accepts on the same socket.
    let mut threads = Vec::new();
    for _ in 0..args.threads.max(1) {
        let listener = listener.try_clone().map_err(|e| e.to_string())?;
        let upstream = args.upstream.clone();
        threads.push(std::thread::spawn(move || serve(listener, upstream)));
    }
    for t in threads {
        t.join()
            .map_err(|_| "a serving thread panicked".to_string())??;
    }
    Ok(())
}
