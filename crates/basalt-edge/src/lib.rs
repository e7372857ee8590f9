//! The HTTP edge: one module per wire dialect, each translating its wire format to
//! and from `basalt-core` types and mapping core errors to its own error shape.
//!
//! - [`bedrock`]: the Bedrock runtime (`/model/...`) and control plane
//!   (`/foundation-models`), as boto3 sends them with `endpoint_url`.
//! - [`openai`]: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`; `rerank`:
//!   `/v1/rerank` (Cohere's reranking API, which Jina, vLLM and llama-server copy).
//! - [`auth`]: SigV4 and bearer-key authentication, body limits and request IDs, as one
//!   middleware in front of every API route.
//!
//! [`app`] builds the router; the binary serves it.

mod admin;
pub mod anthropic;
pub mod auth;
pub mod bedrock;
mod common;
mod error;
pub mod eventstream;
mod json_body;
pub mod openai;
pub mod permissions;
mod rerank;
mod responses;
pub mod sigv4;
mod streaming;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use basalt_core::batch::BatchService;
use basalt_core::provisioned::ProvisionedService;
use basalt_core::{Basalt, Services};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::{AnthropicError, BedrockError, BedrockErrorCode, OpenAiError};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The calling path: resolve, place, admit, run and meter a model call.
    pub core: Arc<Basalt>,
    pub provisioned: Arc<ProvisionedService>,
    pub profiles: Arc<basalt_core::profiles::InferenceProfileService>,
    pub batch: Arc<BatchService>,
    pub guardrails: Arc<basalt_core::guardrails::GuardrailService>,
    pub knowledge: Arc<basalt_core::knowledge::KnowledgeService>,
    pub agents: Arc<basalt_core::agents::AgentService>,
    pub customization: Arc<basalt_core::customization::CustomizationService>,
    pub responses: Arc<basalt_core::responses::ResponseService>,
    /// Every service (for the background work).
    pub services: Services,
    pub metrics: Option<PrometheusHandle>,
    /// Permits to work and per-address upload budgets (`auth`).
    pub admission: Arc<auth::Admission>,
}

impl AppState {
    pub fn new(services: Services, metrics: Option<PrometheusHandle>) -> Self {
        let core = Arc::clone(&services.core);
        let limits = core.limits();
        let admission = Arc::new(auth::Admission::new(
            limits.max_concurrent_requests,
            limits.max_uploads_per_ip,
        ));
        Self {
            core,
            provisioned: Arc::clone(&services.provisioned),
            profiles: Arc::clone(&services.profiles),
            batch: Arc::clone(&services.batch),
            guardrails: Arc::clone(&services.guardrails),
            knowledge: Arc::clone(&services.knowledge),
            agents: Arc::clone(&services.agents),
            customization: Arc::clone(&services.customization),
            responses: Arc::clone(&services.responses),
            services,
            metrics,
            admission,
        }
    }
}

/// Starts the background work of the API: the core's job runner, with the Bedrock
/// reading of batch records. Call once, inside the runtime, before serving [`app`].
pub fn start_background(state: &AppState) {
    state.services.start_jobs(Arc::new(bedrock::BedrockRecords));
    state.agents.start_idle_sweeper();
}

/// The whole HTTP API.
///
/// The API routes sit behind [`auth::authenticate`], which enforces the body limit
/// and the concurrency limit itself (after authentication); `/health` and `/metrics`
/// are outside both, so a saturated or attacked server still answers them.
pub fn app(state: AppState) -> Router {
    let api = api_routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // The middleware has read the body within `max_body_bytes`; axum's own 2 MiB
        // default would answer 2-4 MiB bodies with a bare 413.
        .layer(axum::extract::DefaultBodyLimit::disable());
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .merge(api)
        .fallback(auth::not_found)
        .with_state(state)
}

/// Every API route without the authentication middleware: for [`call_as`], which
/// calls them on behalf of a caller authenticated another way (the console's session).
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(bedrock::routes())
        .merge(openai::routes())
        .merge(rerank::routes())
        .merge(anthropic::routes())
        .merge(responses::routes())
        .merge(admin::routes())
}

/// Calls an API route as `principal`: what the route answers is what the same request
/// signed by that key would get, permissions, limits and errors included. `api` is
/// [`api_routes`] with the state; the body is the request's whole body (the caller
/// bounds it). Takes a permit to work as every API request does.
pub async fn call_as(
    state: &AppState,
    api: &Router,
    principal: basalt_core::keys::Principal,
    request: axum::http::Request<axum::body::Body>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let request_id = uuid::Uuid::new_v4().to_string();
    // The same permissions as the API's own entrance: the body is whole here.
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return error::BedrockError::from(basalt_core::CoreError::Validation(format!(
                "cannot read the request body: {e}"
            )))
            .into_response()
        }
    };
    let path = parts.uri.path().to_owned();
    let authorized = match permissions::authorize(
        state,
        &principal,
        &parts.method,
        &path,
        &parts.headers,
        &bytes,
    ) {
        Ok(authorized) => authorized,
        Err(refused) => {
            if let Some(attempt) =
                permissions::attempted(state, &parts.method, &path, &parts.headers, &bytes)
            {
                let status = refused.status().as_u16();
                permissions::audit(state, &principal, &request_id, "console", attempt, status)
                    .await;
            }
            return refused;
        }
    };
    let mut request = axum::http::Request::from_parts(parts, axum::body::Body::from(bytes));
    request.extensions_mut().insert(principal.clone());
    request
        .extensions_mut()
        .insert(auth::RequestId(request_id.clone()));
    let _permit = state.admission.work().await;
    let mut response = match api.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Some(done) = authorized.filter(|a| a.mutates) {
        permissions::audit(
            state,
            &principal,
            &request_id,
            "console",
            (done.action, done.resources),
            response.status().as_u16(),
        )
        .await;
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// `GET /ready`: 200 when this node can serve (its store answers), else 503 with why
/// — for a load balancer's health check; `/health` says only that the process is up.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let health = Arc::clone(&state.services.store_health);
    let checked = tokio::task::spawn_blocking(move || health.ping()).await;
    match checked {
        Ok(Ok(())) => (
            axum::http::StatusCode::OK,
            axum::Json(serde_json::json!({ "ready": true })),
        )
            .into_response(),
        Ok(Err(e)) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "reason": e.to_string() })),
        )
            .into_response(),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                serde_json::json!({ "ready": false, "reason": "the readiness check failed" }),
            ),
        )
            .into_response(),
    }
}

async fn render_metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    // The meter publishes invocation metrics a batch at a time: flush it, so the scrape
    // includes every invocation recorded before it.
    let meter = state.core.meter().clone();
    let _ =
        tokio::task::spawn_blocking(move || meter.flush(std::time::Duration::from_secs(2))).await;
    let mut text = state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    use basalt_core::engine_counters::EngineCounters;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    type Pick = fn(&EngineCounters) -> &AtomicU64;
    let metrics: [(&str, &str, &str, Pick); 8] = [
        (
            "basalt_engine_prompt_tokens_processed_total",
            "counter",
            "Prompt tokens computed by the local engine",
            |c| &c.prompt_tokens_processed,
        ),
        (
            "basalt_engine_prompt_tokens_reused_total",
            "counter",
            "Prompt tokens served from the prefix cache",
            |c| &c.prompt_tokens_reused,
        ),
        (
            "basalt_engine_tokens_generated_total",
            "counter",
            "Tokens generated by the local engine",
            |c| &c.tokens_generated,
        ),
        (
            "basalt_engine_decode_steps_total",
            "counter",
            "llama.cpp decode calls",
            |c| &c.decode_steps,
        ),
        (
            "basalt_engine_lookup_drafted_total",
            "counter",
            "Tokens drafted by prompt lookup ([engine] lookup_drafts)",
            |c| &c.lookup_drafted,
        ),
        (
            "basalt_engine_lookup_accepted_total",
            "counter",
            "Drafted tokens the model confirmed",
            |c| &c.lookup_accepted,
        ),
        (
            "basalt_engine_threads",
            "gauge",
            "llama.cpp threads of the engine's last decode step",
            |c| &c.threads,
        ),
        (
            "basalt_engine_requests_waiting",
            "gauge",
            "Requests accepted and waiting for a slot",
            |c| &c.waiting,
        ),
    ];
    // Rendered here rather than through the recorder, so the recorder's global
    // `node` label is added by hand: every series names its node.
    let node = prometheus_label(state.services.jobs.node());
    let engines = state.core.local_chat_engines();
    if !engines.is_empty() {
        for (name, kind, help, pick) in metrics {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (i, engine) in engines.iter().enumerate() {
                text.push_str(&format!(
                    "{name}{{engine=\"{i}\",node=\"{node}\"}} {}\n",
                    pick(engine.counters()).load(Relaxed)
                ));
            }
        }
    }
    render_cpu_budget(&mut text, &node);
    text
}

/// A label value as the Prometheus text format writes it (`\\`, `\"` and `\n`
/// escaped).
fn prometheus_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The CPU budget shared by the local engines: what it sees and what it decided.
fn render_cpu_budget(text: &mut String, node: &str) {
    let cpu = basalt_core::engine_counters::cpu_budget().snapshot();
    let gauges: [(&str, &str, String); 8] = [
        (
            "basalt_cpu_cores",
            "Cores this process may use",
            cpu.cores.to_string(),
        ),
        (
            "basalt_cpu_adaptive",
            "1 when engine threads follow the load ([engine] adapt_threads)",
            u8::from(cpu.adaptive).to_string(),
        ),
        (
            "basalt_cpu_neighbours_measured",
            "1 when other processes' load is read (this process may use every CPU of the machine)",
            u8::from(cpu.reads_neighbours).to_string(),
        ),
        (
            "basalt_cpu_neighbour_load",
            "Cores other processes keep busy (smoothed)",
            format!("{:.3}", cpu.neighbour_load),
        ),
        (
            "basalt_cpu_reserved_for_neighbours",
            "Cores the engines leave to other processes",
            cpu.reserved_for_neighbours.to_string(),
        ),
        (
            "basalt_cpu_background_threads",
            "Threads of training jobs, which the engines leave their cores to",
            cpu.background_threads.to_string(),
        ),
        (
            "basalt_cpu_embedding_passes_running",
            "Embedding forward passes running",
            cpu.embedding_passes_running.to_string(),
        ),
        (
            "basalt_cpu_embedding_passes_waiting",
            "Embedding forward passes waiting for a core",
            cpu.embedding_passes_waiting.to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{node=\"{node}\"}} {value}\n"
        ));
    }
}
