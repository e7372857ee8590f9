//! The HTTP client the adapters send upstream requests with.
//!
//! A [`HttpClient::per_thread`] client keeps one connection pool per OS thread. The
//! server runs one single-threaded runtime per core (see `basalt serve`), so a proxied
//! request, the upstream connection that carries it and the client connection it
//! answers all live on one thread: no cross-thread wake-up per request. With one
//! shared pool, a request on one thread would often check out a connection whose
//! driving task lives on the other, and every exchange would wake that thread twice.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use basalt_types::CoreError;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's pool of each per-thread client, by the client's id.
    static POOLS: RefCell<Vec<(u64, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

/// An upstream HTTP client: either a connection pool per thread, or one shared pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// Set for a per-thread client: its key in each thread's [`POOLS`].
    per_thread_id: Option<u64>,
    /// The shared client, or (per-thread) the first one built, kept to answer if a
    /// thread's own could not be built.
    client: reqwest::Client,
}

impl HttpClient {
    /// Pooled connections per thread, HTTP/2 where the upstream offers it (ALPN), TLS
    /// with the webpki roots.
    pub fn per_thread() -> Result<Self, CoreError> {
        let client = build()
            .map_err(|e| CoreError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            per_thread_id: Some(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            client,
        })
    }

    /// One pool for every thread (what a test passes in).
    pub fn shared(client: reqwest::Client) -> Self {
        Self {
            per_thread_id: None,
            client,
        }
    }

    /// The client this thread sends with.
    pub fn client(&self) -> reqwest::Client {
        let Some(id) = self.per_thread_id else {
            return self.client.clone();
        };
        POOLS
            .try_with(|pools| {
                let mut pools = pools.borrow_mut();
                if let Some((_, c)) = pools.iter().find(|(k, _)| *k == id) {
                    return c.clone();
                }
                // The settings were checked when the first one was built; should a
                // later build fail anyway, the shared first one still works.
                let c = build().unwrap_or_else(|_| self.client.clone());
                pools.push((id, c.clone()));
                c
            })
            .unwrap_or_else(|_| self.client.clone())
    }

    pub fn post<U: reqwest::IntoUrl>(&self, url: U) -> reqwest::RequestBuilder {
        self.client().post(url)
    }
}

impl From<reqwest::Client> for HttpClient {
    fn from(client: reqwest::Client) -> Self {
        Self::shared(client)
    }
}

fn build() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads get two pools; one thread asking twice gets the same one.
    #[test]
    fn each_thread_has_its_own_pool() {
        let http = HttpClient::per_thread().expect("client");
        let first = pool_count_after(&http);
        let again = pool_count_after(&http);
        assert_eq!((first, again), (1, 1), "one pool per client on this thread");
        let other =
            std::thread::scope(|s| s.spawn(|| pool_count_after(&http)).join().expect("thread"));
        assert_eq!(other, 1, "a new thread builds its own pool");
        let shared = HttpClient::shared(reqwest::Client::new());
        assert_eq!(
            pool_count_after(&shared),
            1,
            "a shared client adds no per-thread pool"
        );
    }

    /// How many per-thread pools this thread holds after `http` is used on it.
    fn pool_count_after(http: &HttpClient) -> usize {
        let _ = http.client();
        POOLS.with(|p| p.borrow().len())
    }
}
