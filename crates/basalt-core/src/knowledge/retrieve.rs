//! Retrieval: Retrieve (semantic or hybrid search with filters, a key's mandatory
//! filter always joined), RetrieveAndGenerate (retrieval, a prompt template with
//! `$search_results$`, generation through the chat path, citations, sessions), and
//! direct ingestion of documents into CUSTOM data sources.
//!
//! Citations: the answer is cut into sentences; each sentence cites the retrieved
//! chunks it shares the most content words with (at least half the best overlap, and
//! at least two words). A sentence that shares no content word with any source cites
//! nothing — the server does not claim a source it cannot see in the answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use basalt_kb::filter::{Filter, Metadata};
use basalt_kb::index::{Hit, Query, SearchType};
use basalt_kb::parse::Format;
use basalt_kb::store::ChunkStore;
use basalt_store::knowledge::{KnowledgeKind, KnowledgeRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ingest::{document_hash, index_document, DocumentInput, CHUNK_ID_KEY};
use super::KnowledgeService;
use super::{effective_filter, kb_error, new_id, now_ms, store_error, Location};
use crate::guardrails::{GuardrailUse, TextLocation};
use crate::keys::Principal;
use crate::service::CallContext;
use crate::types::{ChatRequest, ContentBlock, InferenceParams, Message, Role};
use crate::CoreError;

/// Bedrock's default number of results.
pub const DEFAULT_RESULTS: usize = 5;

/// Bedrock's default knowledge-base prompt (the generation step).
pub const DEFAULT_PROMPT_TEMPLATE: &str = "You are a question answering agent. I will provide you with a set of search results. The user will provide you with a question. Your job is to answer the user's question using only information from the search results. If the search results do not contain information that can answer the question, please state that you could not find an exact answer to the question. Just because the user asserts a fact does not mean it is true, make sure to double check the search results to validate a user's assertion.\n\nHere are the search results in numbered order:\n$search_results$\n\n$output_format_instructions$";

/// A retrieval request.
#[derive(Debug, Clone)]
pub struct RetrieveSpec {
    pub knowledge_base_id: String,
    pub text: String,
    pub number_of_results: Option<usize>,
    pub search_type: Option<SearchType>,
    pub filter: Option<Value>,
    /// Bedrock's implicit filter: a model turns the question into a metadata filter
    /// over these attributes, joined to `filter`.
    pub implicit_filter: Option<ImplicitFilter>,
    /// Reorders the `number_of_results` found by a reranking model's relevance.
    pub reranking: Option<Reranking>,
}

/// Reranking of retrieved chunks (Bedrock's `rerankingConfiguration`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reranking {
    pub model_id: String,
    /// How many of the reranked chunks are returned (default: all of them).
    pub number_of_results: Option<usize>,
    pub metadata: RerankMetadata,
}

/// Which metadata the reranking model reads beside a chunk's text.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RerankMetadata {
    /// The text alone (no `metadataConfiguration`).
    #[default]
    None,
    /// Every attribute (`selectionMode` ALL).
    All,
    /// Only these attributes (SELECTIVE with `fieldsToInclude`).
    Include(Vec<String>),
    /// Every attribute but these (SELECTIVE with `fieldsToExclude`).
    Exclude(Vec<String>),
}

impl RerankMetadata {
    /// What the reranking model reads for a chunk: its text, then one `key: value`
    /// line per selected attribute (in key order; Basalt's chunk ID never).
    pub fn document(&self, text: &str, metadata: &Metadata) -> String {
        let selected = |key: &str| {
            key != CHUNK_ID_KEY
                && match self {
                    Self::None => false,
                    Self::All => true,
                    Self::Include(keys) => keys.iter().any(|k| k == key),
                    Self::Exclude(keys) => !keys.iter().any(|k| k == key),
                }
        };
        let mut lines: Vec<String> = metadata
            .iter()
            .filter(|(k, _)| selected(k))
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect();
        if lines.is_empty() {
            return text.to_string();
        }
        lines.sort();
        format!("{text}\n\n{}", lines.join("\n"))
    }
}

/// The type of a metadata attribute an implicit filter may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
    Boolean,
    StringList,
}

impl AttributeType {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "STRING" => Self::String,
            "NUMBER" => Self::Number,
            "BOOLEAN" => Self::Boolean,
            "STRING_LIST" => Self::StringList,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "STRING",
            Self::Number => "NUMBER",
            Self::Boolean => "BOOLEAN",
            Self::StringList => "STRING_LIST",
        }
    }

    /// The filter operators a condition on this type may use.
    fn operators(self) -> &'static [&'static str] {
        match self {
            Self::String => &["equals", "notEquals", "stringContains"],
            Self::Number => &[
                "equals",
                "notEquals",
                "greaterThan",
                "greaterThanOrEquals",
                "lessThan",
                "lessThanOrEquals",
            ],
            Self::Boolean => &["equals", "notEquals"],
            Self::StringList => &["listContains"],
        }
    }
}

/// One metadata attribute an implicit filter may use.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterAttribute {
    pub key: String,
    pub kind: AttributeType,
    pub description: String,
}

/// `implicitFilterConfiguration`: which model derives the filter, over which
/// attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImplicitFilter {
    pub model_id: String,
    pub attributes: Vec<FilterAttribute>,
}

/// The most conditions a derived filter may hold.
const MAX_IMPLICIT_CONDITIONS: usize = 5;

/// A model's `{"conditions": [{"key", "operator", "value"}]}` as a Bedrock
/// `RetrievalFilter`: conditions on undeclared keys, with an operator the attribute's
/// type does not take, or with a value that does not read as that type are dropped;
/// none left, no filter.
pub fn implicit_filter_from(answer: &str, attributes: &[FilterAttribute]) -> Option<Value> {
    let parsed: Value = serde_json::from_str(answer.trim()).ok()?;
    let mut conditions = Vec::new();
    for c in parsed["conditions"].as_array().into_iter().flatten() {
        let (Some(key), Some(operator)) = (c["key"].as_str(), c["operator"].as_str()) else {
            continue;
        };
        let Some(attribute) = attributes.iter().find(|a| a.key == key) else {
            continue;
        };
        if !attribute.kind.operators().contains(&operator) {
            continue;
        }
        let raw = match &c["value"] {
            Value::String(s) => s.trim().to_string(),
            Value::Null => continue,
            other => other.to_string(),
        };
        let value = match attribute.kind {
            AttributeType::Number => match raw.parse::<f64>() {
                Ok(n) if n.is_finite() => serde_json::json!(n),
                _ => continue,
            },
            AttributeType::Boolean => match raw.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => continue,
            },
            AttributeType::String | AttributeType::StringList => {
                if raw.is_empty() {
                    continue;
                }
                Value::String(raw)
            }
        };
        conditions.push(serde_json::json!({ operator: { "key": key, "value": value } }));
        if conditions.len() == MAX_IMPLICIT_CONDITIONS {
            break;
        }
    }
    match conditions.len() {
        0 => None,
        1 => conditions.pop(),
        _ => Some(serde_json::json!({ "andAll": conditions })),
    }
}

/// A retrieved chunk as the wire returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    pub text: String,
    pub uri: String,
    /// How the wire locates the document.
    pub kind: LocationKind,
    pub metadata: Metadata,
    pub score: f64,
}

/// What RetrieveAndGenerate takes.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub retrieve: RetrieveSpec,
    pub model_id: String,
    pub session_id: Option<String>,
    pub prompt_template: Option<String>,
    pub params: InferenceParams,
    pub guardrail: Option<(String, String)>,
    /// `QUERY_DECOMPOSITION`: the model splits the question into sub-questions, each
    /// searched on its own, and the answer draws on all their results.
    pub decompose: bool,
}

/// How the generation model is asked to split a question (query decomposition).
pub const DECOMPOSITION_PROMPT: &str = "You split a user's question into the simplest sub-questions that can each be answered by one search of a document collection. A question about one thing stays one sub-question; a question that compares or combines several things becomes one sub-question per thing. Keep each sub-question short and self-contained. Answer only with JSON: {\"queries\": [\"...\"]}, at most 5 queries.";

/// The most sub-questions a decomposition may give.
const MAX_SUB_QUERIES: usize = 5;

/// The sub-questions in a decomposition answer (`{"queries": [...]}`): trimmed,
/// deduplicated, at most [`MAX_SUB_QUERIES`]; the question itself when the answer
/// holds none.
pub fn sub_queries(answer: &str, question: &str) -> Vec<String> {
    let parsed: Value = serde_json::from_str(answer.trim()).unwrap_or(Value::Null);
    let mut out: Vec<String> = Vec::new();
    for q in parsed["queries"].as_array().into_iter().flatten() {
        let Some(q) = q.as_str().map(str::trim).filter(|q| !q.is_empty()) else {
            continue;
        };
        let q: String = q.chars().take(1000).collect();
        if !out.contains(&q) {
            out.push(q);
        }
        if out.len() == MAX_SUB_QUERIES {
            break;
        }
    }
    if out.is_empty() {
        out.push(question.to_string());
    }
    out
}

/// Results of several searches merged: round robin by rank (each sub-question's best
/// first), a chunk found twice kept once, at most `cap`.
pub fn interleave(lists: Vec<Vec<Retrieved>>, cap: usize) -> Vec<Retrieved> {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut out = Vec::new();
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    for rank in 0..longest {
        for list in &lists {
            if let Some(r) = list.get(rank) {
                if seen.insert((r.uri.clone(), r.text.clone())) {
                    out.push(r.clone());
                    if out.len() == cap {
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// One cited span of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Citation {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub references: Vec<Retrieved>,
}

/// RetrieveAndGenerate's answer.
#[derive(Debug, Clone)]
pub struct Generated {
    pub session_id: String,
    pub text: String,
    pub citations: Vec<Citation>,
    pub guardrail_intervened: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Session {
    knowledge_base_id: String,
    /// The key that opened the session: only it may continue it.
    #[serde(default)]
    key_id: Option<String>,
    turns: Vec<(String, String)>,
}

/// Turns of a session kept as conversation history.
const SESSION_TURNS: usize = 10;

/// How a retrieved chunk's document is located on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationKind {
    /// `s3://` objects and `file://` files.
    S3,
    /// Crawled pages.
    Web,
    /// Directly ingested documents (by their ID).
    Custom,
}

impl LocationKind {
    pub fn of(uri: &str) -> Self {
        if uri.starts_with("file://") || uri.starts_with("s3://") {
            Self::S3
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            Self::Web
        } else {
            Self::Custom
        }
    }
}

impl KnowledgeService {
    /// An implicit filter: the model reads the question and the declared attributes
    /// and answers conditions as JSON (constrained by a schema); see
    /// [`implicit_filter_from`]. The call is metered as Retrieve.
    async fn derive_filter(
        self: &Arc<Self>,
        principal: Option<&Principal>,
        request_id: &str,
        implicit: &ImplicitFilter,
        question: &str,
    ) -> Result<Option<Value>, CoreError> {
        let keys: Vec<&str> = implicit.attributes.iter().map(|a| a.key.as_str()).collect();
        let operators: Vec<&str> = {
            let mut all: Vec<&str> = implicit
                .attributes
                .iter()
                .flat_map(|a| a.kind.operators().iter().copied())
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"conditions": {"type": "array", "maxItems": MAX_IMPLICIT_CONDITIONS, "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "enum": keys},
                    "operator": {"type": "string", "enum": operators},
                    "value": {"type": "string", "maxLength": 200},
                },
                "required": ["key", "operator", "value"],
                "additionalProperties": false,
            }}},
            "required": ["conditions"],
            "additionalProperties": false,
        });
        let described: Vec<String> = implicit
            .attributes
            .iter()
            .map(|a| {
                format!(
                    "- {} ({}; operators: {}): {}",
                    a.key,
                    a.kind.name(),
                    a.kind.operators().join(", "),
                    a.description
                )
            })
            .collect();
        let system = format!(
            "You turn a search question into metadata filter conditions for a document search. The documents have these attributes:\n{}\nGive a condition only for what the question states explicitly about these attributes; give none when it states nothing about them. Write every value as a string (numbers in digits, booleans as true or false). Answer only with JSON: {{\"conditions\": [{{\"key\": ..., \"operator\": ..., \"value\": ...}}]}}.",
            described.join("\n")
        );
        let request = ChatRequest {
            model_id: implicit.model_id.clone(),
            system: vec![system],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::Text(question.to_string())],
            }],
            params: InferenceParams {
                max_tokens: Some(200),
                temperature: Some(0.0),
                ..InferenceParams::default()
            },
            tools: None,
            response_schema: Some(schema),
            stream: false,
        };
        let ctx = CallContext::new(principal.cloned(), request_id.to_owned(), "Retrieve");
        let answer = self.core.chat(ctx, request).await?.text;
        let filter = implicit_filter_from(&answer, &implicit.attributes);
        tracing::debug!(?filter, "implicit filter");
        Ok(filter)
    }

    /// Retrieve.
    pub async fn retrieve(
        self: &Arc<Self>,
        principal: Option<&Principal>,
        request_id: &str,
        spec: &RetrieveSpec,
    ) -> Result<Vec<Retrieved>, CoreError> {
        let kb = self.knowledge_base(&spec.knowledge_base_id)?;
        let k = spec.number_of_results.unwrap_or(DEFAULT_RESULTS);
        if !(1..=100).contains(&k) {
            return Err(CoreError::Validation(format!(
                "numberOfResults must be 1..100, got {k}"
            )));
        }
        if spec.text.trim().is_empty() {
            return Err(CoreError::Validation(
                "retrievalQuery.text is required".into(),
            ));
        }
        let derived = match &spec.implicit_filter {
            Some(implicit) => {
                self.derive_filter(principal, request_id, implicit, &spec.text)
                    .await?
            }
            None => None,
        };
        let joined = match (spec.filter.clone(), derived) {
            (Some(given), Some(derived)) => Some(serde_json::json!({ "andAll": [given, derived] })),
            (given, derived) => given.or(derived),
        };
        let requested = joined
            .as_ref()
            .map(Filter::parse)
            .transpose()
            .map_err(kb_error)?;
        let filter = effective_filter(principal, requested)?;
        let index = self.index(&kb)?;
        let ctx = CallContext::new(principal.cloned(), request_id.to_owned(), "Retrieve");
        let vector = self
            .core
            .embed(ctx, &kb.embedding_model_id, vec![spec.text.clone()])
            .await?
            .vectors
            .pop()
            .ok_or_else(|| CoreError::Internal("the embedding model answered no vector".into()))?;
        let search = spec.search_type.unwrap_or(SearchType::Hybrid);
        let text = spec.text.clone();
        let hits: Vec<Hit> = tokio::task::spawn_blocking(move || {
            index.search(&Query {
                vector: &vector,
                text: &text,
                k,
                filter: filter.as_ref(),
                search,
            })
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
        .map_err(kb_error)?;
        let retrieved: Vec<Retrieved> = hits
            .into_iter()
            .map(|h| {
                let mut metadata = h.metadata;
                metadata.insert(CHUNK_ID_KEY.into(), Value::String(h.chunk_id.to_string()));
                Retrieved {
                    kind: LocationKind::of(&h.uri),
                    text: h.text,
                    uri: h.uri,
                    metadata,
                    score: h.score,
                }
            })
            .collect();
        match &spec.reranking {
            Some(reranking) if !retrieved.is_empty() => {
                let ctx = CallContext::new(principal.cloned(), request_id.to_owned(), "Retrieve");
                self.rerank(ctx, reranking, &spec.text, retrieved).await
            }
            _ => Ok(retrieved),
        }
    }

    /// Retrieved chunks in the order a reranking model gives them, each scored with
    /// its relevance, cut to the reranking's number of results.
    async fn rerank(
        &self,
        ctx: CallContext,
        reranking: &Reranking,
        query: &str,
        retrieved: Vec<Retrieved>,
    ) -> Result<Vec<Retrieved>, CoreError> {
        let documents: Vec<String> = retrieved
            .iter()
            .map(|r| reranking.metadata.document(&r.text, &r.metadata))
            .collect();
        let top_n = reranking
            .number_of_results
            .unwrap_or(documents.len())
            .min(documents.len());
        let (ranking, _) = self
            .core
            .rerank(ctx, &reranking.model_id, query, &documents, top_n)
            .await?;
        let mut slots: Vec<Option<Retrieved>> = retrieved.into_iter().map(Some).collect();
        Ok(ranking
            .into_iter()
            .filter_map(|ranked| {
                let mut chunk = slots.get_mut(ranked.index)?.take()?;
                chunk.score = ranked.score;
                Some(chunk)
            })
            .collect())
    }

    fn session(&self, id: &str) -> Result<Option<Session>, CoreError> {
        let record = self
            .store
            .knowledge(KnowledgeKind::Session, id)
            .map_err(store_error)?;
        record
            .map(|r| {
                serde_json::from_str(&r.body)
                    .map_err(|e| CoreError::Internal(format!("stored session {id}: {e}")))
            })
            .transpose()
    }

    fn save_session(&self, id: &str, session: &Session, insert: bool) -> Result<(), CoreError> {
        let now = now_ms();
        let record = KnowledgeRecord {
            kind: KnowledgeKind::Session,
            id: id.to_owned(),
            parent: String::new(),
            name: id.to_owned(),
            body: serde_json::to_string(session).map_err(|e| CoreError::Internal(e.to_string()))?,
            created_ms: now,
            updated_ms: now,
        };
        let store = &self.store;
        if insert {
            store.insert_knowledge(&record).map_err(store_error)
        } else {
            store
                .update_knowledge(&record)
                .map(|_| ())
                .map_err(store_error)
        }
    }

    /// RetrieveAndGenerate with a knowledge base.
    /// Query decomposition: the generation model splits the question (as JSON,
    /// constrained by a schema), each sub-question is searched with the request's
    /// retrieval settings, and the results are merged ([`interleave`]: up to
    /// `numberOfResults` per sub-question). The split is a model call of its own,
    /// metered as RetrieveAndGenerate.
    async fn retrieve_decomposed(
        self: &Arc<Self>,
        principal: Option<&Principal>,
        request_id: &str,
        spec: &GenerateSpec,
    ) -> Result<Vec<Retrieved>, CoreError> {
        let question = &spec.retrieve.text;
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"queries": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 300}, "minItems": 1, "maxItems": MAX_SUB_QUERIES}},
            "required": ["queries"],
            "additionalProperties": false,
        });
        let request = ChatRequest {
            model_id: spec.model_id.clone(),
            system: vec![DECOMPOSITION_PROMPT.to_string()],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::Text(question.clone())],
            }],
            params: InferenceParams {
                max_tokens: Some(256),
                temperature: Some(0.0),
                ..InferenceParams::default()
            },
            tools: None,
            response_schema: Some(schema),
            stream: false,
        };
        let ctx = CallContext::new(
            principal.cloned(),
            request_id.to_owned(),
            "RetrieveAndGenerate",
        );
        let answer = self.core.chat(ctx, request).await?.text;
        let queries = sub_queries(&answer, question);
        tracing::debug!(?queries, "query decomposition");
        let mut lists = Vec::with_capacity(queries.len());
        for q in &queries {
            let mut sub = spec.retrieve.clone();
            sub.text = q.clone();
            lists.push(self.retrieve(principal, request_id, &sub).await?);
        }
        let per_query = spec.retrieve.number_of_results.unwrap_or(DEFAULT_RESULTS);
        Ok(interleave(lists, per_query * queries.len()))
    }

    pub async fn retrieve_and_generate(
        self: &Arc<Self>,
        principal: Option<&Principal>,
        request_id: &str,
        spec: GenerateSpec,
    ) -> Result<Generated, CoreError> {
        let question = spec.retrieve.text.clone();
        if question.chars().count() > 1000 {
            return Err(CoreError::Validation(
                "input.text may be at most 1000 characters".into(),
            ));
        }
        let (session_id, mut session, new_session) = match &spec.session_id {
            Some(id) => {
                // Another key's session is answered as missing: its existence is not
                // revealed, nor its turns.
                let owner = principal.map(|p| p.key_id.as_str());
                let s = self
                    .session(id)?
                    .filter(|s| s.key_id.as_deref() == owner)
                    .ok_or_else(|| {
                        CoreError::NotFound(format!("session {id} does not exist or has expired"))
                    })?;
                if s.knowledge_base_id != spec.retrieve.knowledge_base_id {
                    return Err(CoreError::Validation(format!(
                        "session {id} belongs to another knowledge base"
                    )));
                }
                (id.clone(), s, false)
            }
            None => (
                uuid_like(),
                Session {
                    knowledge_base_id: spec.retrieve.knowledge_base_id.clone(),
                    key_id: principal.map(|p| p.key_id.clone()),
                    turns: Vec::new(),
                },
                true,
            ),
        };
        let results = if spec.decompose {
            self.retrieve_decomposed(principal, request_id, &spec)
                .await?
        } else {
            self.retrieve(principal, request_id, &spec.retrieve).await?
        };
        let numbered: Vec<String> = results
            .iter()
            .enumerate()
            .map(|(i, r)| format!("Source {}: {}", i + 1, r.text))
            .collect();
        let template = spec
            .prompt_template
            .as_deref()
            .unwrap_or(DEFAULT_PROMPT_TEMPLATE);
        if !template.contains("$search_results$") {
            return Err(CoreError::Validation(
                "promptTemplate.textPromptTemplate must contain $search_results$".into(),
            ));
        }
        let system = template
            .replace("$search_results$", &numbered.join("\n\n"))
            .replace("$output_format_instructions$", "")
            .replace("$query$", &question);
        let mut messages = Vec::new();
        for (q, a) in &session.turns {
            messages.push(Message {
                role: Role::User,
                content: vec![ContentBlock::Text(q.clone())],
            });
            messages.push(Message {
                role: Role::Assistant,
                content: vec![ContentBlock::Text(a.clone())],
            });
        }
        messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::Text(question.clone())],
        });
        let last = messages.len() - 1;
        let request = ChatRequest {
            model_id: spec.model_id.clone(),
            system: vec![system],
            messages,
            params: spec.params.clone(),
            tools: None,
            response_schema: None,
            stream: false,
        };
        let ctx = CallContext::new(
            principal.cloned(),
            request_id.to_owned(),
            "RetrieveAndGenerate",
        );
        let (text, intervened) = match spec.guardrail {
            None => (self.core.chat(ctx, request).await?.text, false),
            Some((identifier, version)) => {
                use crate::guardrail_policy::{Qualifier, Segment};
                let mut input = vec![(
                    TextLocation::Message(last, 0),
                    Segment::guarded(question.clone()),
                )];
                for r in &results {
                    input.push((
                        TextLocation::Detached,
                        Segment {
                            text: r.text.clone(),
                            qualifiers: vec![Qualifier::GroundingSource],
                        },
                    ));
                }
                input.push((
                    TextLocation::Detached,
                    Segment {
                        text: question.clone(),
                        qualifiers: vec![Qualifier::Query],
                    },
                ));
                let guarded = self
                    .guardrails
                    .chat_guarded(
                        ctx,
                        request,
                        GuardrailUse {
                            identifier,
                            version,
                            input,
                        },
                    )
                    .await?;
                let intervened = guarded.intervened();
                (guarded.generation.text, intervened)
            }
        };
        let citations = if intervened {
            Vec::new()
        } else {
            cite(&text, &results)
        };
        session.turns.push((question, text.clone()));
        if session.turns.len() > SESSION_TURNS {
            session.turns.remove(0);
        }
        self.save_session(&session_id, &session, new_session)?;
        Ok(Generated {
            session_id,
            text,
            citations,
            guardrail_intervened: intervened,
        })
    }

    /// IngestKnowledgeBaseDocuments: each document indexed now; a failure is that
    /// document's status, the others go on.
    pub async fn ingest_documents(
        self: &Arc<Self>,
        principal: Option<&Principal>,
        request_id: &str,
        kb_id: &str,
        ds_id: &str,
        documents: Vec<DirectDocument>,
    ) -> Result<Vec<DocumentStatus>, CoreError> {
        let kb = self.knowledge_base(kb_id)?;
        let ds = self.data_source(kb_id, ds_id)?;
        if ds.location != Location::Custom {
            return Err(CoreError::Validation(format!(
                "data source {ds_id} is not CUSTOM; its documents come from its location through ingestion jobs"
            )));
        }
        let max = self.config().max_direct_documents;
        if documents.is_empty() || documents.len() > max {
            return Err(CoreError::Validation(format!(
                "documents must hold 1..{max} documents"
            )));
        }
        let chunking = ds.chunking();
        let index = self.index(&kb)?;
        // A tenant key writes only inside its tenant: each document's metadata must
        // satisfy its filter, and it may not replace a document outside it. Checked
        // for every document before any is written.
        if let Some(tenant) = tenant_filter(principal)? {
            let existing = index.documents(ds_id).map_err(kb_error)?;
            for doc in &documents {
                if !tenant.matches(&doc.metadata) {
                    return Err(CoreError::AccessDenied(format!(
                        "document {}: its metadata is outside this key's tenant (its retrieval filter)",
                        doc.id
                    )));
                }
                if existing.contains_key(&doc.id)
                    && !present_within_tenant(&index, ds_id, &doc.id, &tenant)?
                {
                    return Err(CoreError::AccessDenied(format!(
                        "document {} exists outside this key's tenant; it cannot be replaced with this key",
                        doc.id
                    )));
                }
            }
        }
        let mut out = Vec::with_capacity(documents.len());
        for doc in documents {
            let id = doc.id.clone();
            let ctx = || {
                CallContext::new(
                    principal.cloned(),
                    request_id.to_owned(),
                    "IngestKnowledgeBaseDocuments",
                )
            };
            let metadata_bytes = serde_json::to_vec(&doc.metadata).unwrap_or_default();
            let input = DocumentInput {
                uri: doc.id.clone(),
                format: doc.format,
                hash: document_hash(&doc.bytes, &metadata_bytes),
                bytes: doc.bytes,
                metadata: doc.metadata,
            };
            let result = index_document(self, &ctx, &kb, &index, ds_id, &chunking, input).await;
            out.push(match result {
                Ok(_) => DocumentStatus {
                    id,
                    status: "INDEXED",
                    reason: None,
                },
                Err(e) => DocumentStatus {
                    id,
                    status: "FAILED",
                    reason: Some(e.to_string()),
                },
            });
        }
        let flushing = Arc::clone(&index);
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?
            .map_err(kb_error)?;
        Ok(out)
    }

    /// DeleteKnowledgeBaseDocuments.
    /// A tenant key deletes only documents inside its tenant; others are NOT_FOUND.
    pub fn delete_documents(
        &self,
        principal: Option<&Principal>,
        kb_id: &str,
        ds_id: &str,
        ids: &[String],
    ) -> Result<Vec<DocumentStatus>, CoreError> {
        let kb = self.knowledge_base(kb_id)?;
        self.data_source(kb_id, ds_id)?;
        let index = self.index(&kb)?;
        let tenant = tenant_filter(principal)?;
        let mut out = Vec::new();
        for id in ids {
            let visible = match &tenant {
                None => true,
                Some(t) => present_within_tenant(&index, ds_id, id, t)?,
            };
            let removed = visible && index.delete_document(ds_id, id).map_err(kb_error)?;
            out.push(DocumentStatus {
                id: id.clone(),
                status: if removed { "DELETING" } else { "NOT_FOUND" },
                reason: None,
            });
        }
        index.flush().map_err(kb_error)?;
        Ok(out)
    }

    /// GetKnowledgeBaseDocuments (`ids`) or ListKnowledgeBaseDocuments (`None`).
    /// A tenant key sees only the documents inside its tenant.
    pub fn document_statuses(
        &self,
        principal: Option<&Principal>,
        kb_id: &str,
        ds_id: &str,
        ids: Option<&[String]>,
    ) -> Result<Vec<DocumentStatus>, CoreError> {
        let kb = self.knowledge_base(kb_id)?;
        self.data_source(kb_id, ds_id)?;
        let index = self.index(&kb)?;
        let mut stored = index.documents(ds_id).map_err(kb_error)?;
        if let Some(tenant) = tenant_filter(principal)? {
            let mut inside = HashMap::with_capacity(stored.len());
            for (uri, hash) in stored {
                if present_within_tenant(&index, ds_id, &uri, &tenant)? {
                    inside.insert(uri, hash);
                }
            }
            stored = inside;
        }
        Ok(match ids {
            Some(ids) => ids
                .iter()
                .map(|id| DocumentStatus {
                    id: id.clone(),
                    status: if stored.contains_key(id) {
                        "INDEXED"
                    } else {
                        "NOT_FOUND"
                    },
                    reason: None,
                })
                .collect(),
            None => {
                let mut all: Vec<String> = stored.into_keys().collect();
                all.sort();
                all.into_iter()
                    .map(|id| DocumentStatus {
                        id,
                        status: "INDEXED",
                        reason: None,
                    })
                    .collect()
            }
        })
    }
}

/// A tenant key's filter (`None` for a key without one).
fn tenant_filter(principal: Option<&Principal>) -> Result<Option<Filter>, CoreError> {
    super::effective_filter(principal, None)
}

/// Whether a stored document is inside the tenant (its chunks' metadata satisfies the
/// filter). A document with no chunks has no metadata to test and is outside.
fn present_within_tenant(
    index: &Arc<dyn ChunkStore>,
    ds_id: &str,
    uri: &str,
    tenant: &Filter,
) -> Result<bool, CoreError> {
    Ok(index
        .document_metadata(ds_id, uri)
        .map_err(kb_error)?
        .is_some_and(|metadata| tenant.matches(&metadata)))
}

/// A document given inline to IngestKnowledgeBaseDocuments.
#[derive(Debug, Clone)]
pub struct DirectDocument {
    pub id: String,
    pub format: Format,
    pub bytes: Vec<u8>,
    pub metadata: Metadata,
}

/// One document's state.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentStatus {
    /// The custom ID or the URI.
    pub id: String,
    pub status: &'static str,
    pub reason: Option<String>,
}

fn uuid_like() -> String {
    format!("{}-{}", new_id().to_lowercase(), new_id().to_lowercase())
}

const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "are", "was", "were", "that", "this", "with", "from", "have", "has",
    "had", "not", "but", "you", "your", "its", "they", "their", "them", "what", "which", "who",
    "when", "where", "how", "can", "could", "would", "should", "will", "into", "about", "there",
    "than", "then", "also", "been", "being", "such", "these", "those", "some", "any", "all",
];

fn content_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// Each answer sentence with the sources it draws on (see the module comment).
pub fn cite(answer: &str, results: &[Retrieved]) -> Vec<Citation> {
    let sources: Vec<HashSet<String>> = results.iter().map(|r| content_words(&r.text)).collect();
    let mut citations = Vec::new();
    for (start, end) in basalt_kb::chunking::sentences(answer) {
        let sentence = &answer[start..end];
        let words = content_words(sentence);
        let overlaps: Vec<usize> = sources
            .iter()
            .map(|s| s.intersection(&words).count())
            .collect();
        let best = overlaps.iter().copied().max().unwrap_or(0);
        if best < 2.min(words.len()).max(1) {
            continue;
        }
        let references: Vec<Retrieved> = results
            .iter()
            .zip(&overlaps)
            .filter(|(_, n)| **n * 2 >= best && **n > 0)
            .map(|(r, _)| r.clone())
            .collect();
        // Spans count characters, as Bedrock's do.
        let char_start = answer[..start].chars().count();
        citations.push(Citation {
            text: sentence.to_owned(),
            start: char_start,
            end: char_start + sentence.chars().count(),
            references,
        });
    }
    citations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_conditions_become_a_filter_of_declared_keys_and_types() {
        let attributes = vec![
            FilterAttribute {
                key: "year".into(),
                kind: AttributeType::Number,
                description: "year".into(),
            },
            FilterAttribute {
                key: "rock".into(),
                kind: AttributeType::String,
                description: "rock".into(),
            },
            FilterAttribute {
                key: "tags".into(),
                kind: AttributeType::StringList,
                description: "tags".into(),
            },
        ];
        let answer = r#"{"conditions": [
            {"key": "year", "operator": "greaterThanOrEquals", "value": "2021"},
            {"key": "rock", "operator": "equals", "value": "basalt"},
            {"key": "year", "operator": "stringContains", "value": "20"},
            {"key": "owner", "operator": "equals", "value": "x"},
            {"key": "year", "operator": "equals", "value": "recent"},
            {"key": "tags", "operator": "listContains", "value": "volcanic"}
        ]}"#;
        assert_eq!(
            implicit_filter_from(answer, &attributes),
            Some(serde_json::json!({"andAll": [
                {"greaterThanOrEquals": {"key": "year", "value": 2021.0}},
                {"equals": {"key": "rock", "value": "basalt"}},
                {"listContains": {"key": "tags", "value": "volcanic"}}
            ]}))
        );
        assert_eq!(
            implicit_filter_from(
                r#"{"conditions": [{"key": "rock", "operator": "equals", "value": "talc"}]}"#,
                &attributes
            ),
            Some(serde_json::json!({"equals": {"key": "rock", "value": "talc"}}))
        );
        assert_eq!(
            implicit_filter_from(r#"{"conditions": []}"#, &attributes),
            None
        );
        assert_eq!(implicit_filter_from("nonsense", &attributes), None);
    }

    fn hit(uri: &str, text: &str) -> Retrieved {
        Retrieved {
            text: text.into(),
            uri: uri.into(),
            kind: LocationKind::S3,
            metadata: Default::default(),
            score: 1.0,
        }
    }

    #[test]
    fn a_reranked_document_carries_the_selected_metadata() {
        let metadata: Metadata = [
            ("year".to_string(), serde_json::json!(2021)),
            ("author".to_string(), serde_json::json!("Ada")),
            (CHUNK_ID_KEY.to_string(), serde_json::json!("7")),
        ]
        .into_iter()
        .collect();
        assert_eq!(RerankMetadata::None.document("text", &metadata), "text");
        assert_eq!(
            RerankMetadata::All.document("text", &metadata),
            "text\n\nauthor: Ada\nyear: 2021"
        );
        assert_eq!(
            RerankMetadata::Include(vec!["year".into()]).document("text", &metadata),
            "text\n\nyear: 2021"
        );
        assert_eq!(
            RerankMetadata::Exclude(vec!["year".into(), "author".into()])
                .document("text", &metadata),
            "text"
        );
    }

    #[test]
    fn decomposition_answers_become_sub_queries() {
        assert_eq!(
            sub_queries(
                r#"{"queries": [" What is basalt? ", "What is granite?", "What is basalt?", ""]}"#,
                "q"
            ),
            vec![
                "What is basalt?".to_string(),
                "What is granite?".to_string()
            ]
        );
        assert_eq!(
            sub_queries("not json", "the question"),
            vec!["the question".to_string()]
        );
        assert_eq!(
            sub_queries(r#"{"queries": []}"#, "q"),
            vec!["q".to_string()]
        );
        let many =
            serde_json::json!({"queries": (0..9).map(|i| format!("q{i}")).collect::<Vec<_>>()});
        assert_eq!(sub_queries(&many.to_string(), "q").len(), MAX_SUB_QUERIES);
    }

    #[test]
    fn merged_results_take_turns_and_drop_repeats() {
        let a = vec![hit("a", "1"), hit("a", "2"), hit("a", "3")];
        let b = vec![hit("b", "1"), hit("a", "1"), hit("b", "2")];
        let merged: Vec<(String, String)> = interleave(vec![a, b], 4)
            .into_iter()
            .map(|r| (r.uri, r.text))
            .collect();
        let want: Vec<(String, String)> = [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3")]
            .iter()
            .map(|(u, t)| (u.to_string(), t.to_string()))
            .collect();
        assert_eq!(merged, want);
    }

    fn source(uri: &str, text: &str) -> Retrieved {
        Retrieved {
            text: text.into(),
            uri: uri.into(),
            kind: LocationKind::S3,
            metadata: Metadata::new(),
            score: 1.0,
        }
    }

    #[test]
    fn sentences_cite_the_sources_they_share_words_with() {
        let results = [
            source(
                "file:///kb/basalt.txt",
                "Basalt forms from rapidly cooling lava rich in magnesium and iron.",
            ),
            source(
                "file:///kb/granite.txt",
                "Granite is a coarse-grained intrusive rock of quartz and feldspar.",
            ),
        ];
        let answer =
            "Basalt forms from cooling lava. Granite contains quartz and feldspar. Hello there.";
        let citations = cite(answer, &results);
        assert_eq!(citations.len(), 2, "{citations:?}");
        assert_eq!(citations[0].references.len(), 1);
        assert_eq!(citations[0].references[0].uri, "file:///kb/basalt.txt");
        assert_eq!(citations[1].references[0].uri, "file:///kb/granite.txt");
        assert_eq!(
            &answer[citations[1].start..citations[1].end],
            "Granite contains quartz and feldspar."
        );
    }
}
