//! [`Basalt`]: the core facade the edge calls. It resolves models in the catalog,
//! enforces their lifecycle and capabilities, runs them on their provider and meters
//! every invocation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use basalt_engine::chat::{ChatEngine, ChatEngineConfig};
use basalt_engine::embed::{EmbeddingEngine, EmbeddingEngineConfig};
use basalt_store::{InvocationLog, InvocationRecord, ProvisionedStore};
use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::catalog::{Catalog, EngineKind, LifecycleStatus, ModelEntry};
use crate::config::{ConfigFile, EngineConfig, LimitsConfig};
use crate::error::engine_error;
use crate::keys::{KeyService, Principal};
use crate::local_paths::AllowedPaths;
use crate::metering::Meter;
use crate::model_fetch::verify_weights;
use crate::provider::{
    ChatProvider, DeltaStream, Echo, EmbeddingProvider, LocalChat, LocalEmbedding, Ranked,
    RemoteChat, RemoteRerank,
};
use crate::provisioned::{provisioned_id, Capacity};
use crate::quotas::{Clock, QuotaTicket, Quotas, SystemClock};
use crate::types::{
    ChatRequest, CompletionRequest, ContentBlock, Embeddings, Generation, GenerationDelta,
    InferenceParams, InferenceType, Outcome, Role, TokenUsage,
};
use crate::CoreError;

/// Who is calling and for what, carried through one request.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub principal: Option<Principal>,
    pub request_id: String,
    /// The API operation, for metering (`Converse`, `InvokeModel`, `ChatCompletions`, ...).
    pub operation: &'static str,
    pub started: Instant,
    pub at_ms: i64,
    /// The quota hold of this call, settled by the first metering record.
    quota: Arc<Mutex<Option<QuotaTicket>>>,
    /// On demand, batch (outside on-demand quotas, half price) or provisioned
    /// (reserved capacity, billed by the hour).
    pub inference_type: InferenceType,
    /// The engine capacity this call holds, given back by its metering record.
    capacity: Arc<Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>,
    /// The application inference profile the call names, metered with it.
    pub inference_profile: Option<String>,
    /// The alias the call names, metered beside the model that answers.
    pub model_alias: Option<String>,
    /// The agent session this call is a step of (`<agent ID>/<session ID>`), metered with it.
    pub agent_session: Option<String>,
}

impl CallContext {
    /// How a local engine schedules this call.
    pub fn priority(&self) -> crate::types::Priority {
        self.inference_type.priority()
    }

    pub fn new(principal: Option<Principal>, request_id: String, operation: &'static str) -> Self {
        let at_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        Self {
            principal,
            request_id,
            operation,
            started: Instant::now(),
            at_ms,
            quota: Arc::new(Mutex::new(None)),
            inference_type: InferenceType::OnDemand,
            capacity: Arc::new(Mutex::new(None)),
            inference_profile: None,
            model_alias: None,
            agent_session: None,
        }
    }

    /// A call made by a batch job on behalf of the key that created it.
    pub fn batch(principal: Option<Principal>, request_id: String) -> Self {
        Self {
            inference_type: InferenceType::Batch,
            ..Self::new(principal, request_id, "ModelInvocationJob")
        }
    }
}

/// Batch inference is metered at this share of the on-demand token price.
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// A rough input-token count for a quota reservation (4 characters a token); the
/// reservation is settled to the real count when the call ends.
/// The most documents one reranking takes (Bedrock's Rerank limit).
pub const MAX_RERANK_DOCUMENTS: usize = 1000;

fn estimated_tokens<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts
        .into_iter()
        .map(|t| t.chars().count() as u64)
        .sum::<u64>()
        .div_ceil(4)
}

fn chat_texts(request: &ChatRequest) -> impl Iterator<Item = &str> {
    request.system.iter().map(String::as_str).chain(
        request
            .messages
            .iter()
            .flat_map(|m| m.content.iter())
            .filter_map(|b| match b {
                ContentBlock::Text(t) => Some(t.as_str()),
                ContentBlock::ToolResult { content, .. } => Some(content.as_str()),
                _ => None,
            }),
    )
}

/// The running core.
pub struct Basalt {
    catalog: Catalog,
    chat: HashMap<String, Arc<dyn ChatProvider>>,
    embedding: HashMap<String, Arc<dyn EmbeddingProvider>>,
    rerank: HashMap<String, Arc<RemoteRerank>>,
    /// This node's name in a fleet (`[jobs] node`), written on each invocation row.
    node: Option<String>,
    local_chat_engines: Vec<Arc<ChatEngine>>,
    meter: Meter,
    keys: Arc<KeyService>,
    limits: LimitsConfig,
    region: String,
    account_id: String,
    quotas: Arc<Quotas>,
    allowed_paths: AllowedPaths,
    s3: crate::s3::S3Locations,
    provisioned_store: Arc<dyn ProvisionedStore>,
    custom_models: crate::custom_models::CustomModels,
    profile_store: Arc<dyn basalt_store::InferenceProfileStore>,
    capacity: Capacity,
    invocation_log: Arc<dyn InvocationLog>,
    provisioned_config: crate::config::ProvisionedConfig,
}

impl std::fmt::Debug for Basalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basalt")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn default_threads() -> i32 {
    crate::config::cores() as i32
}

impl Basalt {
    /// Verifies and loads every model the catalog can serve (EOL models are not loaded).
    pub fn start(
        config: &ConfigFile,
        models_dir: &Path,
        meter: Meter,
        keys: Arc<KeyService>,
        store: Arc<dyn basalt_store::CoreStore>,
    ) -> Result<Self, CoreError> {
        Self::start_with_clock(
            config,
            models_dir,
            meter,
            keys,
            store,
            Arc::new(SystemClock),
        )
    }

    /// [`Self::start`] with a given clock for the quota windows.
    pub fn start_with_clock(
        config: &ConfigFile,
        models_dir: &Path,
        meter: Meter,
        keys: Arc<KeyService>,
        store: Arc<dyn basalt_store::CoreStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CoreError> {
        let catalog = Catalog::from_config(config)?;
        if let Some(unknown) = config
            .quotas
            .models
            .keys()
            .find(|id| catalog.get(id).is_none())
        {
            return Err(CoreError::Validation(format!(
                "[quotas.models] names {unknown:?}, which is not in the catalog"
            )));
        }
        let quotas = Arc::new(Quotas::new(
            config.quotas.clone(),
            clock,
            store.clone(),
            store.clone(),
        )?);
        Quotas::start_flusher(&quotas);
        let now = OffsetDateTime::now_utc();
        let mut chat_by_weights: HashMap<String, Arc<ChatEngine>> = HashMap::new();
        let mut embed_by_weights: HashMap<String, Arc<EmbeddingEngine>> = HashMap::new();
        let mut chat: HashMap<String, Arc<dyn ChatProvider>> = HashMap::new();
        let mut embedding: HashMap<String, Arc<dyn EmbeddingProvider>> = HashMap::new();
        let mut rerank: HashMap<String, Arc<RemoteRerank>> = HashMap::new();
        let mut http_client: Option<basalt_providers::HttpClient> = None;
        let mut local_slots: HashMap<String, u32> = HashMap::new();
        let mut base_engines: HashMap<String, ChatEngineConfig> = HashMap::new();
        basalt_engine::cpu::budget().set_adaptive(config.engine.adapt_threads);
        for entry in catalog.models() {
            if entry.lifecycle.status_at(now) == LifecycleStatus::Eol {
                continue;
            }
            if entry.engine == EngineKind::Echo {
                chat.insert(entry.id.clone(), Arc::new(Echo));
                continue;
            }
            if entry.engine == EngineKind::Remote {
                let client = match &http_client {
                    Some(c) => c.clone(),
                    None => {
                        let c = basalt_providers::HttpClient::per_thread()?;
                        http_client = Some(c.clone());
                        c
                    }
                };
                if entry.is_embedding() {
                    embedding.insert(entry.id.clone(), Arc::new(remote_embedding(entry, client)?));
                } else if entry.is_rerank() {
                    rerank.insert(entry.id.clone(), Arc::new(remote_rerank(entry, client)?));
                } else {
                    chat.insert(entry.id.clone(), Arc::new(remote_chat(entry, client)?));
                }
                continue;
            }
            let weights_name = entry.weights.clone().unwrap_or_default();
            let weights = catalog
                .weights()
                .get(&weights_name)
                .ok_or_else(|| CoreError::Internal(format!("weights {weights_name} missing")))?;
            let dir = match verify_weights(models_dir, &weights_name, weights) {
                Ok(dir) => dir,
                Err(e) => {
                    return Err(CoreError::ServiceUnavailable(format!(
                        "model {}: {e}",
                        entry.id
                    )))
                }
            };
            match entry.engine {
                EngineKind::LlamaCpp => {
                    let engine = match chat_by_weights.get(&weights_name) {
                        Some(e) => Arc::clone(e),
                        None => {
                            let file = weights
                                .files
                                .first()
                                .map(|f| dir.join(&f.path))
                                .unwrap_or_else(|| PathBuf::from(&dir));
                            tracing::info!(model = %entry.id, file = %file.display(), "loading chat model");
                            let engine = Arc::new(
                                ChatEngine::load(chat_config(
                                    &config.engine,
                                    &config.provisioned,
                                    file,
                                ))
                                .map_err(engine_error)?,
                            );
                            chat_by_weights.insert(weights_name.clone(), Arc::clone(&engine));
                            engine
                        }
                    };
                    local_slots.insert(weights_name.clone(), engine.config().slots);
                    base_engines.insert(weights_name.clone(), engine.config().clone());
                    chat.insert(entry.id.clone(), Arc::new(LocalChat::new(engine)));
                }
                EngineKind::Echo | EngineKind::Remote => {}
                EngineKind::OnnxBert => {
                    let engine = match embed_by_weights.get(&weights_name) {
                        Some(e) => Arc::clone(e),
                        None => {
                            tracing::info!(model = %entry.id, dir = %dir.display(), "loading embedding model");
                            let engine = Arc::new(
                                EmbeddingEngine::load(EmbeddingEngineConfig {
                                    model_dir: dir.clone(),
                                    max_tokens: entry.max_input_tokens.unwrap_or(512) as usize,
                                    batch_size: config.engine.embedding_batch.max(1),
                                    batch_tokens: config.engine.embedding_batch_tokens,
                                    threads: engine_threads(&config.engine),
                                    runtime_library: onnx_runtime_library(
                                        &catalog,
                                        models_dir,
                                        &config.engine.onnxruntime_weights,
                                    )?,
                                })
                                .map_err(engine_error)?,
                            );
                            embed_by_weights.insert(weights_name.clone(), Arc::clone(&engine));
                            engine
                        }
                    };
                    embedding.insert(entry.id.clone(), Arc::new(LocalEmbedding::new(engine)));
                }
            }
        }
        let core = Self {
            catalog,
            chat,
            embedding,
            rerank,
            node: (!config.jobs.node.is_empty()).then(|| config.jobs.node.clone()),
            local_chat_engines: chat_by_weights.into_values().collect(),
            meter,
            keys,
            limits: config.limits.clone(),
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            quotas,
            allowed_paths: AllowedPaths::from_config(&config.allowed_local_paths)?,
            s3: crate::s3::S3Locations::new(&config.s3, &config.region),
            invocation_log: store.clone(),
            profile_store: store.clone(),
            custom_models: crate::custom_models::CustomModels::new(
                store.clone(),
                &config.region,
                &config.account_id,
                base_engines,
                config.customization.adapter_slots,
                crate::model_artifacts::ModelArtifacts::new(
                    &config.customization.artifacts,
                    &config.s3,
                    &config.region,
                    config.customization.data_root().join("models"),
                )?,
            ),
            provisioned_store: store,
            capacity: Capacity::new(config.provisioned.clone(), local_slots),
            provisioned_config: config.provisioned.clone(),
        };
        Ok(core)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn keys(&self) -> &KeyService {
        &self.keys
    }

    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account ID written into ARNs of resources this server creates.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The usage report over `[since_ms, until_ms)` (see [`crate::usage`]).
    pub fn usage_report(
        &self,
        since_ms: i64,
        until_ms: i64,
        bucket: crate::usage::Bucket,
        per_node: bool,
    ) -> Result<crate::usage::UsageReport, CoreError> {
        let samples = self
            .invocation_log
            .invocation_samples(since_ms, until_ms)
            .map_err(|e| CoreError::Internal(format!("invocation log: {e}")))?;
        let provisioned = self
            .provisioned_store
            .list_provisioned()
            .map_err(|e| CoreError::Internal(format!("provisioned store: {e}")))?;
        Ok(crate::usage::report(
            &samples,
            &provisioned,
            &self.catalog,
            &self.provisioned_config,
            since_ms,
            until_ms,
            bucket,
            per_node,
        ))
    }

    /// Reserved and on-demand capacity per model.
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// Notes the inference profile or alias a call named, for its metering record.
    fn note_names(&self, ctx: &mut CallContext, requested_id: &str) {
        ctx.inference_profile = crate::profiles::profile_id(requested_id).map(str::to_owned);
        ctx.model_alias = self
            .catalog
            .is_alias(requested_id)
            .then(|| requested_id.to_owned());
    }

    /// Where a call runs: through a provisioned model's reserved capacity (its ARN as
    /// the model ID), or on the on-demand share. Custom models have no on-demand share.
    async fn place(
        &self,
        ctx: &mut CallContext,
        requested_id: &str,
        entry: &ModelEntry,
    ) -> Result<(), CoreError> {
        self.note_names(ctx, requested_id);
        let permit = if let Some(pm) = provisioned_id(requested_id) {
            let record = crate::provisioned::find(self.provisioned_store.as_ref(), pm)?;
            if crate::provisioned::status_of(&record)
                != crate::provisioned::ProvisionedStatus::InService
            {
                return Err(CoreError::ModelNotReady(format!(
                    "provisioned model {} is {}",
                    record.name, record.status
                )));
            }
            ctx.inference_type = InferenceType::Provisioned;
            // Made on another node sharing the store: this node reserves its units
            // when first asked for it.
            if self
                .capacity
                .reserve_missing(entry, &record.id, record.model_units)?
            {
                tracing::info!(provisioned = %record.id, units = record.model_units, "reserved the units of a provisioned model made on another node");
            }
            Some(self.capacity.admit_provisioned(&record.id).await?)
        } else {
            if entry.custom {
                return Err(CoreError::Validation(format!(
                    "model {} is a custom model; it can be invoked only through provisioned throughput (CreateProvisionedModelThroughput, then its ARN as modelId) or a custom model deployment (CreateCustomModelDeployment, then its ARN as modelId)",
                    entry.id
                )));
            }
            if ctx.inference_type == InferenceType::Batch {
                self.capacity.admit_background(entry).await?
            } else {
                self.capacity.admit_on_demand(entry).await?
            }
        };
        if let Ok(mut slot) = ctx.capacity.lock() {
            *slot = permit;
        }
        Ok(())
    }

    /// Where `file://` URIs may point.
    /// The server's S3 access (`s3://` locations, allowed buckets only).
    pub fn s3(&self) -> &crate::s3::S3Locations {
        &self.s3
    }

    pub fn allowed_paths(&self) -> &AllowedPaths {
        &self.allowed_paths
    }

    /// Quota state (limits, windows, budgets).
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Admits a call against its key's quotas, holding `reserve_tokens`.
    fn admit(
        &self,
        ctx: &CallContext,
        entry: &ModelEntry,
        reserve_tokens: u64,
    ) -> Result<(), CoreError> {
        if ctx.inference_type != InferenceType::OnDemand {
            return Ok(());
        }
        let ticket = self
            .quotas
            .admit(ctx.principal.as_ref(), &entry.id, reserve_tokens)?;
        if let Ok(mut slot) = ctx.quota.lock() {
            *slot = ticket;
        }
        Ok(())
    }

    pub(crate) fn has_embedding_provider(&self, model_id: &str) -> bool {
        self.embedding.contains_key(model_id)
    }

    /// The local chat engines (for their counters).
    pub fn local_chat_engines(&self) -> &[Arc<ChatEngine>] {
        &self.local_chat_engines
    }

    /// The catalog entry for an invocation: unknown IDs are NotFound, EOL models fail
    /// naming their replacement, LEGACY models are logged.
    pub fn resolve(&self, model_id: &str) -> Result<Cow<'_, ModelEntry>, CoreError> {
        if let Some(id) = crate::custom_models::custom_model_id(model_id) {
            return self.custom_models.entry(&self.catalog, id);
        }
        if let Some(id) = crate::custom_models::deployment_id(model_id) {
            return self.custom_models.deployment_entry(&self.catalog, id);
        }
        if let Some(id) = crate::custom_models::imported_model_id(model_id) {
            return self.custom_models.imported_entry(&self.catalog, id);
        }
        if crate::profiles::profile_id(model_id).is_some() {
            let profile = crate::profiles::find(self.profile_store.as_ref(), model_id)?;
            return self.resolve(&profile.model_id);
        }
        if let Some(pm) = provisioned_id(model_id) {
            let record = crate::provisioned::find(self.provisioned_store.as_ref(), pm)?;
            return self.resolve(&record.model_id);
        }
        let entry = self.catalog.lookup(model_id).ok_or_else(|| {
            CoreError::NotFound(format!("model {model_id} is not in this server's catalog"))
        })?;
        match entry.lifecycle.status_at(OffsetDateTime::now_utc()) {
            LifecycleStatus::Eol => Err(CoreError::Validation(format!(
                "model {model_id} has reached end of life{}",
                entry
                    .lifecycle
                    .replacement
                    .as_deref()
                    .map(|r| format!("; use {r} instead"))
                    .unwrap_or_default()
            ))),
            LifecycleStatus::Legacy => {
                tracing::warn!(
                    model = model_id,
                    replacement = entry.lifecycle.replacement.as_deref().unwrap_or(""),
                    "invocation of a LEGACY model"
                );
                Ok(Cow::Borrowed(entry))
            }
            LifecycleStatus::Active => Ok(Cow::Borrowed(entry)),
        }
    }

    fn chat_provider(&self, entry: &ModelEntry) -> Result<Arc<dyn ChatProvider>, CoreError> {
        if entry.is_embedding() {
            return Err(CoreError::Validation(format!(
                "model {} is an embedding model; it cannot generate text",
                entry.id
            )));
        }
        if entry.is_rerank() {
            return Err(CoreError::Validation(format!(
                "model {} is a reranking model; it scores documents (Rerank), it cannot generate text",
                entry.id
            )));
        }
        if crate::custom_models::custom_model_id(&entry.id).is_some()
            || crate::custom_models::imported_model_id(&entry.id).is_some()
        {
            return self.custom_models.provider(entry);
        }
        self.chat
            .get(&entry.id)
            .cloned()
            .ok_or_else(|| CoreError::ModelNotReady(format!("model {} is not loaded", entry.id)))
    }

    /// The local chat engine serving `entry` (a llama.cpp model), for work that needs
    /// the engine's own tokenizer and chat template (customization).
    pub fn local_chat_engine(&self, entry: &ModelEntry) -> Option<Arc<ChatEngine>> {
        let path = &self
            .custom_models
            .base_engine(entry.weights.as_deref()?)?
            .model_path;
        self.local_chat_engines
            .iter()
            .find(|e| &e.config().model_path == path)
            .cloned()
    }

    /// Custom models (a base model plus a LoRA adapter).
    pub fn custom_models(&self) -> &crate::custom_models::CustomModels {
        &self.custom_models
    }

    pub(crate) fn embedding_provider(
        &self,
        entry: &ModelEntry,
    ) -> Result<Arc<dyn EmbeddingProvider>, CoreError> {
        if !entry.is_embedding() {
            return Err(CoreError::Validation(format!(
                "model {} is not an embedding model",
                entry.id
            )));
        }
        self.embedding
            .get(&entry.id)
            .cloned()
            .ok_or_else(|| CoreError::ModelNotReady(format!("model {} is not loaded", entry.id)))
    }

    /// Checks generation settings and returns the output token budget.
    fn max_tokens(
        &self,
        entry: &ModelEntry,
        provider: &dyn ChatProvider,
        params: &InferenceParams,
    ) -> Result<u32, CoreError> {
        let window = provider.context_window();
        if let Some(t) = params.temperature {
            if !(0.0..=1.0).contains(&t) || t.is_nan() {
                return Err(CoreError::Validation(format!(
                    "temperature {t} is outside 0..1"
                )));
            }
        }
        if let Some(p) = params.top_p {
            if !(0.0..=1.0).contains(&p) || p.is_nan() {
                return Err(CoreError::Validation(format!("topP {p} is outside 0..1")));
            }
        }
        if params.top_k.is_some_and(|k| k > 1000) {
            return Err(CoreError::Validation("top_k must be at most 1000".into()));
        }
        if params.stop_sequences.len() > 16 {
            return Err(CoreError::Validation(
                "at most 16 stop sequences are allowed".into(),
            ));
        }
        match params.max_tokens {
            Some(0) => Err(CoreError::Validation("maxTokens must be at least 1".into())),
            Some(n) if n >= window => Err(CoreError::Validation(format!(
                "maxTokens {n} exceeds the limit of model {}: its context window is {window} tokens (prompt + output)",
                entry.id
            ))),
            Some(n) => Ok(n),
            None => Ok(entry.default_max_tokens.min(window.saturating_sub(1)).max(1)),
        }
    }

    fn validate_chat(&self, entry: &ModelEntry, request: &ChatRequest) -> Result<(), CoreError> {
        if request.messages.is_empty() {
            return Err(CoreError::Validation(
                "messages must contain at least one message".into(),
            ));
        }
        let max_messages = self.limits().max_messages;
        if request.messages.len() > max_messages {
            return Err(CoreError::Validation(format!(
                "messages has {} messages; at most {max_messages} are accepted in one request",
                request.messages.len()
            )));
        }
        if let Some(tools) = &request.tools {
            if !entry.tools {
                return Err(CoreError::Validation(format!(
                    "model {} does not support tool use; remove toolConfig",
                    entry.id
                )));
            }
            crate::tool_calls::validate(tools)?;
            if request.response_schema.is_some() {
                return Err(CoreError::Validation(
                    "tools and structured output (a response JSON schema) cannot be combined in one request".into(),
                ));
            }
        }
        if let Some(schema) = &request.response_schema {
            if !schema.is_object() {
                return Err(CoreError::Validation(
                    "the response JSON schema must be a JSON object".into(),
                ));
            }
        }
        let has_image = request.messages.iter().any(|m| {
            m.content
                .iter()
                .any(|b| matches!(b, ContentBlock::Image(_)))
        });
        if has_image
            && !entry
                .input_modalities
                .contains(&crate::types::Modality::Image)
        {
            return Err(CoreError::Validation(format!(
                "model {} does not accept image content (its input modalities: {})",
                entry.id,
                entry
                    .input_modalities
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut expected = Role::User;
        for (i, m) in request.messages.iter().enumerate() {
            if m.role != expected {
                return Err(CoreError::Validation(format!(
                    "messages[{i}] has role {}; a conversation starts with a user message and alternates user and assistant",
                    m.role.as_str()
                )));
            }
            if m.content.is_empty() {
                return Err(CoreError::Validation(format!(
                    "messages[{i}].content must not be empty"
                )));
            }
            expected = if m.role == Role::User {
                Role::Assistant
            } else {
                Role::User
            };
        }
        if request
            .messages
            .last()
            .is_some_and(|m| m.role != Role::User)
        {
            return Err(CoreError::Validation(
                "the last message must come from the user".into(),
            ));
        }
        Ok(())
    }

    fn record(
        &self,
        ctx: &CallContext,
        entry: &ModelEntry,
        usage: TokenUsage,
        first_token_ms: Option<u64>,
        outcome: Outcome,
    ) {
        let price_factor = match ctx.inference_type {
            InferenceType::Batch => BATCH_PRICE_FACTOR,
            // Provisioned capacity is billed by the hour, not by the token.
            InferenceType::Provisioned => 0.0,
            InferenceType::OnDemand => 1.0,
        };
        let cost = entry.cost_with_cache(
            u64::from(usage.input_tokens),
            u64::from(usage.cache_read_input_tokens),
            u64::from(usage.output_tokens),
        ) * price_factor;
        self.meter.record(InvocationRecord {
            at_ms: ctx.at_ms,
            request_id: ctx.request_id.clone(),
            key_id: ctx.principal.as_ref().map(|p| p.key_id.clone()),
            key_name: ctx.principal.as_ref().map(|p| p.key_name.clone()),
            model_id: entry.id.clone(),
            inference_type: ctx.inference_type.as_str().into(),
            operation: ctx.operation.into(),
            input_tokens: usage.input_tokens as u64,
            output_tokens: usage.output_tokens as u64,
            latency_ms: ctx.started.elapsed().as_millis() as u64,
            first_token_ms,
            cost_usd: cost,
            outcome: outcome.as_str().into(),
            inference_profile: ctx.inference_profile.clone(),
            model_alias: ctx.model_alias.clone(),
            agent_session: ctx.agent_session.clone(),
            node: self.node.clone(),
        });
        self.quotas.add_spend(ctx.principal.as_ref(), cost);
        if let Ok(mut permit) = ctx.capacity.lock() {
            permit.take();
        }
        // A cancelled call keeps its reservation: what it used is unknown.
        if outcome != Outcome::Cancelled {
            let ticket = ctx.quota.lock().ok().and_then(|mut t| t.take());
            if let Some(ticket) = ticket {
                self.quotas.settle(ticket, u64::from(usage.total()));
            }
        }
    }

    /// Meters a failure of a request whose model resolved.
    fn failed<T>(
        &self,
        ctx: &CallContext,
        entry: &ModelEntry,
        error: CoreError,
    ) -> Result<T, CoreError> {
        self.record(ctx, entry, TokenUsage::default(), None, error.outcome());
        Err(error)
    }

    /// A streamed chat generation (Converse, ConverseStream, chat completions).
    pub async fn chat_stream(
        self: &Arc<Self>,
        ctx: CallContext,
        request: ChatRequest,
    ) -> Result<MeteredStream, CoreError> {
        let entry = self.resolve(&request.model_id)?.into_owned();
        let mut ctx = ctx;
        if let Err(e) = self.place(&mut ctx, &request.model_id, &entry).await {
            return self.failed(&ctx, &entry, e);
        }
        let mut request = request;
        request.model_id = entry.id.clone();
        request.params.priority = ctx.priority();
        let reserve = estimated_tokens(chat_texts(&request))
            + u64::from(
                request
                    .params
                    .max_tokens
                    .unwrap_or(entry.default_max_tokens),
            );
        if let Err(e) = self.admit(&ctx, &entry, reserve) {
            return self.failed(&ctx, &entry, e);
        }
        let error = match self.start_chat(&entry, &request).await {
            Ok(inner) => return Ok(MeteredStream::new(Arc::clone(self), ctx, entry, inner)),
            Err(e) => e,
        };
        // The explicit fallback chain: only for failures of the model's upstreams
        // (never for the caller's mistakes), each fallback metered as its own call.
        if !error.is_upstream_failure() || entry.fallbacks.is_empty() {
            return self.failed(&ctx, &entry, error);
        }
        self.record(&ctx, &entry, TokenUsage::default(), None, error.outcome());
        let mut last = error;
        for fallback in &entry.fallbacks {
            let Ok(fallback_entry) = self.resolve(fallback).map(Cow::into_owned) else {
                continue;
            };
            let request = ChatRequest {
                model_id: fallback.clone(),
                ..request.clone()
            };
            match self.start_chat(&fallback_entry, &request).await {
                Ok(inner) => {
                    tracing::warn!(model = %entry.id, fallback = %fallback, error = %last, "answered by a fallback model");
                    return Ok(MeteredStream::new(
                        Arc::clone(self),
                        ctx,
                        fallback_entry,
                        inner,
                    ));
                }
                Err(e) => {
                    self.record(
                        &ctx,
                        &fallback_entry,
                        TokenUsage::default(),
                        None,
                        e.outcome(),
                    );
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn start_chat(
        &self,
        entry: &ModelEntry,
        request: &ChatRequest,
    ) -> Result<DeltaStream, CoreError> {
        let provider = self.chat_provider(&entry)?;
        self.validate_chat(&entry, request)?;
        let max_tokens = self.max_tokens(entry, provider.as_ref(), &request.params)?;
        provider.chat(request, max_tokens).await
    }

    /// A streamed raw-prompt completion (InvokeModel with a Llama-style body).
    pub async fn completion_stream(
        self: &Arc<Self>,
        ctx: CallContext,
        request: CompletionRequest,
    ) -> Result<MeteredStream, CoreError> {
        let entry = self.resolve(&request.model_id)?.into_owned();
        let mut ctx = ctx;
        if let Err(e) = self.place(&mut ctx, &request.model_id, &entry).await {
            return self.failed(&ctx, &entry, e);
        }
        let mut request = request;
        request.model_id = entry.id.clone();
        request.params.priority = ctx.priority();
        let reserve = estimated_tokens([request.prompt.as_str()])
            + u64::from(
                request
                    .params
                    .max_tokens
                    .unwrap_or(entry.default_max_tokens),
            );
        if let Err(e) = self.admit(&ctx, &entry, reserve) {
            return self.failed(&ctx, &entry, e);
        }
        let started = async {
            let provider = self.chat_provider(&entry)?;
            let max_tokens = self.max_tokens(&entry, provider.as_ref(), &request.params)?;
            provider
                .complete(&request.prompt, &request.params, max_tokens)
                .await
        }
        .await;
        match started {
            Ok(inner) => Ok(MeteredStream::new(Arc::clone(self), ctx, entry, inner)),
            Err(e) => self.failed(&ctx, &entry, e),
        }
    }

    /// A whole chat generation.
    pub async fn chat(
        self: &Arc<Self>,
        ctx: CallContext,
        request: ChatRequest,
    ) -> Result<Generation, CoreError> {
        let stream = self.chat_stream(ctx, request).await?;
        collect(stream).await
    }

    /// A whole raw-prompt completion.
    pub async fn complete(
        self: &Arc<Self>,
        ctx: CallContext,
        request: CompletionRequest,
    ) -> Result<Generation, CoreError> {
        let stream = self.completion_stream(ctx, request).await?;
        collect(stream).await
    }

    /// Whether the model's lifecycle is LEGACY now.
    pub fn is_legacy(&self, model_id: &str) -> bool {
        self.catalog.lookup(model_id).is_some_and(|e| {
            e.lifecycle.status_at(OffsetDateTime::now_utc()) == LifecycleStatus::Legacy
        })
    }

    /// Embeds inputs with an embedding model.
    pub async fn embed(
        &self,
        ctx: CallContext,
        model_id: &str,
        inputs: Vec<String>,
    ) -> Result<Embeddings, CoreError> {
        let entry = self.resolve(model_id)?.into_owned();
        let mut ctx = ctx;
        self.note_names(&mut ctx, model_id);
        let result = async {
            let provider = self.embedding_provider(&entry)?;
            self.admit(
                &ctx,
                &entry,
                estimated_tokens(inputs.iter().map(String::as_str)),
            )?;
            if inputs.is_empty() {
                return Err(CoreError::Validation(
                    "input must contain at least one text".into(),
                ));
            }
            if inputs.len() > self.limits.max_embedding_inputs {
                return Err(CoreError::Validation(format!(
                    "at most {} inputs are allowed in one request",
                    self.limits.max_embedding_inputs
                )));
            }
            if let Some(i) = inputs.iter().position(|s| s.is_empty()) {
                return Err(CoreError::Validation(format!("input[{i}] is empty")));
            }
            provider.embed(inputs).await
        }
        .await;
        match result {
            Ok((vectors, tokens)) => {
                let usage = TokenUsage {
                    input_tokens: tokens.iter().sum(),
                    ..TokenUsage::default()
                };
                self.record(&ctx, &entry, usage, None, Outcome::Success);
                Ok(Embeddings { vectors, tokens })
            }
            Err(e) => self.failed(&ctx, &entry, e),
        }
    }

    /// Reranks `documents` by relevance to `query` with a reranking model: the
    /// `top_n` most relevant, most relevant first, and the search units billed. Metered in search units (one query
    /// over up to 100 documents), recorded as input tokens, so a reranking model's
    /// `input_per_1k` price is the price of 1,000 search units.
    pub async fn rerank(
        &self,
        ctx: CallContext,
        model_id: &str,
        query: &str,
        documents: &[String],
        top_n: usize,
    ) -> Result<(Vec<Ranked>, u32), CoreError> {
        let entry = self.resolve(model_id)?.into_owned();
        let mut ctx = ctx;
        self.note_names(&mut ctx, model_id);
        let result = async {
            if !entry.is_rerank() {
                return Err(CoreError::Validation(format!(
                    "model {} is not a reranking model",
                    entry.id
                )));
            }
            let provider = self.rerank.get(&entry.id).cloned().ok_or_else(|| {
                CoreError::ModelNotReady(format!("model {} is not loaded", entry.id))
            })?;
            if query.trim().is_empty() {
                return Err(CoreError::Validation("the query is empty".into()));
            }
            if documents.is_empty() || documents.len() > MAX_RERANK_DOCUMENTS {
                return Err(CoreError::Validation(format!(
                    "a reranking takes 1 to {MAX_RERANK_DOCUMENTS} documents, got {}",
                    documents.len()
                )));
            }
            if let Some(i) = documents.iter().position(|d| d.trim().is_empty()) {
                return Err(CoreError::Validation(format!("document {i} is empty")));
            }
            self.admit(
                &ctx,
                &entry,
                u64::from(basalt_providers::rerank::search_units(documents.len())),
            )?;
            provider
                .rerank(query, documents, top_n.clamp(1, documents.len()))
                .await
        }
        .await;
        match result {
            Ok((ranking, search_units)) => {
                let usage = TokenUsage {
                    input_tokens: search_units,
                    ..TokenUsage::default()
                };
                self.record(&ctx, &entry, usage, None, Outcome::Success);
                Ok((ranking, search_units))
            }
            Err(e) => self.failed(&ctx, &entry, e),
        }
    }

    /// Byte spans of the tokens of `text` under an embedding model's tokenizer; for a
    /// remote model (whose tokenizer is not here) each word counts as one token.
    pub fn embedding_token_spans(
        &self,
        model_id: &str,
        text: &str,
    ) -> Result<Vec<(usize, usize)>, CoreError> {
        let entry = self.resolve(model_id)?;
        match self.embedding_provider(&entry)?.token_spans(text) {
            Some(spans) => spans,
            None => Ok(basalt_kb::chunking::word_spans(text)),
        }
    }

    /// The vector length of an embedding model.
    pub fn embedding_dimensions(&self, model_id: &str) -> Result<usize, CoreError> {
        let entry = self.resolve(model_id)?;
        Ok(self.embedding_provider(&entry)?.dimensions())
    }

    /// Input tokens of a chat request (CountTokens).
    pub async fn count_chat_tokens(&self, request: &ChatRequest) -> Result<u32, CoreError> {
        let entry = self.resolve(&request.model_id)?;
        let provider = self.chat_provider(&entry)?;
        self.validate_chat(&entry, request)?;
        provider.count_chat_tokens(request).await
    }

    /// Input tokens of a raw prompt or embedding input (CountTokens on an InvokeModel body).
    pub async fn count_text_tokens(&self, model_id: &str, text: &str) -> Result<u32, CoreError> {
        let entry = self.resolve(model_id)?;
        if entry.is_embedding() {
            self.embedding_provider(&entry)?.count_tokens(text).await
        } else {
            self.chat_provider(&entry)?.count_prompt_tokens(text).await
        }
    }
}

/// A remote model's deployments as adapters built by `make` (with their base URLs
/// as names); credentials come from the environment variables the catalog names,
/// read once here.
fn remote_deployments<A>(
    entry: &crate::catalog::ModelEntry,
    client: &basalt_providers::HttpClient,
    make: impl Fn(&str, basalt_providers::HttpClient, basalt_providers::Upstream, String) -> Option<A>,
) -> Result<Vec<(A, String)>, CoreError> {
    let mut deployments = Vec::with_capacity(entry.deployments.len());
    for upstream in &entry.deployments {
        let secret = |var: &Option<String>, what: &str| -> Result<Option<String>, CoreError> {
            match var {
                Some(var) => std::env::var(var).map(Some).map_err(|_| {
                    CoreError::ServiceUnavailable(format!(
                        "model {}: the environment variable {var} (its upstream {what}) is not set",
                        entry.id
                    ))
                }),
                None => Ok(None),
            }
        };
        let api_key = secret(&upstream.api_key_env, "API key")?;
        let aws = match (
            secret(&upstream.aws_access_key_id_env, "access key ID")?,
            secret(&upstream.aws_secret_access_key_env, "secret access key")?,
        ) {
            (Some(access_key_id), Some(secret_access_key)) => {
                Some(basalt_providers::bedrock::AwsSigning {
                    access_key_id,
                    secret_access_key,
                    session_token: secret(&upstream.aws_session_token_env, "session token")?,
                    region: upstream
                        .region
                        .clone()
                        .unwrap_or_else(|| "us-east-1".into()),
                })
            }
            _ => None,
        };
        let adapter = make(
            &upstream.api,
            client.clone(),
            basalt_providers::Upstream {
                base_url: upstream.base_url.clone(),
                model: upstream.model.clone(),
                api_key,
                aws,
                timeout: std::time::Duration::from_secs(upstream.timeout_secs.max(1)),
            },
            format!("upstream {} of model {}", upstream.base_url, entry.id),
        )
        .ok_or_else(|| {
            CoreError::Internal(format!(
                "model {}: unknown upstream api {}",
                entry.id, upstream.api
            ))
        })?;
        tracing::info!(model = %entry.id, base_url = %upstream.base_url, upstream_model = %upstream.model, "remote deployment");
        deployments.push((adapter, upstream.base_url.clone()));
    }
    Ok(deployments)
}

fn routing_policy(
    routing: &crate::config::RoutingConfig,
) -> basalt_providers::router::RoutingPolicy {
    basalt_providers::router::RoutingPolicy {
        retries: routing.retries,
        backoff: std::time::Duration::from_millis(routing.backoff_ms),
        failure_threshold: routing.failure_threshold.max(1),
        cooldown: std::time::Duration::from_secs(routing.cooldown_secs),
    }
}

/// The router over a remote chat model's deployments.
fn remote_chat(
    entry: &crate::catalog::ModelEntry,
    client: basalt_providers::HttpClient,
) -> Result<RemoteChat, CoreError> {
    let deployments = remote_deployments(entry, &client, basalt_providers::ChatAdapter::new)?;
    let context_window = entry
        .deployments
        .iter()
        .map(|u| u.context_window)
        .min()
        .unwrap_or(1);
    let router = basalt_providers::router::Router::new(deployments, routing_policy(&entry.routing));
    Ok(RemoteChat::new(entry.id.clone(), router, context_window))
}

/// The router over a remote embedding model's deployments.
fn remote_embedding(
    entry: &crate::catalog::ModelEntry,
    client: basalt_providers::HttpClient,
) -> Result<crate::provider::RemoteEmbedding, CoreError> {
    let deployments = remote_deployments(entry, &client, basalt_providers::EmbeddingAdapter::new)?;
    let router = basalt_providers::router::Router::new(deployments, routing_policy(&entry.routing));
    Ok(crate::provider::RemoteEmbedding::new(
        entry.id.clone(),
        router,
        entry.dimensions.unwrap_or(0) as usize,
    ))
}

/// The router over a remote reranking model's deployments.
fn remote_rerank(
    entry: &crate::catalog::ModelEntry,
    client: basalt_providers::HttpClient,
) -> Result<RemoteRerank, CoreError> {
    let deployments = remote_deployments(entry, &client, basalt_providers::RerankAdapter::new)?;
    let router = basalt_providers::router::Router::new(deployments, routing_policy(&entry.routing));
    Ok(RemoteRerank::new(router))
}

fn chat_config(
    engine: &EngineConfig,
    provisioned: &crate::config::ProvisionedConfig,
    model_path: PathBuf,
) -> ChatEngineConfig {
    ChatEngineConfig {
        model_path,
        slots: engine.slots.max(1),
        context_per_slot: engine.context_per_slot.max(64),
        batch_tokens: engine.batch_tokens.max(32),
        queue_capacity: engine.queue_capacity.max(1),
        kv_cache_budget_bytes: (engine.kv_cache_mib > 0).then(|| engine.kv_cache_mib * 1024 * 1024),
        threads: engine_threads(engine),
        shared_step_interval: provisioned.shared_step_interval.max(1),
        batch_invariant: engine.batch_invariant,
        lookup_drafts: engine.lookup_drafts,
        lora_adapter: None,
    }
}

/// ONNX Runtime's shared library, from the `[weights]` entry named `weights_name`
/// (checked against its SHA-256 like model weights).
fn onnx_runtime_library(
    catalog: &Catalog,
    models_dir: &Path,
    weights_name: &str,
) -> Result<PathBuf, CoreError> {
    let weights = catalog.weights().get(weights_name).ok_or_else(|| {
        CoreError::ServiceUnavailable(format!(
            "embedding models run on ONNX Runtime, and [engine] onnxruntime_weights names \
             {weights_name:?}, which is not a [weights] entry"
        ))
    })?;
    let dir = verify_weights(models_dir, weights_name, weights)
        .map_err(|e| CoreError::ServiceUnavailable(format!("ONNX Runtime: {e}")))?;
    let file = weights.files.first().ok_or_else(|| {
        CoreError::ServiceUnavailable(format!("[weights.{weights_name}] lists no file"))
    })?;
    Ok(dir.join(&file.path))
}

fn engine_threads(engine: &EngineConfig) -> i32 {
    if engine.threads == 0 {
        default_threads()
    } else {
        engine.threads as i32
    }
}

async fn collect(mut stream: MeteredStream) -> Result<Generation, CoreError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    while let Some(delta) = stream.next().await {
        match delta {
            GenerationDelta::Text(t) => text.push_str(&t),
            GenerationDelta::ToolCall(call) => tool_calls.push(call),
            GenerationDelta::End {
                stop_reason,
                usage,
                latency_ms,
                ..
            } => {
                return Ok(Generation {
                    text,
                    tool_calls,
                    stop_reason,
                    usage,
                    latency_ms,
                    model_id: stream.model_id().to_string(),
                })
            }
            GenerationDelta::Error(e) => return Err(e),
        }
    }
    Err(CoreError::ModelError(
        "the generation ended without a result".into(),
    ))
}

/// A generation stream that meters the invocation when it ends, fails, or is dropped
/// (a client that disconnects), and fills in latency and time to first token.
pub struct MeteredStream {
    core: Arc<Basalt>,
    ctx: CallContext,
    entry: ModelEntry,
    inner: DeltaStream,
    first_token_ms: Option<u64>,
    output_seen: bool,
    finished: bool,
}

impl MeteredStream {
    /// The model answering: the requested one, or one of its fallbacks.
    pub fn model_id(&self) -> &str {
        &self.entry.id
    }

    fn new(core: Arc<Basalt>, ctx: CallContext, entry: ModelEntry, inner: DeltaStream) -> Self {
        Self {
            core,
            ctx,
            entry,
            inner,
            first_token_ms: None,
            output_seen: false,
            finished: false,
        }
    }

    /// Ends the stream with an error, metering it.
    fn fail(&mut self, e: CoreError) -> GenerationDelta {
        self.finished = true;
        self.core.record(
            &self.ctx,
            &self.entry,
            TokenUsage::default(),
            self.first_token_ms,
            e.outcome(),
        );
        GenerationDelta::Error(e)
    }

    /// The model that answers.
    pub fn model(&self) -> &ModelEntry {
        &self.entry
    }
}

impl Stream for MeteredStream {
    type Item = GenerationDelta;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let polled = self.inner.as_mut().poll_next(cx);
        let this = &mut *self;
        match polled {
            Poll::Ready(Some(
                delta @ (GenerationDelta::Text(_) | GenerationDelta::ToolCall(_)),
            )) => {
                if !this.output_seen {
                    this.output_seen = true;
                    this.first_token_ms = Some(this.ctx.started.elapsed().as_millis() as u64);
                }
                Poll::Ready(Some(delta))
            }
            Poll::Ready(Some(GenerationDelta::End {
                stop_reason, usage, ..
            })) => {
                this.finished = true;
                let latency_ms = this.ctx.started.elapsed().as_millis() as u64;
                let first = this.first_token_ms.or(Some(latency_ms));
                this.core
                    .record(&this.ctx, &this.entry, usage, first, Outcome::Success);
                Poll::Ready(Some(GenerationDelta::End {
                    stop_reason,
                    usage,
                    latency_ms,
                    first_token_ms: first,
                }))
            }
            Poll::Ready(Some(GenerationDelta::Error(e))) => Poll::Ready(Some(this.fail(e))),
            Poll::Ready(None) => Poll::Ready(Some(this.fail(CoreError::ModelError(
                "the generation ended without a result".into(),
            )))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        if !self.finished {
            self.core.record(
                &self.ctx,
                &self.entry,
                TokenUsage::default(),
                self.first_token_ms,
                Outcome::Cancelled,
            );
        }
    }
}
