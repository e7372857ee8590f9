//! `POST /v1/rerank`: the reranking API that Cohere defined and Jina, vLLM,
//! llama-server and LiteLLM's proxy copied — so their clients (LangChain's
//! `CohereRerank` with a base URL, LlamaIndex's rerankers, plain HTTP) reach any
//! reranking model of the catalog with a bearer key. Errors are the OpenAI dialect's
//! error object, like every other `/v1/` route.
//!
//! Request: `{model, query, documents: [text | {"text"}], top_n?, return_documents?,
//! max_tokens_per_doc?}`. Answer: `{id, model, results: [{index, relevance_score,
//! document?: {text}}], meta: {api_version, billed_units: {search_units}}}`, most
//! relevant first.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use basalt_core::keys::Principal;
use basalt_core::{CallContext, MAX_RERANK_DOCUMENTS};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::RequestId;
use crate::error::OpenAiError;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/rerank", post(rerank))
}

/// A document: its text, or an object with a `text` member (Jina's and Cohere v1's).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Document {
    Text(String),
    Object { text: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RerankBody {
    model: String,
    query: String,
    documents: Vec<Document>,
    top_n: Option<i64>,
    #[serde(default)]
    return_documents: bool,
    max_tokens_per_doc: Option<i64>,
    /// Cohere's scheduling hint; accepted and ignored.
    #[allow(dead_code)]
    priority: Option<i64>,
}

fn invalid(param: &str, message: impl Into<String>) -> OpenAiError {
    OpenAiError {
        param: Some(param.into()),
        ..OpenAiError::invalid_request(message)
    }
}

async fn rerank(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let request: RerankBody = crate::openai::parse(&body)?;
    if request.max_tokens_per_doc.is_some() {
        return Err(invalid(
            "max_tokens_per_doc",
            "max_tokens_per_doc is not supported by this server",
        ));
    }
    let documents: Vec<String> = request
        .documents
        .into_iter()
        .map(|d| match d {
            Document::Text(t) | Document::Object { text: t } => t,
        })
        .collect();
    if documents.is_empty() || documents.len() > MAX_RERANK_DOCUMENTS {
        return Err(invalid(
            "documents",
            format!(
                "documents must hold 1 to {MAX_RERANK_DOCUMENTS} texts, got {}",
                documents.len()
            ),
        ));
    }
    let top_n = match request.top_n {
        None => documents.len(),
        Some(n) if n >= 1 => (n as usize).min(documents.len()),
        Some(n) => {
            return Err(invalid(
                "top_n",
                format!("top_n must be at least 1, got {n}"),
            ))
        }
    };
    let ctx = CallContext::new(Some(principal), request_id.0.clone(), "Rerank");
    let (ranking, search_units) = state
        .core
        .rerank(ctx, &request.model, &request.query, &documents, top_n)
        .await?;
    let results: Vec<Value> = ranking
        .iter()
        .map(|r| {
            let mut result = json!({ "index": r.index, "relevance_score": r.score });
            if request.return_documents {
                result["document"] = json!({ "text": documents[r.index] });
            }
            result
        })
        .collect();
    Ok(Json(json!({
        "id": request_id.0,
        "model": request.model,
        "results": results,
        "meta": {
            "api_version": { "version": "2" },
            "billed_units": { "search_units": search_units },
        },
    }))
    .into_response())
}
