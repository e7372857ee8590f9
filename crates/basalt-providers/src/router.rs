//! Several deployments of one model (two vLLM servers, OpenAI plus an Azure-style
//! OpenAI-compatible endpoint, ...) behind one catalog entry.
//!
//! - **Least in-flight:** each request goes to the healthy deployment with the fewest
//!   requests in flight (ties: the first configured).
//! - **Circuit breaker:** `failure_threshold` consecutive failures (unavailable, timed
//!   out, upstream error; throttling does not count, it is load, not ill health) open a
//!   deployment's breaker for `cooldown`; while open it gets no traffic. After the
//!   cool-down it is half-open: requests may try it again; a success closes the
//!   breaker, a single failure opens it again at once.
//! - **Retries:** a retryable failure (throttled, unavailable, timed out, upstream
//!   error) before any byte of the answer was received is retried on another
//!   deployment (or the same one, if it is the only one left) after a jittered
//!   exponential backoff, up to `retries` times. Errors that are the caller's
//!   (validation, access denied) are never retried. Once an answer has started
//!   streaming, nothing is retried: the caller may already have seen part of it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use basalt_types::{ChatRequest, CoreError, GenerationDelta, InferenceParams};
use futures::StreamExt;

use crate::{ChatAdapter, DeltaStream, EmbeddingAdapter, RerankAdapter};

/// How a model's deployments are used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingPolicy {
    /// Extra attempts after a retryable failure.
    pub retries: u32,
    /// First backoff; doubled per attempt, with full jitter.
    pub backoff: Duration,
    /// Consecutive failures that open a deployment's breaker.
    pub failure_threshold: u32,
    /// How long an open breaker keeps a deployment out.
    pub cooldown: Duration,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff: Duration::from_millis(50),
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// A deployment's breaker.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Whether the deployment may take a request at `now` (closed, or half-open).
    fn admits(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|until| now >= until)
    }

    fn success(&mut self) {
        *self = Breaker::default();
    }

    fn failure(&mut self, now: Instant, policy: &RoutingPolicy) {
        self.consecutive_failures += 1;
        // A failure while half-open re-opens at once.
        if self.consecutive_failures >= policy.failure_threshold || self.open_until.is_some() {
            self.open_until = Some(now + policy.cooldown);
        }
    }
}

/// One deployment and its state.
#[derive(Debug)]
struct Deployment<A> {
    adapter: A,
    /// Where it is (base URL): the label in `/metrics`, never a secret.
    name: String,
    in_flight: AtomicUsize,
    breaker: Mutex<Breaker>,
    /// Its metric handles, looked up in the registry once (at the first attempt, after
    /// the server has installed its recorder) instead of at every attempt.
    metrics: OnceLock<DeploymentMetrics>,
}

/// `basalt_upstream_attempts_total` by outcome and `basalt_upstream_breaker_open`.
struct DeploymentMetrics {
    ok: metrics::Counter,
    retryable_error: metrics::Counter,
    client_error: metrics::Counter,
    breaker_open: metrics::Gauge,
}

impl std::fmt::Debug for DeploymentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentMetrics").finish_non_exhaustive()
    }
}

impl DeploymentMetrics {
    fn new(name: &str) -> Self {
        let attempts = |outcome: &'static str| metrics::counter!("basalt_upstream_attempts_total", "deployment" => name.to_string(), "outcome" => outcome);
        Self {
            ok: attempts("ok"),
            retryable_error: attempts("retryable_error"),
            client_error: attempts("client_error"),
            breaker_open: metrics::gauge!("basalt_upstream_breaker_open", "deployment" => name.to_string()),
        }
    }
}

/// The deployments of one model (chat adapters, or embedding adapters).
#[derive(Debug)]
pub struct Router<A = ChatAdapter> {
    deployments: Vec<Arc<Deployment<A>>>,
    policy: RoutingPolicy,
    jitter_seed: AtomicU64,
}

impl<A> Router<A> {
    /// `deployments`: (adapter, name) in preference order for ties.
    pub fn new(deployments: Vec<(A, String)>, policy: RoutingPolicy) -> Self {
        Self {
            deployments: deployments
                .into_iter()
                .map(|(adapter, name)| {
                    Arc::new(Deployment {
                        adapter,
                        name,
                        in_flight: AtomicUsize::new(0),
                        breaker: Mutex::new(Breaker::default()),
                        metrics: OnceLock::new(),
                    })
                })
                .collect(),
            policy,
            jitter_seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// The deployment for the next attempt: least in flight among those whose
    /// breaker admits a request, preferring ones not tried yet for this request.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let admitted: Vec<usize> = (0..self.deployments.len())
            .filter(|&i| {
                self.deployments[i]
                    .breaker
                    .lock()
                    .map(|b| b.admits(now))
                    .unwrap_or(true)
            })
            .collect();
        let fresh: Vec<usize> = admitted
            .iter()
            .copied()
            .filter(|i| !tried.contains(i))
            .collect();
        let pool = if fresh.is_empty() { admitted } else { fresh };
        pool.into_iter()
            .min_by_key(|&i| self.deployments[i].in_flight.load(Ordering::Relaxed))
    }

    fn record(&self, index: usize, outcome: Result<(), &CoreError>) {
        let deployment = &self.deployments[index];
        let metrics = deployment
            .metrics
            .get_or_init(|| DeploymentMetrics::new(&deployment.name));
        match outcome {
            Ok(()) => &metrics.ok,
            Err(e) if e.is_upstream_failure() => &metrics.retryable_error,
            Err(_) => &metrics.client_error,
        }
        .increment(1);
        if let Ok(mut breaker) = deployment.breaker.lock() {
            match outcome {
                Ok(()) => breaker.success(),
                // Throttling is load, not ill health: retried, but it does not trip the breaker.
                Err(CoreError::Throttled(_)) => {}
                Err(e) if e.is_upstream_failure() => breaker.failure(Instant::now(), &self.policy),
                // The caller's mistake says nothing about the deployment's health.
                Err(_) => {}
            }
            let open = breaker.open_until.is_some_and(|u| Instant::now() < u);
            metrics.breaker_open.set(if open { 1.0 } else { 0.0 });
        }
    }

    /// Full-jitter backoff for attempt `n` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.policy.backoff.saturating_mul(1 << attempt.min(10));
        // xorshift: no need for a cryptographic generator to spread retries.
        let mut x = self.jitter_seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_seed.store(x, Ordering::Relaxed);
        let fraction = (x % 1000) as f64 / 1000.0;
        cap.mul_f64(fraction)
    }

    /// Tries deployments until one answers: the answer, and its deployment with its
    /// in-flight count still raised (the caller lowers it when the answer is done).
    async fn attempt<T, F, Fut>(&self, call: F) -> Result<(T, Arc<Deployment<A>>), CoreError>
    where
        F: Fn(&A) -> Fut,
        Fut: std::future::Future<Output = Result<T, CoreError>>,
    {
        let mut tried = Vec::new();
        let mut last_error = None;
        for attempt in 0..=self.policy.retries {
            let Some(index) = self.pick(&tried) else {
                break;
            };
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            tried.push(index);
            let deployment = Arc::clone(&self.deployments[index]);
            deployment.in_flight.fetch_add(1, Ordering::Relaxed);
            match call(&deployment.adapter).await {
                Ok(answer) => {
                    self.record(index, Ok(()));
                    return Ok((answer, deployment));
                }
                Err(e) => {
                    deployment.in_flight.fetch_sub(1, Ordering::Relaxed);
                    self.record(index, Err(&e));
                    if !e.is_upstream_failure() {
                        return Err(e);
                    }
                    tracing::warn!(deployment = %deployment.name, attempt, error = %e, "upstream attempt failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            CoreError::ServiceUnavailable(
                "every deployment of this model is cooling down after failures; retry later".into(),
            )
        }))
    }
}

impl<A> Router<A> {
    /// [`Self::attempt`] for an answer that arrives whole (no stream to keep the
    /// deployment's in-flight count up while it is read).
    async fn whole<T, F, Fut>(&self, call: F) -> Result<T, CoreError>
    where
        F: Fn(&A) -> Fut,
        Fut: std::future::Future<Output = Result<T, CoreError>>,
    {
        let (answer, deployment) = self.attempt(call).await?;
        deployment.in_flight.fetch_sub(1, Ordering::Relaxed);
        Ok(answer)
    }
}

impl Router<ChatAdapter> {
    pub async fn chat(
        &self,
        request: &ChatRequest,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        let (stream, deployment) = self
            .attempt(|adapter| {
                let adapter = adapter.clone();
                let request = request.clone();
                async move { adapter.chat(&request, max_tokens).await }
            })
            .await?;
        Ok(Box::pin(InFlight::wrap(stream, deployment)))
    }

    pub async fn complete(
        &self,
        prompt: &str,
        params: &InferenceParams,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        let (stream, deployment) = self
            .attempt(|adapter| {
                let adapter = adapter.clone();
                let prompt = prompt.to_string();
                let params = params.clone();
                async move { adapter.complete(&prompt, &params, max_tokens).await }
            })
            .await?;
        Ok(Box::pin(InFlight::wrap(stream, deployment)))
    }
}

impl Router<EmbeddingAdapter> {
    /// Vectors for `inputs` from the first deployment that answers.
    pub async fn embed(&self, inputs: &[String]) -> Result<crate::embeddings::Embedded, CoreError> {
        self.whole(|adapter| {
            let adapter = adapter.clone();
            let inputs = inputs.to_vec();
            async move { adapter.embed(&inputs).await }
        })
        .await
    }
}

impl Router<RerankAdapter> {
    /// The `top_n` most relevant of `documents` to `query`, from the first deployment
    /// that answers.
    pub async fn rerank(
        &self,
        query: &str,
        documents: &[String],
        top_n: usize,
    ) -> Result<crate::rerank::Reranked, CoreError> {
        self.whole(|adapter| {
            let adapter = adapter.clone();
            let query = query.to_string();
            let documents = documents.to_vec();
            async move { adapter.rerank(&query, &documents, top_n).await }
        })
        .await
    }
}

/// Keeps a deployment's in-flight count up until the answer's stream ends or is dropped.
struct InFlight {
    deployment: Arc<Deployment<ChatAdapter>>,
}

impl InFlight {
    fn wrap(
        stream: DeltaStream,
        deployment: Arc<Deployment<ChatAdapter>>,
    ) -> impl futures::Stream<Item = GenerationDelta> + Send {
        let guard = InFlight { deployment };
        stream.map(move |delta| {
            let _keep = &guard;
            delta
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.deployment.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RoutingPolicy {
        RoutingPolicy {
            retries: 2,
            backoff: Duration::from_millis(1),
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let p = policy();
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.failure(t0, &p);
        b.failure(t0, &p);
        assert!(b.admits(t0), "two failures keep it closed");
        b.failure(t0, &p);
        assert!(
            !b.admits(t0 + Duration::from_secs(29)),
            "open during the cool-down"
        );
        assert!(b.admits(t0 + Duration::from_secs(30)), "half-open after it");
        // A failure while half-open re-opens it at once.
        b.failure(t0 + Duration::from_secs(30), &p);
        assert!(!b.admits(t0 + Duration::from_secs(31)));
        b.success();
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn only_upstream_failures_are_retried() {
        assert!(CoreError::ServiceUnavailable("x".into()).is_upstream_failure());
        assert!(CoreError::Throttled("x".into()).is_upstream_failure());
        assert!(CoreError::ModelTimeout("x".into()).is_upstream_failure());
        assert!(!CoreError::Validation("x".into()).is_upstream_failure());
        assert!(!CoreError::AccessDenied("x".into()).is_upstream_failure());
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let router: Router = Router::new(Vec::new(), policy());
        let waits: Vec<Duration> = (0..20).map(|_| router.backoff(2)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(4)));
        assert!(
            waits.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the wait"
        );
    }
}
