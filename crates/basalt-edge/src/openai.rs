//! The OpenAI dialect: `/v1/chat/completions` (with SSE streaming), `/v1/embeddings`,
//! `/v1/models`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use basalt_core::keys::Principal;
use basalt_core::types::{
    ChatRequest, ContentBlock, GenerationDelta, InferenceParams, Message, Role, StopReason,
    TokenUsage,
};
use basalt_core::CallContext;
use base64::Engine as _;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::RequestId;
use crate::error::OpenAiError;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model_id}", get(get_model))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, OpenAiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        OpenAiError {
            param: (path != ".").then_some(path),
            ..OpenAiError::invalid_request(format!(
                "We could not parse the JSON body of your request: {}",
                e.into_inner()
            ))
        }
    })
}

#[derive(Debug, Deserialize)]
struct ChatCompletionBody {
    model: String,
    messages: Vec<ChatMessageBody>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<StopField>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    seed: Option<i64>,
    n: Option<u32>,
    tools: Option<Vec<Value>>,
    response_format: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ChatMessageBody {
    role: String,
    content: Option<MessageContent>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

fn content_blocks(
    content: Option<MessageContent>,
    at: &str,
) -> Result<Vec<ContentBlock>, OpenAiError> {
    match content {
        None => Err(OpenAiError::invalid_request(format!(
            "{at}.content is required"
        ))),
        Some(MessageContent::Text(t)) => Ok(vec![ContentBlock::Text(t)]),
        Some(MessageContent::Parts(parts)) => parts
            .into_iter()
            .map(|p| match (p.kind.as_str(), p.text) {
                ("text", Some(t)) => Ok(ContentBlock::Text(t)),
                ("text", None) => Err(OpenAiError::invalid_request(format!(
                    "{at}: a text part needs text"
                ))),
                (kind, _) => Ok(ContentBlock::Other {
                    kind: kind.to_string(),
                }),
            })
            .collect(),
    }
}

impl ChatCompletionBody {
    fn into_chat_request(self) -> Result<(ChatRequest, bool, bool), OpenAiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(OpenAiError::invalid_request("n must be 1"));
        }
        if self
            .response_format
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "text")
        {
            return Err(OpenAiError::invalid_request(
                "response_format other than text is not supported by this server yet",
            ));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(OpenAiError::invalid_request(format!(
                    "temperature {t} must be between 0 and 2"
                )));
            }
        }
        if self.messages.is_empty() {
            return Err(OpenAiError::invalid_request(
                "messages must contain at least one message",
            ));
        }
        let mut system = Vec::new();
        let mut messages = Vec::new();
        for (i, m) in self.messages.into_iter().enumerate() {
            let at = format!("messages[{i}]");
            let role = m.role.clone();
            let blocks = content_blocks(m.content, &at)?;
            match role.as_str() {
                "system" | "developer" => {
                    for b in blocks {
                        match b {
                            ContentBlock::Text(t) => system.push(t),
                            ContentBlock::Other { kind } => {
                                return Err(OpenAiError::invalid_request(format!(
                                    "{at}: {kind} parts are not allowed in system messages"
                                )))
                            }
                        }
                    }
                }
                "user" => messages.push(Message {
                    role: Role::User,
                    content: blocks,
                }),
                "assistant" => messages.push(Message {
                    role: Role::Assistant,
                    content: blocks,
                }),
                "tool" | "function" => {
                    return Err(OpenAiError::invalid_request(format!(
                        "{at}: this model does not support tool messages"
                    )))
                }
                other => {
                    return Err(OpenAiError::invalid_request(format!(
                        "{at}.role {other:?} is not valid"
                    )))
                }
            }
        }
        let params = InferenceParams {
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature.map(|t| t.min(2.0)),
            top_p: self.top_p,
            top_k: None,
            stop_sequences: match self.stop {
                None => Vec::new(),
                Some(StopField::One(s)) => vec![s],
                Some(StopField::Many(v)) => v,
            },
            seed: self.seed.map(|s| s as u32),
        };
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        let request = ChatRequest {
            model_id: self.model,
            system,
            messages,
            params,
            has_tools: self.tools.is_some_and(|t| !t.is_empty()),
        };
        Ok((request, self.stream, include_usage))
    }
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::EndTurn | StopReason::StopSequence => "stop",
    }
}

fn usage_json(usage: &TokenUsage) -> Value {
    json!({ "prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens, "total_tokens": usage.total() })
}

fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

async fn chat_completions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let (request, stream, include_usage) =
        parse::<ChatCompletionBody>(&body)?.into_chat_request()?;
    let model = request.model_id.clone();
    let id = format!("chatcmpl-{}", request_id.0.replace('-', ""));
    let created = now_secs();
    let ctx = CallContext::new(Some(principal), request_id.0, "ChatCompletions");
    if !stream {
        let generation = state.core.chat(ctx, request).await?;
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": generation.text, "refusal": null },
                "finish_reason": finish_reason(generation.stop_reason),
                "logprobs": null,
            }],
            "usage": usage_json(&generation.usage),
        }))
        .into_response());
    }
    let mut deltas = state.core.chat_stream(ctx, request).await?;
    let first = match deltas.next().await {
        Some(GenerationDelta::Error(e)) => return Err(e.into()),
        other => other,
    };
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
        })
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let sse = |v: &Value| Bytes::from(format!("data: {v}\n\n"));
    tokio::spawn(async move {
        if tx
            .send(sse(&chunk(
                json!({ "role": "assistant", "content": "" }),
                None,
            )))
            .await
            .is_err()
        {
            return;
        }
        let mut next = first;
        while let Some(delta) = next {
            let mut frames = Vec::new();
            match delta {
                GenerationDelta::Text(text) => {
                    frames.push(sse(&chunk(json!({ "content": text }), None)))
                }
                GenerationDelta::End {
                    stop_reason, usage, ..
                } => {
                    frames.push(sse(&chunk(json!({}), Some(finish_reason(stop_reason)))));
                    if include_usage {
                        let mut last = chunk(json!({}), None);
                        last["choices"] = json!([]);
                        last["usage"] = usage_json(&usage);
                        frames.push(sse(&last));
                    }
                    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
                }
                GenerationDelta::Error(e) => {
                    let e = OpenAiError::from(e);
                    frames.push(sse(&json!({ "error": { "message": e.message, "type": e.kind, "param": null, "code": e.code } })));
                }
            }
            for f in frames {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            next = deltas.next().await;
        }
    });
    let body = Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>),
    );
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct EmbeddingsBody {
    model: String,
    input: EmbeddingInput,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

async fn embeddings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let request = parse::<EmbeddingsBody>(&body)?;
    let base64_output = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid_request(format!(
                "encoding_format {other:?} must be float or base64"
            )))
        }
    };
    let dims = state.core.embedding_dimensions(&request.model)?;
    if request.dimensions.is_some_and(|d| d as usize != dims) {
        return Err(OpenAiError::invalid_request(format!(
            "dimensions must be {dims} for this model"
        )));
    }
    let inputs = match request.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    let ctx = CallContext::new(Some(principal), request_id.0, "Embeddings");
    let out = state.core.embed(ctx, &request.model, inputs).await?;
    let total: u32 = out.tokens.iter().sum();
    let data: Vec<Value> = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64_output {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": total, "total_tokens": total },
    }))
    .into_response())
}

fn model_json(id: &str, provider: &str, created: i64) -> Value {
    json!({ "id": id, "object": "model", "created": created, "owned_by": provider })
}

async fn list_models(State(state): State<AppState>) -> Response {
    let now = OffsetDateTime::now_utc();
    let data: Vec<Value> = state
        .core
        .catalog()
        .models()
        .filter(|m| m.lifecycle.status_at(now) != basalt_core::catalog::LifecycleStatus::Eol)
        .map(|m| {
            model_json(
                &m.id,
                &m.provider,
                m.lifecycle.start_of_life.map_or(0, |t| t.unix_timestamp()),
            )
        })
        .collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

async fn get_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
) -> Result<Response, OpenAiError> {
    let m = state
        .core
        .catalog()
        .get(&model_id)
        .ok_or_else(|| OpenAiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("model_not_found"),
            param: Some("model".into()),
            message: format!("The model '{model_id}' does not exist"),
        })?;
    Ok(Json(model_json(
        &m.id,
        &m.provider,
        m.lifecycle.start_of_life.map_or(0, |t| t.unix_timestamp()),
    ))
    .into_response())
}
