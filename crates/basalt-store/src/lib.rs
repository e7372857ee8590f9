//! Persistence behind small traits, one per capability: [`KeyStore`] for API keys,
//! [`InvocationLog`] for metering, [`GuardrailStore`] for guardrail versions,
//! [`QuotaStore`] for quota windows, [`KnowledgeStore`] for knowledge-base records,
//! [`JobStore`] for long-running jobs of every kind (claimed under leases),
//! [`BatchJobStore`], [`ProvisionedStore`], [`InferenceProfileStore`],
//! [`AgentStore`] and [`CustomModelStore`] for their
//! features' records; [`CoreStore`] is all of the core's.
//! [`SqliteStore`] (the embedded default: WAL mode, migrations from `migrations/`) and
//! [`PostgresStore`] (one database for a fleet of nodes: migrations from
//! `migrations/postgres/`) implement them all, and one suite of tests runs on both.

pub mod agents;
mod batch;
mod custom_models;
mod guardrails;
pub mod jobs;
pub mod knowledge;
pub mod pg;
mod pg_agents;
mod pg_batch;
pub mod pg_connect;
mod pg_custom_models;
mod pg_guardrails;
mod pg_jobs;
mod pg_keys;
mod pg_knowledge;
mod pg_profiles;
mod pg_provisioned;
mod pg_responses;
mod profiles;
mod provisioned;
mod responses;
mod sqlite;
mod sqlite_agents;
mod sqlite_batch;
mod sqlite_custom_models;
mod sqlite_guardrails;
mod sqlite_jobs;
mod sqlite_knowledge;
mod sqlite_profiles;
mod sqlite_provisioned;
mod sqlite_responses;

pub use agents::{AgentKind, AgentRecord, AgentStore};
pub use batch::{BatchCounts, BatchJobRecord, BatchJobStore, BATCH_JOB_KIND};
pub use custom_models::{CustomModelRecord, CustomModelStore, DeploymentRecord};
pub use guardrails::{GuardrailRecord, GuardrailStore, DRAFT};
pub use jobs::{Claim, JobProgress, JobRecord, JobState, JobStore, NewJob};
pub use knowledge::{KnowledgeKind, KnowledgeRecord, KnowledgeStore};
pub use profiles::{InferenceProfileRecord, InferenceProfileStore};
pub use provisioned::{ProvisionedRecord, ProvisionedStore};
pub use responses::{ResponseStore, StoredResponseRecord};

pub use pg::{PoolConfig, PostgresStore};
pub use sqlite::SqliteStore;

#[cfg(test)]
mod suite;
#[cfg(test)]
mod testing;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("a record with this {0} already exists")]
    Duplicate(&'static str),
    /// The database cannot be reached (down, restarting, out of connections): the
    /// request may succeed later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// A key's own quota overrides; `None` means the configured default applies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub monthly_budget_usd: Option<f64>,
}

/// An API key as stored: identifiers and a hash, never a usable secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// The SigV4 access key ID (`AKIA`-style, public).
    pub access_key_id: String,
    /// Hex SHA-256 of the bearer token.
    pub bearer_sha256: String,
    pub is_admin: bool,
    /// Unix seconds.
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub limits: KeyLimits,
    /// A mandatory knowledge-base retrieval filter (RetrievalFilter JSON).
    pub retrieval_filter: Option<String>,
    /// The key's permissions policy (IAM-style JSON); `None`: every action.
    pub policy: Option<String>,
}

/// API keys.
pub trait KeyStore: Send + Sync {
    fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    fn key_by_access_key_id(&self, access_key_id: &str) -> Result<Option<KeyRecord>, StoreError>;
    fn key_by_bearer_sha256(&self, bearer_sha256: &str) -> Result<Option<KeyRecord>, StoreError>;
    fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Revokes the key whose `id` or `access_key_id` is given; false when none matched
    /// or it was already revoked.
    fn revoke_key(&self, id_or_access_key_id: &str, at: i64) -> Result<bool, StoreError>;
    /// Replaces the quota overrides of the key whose `id` or `access_key_id` is given;
    /// false when there is no such key.
    /// Replaces the key's mandatory retrieval filter; false when no such key.
    fn set_key_retrieval_filter(
        &self,
        id_or_access_key_id: &str,
        filter: Option<&str>,
    ) -> Result<bool, StoreError>;
    fn set_key_limits(
        &self,
        id_or_access_key_id: &str,
        limits: &KeyLimits,
    ) -> Result<bool, StoreError>;
    /// Replaces the key's permissions policy; false when no such key.
    fn set_key_policy(
        &self,
        id_or_access_key_id: &str,
        policy: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// A value that changes whenever the keys change (from any connection or process),
    /// so callers can cache keys and notice revocations at once.
    fn change_marker(&self) -> Result<i64, StoreError>;
}

/// One metered model invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    /// Unix milliseconds when the request arrived.
    pub at_ms: i64,
    pub request_id: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub model_id: String,
    /// `ON_DEMAND`, `PROVISIONED` or `BATCH`.
    pub inference_type: String,
    /// The API operation, e.g. `Converse`, `InvokeModel`, `ChatCompletions`.
    pub operation: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub first_token_ms: Option<u64>,
    pub cost_usd: f64,
    /// `success`, `client_error`, `server_error` or `throttled`.
    pub outcome: String,
    /// The application inference profile the call was made through, if any.
    pub inference_profile: Option<String>,
    /// The alias the call named, if it named one (`model_id` is the model that answered).
    pub model_alias: Option<String>,
    /// The agent session the call was a step of (`<agent ID>/<session ID>`), if any.
    pub agent_session: Option<String>,
    /// The node that served the call (`[jobs] node`), on a fleet sharing the store.
    pub node: Option<String>,
}

/// Usage summed over a period for one key and model.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub key_name: String,
    pub model_id: String,
    pub inference_type: String,
    pub invocations: u64,
    pub errors: u64,
    /// Invocations refused by a quota or budget (counted in `errors` too).
    pub throttles: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub avg_latency_ms: f64,
}

/// Metering records.
pub trait InvocationLog: Send + Sync {
    fn record_invocations(&self, records: &[InvocationRecord]) -> Result<(), StoreError>;
    /// Usage by key and model for invocations with `since_ms <= at_ms < until_ms`.
    fn usage(&self, since_ms: i64, until_ms: i64) -> Result<Vec<UsageRow>, StoreError>;
    /// Cost per key ID of the invocations since `since_ms`.
    fn spend_by_key(&self, since_ms: i64) -> Result<Vec<(String, f64)>, StoreError>;
    /// Every invocation with `since_ms <= at_ms < until_ms`, oldest first (for
    /// percentiles and time buckets).
    fn invocation_samples(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<InvocationSample>, StoreError>;
}

/// One invocation, as the usage report needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationSample {
    pub at_ms: i64,
    pub key_name: String,
    pub model_id: String,
    pub inference_type: String,
    pub outcome: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub cost_usd: f64,
    /// The application inference profile the call was made through, if any.
    pub inference_profile: Option<String>,
    /// The alias the call named, if any.
    pub model_alias: Option<String>,
    /// The agent session the call was a step of (`<agent ID>/<session ID>`), if any.
    pub agent_session: Option<String>,
    /// The node that served the call, if recorded.
    pub node: Option<String>,
}

/// Requests and tokens counted in one quota window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaWindow {
    pub key_id: String,
    pub model_id: String,
    pub window_start_ms: i64,
    pub requests: u64,
    pub tokens: u64,
}

/// A change to one quota window's counts: positive to claim, negative to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaClaim {
    pub key_id: String,
    pub model_id: String,
    pub window_start_ms: i64,
    pub requests: i64,
    pub tokens: i64,
}

/// Quota windows: the requests and tokens claimed in each (key, model, minute) by
/// every node sharing the store. Nodes claim shares ahead of use, so admission is
/// exact across nodes without a store round trip per request.
pub trait QuotaStore: Send + Sync {
    /// Adds `claim` to its window unless a positive part would take the window past
    /// its limit (`None`: unlimited); returns the window's totals after it, or `None`
    /// when it was refused (nothing changed). Counts never go below zero.
    fn claim_quota(
        &self,
        claim: &QuotaClaim,
        max_requests: Option<u64>,
        max_tokens: Option<u64>,
    ) -> Result<Option<QuotaWindow>, StoreError>;
    /// Windows that started at or after `since_ms`.
    fn quota_windows_since(&self, since_ms: i64) -> Result<Vec<QuotaWindow>, StoreError>;
    /// Drops windows that started before `before_ms`.
    fn prune_quota_windows(&self, before_ms: i64) -> Result<(), StoreError>;
}

/// One control-plane change (or a refused attempt at one): who, what, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub request_id: String,
    /// The key that made it (`None`: the CLI, which names its user in `key_name`).
    pub key_id: Option<String>,
    pub key_name: String,
    /// The action, e.g. `bedrock:CreateGuardrail`, `basalt:RevokeKey`.
    pub action: String,
    /// The resources, as ARNs, comma-separated (`*` for none in particular).
    pub resource: String,
    /// The HTTP status it was answered with (0 for the CLI, which has none).
    pub status: u16,
    /// Where it came from: `api`, `console` or `cli`.
    pub source: String,
}

/// What an audit query asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    pub since_ms: i64,
    pub until_ms: i64,
    /// Only this key's (ID or name).
    pub key: Option<&'a str>,
    /// Only entries after this sequence number (paging).
    pub after: Option<i64>,
    pub limit: usize,
}

/// The audit log of control-plane changes.
pub trait AuditStore: Send + Sync {
    fn record_audit(&self, record: &AuditRecord) -> Result<(), StoreError>;
    /// Entries in the period, oldest first, each with its sequence number.
    fn audit_log(&self, query: &AuditQuery<'_>) -> Result<Vec<(i64, AuditRecord)>, StoreError>;
}

/// Whether the store answers (readiness).
pub trait StoreHealth: Send + Sync + std::fmt::Debug {
    /// One trivial round trip; `Unavailable` when the database cannot be reached.
    fn ping(&self) -> Result<(), StoreError>;
}

/// Everything the core keeps in one store (a backend implements all of it).
pub trait CoreStore:
    AuditStore
    + StoreHealth
    + GuardrailStore
    + QuotaStore
    + InvocationLog
    + BatchJobStore
    + JobStore
    + ProvisionedStore
    + InferenceProfileStore
    + KnowledgeStore
    + AgentStore
    + CustomModelStore
    + ResponseStore
{
}

impl<T> CoreStore for T where
    T: AuditStore
        + StoreHealth
        + GuardrailStore
        + QuotaStore
        + InvocationLog
        + BatchJobStore
        + JobStore
        + ProvisionedStore
        + InferenceProfileStore
        + KnowledgeStore
        + AgentStore
        + CustomModelStore
        + ResponseStore
{
}

/// Everything a server keeps: its keys and the core's records.
pub trait ServerStore: KeyStore + CoreStore {}

impl<T> ServerStore for T where T: KeyStore + CoreStore {}

/// Opens the store a server or the CLI is configured with: PostgreSQL for a
/// `postgres://` or `postgresql://` URL, else SQLite at `sqlite_path`.
pub fn open(
    url: Option<&str>,
    sqlite_path: &std::path::Path,
    pool: PoolConfig,
) -> Result<std::sync::Arc<dyn ServerStore>, StoreError> {
    match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(std::sync::Arc::new(PostgresStore::open(url, pool)?))
        }
        Some(other) => Err(StoreError::Database(format!(
            "store url {:?} is not a postgres:// URL (leave it out for the embedded SQLite store)",
            other.split('@').next_back().unwrap_or_default()
        ))),
        None => Ok(std::sync::Arc::new(SqliteStore::open(sqlite_path)?)),
    }
}
