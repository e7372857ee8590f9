//! Anthropic's Messages API: `POST /v1/messages` (with its server-sent events when
//! `stream` is true) and `POST /v1/messages/count_tokens`, on every Basalt model, as
//! the `anthropic` SDKs and Claude Code send them. Keys: `x-api-key` or
//! `Authorization: Bearer` with a Basalt bearer token. Errors:
//! `{"type": "error", "error": {"type", "message"}}`.
//!
//! What a Basalt model cannot do is refused, never ignored silently: server tools
//! (`web_search`, `bash`, …), image URLs. `output_config.format` (a JSON schema) is
//! structured output, enforced as for Converse. `thinking`, `output_config.effort`,
//! `speed`, `inference_geo`, `container`, `diagnostics`, `context_management`,
//! `mcp_servers` and `metadata` are accepted and
//! have no effect (no Basalt model thinks out loud or has speed tiers);
//! `cache_control` marks are honoured as Bedrock's cache points are: the usage then
//! splits the prompt into `cache_read_input_tokens` (what the engine really reused)
//! and the rest. Older clients' `temperature`, `top_p` and `top_k` apply.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use basalt_core::keys::Principal;
use basalt_core::types::{
    ChatRequest, ContentBlock, GenerationDelta, Image, ImageFormat, InferenceParams, Message, Role,
    StopReason, TokenUsage, ToolCall, ToolChoice, ToolConfig, ToolSpec,
};
use basalt_core::CallContext;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::RequestId;
use crate::error::AnthropicError;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
}

/// The body of `POST /v1/messages` (and, without `max_tokens` and `stream`, of
/// `count_tokens`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesBody {
    model: String,
    max_tokens: Option<u32>,
    messages: Vec<MessageBody>,
    system: Option<Value>,
    #[serde(default)]
    stop_sequences: Vec<String>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    #[serde(default)]
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    /// `{"user_id"}`: accepted, not used.
    #[allow(dead_code)]
    metadata: Option<Value>,
    /// Extended thinking: accepted, no effect.
    #[allow(dead_code)]
    thinking: Option<Value>,
    #[allow(dead_code)]
    service_tier: Option<String>,
    /// Top-level automatic prompt caching: treated as a cache mark.
    cache_control: Option<Value>,
    /// `{"format": {"type": "json_schema", "schema"}, "effort"}`: the format is
    /// structured output (the answer valid against the schema); effort has no effect.
    output_config: Option<Value>,
    /// Accepted with no effect on this server.
    #[allow(dead_code)]
    speed: Option<Value>,
    #[allow(dead_code)]
    inference_geo: Option<Value>,
    #[allow(dead_code)]
    diagnostics: Option<Value>,
    #[allow(dead_code)]
    container: Option<Value>,
    #[allow(dead_code)]
    user_profile_id: Option<Value>,
    #[allow(dead_code)]
    workspace_id: Option<Value>,
    /// Claude Code's context editing: accepted; the conversation is used as sent.
    #[allow(dead_code)]
    context_management: Option<Value>,
    #[allow(dead_code)]
    mcp_servers: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    role: String,
    content: Value,
}

fn invalid(message: impl Into<String>) -> AnthropicError {
    AnthropicError::invalid_request(message)
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AnthropicError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            invalid(format!("the body is not valid: {inner}"))
        } else {
            invalid(format!("{path}: {inner}"))
        }
    })
}

/// The text of a `system` value: a string, or text blocks.
fn system_texts(system: &Option<Value>, cache: &mut bool) -> Result<Vec<String>, AnthropicError> {
    match system {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                *cache |= b.get("cache_control").is_some();
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => Ok(t.to_string()),
                    _ => Err(invalid(format!(
                        "system.{i}: system blocks must be {{\"type\": \"text\", \"text\": ...}}"
                    ))),
                }
            })
            .collect(),
        Some(_) => Err(invalid("system: must be a string or a list of text blocks")),
    }
}

fn image_block(block: &Value, at: &str) -> Result<ContentBlock, AnthropicError> {
    let source = &block["source"];
    match source["type"].as_str() {
        Some("base64") => {
            let media = source["media_type"].as_str().unwrap_or_default();
            let format = ImageFormat::from_mime(media).ok_or_else(|| {
                invalid(format!(
                    "{at}.source.media_type: {media:?} is not one of image/jpeg, image/png, image/gif, image/webp"
                ))
            })?;
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD
                .decode(source["data"].as_str().unwrap_or_default())
                .map_err(|e| invalid(format!("{at}.source.data: not base64: {e}")))?;
            Ok(ContentBlock::Image(Image { format, data }))
        }
        Some("url") => Err(invalid(format!(
            "{at}.source: image URLs are not fetched by this server; send the image as base64"
        ))),
        other => Err(invalid(format!(
            "{at}.source.type: {other:?} is not supported (base64)"
        ))),
    }
}

/// A tool result's content: a string, or text (and image) blocks, as text.
fn tool_result_text(content: &Value, at: &str) -> Result<String, AnthropicError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match b["type"].as_str() {
                    Some("text") => parts.push(b["text"].as_str().unwrap_or_default().to_string()),
                    other => {
                        return Err(invalid(format!(
                        "{at}.content.{i}.type: {other:?} in a tool result is not supported (text)"
                    )))
                    }
                }
            }
            Ok(parts.join("\n"))
        }
        _ => Err(invalid(format!(
            "{at}.content: must be a string or a list of blocks"
        ))),
    }
}

fn content_blocks(
    content: &Value,
    at: &str,
    cache: &mut bool,
) -> Result<Vec<ContentBlock>, AnthropicError> {
    let blocks = match content {
        Value::String(s) => return Ok(vec![ContentBlock::Text(s.clone())]),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(format!(
                "{at}.content: must be a string or a list of content blocks"
            )))
        }
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{i}");
        *cache |= b.get("cache_control").is_some();
        match b["type"].as_str() {
            Some("text") => out.push(ContentBlock::Text(
                b["text"]
                    .as_str()
                    .ok_or_else(|| invalid(format!("{at}.text: a string is required")))?
                    .to_string(),
            )),
            Some("image") => out.push(image_block(b, &at)?),
            Some("tool_use") => out.push(ContentBlock::ToolUse(ToolCall {
                id: b["id"]
                    .as_str()
                    .ok_or_else(|| invalid(format!("{at}.id: a string is required")))?
                    .to_string(),
                name: b["name"]
                    .as_str()
                    .ok_or_else(|| invalid(format!("{at}.name: a string is required")))?
                    .to_string(),
                input: b.get("input").cloned().unwrap_or_else(|| json!({})),
            })),
            Some("tool_result") => out.push(ContentBlock::ToolResult {
                tool_use_id: b["tool_use_id"]
                    .as_str()
                    .ok_or_else(|| invalid(format!("{at}.tool_use_id: a string is required")))?
                    .to_string(),
                content: tool_result_text(&b["content"], &at)?,
                is_error: b["is_error"].as_bool().unwrap_or(false),
            }),
            Some("document") => match (b["source"]["type"].as_str(), b["source"]["data"].as_str()) {
                (Some("text"), Some(text)) => out.push(ContentBlock::Text(text.to_string())),
                _ => out.push(ContentBlock::Other {
                    kind: "document".into(),
                }),
            },
            // Earlier turns' thinking: no Basalt model reads it back.
            Some("thinking" | "redacted_thinking") => {}
            other => {
                return Err(invalid(format!(
                    "{at}.type: {other:?} is not a supported content block (text, image, tool_use, tool_result, document)"
                )))
            }
        }
    }
    Ok(out)
}

fn tool_config(
    tools: &[Value],
    choice: &Option<Value>,
    cache: &mut bool,
) -> Result<Option<ToolConfig>, AnthropicError> {
    let mut specs = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        *cache |= t.get("cache_control").is_some();
        if let Some(kind) = t["type"].as_str().filter(|k| *k != "custom") {
            return Err(invalid(format!(
                "tools.{i}.type: the server tool {kind:?} is not available on this server; define the tool with name, description and input_schema"
            )));
        }
        let name = t["name"]
            .as_str()
            .ok_or_else(|| invalid(format!("tools.{i}.name: a string is required")))?;
        let schema = t
            .get("input_schema")
            .filter(|s| s.is_object())
            .ok_or_else(|| {
                invalid(format!(
                    "tools.{i}.input_schema: a JSON schema object is required"
                ))
            })?;
        specs.push(ToolSpec {
            name: name.to_string(),
            description: t["description"].as_str().map(str::to_string),
            input_schema: schema.clone(),
        });
    }
    let choice = match choice.as_ref().map(|c| (c["type"].as_str(), c)) {
        None | Some((Some("auto"), _)) => ToolChoice::Auto,
        Some((Some("any"), _)) => ToolChoice::Any,
        Some((Some("tool"), c)) => ToolChoice::Tool(
            c["name"]
                .as_str()
                .ok_or_else(|| invalid("tool_choice.name: required when type is \"tool\""))?
                .to_string(),
        ),
        Some((Some("none"), _)) => return Ok(None),
        Some((other, _)) => {
            return Err(invalid(format!(
                "tool_choice.type: {other:?} is not one of auto, any, tool, none"
            )))
        }
    };
    if specs.is_empty() {
        if matches!(choice, ToolChoice::Auto) {
            return Ok(None);
        }
        return Err(invalid("tool_choice: needs tools"));
    }
    if let ToolChoice::Tool(name) = &choice {
        if !specs.iter().any(|s| &s.name == name) {
            return Err(invalid(format!(
                "tool_choice.name: no tool is named {name:?}"
            )));
        }
    }
    Ok(Some(ToolConfig {
        tools: specs,
        choice,
    }))
}

/// The request in core terms, and whether it carried `cache_control` marks.
fn chat_request(
    body: MessagesBody,
    for_generation: bool,
) -> Result<(ChatRequest, bool), AnthropicError> {
    let mut cache = body.cache_control.is_some();
    let response_schema = match body.output_config.as_ref().map(|c| &c["format"]) {
        None | Some(Value::Null) => None,
        Some(f) if f["type"] == "json_schema" && f["schema"].is_object() => {
            Some(f["schema"].clone())
        }
        Some(_) => {
            return Err(invalid(
                "output_config.format: must be {\"type\": \"json_schema\", \"schema\": {...}}",
            ))
        }
    };
    if for_generation {
        match body.max_tokens {
            None => return Err(invalid("max_tokens: Field required")),
            Some(0) => return Err(invalid("max_tokens: must be at least 1")),
            Some(_) => {}
        }
    }
    if body.messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    let system = system_texts(&body.system, &mut cache)?;
    let mut system = system;
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // A system message inside the conversation (newer clients send them):
            // its text joins the system prompt, in order.
            "system" => {
                for block in content_blocks(&m.content, &format!("messages.{i}"), &mut cache)? {
                    match block {
                        ContentBlock::Text(t) => system.push(t),
                        _ => {
                            return Err(invalid(format!(
                                "messages.{i}.content: a system message holds text only"
                            )))
                        }
                    }
                }
                continue;
            }
            other => {
                return Err(invalid(format!(
                    "messages.{i}.role: {other:?} is not one of user, assistant, system"
                )))
            }
        };
        let content = content_blocks(&m.content, &format!("messages.{i}"), &mut cache)?;
        // Consecutive turns of one role are one turn, as Anthropic combines them.
        match messages.last_mut() {
            Some(Message {
                role: last,
                content: blocks,
            }) if *last == role => blocks.extend(content),
            _ => messages.push(Message { role, content }),
        }
    }
    if messages.is_empty() {
        return Err(invalid(
            "messages: at least one user or assistant message is required",
        ));
    }
    let tools = tool_config(&body.tools, &body.tool_choice, &mut cache)?;
    for (name, value) in [("temperature", body.temperature), ("top_p", body.top_p)] {
        if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(invalid(format!("{name}: must be between 0 and 1")));
        }
    }
    let request = ChatRequest {
        model_id: body.model,
        system,
        messages,
        params: InferenceParams {
            max_tokens: body.max_tokens,
            temperature: body.temperature,
            top_p: body.top_p,
            top_k: body.top_k,
            stop_sequences: body.stop_sequences,
            ..InferenceParams::default()
        },
        tools,
        response_schema,
        stream: body.stream,
    };
    Ok((request, cache))
}

fn stop_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
        StopReason::ContentFiltered | StopReason::GuardrailIntervened => "refusal",
    }
}

/// Anthropic's usage. With `cache_control` marks the prompt is split as Anthropic
/// splits it: `cache_read_input_tokens` is what the engine really reused from its
/// prefix cache, `input_tokens` the rest; Basalt writes no cache entries a caller
/// pays for, so `cache_creation_input_tokens` is 0.
fn usage_json(usage: &TokenUsage, cache: bool) -> Value {
    let read = if cache {
        usage.cache_read_input_tokens.min(usage.input_tokens)
    } else {
        0
    };
    json!({
        "input_tokens": usage.input_tokens - read,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": read,
    })
}

fn message_id(request_id: &RequestId) -> String {
    format!("msg_{}", request_id.0.replace('-', ""))
}

async fn messages(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, AnthropicError> {
    let body = parse::<MessagesBody>(&body)?;
    let stream = body.stream;
    let (request, cache) = chat_request(body, true)?;
    let model = request.model_id.clone();
    let id = message_id(&request_id);
    let ctx = CallContext::new(Some(principal), request_id.0, "Messages");
    if !stream {
        let generation = state.core.chat(ctx, request).await?;
        let mut content = Vec::new();
        if !generation.text.is_empty() || generation.tool_calls.is_empty() {
            content.push(json!({ "type": "text", "text": generation.text }));
        }
        for call in &generation.tool_calls {
            content.push(json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": call.input }));
        }
        let mut response = Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason(generation.stop_reason),
            "stop_sequence": null,
            "usage": usage_json(&generation.usage, cache),
        }))
        .into_response();
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
    let event = |name: &str, data: &Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let prelude = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    // The index of the next content block, and whether a text block is open.
    let mut next_index = 0usize;
    let mut text_open = false;
    let encode = move |delta: GenerationDelta| {
        let mut frames = Vec::new();
        let close_text = |frames: &mut Vec<Bytes>, next_index: &mut usize, text_open: &mut bool| {
            if *text_open {
                frames.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": *next_index}),
                ));
                *next_index += 1;
                *text_open = false;
            }
        };
        match delta {
            GenerationDelta::Text(text) => {
                if !text_open {
                    frames.push(event(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": next_index, "content_block": {"type": "text", "text": ""}}),
                    ));
                    text_open = true;
                }
                frames.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": next_index, "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            GenerationDelta::ToolCall(call) => {
                close_text(&mut frames, &mut next_index, &mut text_open);
                frames.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": next_index, "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
                ));
                frames.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": next_index, "delta": {"type": "input_json_delta", "partial_json": call.input.to_string()}}),
                ));
                frames.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": next_index}),
                ));
                next_index += 1;
            }
            GenerationDelta::End {
                stop_reason: reason,
                usage,
                ..
            } => {
                if next_index == 0 && !text_open {
                    // An empty answer is still one (empty) text block, as Anthropic sends it.
                    frames.push(event(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ));
                    text_open = true;
                }
                close_text(&mut frames, &mut next_index, &mut text_open);
                frames.push(event(
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reason), "stop_sequence": null}, "usage": usage_json(&usage, cache)}),
                ));
                frames.push(event("message_stop", &json!({"type": "message_stop"})));
            }
            GenerationDelta::Error(e) => {
                frames.push(event("error", &AnthropicError::from(e).body()));
            }
        }
        frames
    };
    let body = crate::streaming::forward(prelude, first, deltas, encode);
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

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}` as the model's own
/// tokenizer and chat template count the request.
async fn count_tokens(
    State(state): State<AppState>,
    Extension(_principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, AnthropicError> {
    let body = parse::<MessagesBody>(&body)?;
    if body.stream || body.max_tokens.is_some() {
        return Err(invalid(
            "count_tokens takes model, messages, system, tools and tool_choice (no max_tokens or stream)",
        ));
    }
    let (request, _) = chat_request(body, false)?;
    let tokens = state.core.count_chat_tokens(&request).await?;
    Ok(Json(json!({ "input_tokens": tokens })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> MessagesBody {
        serde_json::from_value(v).expect("body")
    }

    #[test]
    fn a_conversation_with_tools_becomes_a_chat_request() {
        let (r, cache) = chat_request(
            body(json!({
                "model": "m", "max_tokens": 20,
                "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": "Weather in Oslo?"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "12 C"}]}]}
                ],
                "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "weather"},
                "stop_sequences": ["END"]
            })),
            true,
        )
        .expect("valid");
        assert!(cache, "cache_control marks are seen");
        assert_eq!(r.system, vec!["Be brief.".to_string()]);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(
            r.messages[2].content[0],
            ContentBlock::ToolResult {
                tool_use_id: "toolu_1".into(),
                content: "12 C".into(),
                is_error: false
            }
        );
        let tools = r.tools.expect("tools");
        assert_eq!(tools.choice, ToolChoice::Tool("weather".into()));
        assert_eq!(r.params.stop_sequences, vec!["END".to_string()]);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "user or assistant",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
                "messages.0.content.0.type",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools.0.type",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "t", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "u"}}),
                "tool_choice.name",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}]}),
                "base64",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "messages",
            ),
        ];
        for (v, needle) in cases {
            let e = chat_request(body(v.clone()), true).expect_err("must be refused");
            assert!(e.message.contains(needle), "{v}: {}", e.message);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
        assert!(parse::<MessagesBody>(br#"{"model": "m", "messages": [], "bogus": 1}"#).is_err());
    }

    #[test]
    fn usage_splits_cache_reads_only_with_cache_marks() {
        let usage = TokenUsage {
            input_tokens: 100,
            output_tokens: 7,
            cache_read_input_tokens: 60,
        };
        assert_eq!(usage_json(&usage, false)["input_tokens"], 100);
        assert_eq!(usage_json(&usage, false)["cache_read_input_tokens"], 0);
        assert_eq!(usage_json(&usage, true)["input_tokens"], 40);
        assert_eq!(usage_json(&usage, true)["cache_read_input_tokens"], 60);
    }
}
