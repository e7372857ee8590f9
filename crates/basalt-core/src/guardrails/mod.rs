//! Guardrails in the core: versions kept in the store, compiled policies cached per
//! version, evaluation with the configured embedding model, and enforcement around a
//! chat generation (input checked before the model is called, output before it is
//! returned).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use basalt_guardrails::semantic::EmbeddingPlan;
use basalt_guardrails::{
    CompiledGuardrail, GuardrailPolicy, PolicyError, Segment, Source, Verdict,
};
use basalt_store::{GuardrailRecord, GuardrailStore, StoreError, DRAFT};

mod stream;

pub use stream::{GuardTrace, GuardedChatStream};

use crate::config::GuardrailsConfig;
use crate::provider::EmbeddingProvider;
use crate::types::{ChatRequest, ContentBlock, Generation, StopReason};
use crate::{Basalt, CallContext, CoreError};

/// Guarded text up to this size is checked on the request's own thread; more goes to
/// the blocking pool. A check's time grows with its text, and the serving threads do
/// not take work from each other, so a long one would hold up that thread's other
/// connections.
const INLINE_CHECK_BYTES: usize = 64 * 1024;

/// What a create or update asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailSpec {
    pub name: String,
    pub description: Option<String>,
    pub policy: GuardrailPolicy,
    pub blocked_input_messaging: String,
    pub blocked_outputs_messaging: String,
    pub kms_key_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub client_token: Option<String>,
}

/// One version of a guardrail, as the control plane shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailInfo {
    pub id: String,
    pub arn: String,
    pub version: String,
    pub name: String,
    pub description: Option<String>,
    pub policy: GuardrailPolicy,
    pub blocked_input_messaging: String,
    pub blocked_outputs_messaging: String,
    pub kms_key_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The result of applying a guardrail to content.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailOutcome {
    pub verdict: Verdict,
    /// The blocked message for the evaluated side.
    pub blocked_message: String,
}

/// Which guardrail a chat request uses, and where its guarded input lives.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailUse {
    pub identifier: String,
    pub version: String,
    /// The input blocks to check, with where each sits in the request so a masked
    /// text can be written back before the model sees it.
    pub input: Vec<(TextLocation, Segment)>,
}

/// Where a text block sits in a chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextLocation {
    /// `system[i]`.
    System(usize),
    /// `messages[m].content[b]`.
    Message(usize, usize),
    /// Not part of the prompt (a grounding source or query given only to the guardrail).
    Detached,
}

/// A chat generation that went through a guardrail.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardedGeneration {
    pub generation: Generation,
    pub guardrail_id: String,
    pub input: Verdict,
    /// None when the input was blocked and the model was not called.
    pub output: Option<Verdict>,
    /// The model's own output when the guardrail changed it.
    pub model_output: Option<String>,
}

impl GuardedGeneration {
    pub fn intervened(&self) -> bool {
        self.input.intervened() || self.output.as_ref().is_some_and(Verdict::intervened)
    }
}

type CacheKey = (String, String);

/// Guardrails: their versions (a [`GuardrailStore`]), compiled and cached, applied
/// to content (ApplyGuardrail) and around calls of the calling path.
pub struct GuardrailService {
    core: Arc<Basalt>,
    store: Arc<dyn GuardrailStore>,
    config: GuardrailsConfig,
    /// Compiled versions with the `updated_at_ms` they were compiled from.
    cache: Mutex<HashMap<CacheKey, (i64, Arc<CompiledGuardrail>)>>,
}

impl std::fmt::Debug for GuardrailService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardrailService")
            .field("config", &self.config)
            .finish()
    }
}

impl GuardrailService {
    pub fn new(
        core: Arc<Basalt>,
        store: Arc<dyn GuardrailStore>,
        config: GuardrailsConfig,
    ) -> Self {
        Self {
            core,
            store,
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("guardrail")(e)
}

fn policy_error(e: PolicyError) -> CoreError {
    CoreError::Validation(e.to_string())
}

use crate::common::now_ms;

/// A new guardrail ID: 12 lowercase letters and digits (Bedrock's `[a-z0-9]+`).
fn new_id() -> String {
    crate::common::random_id(12, crate::common::LOWER_ALNUM)
}

/// The guardrail ID in an identifier that is an ID or a guardrail ARN.
pub fn guardrail_id(identifier: &str) -> Result<&str, CoreError> {
    let id = match identifier.rsplit_once(":guardrail/") {
        Some((prefix, id)) if prefix.starts_with("arn:") => id,
        Some(_) => "",
        None => identifier,
    };
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(CoreError::Validation(format!(
            "guardrailIdentifier {identifier:?} is not a guardrail ID ([a-z0-9]+) or guardrail ARN"
        )));
    }
    Ok(id)
}

/// Checks a version name: `DRAFT` or `[1-9][0-9]{0,7}`.
pub fn check_version(version: &str) -> Result<(), CoreError> {
    let numbered = !version.is_empty()
        && version.len() <= 8
        && !version.starts_with('0')
        && version.chars().all(|c| c.is_ascii_digit());
    if version == DRAFT || numbered {
        Ok(())
    } else {
        Err(CoreError::Validation(format!(
            "guardrailVersion {version:?} must be DRAFT or a version number"
        )))
    }
}

impl GuardrailService {
    fn guardrail_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:guardrail/{id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    fn guardrail_info(&self, r: GuardrailRecord) -> Result<GuardrailInfo, CoreError> {
        let policy: GuardrailPolicy = serde_json::from_str(&r.policy_json).map_err(|e| {
            CoreError::Internal(format!("stored guardrail {} is unreadable: {e}", r.id))
        })?;
        Ok(GuardrailInfo {
            arn: self.guardrail_arn(&r.id),
            id: r.id,
            version: r.version,
            name: r.name,
            description: r.description,
            policy,
            blocked_input_messaging: r.blocked_input_messaging,
            blocked_outputs_messaging: r.blocked_outputs_messaging,
            kms_key_id: r.kms_key_id,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        })
    }

    /// The embedding model of the meaning-based policies.
    fn guardrail_embedder(&self) -> Result<Arc<dyn EmbeddingProvider>, CoreError> {
        let configured = &self.config.embedding_model;
        let entry = if configured.is_empty() {
            // The content filters read all-MiniLM-L6-v2's vectors: prefer a model of
            // that width, then any.
            let usable = || {
                self.core
                    .catalog()
                    .models()
                    .filter(|m| m.is_embedding() && self.core.has_embedding_provider(&m.id))
            };
            usable()
                .find(|m| {
                    self.core.embedding_dimensions(&m.id).ok()
                        == Some(basalt_guardrails::content::EMBEDDING_DIMENSIONS)
                })
                .or_else(|| usable().next())
        } else {
            self.core.catalog().get(configured)
        };
        let Some(entry) = entry else {
            return Err(CoreError::Validation(
                "denied topics and contextual grounding need an embedding model, and this server has none configured ([guardrails] embedding_model)".into(),
            ));
        };
        self.core.embedding_provider(entry)
    }

    fn validate_spec(&self, spec: &GuardrailSpec) -> Result<(), CoreError> {
        basalt_guardrails::policy::validate_name(&spec.name).map_err(policy_error)?;
        basalt_guardrails::policy::validate_message(
            "blocked_input_messaging",
            &spec.blocked_input_messaging,
        )
        .map_err(policy_error)?;
        basalt_guardrails::policy::validate_message(
            "blocked_outputs_messaging",
            &spec.blocked_outputs_messaging,
        )
        .map_err(policy_error)?;
        if let Some(d) = &spec.description {
            if d.is_empty() || d.chars().count() > 200 {
                return Err(CoreError::Validation(
                    "description must be 1 to 200 characters long".into(),
                ));
            }
        }
        spec.policy.validate().map_err(policy_error)?;
        let compiled = CompiledGuardrail::compile(spec.policy.clone()).map_err(policy_error)?;
        if compiled.needs_embeddings() {
            let embedder = self.guardrail_embedder()?;
            let width = basalt_guardrails::content::EMBEDDING_DIMENSIONS;
            if !spec.policy.content_filters.is_empty() && embedder.dimensions() != width {
                // Vectors of another model would make every content filter say NONE.
                return Err(CoreError::Validation(format!(
                    "content filters read all-MiniLM-L6-v2 vectors ({width} dimensions), but the guardrails' embedding model gives {}; set [guardrails] embedding_model to the catalog's all-MiniLM-L6-v2",
                    embedder.dimensions()
                )));
            }
        }
        Ok(())
    }

    fn record_from_spec(
        &self,
        id: String,
        spec: &GuardrailSpec,
        at: i64,
    ) -> Result<GuardrailRecord, CoreError> {
        let tags_json = crate::common::tags_json(&spec.tags);
        Ok(GuardrailRecord {
            id,
            version: DRAFT.into(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            policy_json: serde_json::to_string(&spec.policy)
                .map_err(|e| CoreError::Internal(e.to_string()))?,
            blocked_input_messaging: spec.blocked_input_messaging.clone(),
            blocked_outputs_messaging: spec.blocked_outputs_messaging.clone(),
            kms_key_id: spec.kms_key_id.clone(),
            tags_json,
            client_token: spec.client_token.clone(),
            created_at_ms: at,
            updated_at_ms: at,
        })
    }

    /// CreateGuardrail: a new guardrail's DRAFT. A repeated client token returns the
    /// guardrail it created.
    pub fn create_guardrail(&self, spec: GuardrailSpec) -> Result<GuardrailInfo, CoreError> {
        let store = &self.store;
        if let Some(token) = &spec.client_token {
            if let Some(existing) = store
                .guardrail_by_client_token(token)
                .map_err(store_error)?
            {
                return self.guardrail_info(existing);
            }
        }
        self.validate_spec(&spec)?;
        if spec.tags.len() > 200 {
            return Err(CoreError::Validation("at most 200 tags are allowed".into()));
        }
        let count = store.list_guardrails(None).map_err(store_error)?.len();
        if count >= self.config.max_guardrails {
            return Err(CoreError::QuotaExceeded(format!(
                "this server allows {} guardrails and has {count}",
                self.config.max_guardrails
            )));
        }
        let record = self.record_from_spec(new_id(), &spec, now_ms())?;
        match store.create_guardrail(&record) {
            Ok(()) => self.guardrail_info(record),
            Err(StoreError::Duplicate("name")) => Err(CoreError::Conflict(format!(
                "a guardrail named {:?} already exists",
                spec.name
            ))),
            Err(e) => Err(store_error(e)),
        }
    }

    /// UpdateGuardrail: replaces the DRAFT.
    pub fn update_guardrail(
        &self,
        identifier: &str,
        spec: GuardrailSpec,
    ) -> Result<GuardrailInfo, CoreError> {
        let id = guardrail_id(identifier)?;
        let store = &self.store;
        let Some(current) = store.guardrail(id, DRAFT).map_err(store_error)? else {
            return Err(not_found(identifier, DRAFT));
        };
        self.validate_spec(&spec)?;
        let mut record = self.record_from_spec(id.to_string(), &spec, now_ms())?;
        record.created_at_ms = current.created_at_ms;
        record.updated_at_ms = record.updated_at_ms.max(current.updated_at_ms + 1);
        match store.update_guardrail_draft(&record) {
            Ok(true) => self.guardrail_info(record),
            Ok(false) => Err(not_found(identifier, DRAFT)),
            Err(StoreError::Duplicate("name")) => Err(CoreError::Conflict(format!(
                "a guardrail named {:?} already exists",
                spec.name
            ))),
            Err(e) => Err(store_error(e)),
        }
    }

    /// CreateGuardrailVersion: snapshots the DRAFT; returns the version number.
    pub fn create_guardrail_version(
        &self,
        identifier: &str,
        description: Option<&str>,
        client_token: Option<&str>,
    ) -> Result<(String, String), CoreError> {
        let id = guardrail_id(identifier)?;
        let store = &self.store;
        if let Some(token) = client_token {
            if let Some(existing) = store
                .guardrail_by_client_token(token)
                .map_err(store_error)?
            {
                if existing.id == id {
                    return Ok((existing.id, existing.version));
                }
            }
        }
        if let Some(d) = description {
            if d.is_empty() || d.chars().count() > 200 {
                return Err(CoreError::Validation(
                    "description must be 1 to 200 characters long".into(),
                ));
            }
        }
        let versions = store.list_guardrails(Some(id)).map_err(store_error)?;
        let numbered = versions.iter().filter(|r| r.version != DRAFT).count();
        if numbered >= self.config.max_versions {
            return Err(CoreError::QuotaExceeded(format!(
                "guardrail {id} already has {numbered} versions, the most this server allows"
            )));
        }
        match store
            .create_guardrail_version(id, description, client_token, now_ms())
            .map_err(store_error)?
        {
            Some(version) => Ok((id.to_string(), version)),
            None => Err(not_found(identifier, DRAFT)),
        }
    }

    /// GetGuardrail (the DRAFT when no version is given).
    pub fn get_guardrail(
        &self,
        identifier: &str,
        version: Option<&str>,
    ) -> Result<GuardrailInfo, CoreError> {
        let id = guardrail_id(identifier)?;
        let version = version.unwrap_or(DRAFT);
        check_version(version)?;
        match self.store.guardrail(id, version).map_err(store_error)? {
            Some(r) => self.guardrail_info(r),
            None => Err(not_found(identifier, version)),
        }
    }

    /// ListGuardrails: every guardrail's DRAFT, or every version of one.
    pub fn list_guardrails(
        &self,
        identifier: Option<&str>,
    ) -> Result<Vec<GuardrailInfo>, CoreError> {
        let id = identifier.map(guardrail_id).transpose()?;
        let records = self.store.list_guardrails(id).map_err(store_error)?;
        if let (Some(identifier), true) = (identifier, records.is_empty()) {
            return Err(not_found(identifier, DRAFT));
        }
        records
            .into_iter()
            .map(|r| self.guardrail_info(r))
            .collect()
    }

    /// DeleteGuardrail: one numbered version, or the whole guardrail.
    pub fn delete_guardrail(
        &self,
        identifier: &str,
        version: Option<&str>,
    ) -> Result<(), CoreError> {
        let id = guardrail_id(identifier)?;
        if let Some(v) = version {
            check_version(v)?;
            if v == DRAFT {
                return Err(CoreError::Validation(
                    "the DRAFT cannot be deleted alone; omit guardrailVersion to delete the guardrail".into(),
                ));
            }
        }
        if !self
            .store
            .delete_guardrail(id, version)
            .map_err(store_error)?
        {
            return Err(not_found(identifier, version.unwrap_or(DRAFT)));
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(cached_id, v), _| {
                cached_id != id || version.is_some_and(|want| want != v)
            });
        }
        Ok(())
    }

    /// The compiled policy of one version (compiled once per version and DRAFT edit).
    pub(crate) async fn compiled_guardrail(
        &self,
        identifier: &str,
        version: &str,
    ) -> Result<(GuardrailRecord, Arc<CompiledGuardrail>), CoreError> {
        let id = guardrail_id(identifier)?;
        check_version(version)?;
        let record = self
            .store
            .guardrail(id, version)
            .map_err(store_error)?
            .ok_or_else(|| not_found(identifier, version))?;
        let key = (record.id.clone(), record.version.clone());
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, compiled)) = cache.get(&key) {
                if *at == record.updated_at_ms {
                    return Ok((record, Arc::clone(compiled)));
                }
            }
        }
        let policy: GuardrailPolicy = serde_json::from_str(&record.policy_json).map_err(|e| {
            CoreError::Internal(format!("stored guardrail {id} is unreadable: {e}"))
        })?;
        let mut compiled = CompiledGuardrail::compile(policy).map_err(policy_error)?;
        let references = compiled.topic_reference_texts();
        if !references.is_empty() {
            let vectors = self.guardrail_embed(references).await?;
            compiled
                .set_topic_references(vectors)
                .map_err(CoreError::Internal)?;
        }
        let compiled = Arc::new(compiled);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (record.updated_at_ms, Arc::clone(&compiled)));
        }
        Ok((record, compiled))
    }

    async fn guardrail_embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, CoreError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let provider = self.guardrail_embedder()?;
        let (vectors, _tokens) = provider.embed(texts).await?;
        Ok(vectors)
    }

    pub(crate) async fn evaluate(
        &self,
        compiled: &Arc<CompiledGuardrail>,
        source: Source,
        segments: &[Segment],
    ) -> Result<Verdict, CoreError> {
        let plan: EmbeddingPlan = compiled.plan(source, segments);
        let vectors = self.guardrail_embed(plan.texts.clone()).await?;
        let text_bytes: usize = segments.iter().map(|s| s.text.len()).sum();
        let verdict = if text_bytes <= INLINE_CHECK_BYTES {
            compiled.evaluate(source, segments, &plan, &vectors)
        } else {
            let (compiled, segments) = (Arc::clone(compiled), segments.to_vec());
            tokio::task::spawn_blocking(move || {
                compiled.evaluate(source, &segments, &plan, &vectors)
            })
            .await
            .map_err(|e| CoreError::Internal(format!("the guardrail check failed: {e}")))?
        };
        record_guardrail_metrics(source, &verdict);
        Ok(verdict)
    }

    /// ApplyGuardrail: evaluates content against one guardrail version.
    pub async fn apply_guardrail(
        &self,
        identifier: &str,
        version: &str,
        source: Source,
        segments: Vec<Segment>,
    ) -> Result<GuardrailOutcome, CoreError> {
        let (record, compiled) = self.compiled_guardrail(identifier, version).await?;
        let verdict = self.evaluate(&compiled, source, &segments).await?;
        let blocked_message = match source {
            Source::Input => record.blocked_input_messaging,
            Source::Output => record.blocked_outputs_messaging,
        };
        Ok(GuardrailOutcome {
            verdict,
            blocked_message,
        })
    }

    /// A chat generation checked by a guardrail: a blocked input never reaches the
    /// model; masked input reaches it masked; a blocked output is replaced by the
    /// blocked message and a masked one is returned masked.
    pub async fn chat_guarded(
        self: &Arc<Self>,
        ctx: CallContext,
        mut request: ChatRequest,
        guard: GuardrailUse,
    ) -> Result<GuardedGeneration, CoreError> {
        let (record, compiled) = self
            .compiled_guardrail(&guard.identifier, &guard.version)
            .await?;
        let input_segments: Vec<Segment> = guard.input.iter().map(|(_, s)| s.clone()).collect();
        let input = self
            .evaluate(&compiled, Source::Input, &input_segments)
            .await?;
        // Grounding sources and the query travel to the output check.
        let context: Vec<Segment> = input_segments
            .iter()
            .filter(|s| !s.is_guarded())
            .cloned()
            .collect();
        if input.blocked {
            let generation = Generation {
                text: record.blocked_input_messaging.clone(),
                tool_calls: Vec::new(),
                stop_reason: StopReason::GuardrailIntervened,
                usage: Default::default(),
                latency_ms: 0,
                model_id: request.model_id.clone(),
            };
            return Ok(GuardedGeneration {
                generation,
                guardrail_id: record.id,
                input,
                output: None,
                model_output: None,
            });
        }
        if input.anonymized {
            for ((location, _), masked) in guard.input.iter().zip(&input.masked) {
                write_back(&mut request, *location, masked);
            }
        }
        let mut generation = self.core.chat(ctx, request).await?;
        let mut output_segments = vec![Segment::guarded(generation.text.clone())];
        output_segments.extend(context);
        let output = self
            .evaluate(&compiled, Source::Output, &output_segments)
            .await?;
        let mut model_output = None;
        if output.blocked {
            model_output = Some(std::mem::replace(
                &mut generation.text,
                record.blocked_outputs_messaging.clone(),
            ));
            generation.tool_calls.clear();
            generation.stop_reason = StopReason::GuardrailIntervened;
        } else if output.anonymized {
            if let Some(masked) = output.masked.first() {
                model_output = Some(std::mem::replace(&mut generation.text, masked.clone()));
            }
            generation.stop_reason = StopReason::GuardrailIntervened;
        }
        Ok(GuardedGeneration {
            generation,
            guardrail_id: record.id,
            input,
            output: Some(output),
            model_output,
        })
    }
}

/// Writes a masked text back into the request where it came from.
pub(crate) fn write_back(request: &mut ChatRequest, location: TextLocation, text: &str) {
    match location {
        TextLocation::System(i) => {
            if let Some(s) = request.system.get_mut(i) {
                *s = text.to_string();
            }
        }
        TextLocation::Message(m, b) => {
            if let Some(ContentBlock::Text(t)) = request
                .messages
                .get_mut(m)
                .and_then(|message| message.content.get_mut(b))
            {
                *t = text.to_string();
            }
        }
        TextLocation::Detached => {}
    }
}

fn not_found(identifier: &str, version: &str) -> CoreError {
    CoreError::NotFound(format!(
        "guardrail {identifier} version {version} does not exist"
    ))
}

/// Text units per policy and interventions, in `/metrics`.
fn record_guardrail_metrics(source: Source, verdict: &Verdict) {
    let usage = &verdict.assessment.usage;
    for (policy, units) in [
        ("topic", usage.topic_policy_units),
        ("content", usage.content_policy_units),
        ("word", usage.word_policy_units),
        (
            "sensitive_information",
            usage.sensitive_information_policy_units,
        ),
        (
            "sensitive_information_free",
            usage.sensitive_information_policy_free_units,
        ),
        (
            "contextual_grounding",
            usage.contextual_grounding_policy_units,
        ),
    ] {
        if units > 0 {
            metrics::counter!("basalt_guardrail_text_units_total", "policy" => policy)
                .increment(units);
        }
    }
    let side = match source {
        Source::Input => "input",
        Source::Output => "output",
    };
    metrics::counter!("basalt_guardrail_evaluations_total", "source" => side).increment(1);
    if verdict.intervened() {
        metrics::counter!("basalt_guardrail_interventions_total", "source" => side).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_ids_or_arns() {
        assert_eq!(guardrail_id("abc123").ok(), Some("abc123"));
        assert_eq!(
            guardrail_id("arn:aws:bedrock:us-east-1:000000000000:guardrail/abc123").ok(),
            Some("abc123")
        );
        assert!(guardrail_id("ABC").is_err());
        assert!(guardrail_id("arn:aws:bedrock:us-east-1:0:guardrail/").is_err());
        assert!(guardrail_id("").is_err());
    }

    #[test]
    fn versions_are_draft_or_numbers() {
        assert!(check_version("DRAFT").is_ok());
        assert!(check_version("1").is_ok() && check_version("12345678").is_ok());
        assert!(check_version("0").is_err() && check_version("01").is_err());
        assert!(check_version("123456789").is_err() && check_version("draft").is_err());
    }
}
