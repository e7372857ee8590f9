//! The OpenAI dialect: `/v1/chat/completions` (with SSE streaming), `/v1/embeddings`,
//! `/v1/models`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use basalt_core::guardrails::TextLocation;
use basalt_core::keys::Principal;
use basalt_core::types::{
    ChatRequest, ContentBlock, GenerationDelta, InferenceParams, Message, Role, StopReason,
    TokenUsage, ToolCall, ToolChoice, ToolConfig, ToolSpec,
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

/// A JSON body, or the OpenAI dialect's error naming where it went wrong.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, OpenAiError> {
    crate::json_body::parse(body).map_err(|e| OpenAiError {
        param: (e.path != ".").then_some(e.path),
        ..OpenAiError::invalid_request(format!(
            "We could not parse the JSON body of your request: {}",
            e.error
        ))
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
    tool_choice: Option<Value>,
    response_format: Option<Value>,
    /// Basalt's extension (`extra_body` in the OpenAI SDK): Bedrock's
    /// `guardrailConfig` object. The headers `X-Amzn-Bedrock-GuardrailIdentifier` and
    /// `X-Amzn-Bedrock-GuardrailVersion` (as on InvokeModel) work too.
    #[serde(rename = "guardrailConfig")]
    guardrail_config: Option<Value>,
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
    tool_calls: Option<Vec<Value>>,
    tool_call_id: Option<String>,
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
    image_url: Option<ImageUrl>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ImageUrl {
    Object { url: String },
    Text(String),
}

/// An `image_url` part: only `data:image/...;base64,` URLs (the server fetches nothing).
fn image_part(url: &ImageUrl, at: &str) -> Result<ContentBlock, OpenAiError> {
    let url = match url {
        ImageUrl::Object { url } | ImageUrl::Text(url) => url,
    };
    data_url_image(url, at)
}

/// An image from a `data:image/...;base64,` URL (the server fetches nothing).
pub(crate) fn data_url_image(url: &str, at: &str) -> Result<ContentBlock, OpenAiError> {
    use base64::Engine;
    let bad = |m: &str| OpenAiError::invalid_request(format!("{at}: {m}"));
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| bad("image_url must be a data: URL (data:image/png;base64,...); the server does not fetch URLs"))?;
    let (mime, data) = rest
        .split_once(";base64,")
        .ok_or_else(|| bad("image_url must be base64 (data:image/png;base64,...)"))?;
    let format = basalt_core::types::ImageFormat::from_mime(mime)
        .ok_or_else(|| bad("the image must be png, jpeg, gif or webp"))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| bad("the image data is not base64"))?;
    Ok(ContentBlock::Image(basalt_core::types::Image {
        format,
        data,
    }))
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
                ("image_url", _) => match &p.image_url {
                    Some(url) => image_part(url, at),
                    None => Err(OpenAiError::invalid_request(format!(
                        "{at}: an image_url part needs image_url"
                    ))),
                },
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
        let mut messages: Vec<Message> = Vec::new();
        for (i, m) in self.messages.into_iter().enumerate() {
            let at = format!("messages[{i}]");
            let (role, blocks) = match m.role.as_str() {
                "system" | "developer" => {
                    for b in content_blocks(m.content, &at)? {
                        match b {
                            ContentBlock::Text(t) => system.push(t),
                            _ => {
                                return Err(OpenAiError::invalid_request(format!(
                                    "{at}: only text is allowed in system messages"
                                )))
                            }
                        }
                    }
                    continue;
                }
                "user" => (Role::User, content_blocks(m.content, &at)?),
                "assistant" => {
                    let mut blocks = match (&m.content, &m.tool_calls) {
                        (None, Some(_)) => Vec::new(),
                        _ => content_blocks(m.content, &at)?,
                    };
                    for (k, call) in m.tool_calls.unwrap_or_default().iter().enumerate() {
                        blocks.push(ContentBlock::ToolUse(tool_call(
                            call,
                            &format!("{at}.tool_calls[{k}]"),
                        )?));
                    }
                    (Role::Assistant, blocks)
                }
                "tool" => {
                    let tool_use_id = m.tool_call_id.ok_or_else(|| {
                        OpenAiError::invalid_request(format!(
                            "{at}: a tool message needs tool_call_id"
                        ))
                    })?;
                    let text = content_blocks(m.content, &at)?
                        .into_iter()
                        .filter_map(|b| {
                            if let ContentBlock::Text(t) = b {
                                Some(t)
                            } else {
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("");
                    (
                        Role::User,
                        vec![ContentBlock::ToolResult {
                            tool_use_id,
                            content: text,
                            is_error: false,
                        }],
                    )
                }
                other => {
                    return Err(OpenAiError::invalid_request(format!(
                        "{at}.role {other:?} is not valid"
                    )))
                }
            };
            // Tool results and the user turn after them form one user message.
            match messages.last_mut() {
                Some(last) if last.role == role && role == Role::User => {
                    last.content.extend(blocks)
                }
                _ => messages.push(Message {
                    role,
                    content: blocks,
                }),
            }
        }
        let tools = match self.tools {
            Some(list) if !list.is_empty() => tool_config(&list, self.tool_choice.as_ref())?,
            _ => None,
        };
        let response_schema = match &self.response_format {
            None => None,
            Some(format) => response_schema(format)?,
        };
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
            priority: Default::default(),
        };
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        let request = ChatRequest {
            model_id: self.model,
            system,
            messages,
            params,
            tools,
            response_schema,
            stream: self.stream,
        };
        Ok((request, self.stream, include_usage))
    }
}

fn tool_call(value: &Value, at: &str) -> Result<ToolCall, OpenAiError> {
    let bad = |what: &str| OpenAiError::invalid_request(format!("{at}: {what}"));
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("needs an id"))?;
    let function = value
        .get("function")
        .ok_or_else(|| bad("needs a function"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("needs function.name"))?;
    let arguments = function
        .get("arguments")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    let input = serde_json::from_str(arguments)
        .map_err(|e| bad(&format!("function.arguments is not JSON: {e}")))?;
    Ok(ToolCall {
        id: id.to_string(),
        name: name.to_string(),
        input,
    })
}

/// The tools and choice; `None` for `tool_choice: "none"` (the tools are not offered).
fn tool_config(list: &[Value], choice: Option<&Value>) -> Result<Option<ToolConfig>, OpenAiError> {
    let mut tools = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let bad = |what: &str| OpenAiError {
            param: Some(format!("tools[{i}]")),
            ..OpenAiError::invalid_request(format!("tools[{i}]: {what}"))
        };
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad("type must be function"));
        }
        let function = tool.get("function").ok_or_else(|| bad("needs function"))?;
        tools.push(ToolSpec {
            name: function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("needs function.name"))?
                .to_string(),
            description: function
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            input_schema: function
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    let choice = match choice {
        None => ToolChoice::Auto,
        Some(Value::String(c)) => match c.as_str() {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Any,
            "none" => return Ok(None),
            other => return Err(OpenAiError::invalid_request(format!("tool_choice {other:?} must be auto, required, none or a function"))),
        },
        Some(c) => match c.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(name) => ToolChoice::Tool(name.to_string()),
            None => return Err(OpenAiError::invalid_request("tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}")),
        },
    };
    Ok(Some(ToolConfig { tools, choice }))
}

/// `response_format`: `text`, `json_object` (any JSON object) or `json_schema`.
fn response_schema(format: &Value) -> Result<Option<Value>, OpenAiError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "object"}))),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .cloned()
                .ok_or_else(|| {
                    OpenAiError::invalid_request("response_format.json_schema.schema is required")
                })?;
            Ok(Some(schema))
        }
        _ => Err(OpenAiError::invalid_request(
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(index, c)| json!({ "index": index, "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.input.to_string() } }))
            .collect(),
    )
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::ContentFiltered | StopReason::GuardrailIntervened => "content_filter",
    }
}

/// OpenAI's usage; `prompt_tokens_details.cached_tokens` is the part of the prompt
/// the engine (or the upstream) really served from its prefix cache, a subset of
/// `prompt_tokens` as in OpenAI's API.
fn usage_json(usage: &TokenUsage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total(),
        "prompt_tokens_details": { "cached_tokens": usage.cache_read_input_tokens.min(usage.input_tokens) },
    })
}

fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The guardrail of a chat completion: the `guardrailConfig` body field, or the
/// Bedrock guardrail headers.
fn guardrail_call(
    headers: &HeaderMap,
    config: Option<Value>,
    streaming: bool,
) -> Result<Option<crate::bedrock::wire::GuardrailCall>, OpenAiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let config = match (
        config,
        header("x-amzn-bedrock-guardrailidentifier"),
        header("x-amzn-bedrock-guardrailversion"),
    ) {
        (Some(_), Some(_), _) => {
            return Err(OpenAiError::invalid_request(
                "give the guardrail in guardrailConfig or in the headers, not both",
            ))
        }
        (Some(config), None, _) => config,
        (None, Some(id), version) => {
            let mut config = json!({ "guardrailIdentifier": id, "guardrailVersion": version.unwrap_or("DRAFT") });
            if let Some(trace) = header("x-amzn-bedrock-trace") {
                config["trace"] = json!(trace.to_ascii_lowercase());
            }
            config
        }
        (None, None, _) => return Ok(None),
    };
    crate::bedrock::wire::guardrail_config(&config, streaming)
        .map(Some)
        .map_err(|e| OpenAiError::invalid_request(e.message))
}

fn guardrail_action_header(response: &mut Response, intervened: bool) {
    response.headers_mut().insert(
        "x-amzn-bedrock-guardrail-action",
        HeaderValue::from_static(if intervened { "INTERVENED" } else { "NONE" }),
    );
}

async fn chat_completions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let mut body = parse::<ChatCompletionBody>(&body)?;
    let guardrail = guardrail_call(&headers, body.guardrail_config.take(), body.stream)?;
    let (request, stream, include_usage) = body.into_chat_request()?;
    let mut guardrail = guardrail;
    if let Some(call) = &mut guardrail {
        // Every text block of the conversation is checked (the system prompt is not).
        call.guard.input = request
            .messages
            .iter()
            .enumerate()
            .flat_map(|(m, message)| {
                message
                    .content
                    .iter()
                    .enumerate()
                    .filter_map(move |(b, block)| match block {
                        ContentBlock::Text(t) => Some((
                            TextLocation::Message(m, b),
                            basalt_core::guardrail_policy::Segment::guarded(t.clone()),
                        )),
                        _ => None,
                    })
            })
            .collect();
    }
    let model = request.model_id.clone();
    let id = format!("chatcmpl-{}", request_id.0.replace('-', ""));
    let created = now_secs();
    let ctx = CallContext::new(Some(principal), request_id.0, "ChatCompletions");
    if !stream {
        let (generation, trace, intervened) = match guardrail {
            None => (state.core.chat(ctx, request).await?, None, None),
            Some(call) => {
                let guarded = state
                    .guardrails
                    .chat_guarded(ctx, request, call.guard)
                    .await?;
                let trace = call
                    .trace
                    .then(|| crate::bedrock::guardrail_trace(&guarded));
                let intervened = guarded.intervened();
                (guarded.generation, trace, Some(intervened))
            }
        };
        let answering = generation.model_id.clone();
        let response = Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": if generation.tool_calls.is_empty() {
                    json!({ "role": "assistant", "content": generation.text, "refusal": null })
                } else {
                    json!({ "role": "assistant", "content": null, "refusal": null, "tool_calls": tool_calls_json(&generation.tool_calls) })
                },
                "finish_reason": finish_reason(generation.stop_reason),
                "logprobs": null,
            }],
            "usage": usage_json(&generation.usage),
        }));
        let mut response = match trace {
            Some(trace) => {
                let Json(mut body) = response;
                body["guardrail"] = trace;
                Json(body).into_response()
            }
            None => response.into_response(),
        };
        crate::bedrock::answered_by(&mut response, &answering);
        if let Some(intervened) = intervened {
            guardrail_action_header(&mut response, intervened);
        }
        return Ok(response);
    }
    let (mut deltas, answering): (futures::stream::BoxStream<'static, GenerationDelta>, String) =
        match guardrail {
            None => {
                let stream = state.core.chat_stream(ctx, request).await?;
                let answering = stream.model_id().to_string();
                (stream.boxed(), answering)
            }
            Some(call) => {
                let stream = state
                    .guardrails
                    .chat_stream_guarded(ctx, request, call.guard, call.asynchronous)
                    .await?;
                let answering = stream.model_id().to_string();
                (stream.boxed(), answering)
            }
        };
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
    let sse = |v: &Value| Bytes::from(format!("data: {v}\n\n"));
    let prelude = vec![sse(&chunk(
        json!({ "role": "assistant", "content": "" }),
        None,
    ))];
    let encode = move |delta: GenerationDelta| match delta {
        GenerationDelta::Text(text) => vec![sse(&chunk(json!({ "content": text }), None))],
        GenerationDelta::ToolCall(call) => vec![sse(&chunk(
            json!({ "tool_calls": tool_calls_json(std::slice::from_ref(&call)) }),
            None,
        ))],
        GenerationDelta::End {
            stop_reason, usage, ..
        } => {
            let mut frames = vec![sse(&chunk(json!({}), Some(finish_reason(stop_reason))))];
            if include_usage {
                let mut last = chunk(json!({}), None);
                last["choices"] = json!([]);
                last["usage"] = usage_json(&usage);
                frames.push(sse(&last));
            }
            frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
            frames
        }
        GenerationDelta::Error(e) => {
            let e = OpenAiError::from(e);
            vec![sse(
                &json!({ "error": { "message": e.message, "type": e.kind, "param": null, "code": e.code } }),
            )]
        }
    };
    let body = crate::streaming::forward(prelude, first, deltas, encode);
    let mut response = (StatusCode::OK, body).into_response();
    crate::bedrock::answered_by(&mut response, &answering);
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

/// `input`: a string, strings, or (refused with a clear message) token IDs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    /// Token IDs (`[1, 2]` or `[[1, 2], [3]]`), as OpenAI's tokenizer (tiktoken)
    /// numbers them: they are not this model's tokens, so they are refused.
    Tokens(#[allow(dead_code)] Vec<u64>),
    TokenLists(#[allow(dead_code)] Vec<Vec<u64>>),
    /// Anything else, refused with a plain message instead of serde's.
    Other(#[allow(dead_code)] Value),
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
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => {
            return Err(OpenAiError {
                param: Some("input".into()),
                ..OpenAiError::invalid_request(
                    "input as token IDs is not supported: the IDs are another tokenizer's (tiktoken's), not this model's; send the text (a string or an array of strings)",
                )
            })
        }
        EmbeddingInput::Other(_) => {
            return Err(OpenAiError {
                param: Some("input".into()),
                ..OpenAiError::invalid_request(
                    "input must be a string or an array of strings",
                )
            })
        }
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

/// A model in Anthropic's shape (`GET /v1/models` with an `anthropic-version` header).
fn anthropic_model_json(m: &basalt_core::catalog::ModelEntry) -> Value {
    let created = m
        .lifecycle
        .start_of_life
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    json!({ "type": "model", "id": m.id, "display_name": m.name, "created_at": created })
}

/// `GET /v1/models`: OpenAI's list, or Anthropic's when the client sends
/// `anthropic-version` (the Anthropic SDKs and Claude Code do).
async fn list_models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = OffsetDateTime::now_utc();
    let live = || {
        state.core.catalog().models().filter(move |m| {
            m.lifecycle.status_at(now) != basalt_core::catalog::LifecycleStatus::Eol
        })
    };
    if headers.contains_key("anthropic-version") {
        let data: Vec<Value> = live().map(anthropic_model_json).collect();
        let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
        let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
        return Json(
            json!({ "data": data, "has_more": false, "first_id": first, "last_id": last }),
        )
        .into_response();
    }
    let data: Vec<Value> = live()
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
    headers: HeaderMap,
) -> Result<Response, OpenAiError> {
    if headers.contains_key("anthropic-version") {
        return Ok(match state.core.catalog().get(&model_id) {
            Some(m) => Json(anthropic_model_json(m)).into_response(),
            None => crate::AnthropicError {
                status: StatusCode::NOT_FOUND,
                kind: "not_found_error",
                message: format!("model: {model_id}"),
                retry_after_secs: 1,
            }
            .into_response(),
        });
    }
    let m = state
        .core
        .catalog()
        .get(&model_id)
        .ok_or_else(|| OpenAiError {
            retry_after_secs: 1,
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
