//! OpenAI's Responses API: `POST /v1/responses` (server-sent events when `stream`),
//! `GET` / `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`, on
//! every Basalt model, as the `openai` SDK's `responses` client and the OpenAI Agents
//! SDK send them.
//!
//! - Input: a string or items (`message` with `input_text` / `input_image` data URLs /
//!   `output_text`, `function_call`, `function_call_output`); `instructions`;
//!   function `tools` with `tool_choice`; `text.format` (`json_schema`,
//!   `json_object`) as structured output; `max_output_tokens`, `temperature`, `top_p`.
//! - `store` (default true) keeps the response for its key (`ResponseService`);
//!   `previous_response_id` continues that conversation (its instructions are not
//!   carried over, as on OpenAI).
//! - Refused with a message: built-in tools (web search, file search, computer use,
//!   code interpreter, MCP), `background`, `conversation`, stored `prompt`s, item
//!   references, image URLs that are not `data:`. Accepted without effect:
//!   `reasoning`, `include`, `truncation`, `prompt_cache_*`, `safety_identifier`,
//!   `service_tier`, `user`, `parallel_tool_calls`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use basalt_core::keys::Principal;
use basalt_core::responses::{ResponseService, StoredResponse};
use basalt_core::types::{
    ChatRequest, ContentBlock, Generation, GenerationDelta, InferenceParams, Message, Role,
    StopReason, TokenUsage, ToolCall, ToolChoice, ToolConfig, ToolSpec,
};
use basalt_core::{CallContext, CoreError};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::RequestId;
use crate::error::OpenAiError;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/responses", post(create))
        .route("/v1/responses/{id}", get(retrieve).delete(delete))
        .route("/v1/responses/{id}/input_items", get(input_items))
}

#[derive(Debug, Deserialize)]
struct ResponsesBody {
    model: String,
    input: Value,
    instructions: Option<String>,
    #[serde(default)]
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_output_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    store: Option<bool>,
    previous_response_id: Option<String>,
    metadata: Option<Value>,
    text: Option<Value>,
    parallel_tool_calls: Option<bool>,
    background: Option<bool>,
    conversation: Option<Value>,
    prompt: Option<Value>,
    /// Everything else a client may send (`reasoning`, `include`, `truncation`, ...):
    /// accepted without effect.
    #[serde(flatten)]
    _rest: Map<String, Value>,
}

fn invalid(param: &str, message: impl Into<String>) -> OpenAiError {
    OpenAiError {
        param: Some(param.to_string()),
        ..OpenAiError::invalid_request(message)
    }
}

/// A message item's content as parts (a string is one `input_text`, or `output_text`
/// for the assistant).
fn parts(content: &Value, role: &str, at: &str) -> Result<Vec<Value>, OpenAiError> {
    match content {
        Value::String(s) => {
            let kind = if role == "assistant" {
                "output_text"
            } else {
                "input_text"
            };
            Ok(vec![json!({ "type": kind, "text": s })])
        }
        Value::Array(p) => Ok(p.clone()),
        _ => Err(invalid(
            at,
            format!("{at}.content must be a string or a list of parts"),
        )),
    }
}

/// The request's input as items in their full form (`type` on every item, message
/// content as parts, an ID on every item).
fn normalize_input(input: &Value, id_prefix: &str) -> Result<Vec<Value>, OpenAiError> {
    let items = match input {
        Value::String(s) => vec![json!({ "type": "message", "role": "user", "content": s })],
        Value::Array(items) => items.clone(),
        _ => {
            return Err(invalid(
                "input",
                "input must be a string or a list of items",
            ))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("input[{i}]");
        let kind = item["type"]
            .as_str()
            .unwrap_or(if item.get("role").is_some() {
                "message"
            } else {
                ""
            });
        let mut item = item.clone();
        match kind {
            "message" => {
                let role = item["role"].as_str().unwrap_or_default().to_string();
                if !matches!(role.as_str(), "user" | "assistant" | "system" | "developer") {
                    return Err(invalid(&at, format!("{at}.role must be user, assistant, system or developer")));
                }
                item["content"] = Value::Array(parts(&item["content"], &role, &at)?);
                item["type"] = "message".into();
            }
            "function_call" => {
                for field in ["call_id", "name", "arguments"] {
                    if !item[field].is_string() {
                        return Err(invalid(&at, format!("{at}.{field} must be a string")));
                    }
                }
            }
            "function_call_output" => {
                if !item["call_id"].is_string() {
                    return Err(invalid(&at, format!("{at}.call_id must be a string")));
                }
            }
            // Reasoning from an earlier turn: no Basalt model reads it back.
            "reasoning" => continue,
            "item_reference" => {
                return Err(invalid(&at, format!("{at}: item references are not supported; send the items themselves or previous_response_id")))
            }
            other => {
                return Err(invalid(&at, format!(
                    "{at}.type {other:?} is not supported (message, function_call, function_call_output)"
                )))
            }
        }
        if item.get("id").and_then(Value::as_str).is_none() {
            item["id"] = format!("{id_prefix}_{i}").into();
        }
        out.push(item);
    }
    Ok(out)
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The conversation items in core terms: system texts and messages (consecutive
/// turns of one role joined).
fn to_messages(items: &[Value]) -> Result<(Vec<String>, Vec<Message>), OpenAiError> {
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    let push =
        |messages: &mut Vec<Message>, role: Role, block: ContentBlock| match messages.last_mut() {
            Some(last) if last.role == role => last.content.push(block),
            _ => messages.push(Message {
                role,
                content: vec![block],
            }),
        };
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        match item["type"].as_str().unwrap_or_default() {
            "message" => {
                let role = item["role"].as_str().unwrap_or_default();
                for (j, part) in item["content"].as_array().into_iter().flatten().enumerate() {
                    let at = format!("{at}.content[{j}]");
                    let block = match part["type"].as_str() {
                        Some("input_text" | "output_text" | "text") => {
                            ContentBlock::Text(part["text"].as_str().unwrap_or_default().to_string())
                        }
                        Some("refusal") => ContentBlock::Text(part["refusal"].as_str().unwrap_or_default().to_string()),
                        Some("input_image") => match part["image_url"].as_str() {
                            Some(url) => crate::openai::data_url_image(url, &at)?,
                            None => return Err(invalid(&at, format!("{at}: input_image needs image_url (a data: URL); file IDs are not supported"))),
                        },
                        other => {
                            return Err(invalid(&at, format!(
                                "{at}.type {other:?} is not supported (input_text, input_image, output_text)"
                            )))
                        }
                    };
                    match role {
                        "system" | "developer" => match block {
                            ContentBlock::Text(t) => system.push(t),
                            _ => {
                                return Err(invalid(
                                    &at,
                                    format!("{at}: system messages hold text only"),
                                ))
                            }
                        },
                        "assistant" => push(&mut messages, Role::Assistant, block),
                        _ => push(&mut messages, Role::User, block),
                    }
                }
            }
            "function_call" => {
                let arguments = item["arguments"].as_str().unwrap_or("{}");
                let input = serde_json::from_str(arguments)
                    .unwrap_or_else(|_| Value::String(arguments.to_string()));
                push(
                    &mut messages,
                    Role::Assistant,
                    ContentBlock::ToolUse(ToolCall {
                        id: item["call_id"].as_str().unwrap_or_default().to_string(),
                        name: item["name"].as_str().unwrap_or_default().to_string(),
                        input,
                    }),
                );
            }
            "function_call_output" => push(
                &mut messages,
                Role::User,
                ContentBlock::ToolResult {
                    tool_use_id: item["call_id"].as_str().unwrap_or_default().to_string(),
                    content: text_of(&item["output"]),
                    is_error: false,
                },
            ),
            _ => {}
        }
    }
    Ok((system, messages))
}

fn tool_config(tools: &[Value], choice: &Option<Value>) -> Result<Option<ToolConfig>, OpenAiError> {
    let mut specs = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match t["type"].as_str() {
            Some("function") => {}
            other => {
                return Err(invalid(&at, format!(
                    "{at}.type {other:?}: only function tools are available on this server (no built-in web search, file search, computer use, code interpreter or MCP)"
                )))
            }
        }
        specs.push(ToolSpec {
            name: t["name"]
                .as_str()
                .ok_or_else(|| invalid(&at, format!("{at}.name is required")))?
                .to_string(),
            description: t["description"].as_str().map(str::to_string),
            input_schema: t
                .get("parameters")
                .filter(|p| p.is_object())
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
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!("tool_choice {other:?} must be auto, required, none or a function"),
                ))
            }
        },
        Some(c) if c["type"] == "function" => match c["name"].as_str() {
            Some(name) => ToolChoice::Tool(name.to_string()),
            None => {
                return Err(invalid(
                    "tool_choice",
                    "tool_choice {\"type\": \"function\"} needs name",
                ))
            }
        },
        Some(_) => return Err(invalid(
            "tool_choice",
            "tool_choice must be auto, required, none or {\"type\": \"function\", \"name\": ...}",
        )),
    };
    if specs.is_empty() {
        return match choice {
            ToolChoice::Auto => Ok(None),
            _ => Err(invalid("tool_choice", "tool_choice needs tools")),
        };
    }
    Ok(Some(ToolConfig {
        tools: specs,
        choice,
    }))
}

fn response_schema(text: &Option<Value>) -> Result<Option<Value>, OpenAiError> {
    let Some(format) = text.as_ref().and_then(|t| t.get("format")) else {
        return Ok(None);
    };
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "object"}))),
        Some("json_schema") => format
            .get("schema")
            .filter(|s| s.is_object())
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    "text.format.schema",
                    "text.format.schema is required for json_schema",
                )
            }),
        _ => Err(invalid(
            "text.format.type",
            "text.format.type must be text, json_object or json_schema",
        )),
    }
}

fn output_items(generation_text: &str, calls: &[ToolCall], ids: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if !generation_text.is_empty() || calls.is_empty() {
        out.push(message_item(ids, generation_text, "completed"));
    }
    for (i, call) in calls.iter().enumerate() {
        out.push(call_item(ids, i, call, "completed"));
    }
    out
}

fn message_item(ids: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": format!("msg_{ids}"), "status": status, "role": "assistant",
        "content": [{ "type": "output_text", "text": text, "annotations": [], "logprobs": [] }],
    })
}

fn call_item(ids: &str, i: usize, call: &ToolCall, status: &str) -> Value {
    json!({
        "type": "function_call", "id": format!("fc_{ids}_{i}"), "call_id": call.id,
        "name": call.name, "arguments": call.input.to_string(), "status": status,
    })
}

fn usage_json(usage: &TokenUsage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": { "cached_tokens": usage.cache_read_input_tokens.min(usage.input_tokens), "cache_write_tokens": 0 },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": usage.total(),
    })
}

/// What a response document repeats of its request.
struct Echo {
    id: String,
    created_at: i64,
    model: String,
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    tools: Vec<Value>,
    tool_choice: Value,
    text: Value,
    store: bool,
    previous_response_id: Option<String>,
    metadata: Value,
    parallel_tool_calls: bool,
}

impl Echo {
    fn document(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Option<&TokenUsage>,
        incomplete: Option<&str>,
    ) -> Value {
        json!({
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "error": null,
            "completed_at": if status == "in_progress" { Value::Null } else { json!(now_secs()) },
            "incomplete_details": incomplete.map(|r| json!({ "reason": r })),
            "instructions": self.instructions, "max_output_tokens": self.max_output_tokens,
            "model": self.model, "output": output, "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": self.previous_response_id,
            "reasoning": { "effort": null, "summary": null },
            "store": self.store, "temperature": self.temperature, "top_p": self.top_p,
            "text": self.text, "tool_choice": self.tool_choice, "tools": self.tools,
            "truncation": "disabled", "usage": usage.map(usage_json), "user": null,
            "metadata": self.metadata,
        })
    }
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The response's status and, when incomplete, why.
fn status_of(reason: StopReason) -> (&'static str, Option<&'static str>) {
    match reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => {
            ("incomplete", Some("max_output_tokens"))
        }
        StopReason::ContentFiltered | StopReason::GuardrailIntervened => {
            ("incomplete", Some("content_filter"))
        }
        _ => ("completed", None),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, OpenAiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpenAiError::from(CoreError::Internal(format!("store task: {e}"))))?
        .map_err(OpenAiError::from)
}

/// Keeps a finished response and its conversation (input items, then output).
async fn save(
    responses: &Arc<ResponseService>,
    principal: &Principal,
    echo: &Echo,
    document: &Value,
    input: Vec<Value>,
    output: &[Value],
) -> Result<(), OpenAiError> {
    let conversation = json!({ "input": input, "output": output }).to_string();
    let record = StoredResponse {
        id: echo.id.clone(),
        model_id: echo.model.clone(),
        created_ms: echo.created_at * 1000,
        response_json: document.to_string(),
        conversation_json: conversation,
    };
    let responses = Arc::clone(responses);
    let principal = principal.clone();
    blocking(move || responses.save(Some(&principal), record)).await
}

/// The conversation a stored response ends: its input items, then its output.
fn conversation_items(stored: &StoredResponse) -> Vec<Value> {
    let conversation: Value =
        serde_json::from_str(&stored.conversation_json).unwrap_or(Value::Null);
    let mut items: Vec<Value> = conversation["input"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    items.extend(
        conversation["output"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    items
}

async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let body: ResponsesBody = serde_json::from_slice(&body).map_err(|e| {
        OpenAiError::invalid_request(format!("the body is not a valid Responses request: {e}"))
    })?;
    for (name, given) in [
        ("background", body.background == Some(true)),
        (
            "conversation",
            body.conversation.as_ref().is_some_and(|c| !c.is_null()),
        ),
        ("prompt", body.prompt.as_ref().is_some_and(|p| !p.is_null())),
    ] {
        if given {
            return Err(invalid(
                name,
                format!("{name} is not supported on this server"),
            ));
        }
    }
    let ids = request_id.0.replace('-', "");
    let store = body.store.unwrap_or(true);
    // The conversation so far: the previous response's, then this input.
    let mut conversation = Vec::new();
    if let Some(previous) = body.previous_response_id.clone() {
        let responses = Arc::clone(&state.responses);
        let who = principal.clone();
        let stored = blocking(move || responses.get(Some(&who), &previous))
            .await
            .map_err(|mut e| {
                e.param = Some("previous_response_id".into());
                e
            })?;
        conversation = conversation_items(&stored);
    }
    let input = normalize_input(&body.input, &format!("in_{ids}"))?;
    conversation.extend(input);
    let (mut system, messages) = to_messages(&conversation)?;
    if let Some(instructions) = body.instructions.as_deref().filter(|i| !i.is_empty()) {
        system.insert(0, instructions.to_string());
    }
    if messages.is_empty() {
        return Err(invalid(
            "input",
            "input needs at least one user or assistant item",
        ));
    }
    let tools = tool_config(&body.tools, &body.tool_choice)?;
    let request = ChatRequest {
        model_id: body.model.clone(),
        system,
        messages,
        params: InferenceParams {
            max_tokens: body.max_output_tokens,
            temperature: body.temperature,
            top_p: body.top_p,
            ..InferenceParams::default()
        },
        tools,
        response_schema: response_schema(&body.text)?,
        stream: body.stream,
    };
    let echo = Echo {
        id: format!("resp_{ids}"),
        created_at: now_secs(),
        model: body.model,
        instructions: body.instructions,
        max_output_tokens: body.max_output_tokens,
        temperature: body.temperature,
        top_p: body.top_p,
        tools: body.tools,
        tool_choice: body.tool_choice.unwrap_or_else(|| json!("auto")),
        text: body
            .text
            .unwrap_or_else(|| json!({ "format": { "type": "text" } })),
        store,
        previous_response_id: body.previous_response_id,
        metadata: body.metadata.unwrap_or_else(|| json!({})),
        parallel_tool_calls: body.parallel_tool_calls.unwrap_or(true),
    };
    let ctx = CallContext::new(Some(principal.clone()), request_id.0, "Responses");
    if !body.stream {
        let generation: Generation = state.core.chat(ctx, request).await?;
        let output = output_items(&generation.text, &generation.tool_calls, &ids);
        let (status, incomplete) = status_of(generation.stop_reason);
        let document = echo.document(status, output.clone(), Some(&generation.usage), incomplete);
        if store {
            save(
                &state.responses,
                &principal,
                &echo,
                &document,
                conversation,
                &output,
            )
            .await?;
        }
        let mut response = Json(document).into_response();
        crate::bedrock::answered_by(&mut response, &generation.model_id);
        return Ok(response);
    }
    let deltas = state.core.chat_stream(ctx, request).await?;
    let answering = deltas.model_id().to_string();
    let mut deltas = deltas.boxed();
    let first = match deltas.next().await {
        Some(GenerationDelta::Error(e)) => return Err(e.into()),
        other => other,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let responses = Arc::clone(&state.responses);
    tokio::spawn(async move {
        let mut events = EventWriter { tx, sequence: 0 };
        let created = echo.document("in_progress", Vec::new(), None, None);
        if !events
            .send("response.created", json!({ "response": created.clone() }))
            .await
            || !events
                .send("response.in_progress", json!({ "response": created }))
                .await
        {
            return;
        }
        let mut output: Vec<Value> = Vec::new();
        let mut text: Option<String> = None;
        let mut calls = 0usize;
        let mut next = first;
        while let Some(delta) = next {
            match delta {
                GenerationDelta::Text(piece) => {
                    let item_id = format!("msg_{ids}");
                    if text.is_none() {
                        let index = output.len();
                        let sent = events.send("response.output_item.added", json!({ "output_index": index, "item": { "type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": [] } })).await
                            && events.send("response.content_part.added", json!({ "item_id": item_id, "output_index": index, "content_index": 0, "part": { "type": "output_text", "text": "", "annotations": [], "logprobs": [] } })).await;
                        if !sent {
                            return;
                        }
                        text = Some(String::new());
                    }
                    if let Some(t) = text.as_mut() {
                        t.push_str(&piece);
                    }
                    if !events.send("response.output_text.delta", json!({ "item_id": item_id, "output_index": output.len(), "content_index": 0, "delta": piece, "logprobs": [] })).await {
                        return;
                    }
                }
                GenerationDelta::ToolCall(call) => {
                    if let Some(t) = text.take() {
                        if !close_text(&mut events, &mut output, &ids, t).await {
                            return;
                        }
                    }
                    let index = output.len();
                    let item = call_item(&ids, calls, &call, "completed");
                    let item_id = item["id"].clone();
                    let arguments = item["arguments"].clone();
                    let mut pending = item.clone();
                    pending["status"] = "in_progress".into();
                    pending["arguments"] = "".into();
                    let sent = events.send("response.output_item.added", json!({ "output_index": index, "item": pending })).await
                        && events.send("response.function_call_arguments.delta", json!({ "item_id": item_id, "output_index": index, "delta": arguments })).await
                        && events.send("response.function_call_arguments.done", json!({ "item_id": item_id, "output_index": index, "arguments": arguments })).await
                        && events.send("response.output_item.done", json!({ "output_index": index, "item": item.clone() })).await;
                    if !sent {
                        return;
                    }
                    output.push(item);
                    calls += 1;
                }
                GenerationDelta::End {
                    stop_reason, usage, ..
                } => {
                    if text.is_none() && output.is_empty() {
                        text = Some(String::new());
                        let index = output.len();
                        let item_id = format!("msg_{ids}");
                        let sent = events.send("response.output_item.added", json!({ "output_index": index, "item": { "type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": [] } })).await
                            && events.send("response.content_part.added", json!({ "item_id": item_id, "output_index": index, "content_index": 0, "part": { "type": "output_text", "text": "", "annotations": [], "logprobs": [] } })).await;
                        if !sent {
                            return;
                        }
                    }
                    if let Some(t) = text.take() {
                        if !close_text(&mut events, &mut output, &ids, t).await {
                            return;
                        }
                    }
                    let (status, incomplete) = status_of(stop_reason);
                    let document = echo.document(status, output.clone(), Some(&usage), incomplete);
                    if echo.store {
                        if let Err(e) = save(
                            &responses,
                            &principal,
                            &echo,
                            &document,
                            conversation,
                            &output,
                        )
                        .await
                        {
                            events.send("error", json!({ "code": e.code, "message": e.message, "param": e.param })).await;
                            return;
                        }
                    }
                    let name = if status == "completed" {
                        "response.completed"
                    } else {
                        "response.incomplete"
                    };
                    events.send(name, json!({ "response": document })).await;
                    return;
                }
                GenerationDelta::Error(e) => {
                    let e = OpenAiError::from(e);
                    events
                        .send(
                            "error",
                            json!({ "code": e.code, "message": e.message, "param": e.param }),
                        )
                        .await;
                    let mut failed = echo.document("failed", output.clone(), None, None);
                    failed["error"] =
                        json!({ "code": e.code.unwrap_or("server_error"), "message": e.message });
                    events
                        .send("response.failed", json!({ "response": failed }))
                        .await;
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
    crate::bedrock::answered_by(&mut response, &answering);
    let h = response.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Server-sent events with their sequence numbers.
struct EventWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    sequence: u64,
}

impl EventWriter {
    /// Sends one event; false when the client is gone.
    async fn send(&mut self, name: &str, mut data: Value) -> bool {
        data["type"] = name.into();
        data["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        self.tx
            .send(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
            .await
            .is_ok()
    }
}

async fn close_text(
    events: &mut EventWriter,
    output: &mut Vec<Value>,
    ids: &str,
    text: String,
) -> bool {
    let index = output.len();
    let item_id = format!("msg_{ids}");
    let item = message_item(ids, &text, "completed");
    let sent = events.send("response.output_text.done", json!({ "item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": [] })).await
        && events.send("response.content_part.done", json!({ "item_id": item_id, "output_index": index, "content_index": 0, "part": { "type": "output_text", "text": text, "annotations": [], "logprobs": [] } })).await
        && events.send("response.output_item.done", json!({ "output_index": index, "item": item.clone() })).await;
    output.push(item);
    sent
}

async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    let responses = Arc::clone(&state.responses);
    let stored = blocking(move || responses.get(Some(&principal), &id)).await?;
    let document: Value = serde_json::from_str(&stored.response_json).unwrap_or(Value::Null);
    Ok(Json(document).into_response())
}

async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    let responses = Arc::clone(&state.responses);
    let gone = id.clone();
    blocking(move || responses.delete(Some(&principal), &gone)).await?;
    Ok(Json(json!({ "id": id, "object": "response.deleted", "deleted": true })).into_response())
}

#[derive(Debug, Deserialize)]
struct ItemsQuery {
    order: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/responses/{id}/input_items`: the items the response answered (the whole
/// conversation before it), newest first unless `order=asc`.
async fn input_items(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ItemsQuery>,
) -> Result<Response, OpenAiError> {
    let responses = Arc::clone(&state.responses);
    let stored = blocking(move || responses.get(Some(&principal), &id)).await?;
    let conversation: Value =
        serde_json::from_str(&stored.conversation_json).unwrap_or(Value::Null);
    let mut items = conversation["input"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match q.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => {
            return Err(invalid(
                "order",
                format!("order {other:?} must be asc or desc"),
            ))
        }
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Json(json!({
        "object": "list",
        "first_id": items.first().map(|i| i["id"].clone()),
        "last_id": items.last().map(|i| i["id"].clone()),
        "has_more": has_more,
        "data": items,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_items_become_a_conversation() {
        let items = normalize_input(
            &json!([
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Weather in Oslo?"},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "12 C"},
                {"type": "reasoning", "id": "rs_1", "summary": []}
            ]),
            "in",
        )
        .expect("valid");
        assert_eq!(items.len(), 4, "reasoning items are dropped");
        assert!(items.iter().all(|i| i["id"].is_string()));
        let (system, messages) = to_messages(&items).expect("messages");
        assert_eq!(system, vec!["Be brief.".to_string()]);
        assert_eq!(messages.len(), 3);
        assert!(
            matches!(&messages[1].content[0], ContentBlock::ToolUse(c) if c.input["city"] == "Oslo")
        );
        assert!(
            matches!(&messages[2].content[0], ContentBlock::ToolResult { content, .. } if content == "12 C")
        );
    }

    #[test]
    fn unsupported_input_is_refused_with_its_place() {
        for (input, needle) in [
            (json!(5), "input must be"),
            (json!([{"type": "item_reference", "id": "x"}]), "input[0]"),
            (json!([{"role": "tool", "content": "x"}]), "input[0].role"),
            (
                json!([{"type": "function_call", "call_id": "c"}]),
                "input[0].name",
            ),
        ] {
            let e = normalize_input(&input, "in").expect_err("refused");
            assert!(e.message.contains(needle), "{input}: {}", e.message);
        }
        let e = tool_config(&[json!({"type": "web_search"})], &None).expect_err("refused");
        assert!(e.message.contains("only function tools"));
        let schema = response_schema(&Some(
            json!({"format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}}}),
        ));
        assert_eq!(schema.ok().flatten(), Some(json!({"type": "object"})));
    }
}
