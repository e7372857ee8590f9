//! Reranking on the `bedrock-agent-runtime` wire: the Rerank operation (`POST
//! /rerank`), the native body of a rerank model on InvokeModel, and
//! `rerankingConfiguration` in Retrieve / RetrieveAndGenerate.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::keys::Principal;
use basalt_core::knowledge::model_id_of;
use basalt_core::knowledge::retrieve::{RerankMetadata, Reranking};
use basalt_core::types::TokenUsage;
use basalt_core::{Basalt, CallContext, MAX_RERANK_DOCUMENTS};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::wire::parse_json;
use crate::auth::RequestId;
use crate::error::BedrockError;
use crate::AppState;

/// The longest query or document text Bedrock's Rerank takes, in characters.
const MAX_TEXT_CHARS: usize = 32_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelConfiguration {
    model_arn: Option<String>,
    additional_model_request_fields: Option<Map<String, Value>>,
}

impl ModelConfiguration {
    /// The catalog model ID the ARN (or ID) names.
    fn model_id(self, at: &str) -> Result<String, BedrockError> {
        if self
            .additional_model_request_fields
            .is_some_and(|f| !f.is_empty())
        {
            return Err(BedrockError::validation(format!(
                "{at}.modelConfiguration.additionalModelRequestFields is not supported by this server"
            )));
        }
        let arn = self.model_arn.filter(|a| !a.is_empty()).ok_or_else(|| {
            BedrockError::validation(format!("{at}.modelConfiguration.modelArn is required"))
        })?;
        Ok(model_id_of(&arn).to_string())
    }
}

/// `numberOfResults` / `numberOfRerankedResults` within `range`.
fn count_in(
    n: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
    at: &str,
) -> Result<Option<usize>, BedrockError> {
    match n {
        None => Ok(None),
        Some(n) if range.contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(BedrockError::validation(format!(
            "{at} must be {}..{}, got {n}",
            range.start(),
            range.end()
        ))),
    }
}

fn check_type(kind: Option<&str>, at: &str) -> Result<(), BedrockError> {
    match kind {
        Some("BEDROCK_RERANKING_MODEL") => Ok(()),
        None => Err(BedrockError::validation(format!("{at}.type is required"))),
        Some(other) => Err(BedrockError::validation(format!(
            "{at}.type {other:?} is not BEDROCK_RERANKING_MODEL"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldName {
    field_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SelectiveMode {
    fields_to_include: Option<Vec<FieldName>>,
    fields_to_exclude: Option<Vec<FieldName>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetadataConfiguration {
    selection_mode: Option<String>,
    selective_mode_configuration: Option<SelectiveMode>,
}

impl MetadataConfiguration {
    fn into_selection(self, at: &str) -> Result<RerankMetadata, BedrockError> {
        let at = format!("{at}.metadataConfiguration");
        let names = |fields: Vec<FieldName>| -> Result<Vec<String>, BedrockError> {
            if fields.is_empty() || fields.len() > 100 {
                return Err(BedrockError::validation(format!(
                    "{at}.selectiveModeConfiguration lists 1 to 100 fields"
                )));
            }
            Ok(fields.into_iter().map(|f| f.field_name).collect())
        };
        match (self.selection_mode.as_deref(), self.selective_mode_configuration) {
            (Some("ALL"), None) => Ok(RerankMetadata::All),
            (Some("SELECTIVE"), Some(SelectiveMode { fields_to_include: Some(f), fields_to_exclude: None })) => {
                Ok(RerankMetadata::Include(names(f)?))
            }
            (Some("SELECTIVE"), Some(SelectiveMode { fields_to_include: None, fields_to_exclude: Some(f) })) => {
                Ok(RerankMetadata::Exclude(names(f)?))
            }
            (Some("ALL"), Some(_)) => Err(BedrockError::validation(format!(
                "{at}.selectiveModeConfiguration goes with selectionMode SELECTIVE"
            ))),
            (Some("SELECTIVE"), _) => Err(BedrockError::validation(format!(
                "{at}.selectiveModeConfiguration needs exactly one of fieldsToInclude, fieldsToExclude"
            ))),
            (None, _) => Err(BedrockError::validation(format!("{at}.selectionMode is required"))),
            (Some(other), _) => Err(BedrockError::validation(format!(
                "{at}.selectionMode {other:?} is not ALL or SELECTIVE"
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrievalRerankingModel {
    model_configuration: Option<ModelConfiguration>,
    number_of_reranked_results: Option<i64>,
    metadata_configuration: Option<MetadataConfiguration>,
}

/// `vectorSearchConfiguration.rerankingConfiguration` in Retrieve and
/// RetrieveAndGenerate.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RetrievalReranking {
    #[serde(rename = "type")]
    kind: Option<String>,
    bedrock_reranking_configuration: Option<RetrievalRerankingModel>,
}

impl RetrievalReranking {
    pub(super) fn into_spec(self) -> Result<Reranking, BedrockError> {
        let at = "vectorSearchConfiguration.rerankingConfiguration";
        check_type(self.kind.as_deref(), at)?;
        let at = format!("{at}.bedrockRerankingConfiguration");
        let config = self
            .bedrock_reranking_configuration
            .ok_or_else(|| BedrockError::validation(format!("{at} is required")))?;
        let model_id = config
            .model_configuration
            .ok_or_else(|| {
                BedrockError::validation(format!("{at}.modelConfiguration is required"))
            })?
            .model_id(&at)?;
        Ok(Reranking {
            model_id,
            number_of_results: count_in(
                config.number_of_reranked_results,
                1..=100,
                &format!("{at}.numberOfRerankedResults"),
            )?,
            metadata: config
                .metadata_configuration
                .map(|m| m.into_selection(&at))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TextQuery {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RerankQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    text_query: Option<TextQuery>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TextDocument {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InlineDocument {
    #[serde(rename = "type")]
    kind: Option<String>,
    text_document: Option<TextDocument>,
    json_document: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RerankSource {
    #[serde(rename = "type")]
    kind: Option<String>,
    inline_document_source: Option<InlineDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RerankModel {
    model_configuration: Option<ModelConfiguration>,
    number_of_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RerankConfiguration {
    #[serde(rename = "type")]
    kind: Option<String>,
    bedrock_reranking_configuration: Option<RerankModel>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RerankBody {
    queries: Option<Vec<RerankQuery>>,
    sources: Option<Vec<RerankSource>>,
    reranking_configuration: Option<RerankConfiguration>,
    next_token: Option<String>,
}

/// A source as the model reads it (a JSON document as its JSON text) and as the
/// answer echoes it.
fn source_document(i: usize, source: RerankSource) -> Result<(String, Value), BedrockError> {
    let at = format!("sources[{i}]");
    if source.kind.as_deref() != Some("INLINE") {
        return Err(BedrockError::validation(format!(
            "{at}.type must be INLINE"
        )));
    }
    let inline = source.inline_document_source.ok_or_else(|| {
        BedrockError::validation(format!("{at}.inlineDocumentSource is required"))
    })?;
    let (text, echoed) = match (inline.kind.as_deref(), inline.text_document, inline.json_document) {
        (Some("TEXT"), Some(TextDocument { text: Some(text) }), None) => {
            let echoed = json!({ "type": "TEXT", "textDocument": { "text": text } });
            (text, echoed)
        }
        (Some("JSON"), None, Some(document)) => {
            let text = document.to_string();
            (text, json!({ "type": "JSON", "jsonDocument": document }))
        }
        _ => {
            return Err(BedrockError::validation(format!(
                "{at}.inlineDocumentSource needs type TEXT with textDocument.text, or type JSON with jsonDocument"
            )))
        }
    };
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_TEXT_CHARS {
        return Err(BedrockError::validation(format!(
            "{at}: a document is 1 to {MAX_TEXT_CHARS} characters, got {chars}"
        )));
    }
    Ok((text, echoed))
}

/// Rerank: one text query, 1..1000 inline sources, a reranking model.
pub async fn rerank(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: RerankBody = parse_json(&body)?;
    if body.next_token.is_some() {
        return Err(BedrockError::validation(
            "nextToken: every result fits one page; this server never sends one",
        ));
    }
    let mut queries = body
        .queries
        .ok_or_else(|| BedrockError::validation("queries is required"))?;
    if queries.len() != 1 {
        return Err(BedrockError::validation(format!(
            "queries must hold exactly one query, got {}",
            queries.len()
        )));
    }
    let query = queries.remove(0);
    if query.kind.as_deref() != Some("TEXT") {
        return Err(BedrockError::validation("queries[0].type must be TEXT"));
    }
    let query = query
        .text_query
        .and_then(|q| q.text)
        .filter(|t| !t.trim().is_empty() && t.chars().count() <= MAX_TEXT_CHARS)
        .ok_or_else(|| {
            BedrockError::validation(format!(
                "queries[0].textQuery.text is required: 1 to {MAX_TEXT_CHARS} characters"
            ))
        })?;
    let sources = body
        .sources
        .ok_or_else(|| BedrockError::validation("sources is required"))?;
    if sources.is_empty() || sources.len() > MAX_RERANK_DOCUMENTS {
        return Err(BedrockError::validation(format!(
            "sources must hold 1 to {} documents, got {}",
            MAX_RERANK_DOCUMENTS,
            sources.len()
        )));
    }
    let (documents, echoed): (Vec<String>, Vec<Value>) = sources
        .into_iter()
        .enumerate()
        .map(|(i, s)| source_document(i, s))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let at = "rerankingConfiguration";
    let config = body
        .reranking_configuration
        .ok_or_else(|| BedrockError::validation(format!("{at} is required")))?;
    check_type(config.kind.as_deref(), at)?;
    let at = format!("{at}.bedrockRerankingConfiguration");
    let model = config
        .bedrock_reranking_configuration
        .ok_or_else(|| BedrockError::validation(format!("{at} is required")))?;
    let top_n = count_in(
        model.number_of_results,
        1..=MAX_RERANK_DOCUMENTS as i64,
        &format!("{at}.numberOfResults"),
    )?
    .unwrap_or(documents.len());
    let model_id = model
        .model_configuration
        .ok_or_else(|| BedrockError::validation(format!("{at}.modelConfiguration is required")))?
        .model_id(&at)?;
    let ctx = CallContext::new(Some(principal), request_id.0, "Rerank");
    let (ranking, _) = state
        .core
        .rerank(ctx, &model_id, &query, &documents, top_n)
        .await
        .map_err(BedrockError::agent)?;
    let results: Vec<Value> = ranking
        .iter()
        .map(|r| {
            json!({
                "index": r.index,
                "relevanceScore": r.score,
                "document": echoed[r.index],
            })
        })
        .collect();
    Ok(Json(json!({ "results": results })).into_response())
}

/// A rerank model's native InvokeModel body (Amazon Rerank's and Cohere Rerank's on
/// Bedrock): `{"query", "documents": [text or object], "top_n"?, "api_version"?}` →
/// `{"results": [{"index", "relevance_score"}]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeRerankBody {
    query: String,
    documents: Vec<Value>,
    top_n: Option<i64>,
    api_version: Option<i64>,
    max_tokens_per_doc: Option<i64>,
}

pub(super) async fn invoke_native(
    core: &Arc<Basalt>,
    ctx: CallContext,
    model_id: &str,
    body: &[u8],
) -> Result<(Value, TokenUsage, u64), BedrockError> {
    let request = parse_json::<NativeRerankBody>(body)?;
    if request.api_version.is_some_and(|v| v != 2) {
        return Err(BedrockError::validation("api_version must be 2"));
    }
    if request.max_tokens_per_doc.is_some() {
        return Err(BedrockError::validation(
            "max_tokens_per_doc is not supported by this server",
        ));
    }
    let documents: Vec<String> = request
        .documents
        .into_iter()
        .map(|d| match d {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    let top_n = count_in(request.top_n, 1..=MAX_RERANK_DOCUMENTS as i64, "top_n")?
        .unwrap_or(documents.len());
    let started = ctx.started;
    let (ranking, search_units) = core
        .rerank(ctx, model_id, &request.query, &documents, top_n)
        .await?;
    let results: Vec<Value> = ranking
        .iter()
        .map(|r| json!({ "index": r.index, "relevance_score": r.score }))
        .collect();
    let usage = TokenUsage {
        input_tokens: search_units,
        ..TokenUsage::default()
    };
    Ok((
        json!({ "results": results }),
        usage,
        started.elapsed().as_millis() as u64,
    ))
}
