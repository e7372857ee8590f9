//! Anthropic Messages API (`POST {base}/messages`, `anthropic-version: 2023-06-01`).
//!
//! Request: `system` as a string, user/assistant turns with `text`, `tool_use` and
//! `tool_result` blocks, `tools` with `input_schema`, `tool_choice` `auto` / `any` /
//! `tool`, `stop_sequences`, `temperature`, `top_p`, `top_k`, `max_tokens`. A caller who
//! streams gets Anthropic's event stream (`message_start`, `content_block_start`,
//! `content_block_delta` with `text_delta` / `input_json_delta`, `content_block_stop`,
//! `message_delta` with the stop reason and output tokens, `message_stop`, `ping`,
//! `error`) translated event by event; otherwise one JSON message. Errors are
//! `{"type":"error","error":{"type","message"}}` with the HTTP status (429 with
//! `retry-after`, 529 when overloaded).

use std::collections::BTreeMap;
use std::time::Instant;

use basalt_types::{
    ChatRequest, ContentBlock, CoreError, GenerationDelta, InferenceParams, StopReason, TokenUsage,
    ToolCall, ToolChoice,
};
use serde_json::{json, Map, Value};

use crate::exchange::{exchange, Outbox, Translator};
use crate::{DeltaStream, Upstream};

/// The API version every request names.
pub const API_VERSION: &str = "2023-06-01";

/// A chat model behind Anthropic's Messages API.
#[derive(Debug, Clone)]
pub struct AnthropicChat {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

impl AnthropicChat {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        Self {
            client,
            upstream,
            label: label.into(),
        }
    }

    /// The JSON body for `request`.
    pub fn request_body(&self, request: &ChatRequest, max_tokens: u32) -> Result<Value, CoreError> {
        if request.response_schema.is_some() {
            return Err(CoreError::Validation(
                "structured output (a response JSON schema) is not supported for this model's provider; use a tool with that input schema instead".into(),
            ));
        }
        let mut messages: Vec<Value> = Vec::new();
        for message in &request.messages {
            let blocks = content_blocks(&message.content)?;
            messages.push(json!({"role": message.role.as_str(), "content": blocks}));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.upstream.model));
        body.insert("max_tokens".into(), json!(max_tokens));
        if !request.system.is_empty() {
            body.insert("system".into(), json!(request.system.join("\n")));
        }
        body.insert("messages".into(), Value::Array(messages));
        insert_params(&mut body, &request.params);
        if let Some(tools) = &request.tools {
            let specs: Vec<Value> = tools
                .tools
                .iter()
                .map(|t| crate::tool_declaration(t, "input_schema", t.input_schema.clone()))
                .collect();
            body.insert("tools".into(), Value::Array(specs));
            body.insert(
                "tool_choice".into(),
                match &tools.choice {
                    ToolChoice::Auto => json!({"type": "auto"}),
                    ToolChoice::Any => json!({"type": "any"}),
                    ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
                },
            );
        }
        if request.stream {
            body.insert("stream".into(), json!(true));
        }
        Ok(Value::Object(body))
    }

    /// Sends a chat request and streams the answer.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        let body = self.request_body(request, max_tokens)?;
        self.send(body).await
    }

    async fn send(&self, body: Value) -> Result<DeltaStream, CoreError> {
        let started = Instant::now();
        let url = format!("{}/messages", self.upstream.base_url.trim_end_matches('/'));
        let mut request = self
            .client
            .post(&url)
            .timeout(self.upstream.timeout)
            .header("anthropic-version", API_VERSION)
            .json(&body);
        if let Some(key) = &self.upstream.api_key {
            request = request.header("x-api-key", key);
        }
        let reader = MessageReader::new(self.label.clone(), started);
        exchange(request, self.label.clone(), reader).await
    }
}

fn insert_params(body: &mut Map<String, Value>, params: &InferenceParams) {
    if let Some(t) = params.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = params.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(k) = params.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if !params.stop_sequences.is_empty() {
        body.insert("stop_sequences".into(), json!(params.stop_sequences));
    }
}

fn content_blocks(content: &[ContentBlock]) -> Result<Vec<Value>, CoreError> {
    content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(t) => Ok(json!({"type": "text", "text": t})),
            ContentBlock::Image(image) => Ok(json!({"type": "image", "source": {
                "type": "base64", "media_type": image.format.mime(), "data": image.base64()}})),
            ContentBlock::ToolUse(call) => Ok(json!({
                "type": "tool_use", "id": call.id, "name": call.name, "input": call.input,
            })),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => Ok(json!({
                "type": "tool_result", "tool_use_id": tool_use_id, "content": content, "is_error": is_error,
            })),
            ContentBlock::Other { kind } => Err(CoreError::Validation(format!(
                "this model does not accept {kind} content blocks"
            ))),
        })
        .collect()
}

fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::ContentFiltered,
        _ => StopReason::EndTurn,
    }
}

/// A content block being assembled from stream events.
#[derive(Debug)]
enum Block {
    Text,
    Tool {
        id: String,
        name: String,
        json: String,
    },
}

/// Turns Anthropic's events (or a whole message) into deltas.
struct MessageReader {
    label: String,
    outbox: Outbox,
    blocks: BTreeMap<u64, Block>,
    usage: TokenUsage,
    /// Anthropic's `input_tokens` counts only the uncached part of the prompt; the
    /// parts read from and written to its cache are counted apart.
    uncached_input: u32,
    cache_write: u32,
    stop: Option<StopReason>,
    started: Instant,
    first_token_ms: Option<u64>,
}

impl MessageReader {
    fn new(label: String, started: Instant) -> Self {
        Self {
            label,
            outbox: Outbox::default(),
            blocks: BTreeMap::new(),
            usage: TokenUsage::default(),
            uncached_input: 0,
            cache_write: 0,
            stop: None,
            started,
            first_token_ms: None,
        }
    }

    fn first_token(&mut self) {
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.started.elapsed().as_millis() as u64);
        }
    }

    fn read_usage(&mut self, usage: &Value) {
        let get = |k: &str| usage.get(k).and_then(Value::as_u64).map(|v| v as u32);
        if let Some(n) = get("input_tokens") {
            self.uncached_input = n;
        }
        if let Some(n) = get("output_tokens") {
            self.usage.output_tokens = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.usage.cache_read_input_tokens = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_write = n;
        }
        // The whole prompt, as every other provider counts it.
        self.usage.input_tokens = self
            .uncached_input
            .saturating_add(self.usage.cache_read_input_tokens)
            .saturating_add(self.cache_write);
    }

    /// A whole (non-streamed) message.
    fn message(&mut self, body: &[u8]) {
        let message: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let label = self.label.clone();
                self.outbox.fail(CoreError::ModelError(format!(
                    "{label} answered with JSON that does not parse: {e}"
                )));
                return;
            }
        };
        for block in message
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(text) = block.get("text").and_then(Value::as_str) {
                        self.outbox.push(GenerationDelta::Text(text.to_string()));
                    }
                }
                Some("tool_use") => self.outbox.push(GenerationDelta::ToolCall(ToolCall {
                    id: str_field(block, "id"),
                    name: str_field(block, "name"),
                    input: block.get("input").cloned().unwrap_or_else(|| json!({})),
                })),
                _ => {}
            }
        }
        if let Some(usage) = message.get("usage") {
            self.read_usage(usage);
        }
        self.stop = message
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(stop_reason);
        self.end();
    }

    /// One streamed event's data.
    fn event(&mut self, data: &str) {
        let event: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                let label = self.label.clone();
                self.outbox.fail(CoreError::ModelError(format!(
                    "{label} sent a stream event that is not JSON: {e}"
                )));
                return;
            }
        };
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = event.pointer("/message/usage") {
                    self.read_usage(usage);
                }
            }
            Some("content_block_start") => {
                let block = event.get("content_block").cloned().unwrap_or(Value::Null);
                let started = match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => Block::Tool {
                        id: str_field(&block, "id"),
                        name: str_field(&block, "name"),
                        json: String::new(),
                    },
                    _ => Block::Text,
                };
                if let Some(text) = block
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.first_token();
                    self.outbox.push(GenerationDelta::Text(text.to_string()));
                }
                self.blocks.insert(index, started);
            }
            Some("content_block_delta") => {
                let delta = event.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(text) = delta.get("text").and_then(Value::as_str) {
                            self.first_token();
                            self.outbox.push(GenerationDelta::Text(text.to_string()));
                        }
                    }
                    Some("input_json_delta") => {
                        self.first_token();
                        if let Some(Block::Tool { json, .. }) = self.blocks.get_mut(&index) {
                            json.push_str(
                                delta
                                    .get("partial_json")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default(),
                            );
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => {
                if let Some(Block::Tool { id, name, json }) = self.blocks.remove(&index) {
                    let input = if json.trim().is_empty() {
                        Ok(json!({}))
                    } else {
                        serde_json::from_str(&json)
                    };
                    match input {
                        Ok(input) => self.outbox.push(GenerationDelta::ToolCall(ToolCall {
                            id,
                            name,
                            input,
                        })),
                        Err(e) => {
                            let label = self.label.clone();
                            self.outbox.fail(CoreError::ModelError(format!(
                                "{label} returned arguments for tool {name} that are not JSON: {e}"
                            )));
                        }
                    }
                }
            }
            Some("message_delta") => {
                if let Some(reason) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(stop_reason(reason));
                }
                if let Some(usage) = event.get("usage") {
                    self.read_usage(usage);
                }
            }
            Some("message_stop") => self.end(),
            Some("error") => {
                let message = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string();
                let kind = event
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                let label = self.label.clone();
                let text = format!("{label} failed while answering ({kind}): {message}");
                self.outbox.fail(match kind {
                    "overloaded_error" => CoreError::ServiceUnavailable(text),
                    "rate_limit_error" => CoreError::Throttled(text),
                    _ => CoreError::ModelError(text),
                });
            }
            _ => {} // ping and future event types
        }
    }

    fn end(&mut self) {
        self.outbox.finish(GenerationDelta::End {
            stop_reason: self.stop.unwrap_or(StopReason::EndTurn),
            usage: self.usage,
            latency_ms: self.started.elapsed().as_millis() as u64,
            first_token_ms: self.first_token_ms,
        });
    }
}

impl Translator for MessageReader {
    fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    fn whole(&mut self, body: &[u8]) {
        self.message(body);
    }

    fn event(&mut self, data: &str) {
        MessageReader::event(self, data);
    }

    /// A stream that closes before `message_stop` is cut short (the exchange says so).
    fn closed(&mut self) {}
}

/// A string field of a JSON object, or "" when it is missing.
fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A streaming reader of this wire, for [`crate::replay`].
pub(crate) fn message_reader(label: String, started: Instant) -> impl crate::exchange::Translator {
    MessageReader::new(label, started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{Message, Role, ToolConfig, ToolSpec};
    use std::time::Duration;

    fn adapter() -> AnthropicChat {
        AnthropicChat::new(
            reqwest::Client::new().into(),
            Upstream {
                base_url: "http://127.0.0.1:1/v1".into(),
                model: "claude-test".into(),
                api_key: Some("k".into()),
                aws: None,
                timeout: Duration::from_secs(1),
            },
            "anthropic",
        )
    }

    #[test]
    fn requests_use_anthropic_blocks_and_tool_choice() {
        let request = ChatRequest {
            model_id: "x".into(),
            system: vec!["Be brief.".into()],
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::Text("Hi".into())],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::ToolUse(ToolCall {
                        id: "t1".into(),
                        name: "f".into(),
                        input: json!({"a": 1}),
                    })],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "t1".into(),
                        content: "ok".into(),
                        is_error: false,
                    }],
                },
            ],
            params: InferenceParams {
                top_k: Some(5),
                stop_sequences: vec!["X".into()],
                ..Default::default()
            },
            tools: Some(ToolConfig {
                tools: vec![ToolSpec {
                    name: "f".into(),
                    description: None,
                    input_schema: json!({"type": "object"}),
                }],
                choice: ToolChoice::Tool("f".into()),
            }),
            response_schema: None,
            stream: true,
        };
        let body = adapter().request_body(&request, 100).expect("translates");
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["top_k"], 5);
        assert_eq!(body["stop_sequences"], json!(["X"]));
        assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "f"}));
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}})
        );
        assert_eq!(body["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn the_event_stream_becomes_deltas() {
        let mut t = MessageReader::new("a".into(), Instant::now());
        for e in [
            r#"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"c","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            t.event(e);
        }
        let deltas: Vec<_> = t.outbox.drain();
        assert_eq!(deltas[0], GenerationDelta::Text("Let me check.".into()));
        assert_eq!(
            deltas[1],
            GenerationDelta::ToolCall(ToolCall {
                id: "toolu_1".into(),
                name: "weather".into(),
                input: json!({"city": "Paris"})
            })
        );
        assert!(
            matches!(&deltas[2], GenerationDelta::End { stop_reason: StopReason::ToolUse, usage, .. }
            if usage.input_tokens == 25 && usage.output_tokens == 40)
        );
    }

    #[test]
    fn cached_prompt_parts_count_in_the_whole_prompt() {
        let mut t = MessageReader::new("a".into(), Instant::now());
        for e in [
            r#"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"c","stop_reason":null,"usage":{"input_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":20,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            t.event(e);
        }
        let deltas: Vec<_> = t.outbox.drain();
        assert!(
            matches!(deltas.last(), Some(GenerationDelta::End { usage, .. })
            if usage.input_tokens == 125 && usage.cache_read_input_tokens == 100 && usage.output_tokens == 3),
            "{deltas:?}"
        );
    }

    #[test]
    fn an_overloaded_error_event_ends_the_stream() {
        let mut t = MessageReader::new("a".into(), Instant::now());
        t.event(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
        assert!(matches!(
            t.outbox.drain().into_iter().next(),
            Some(GenerationDelta::Error(CoreError::ServiceUnavailable(_)))
        ));
        assert!(t.outbox.is_finished());
    }
}
