//! Cohere's v2 API: Chat (`POST {base}/chat`) and Embed (`POST {base}/embed`), with
//! `base` e.g. `https://api.cohere.com/v2` and the key as a bearer token.
//!
//! Chat request: `system` / `user` / `assistant` / `tool` messages (assistant
//! `tool_calls` with string `arguments`; `tool` messages with `tool_call_id`), `tools`
//! as functions with JSON-schema `parameters`, `tool_choice` `REQUIRED` (Cohere has no
//! named choice: a named tool is sent as the only tool, required), `max_tokens`,
//! `temperature`, `p`, `k`, `stop_sequences`, `seed`, and `response_format`
//! `{"type": "json_object", "json_schema"}` for structured output. Its stream is
//! server-sent events typed `message-start`, `content-start` / `content-delta` /
//! `content-end`, `tool-plan-delta`, `tool-call-start` / `tool-call-delta` /
//! `tool-call-end` and `message-end` (finish reason and usage); usage is the `tokens`
//! counts (what the model processed), else `billed_units`.
//!
//! Embed request: `texts` (at most 96 a call, so larger inputs go in several calls),
//! `input_type` `search_document`, `embedding_types: ["float"]`; the answer's
//! `embeddings.float` in input order and `meta.billed_units.input_tokens`.

use std::collections::BTreeMap;
use std::time::Instant;

use basalt_types::{
    ChatRequest, ContentBlock, CoreError, GenerationDelta, InferenceParams, Role, StopReason,
    TokenUsage, ToolChoice,
};
use serde_json::{json, Map, Value};

use crate::embeddings::{split_tokens, unit_vector, Embedded};
use crate::exchange::{exchange, exchange_json, Outbox, Translator};
use crate::partial_call::{push_all, PartialCall};
use crate::{DeltaStream, Upstream};

/// Most texts Cohere embeds in one call.
pub const MAX_EMBED_TEXTS: usize = 96;

/// A chat model behind Cohere's v2 Chat API.
#[derive(Debug, Clone)]
pub struct CohereChat {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

impl CohereChat {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        Self {
            client,
            upstream,
            label: label.into(),
        }
    }

    /// The JSON body for `request`.
    pub fn request_body(&self, request: &ChatRequest, max_tokens: u32) -> Result<Value, CoreError> {
        let mut messages = Vec::new();
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system.join("\n")}));
        }
        for message in &request.messages {
            push_message(&mut messages, message.role, &message.content)?;
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.upstream.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("max_tokens".into(), json!(max_tokens));
        insert_params(&mut body, &request.params);
        if let Some(tools) = &request.tools {
            let chosen: Vec<_> = match &tools.choice {
                ToolChoice::Tool(name) => {
                    let only: Vec<_> = tools.tools.iter().filter(|t| &t.name == name).collect();
                    if only.is_empty() {
                        return Err(CoreError::Validation(format!(
                            "toolChoice names {name}, which is not one of the tools"
                        )));
                    }
                    only
                }
                _ => tools.tools.iter().collect(),
            };
            let specs: Vec<Value> = chosen
                .iter()
                .map(|t| json!({"type": "function", "function": crate::tool_declaration(t, "parameters", t.input_schema.clone())}))
                .collect();
            body.insert("tools".into(), Value::Array(specs));
            if !matches!(tools.choice, ToolChoice::Auto) {
                body.insert("tool_choice".into(), json!("REQUIRED"));
            }
        }
        if let Some(schema) = &request.response_schema {
            body.insert(
                "response_format".into(),
                json!({"type": "json_object", "json_schema": schema}),
            );
        }
        if request.stream {
            body.insert("stream".into(), json!(true));
        }
        Ok(Value::Object(body))
    }

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
        let url = format!("{}/chat", self.upstream.base_url.trim_end_matches('/'));
        let mut request = self
            .client
            .post(&url)
            .timeout(self.upstream.timeout)
            .header("accept", "text/event-stream")
            .json(&body);
        if let Some(key) = &self.upstream.api_key {
            request = request.bearer_auth(key);
        }
        exchange(
            request,
            self.label.clone(),
            ChatReader::new(self.label.clone(), started),
        )
        .await
    }
}

fn insert_params(body: &mut Map<String, Value>, params: &InferenceParams) {
    if let Some(t) = params.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = params.top_p {
        // Cohere takes p in [0.01, 0.99]; rounded so the f32 prints as written.
        let p = (f64::from(p) * 1e6).round() / 1e6;
        body.insert("p".into(), json!(p.clamp(0.01, 0.99)));
    }
    if let Some(k) = params.top_k {
        body.insert("k".into(), json!(k.min(500)));
    }
    if !params.stop_sequences.is_empty() {
        body.insert("stop_sequences".into(), json!(params.stop_sequences));
    }
    if let Some(seed) = params.seed {
        body.insert("seed".into(), json!(seed));
    }
}

/// Appends one Converse message as Cohere messages: tool results become `tool`
/// messages, assistant tool calls `tool_calls`.
fn push_message(
    out: &mut Vec<Value>,
    role: Role,
    content: &[ContentBlock],
) -> Result<(), CoreError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    let mut parts: Vec<Value> = Vec::new();
    let mut has_image = false;
    for block in content {
        match block {
            ContentBlock::Text(t) => {
                text.push_str(t);
                parts.push(json!({"type": "text", "text": t}));
            }
            ContentBlock::Image(image) => {
                if role == Role::Assistant {
                    return Err(CoreError::Validation(
                        "images are accepted in user turns only".into(),
                    ));
                }
                has_image = true;
                parts.push(json!({"type": "image_url", "image_url": {"url": image.data_url()}}));
            }
            ContentBlock::ToolUse(call) => calls.push(json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.input.to_string()},
            })),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let content = crate::tool_result_text(content, *is_error).into_owned();
                results
                    .push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
            }
            ContentBlock::Other { kind } => {
                return Err(CoreError::Validation(format!(
                    "this model does not accept {kind} content blocks"
                )))
            }
        }
    }
    match role {
        Role::Assistant => {
            let mut m = Map::new();
            m.insert("role".into(), json!("assistant"));
            if !text.is_empty() {
                m.insert("content".into(), json!(text));
            }
            if !calls.is_empty() {
                m.insert("tool_calls".into(), Value::Array(calls));
            }
            out.push(Value::Object(m));
        }
        Role::User => {
            out.extend(results);
            if has_image {
                out.push(json!({"role": "user", "content": parts}));
            } else if !text.is_empty() {
                out.push(json!({"role": "user", "content": text}));
            }
        }
    }
    Ok(())
}

fn stop_reason(reason: &str) -> Option<StopReason> {
    Some(match reason {
        "COMPLETE" => StopReason::EndTurn,
        "STOP_SEQUENCE" => StopReason::StopSequence,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "TOOL_CALL" => StopReason::ToolUse,
        _ => return None,
    })
}

/// Reads Cohere's chat answer (whole, or as its event stream) into deltas.
struct ChatReader {
    label: String,
    outbox: Outbox,
    calls: BTreeMap<u64, PartialCall>,
    usage: TokenUsage,
    started: Instant,
    first_token_ms: Option<u64>,
}

impl ChatReader {
    fn new(label: String, started: Instant) -> Self {
        Self {
            label,
            outbox: Outbox::default(),
            calls: BTreeMap::new(),
            usage: TokenUsage::default(),
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
        let counts = usage
            .get("tokens")
            .filter(|t| t.get("input_tokens").is_some())
            .or_else(|| usage.get("billed_units"));
        if let Some(c) = counts {
            let n = |k: &str| c.get(k).and_then(Value::as_f64).unwrap_or(0.0) as u32;
            self.usage.input_tokens = n("input_tokens");
            self.usage.output_tokens = n("output_tokens");
        }
    }

    /// Ends the answer: the assembled tool calls, then the end with `finish`.
    fn end(&mut self, finish: Option<&str>) {
        if finish.is_some_and(|f| f == "ERROR" || f == "TIMEOUT") {
            let label = self.label.clone();
            let error = if finish == Some("TIMEOUT") {
                CoreError::ModelTimeout(format!("{label} timed out while answering"))
            } else {
                CoreError::ModelError(format!("{label} stopped the answer with an error"))
            };
            self.outbox.fail(error);
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        let had_calls = !calls.is_empty();
        if !push_all(&mut self.outbox, calls, &self.label) {
            return;
        }
        let stop_reason = match finish.and_then(stop_reason) {
            _ if had_calls => StopReason::ToolUse,
            Some(reason) => reason,
            None => StopReason::EndTurn,
        };
        self.outbox.finish(GenerationDelta::End {
            stop_reason,
            usage: self.usage,
            latency_ms: self.started.elapsed().as_millis() as u64,
            first_token_ms: self.first_token_ms,
        });
    }

    fn whole_answer(&mut self, body: &[u8]) {
        let answer: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let label = self.label.clone();
                self.outbox.fail(CoreError::ModelError(format!(
                    "{label} answered with JSON that does not parse: {e}"
                )));
                return;
            }
        };
        let message = answer.get("message").cloned().unwrap_or(Value::Null);
        for block in message
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = block.get("text").and_then(Value::as_str) {
                self.outbox.push(GenerationDelta::Text(text.to_string()));
            }
        }
        for (i, call) in message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.calls.insert(
                i as u64,
                PartialCall {
                    id: str_at(call, "/id"),
                    name: str_at(call, "/function/name"),
                    arguments: str_at(call, "/function/arguments"),
                },
            );
        }
        if let Some(usage) = answer.get("usage") {
            self.read_usage(usage);
        }
        let finish = answer
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.end(finish.as_deref());
    }

    fn stream_event(&mut self, data: &str) {
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
            Some("content-start") | Some("content-delta") => {
                if let Some(text) = event
                    .pointer("/delta/message/content/text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.first_token();
                    self.outbox.push(GenerationDelta::Text(text.to_string()));
                }
            }
            Some("tool-call-start") => {
                self.first_token();
                let call = event
                    .pointer("/delta/message/tool_calls")
                    .cloned()
                    .unwrap_or(Value::Null);
                self.calls.insert(
                    index,
                    PartialCall {
                        id: str_at(&call, "/id"),
                        name: str_at(&call, "/function/name"),
                        arguments: str_at(&call, "/function/arguments"),
                    },
                );
            }
            Some("tool-call-delta") => {
                if let Some(args) = event
                    .pointer("/delta/message/tool_calls/function/arguments")
                    .and_then(Value::as_str)
                {
                    self.calls
                        .entry(index)
                        .or_default()
                        .arguments
                        .push_str(args);
                }
            }
            Some("message-end") => {
                if let Some(usage) = event.pointer("/delta/usage") {
                    self.read_usage(usage);
                }
                let finish = event
                    .pointer("/delta/finish_reason")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                self.end(finish.as_deref());
            }
            // message-start, content-end, tool-plan-delta (the model's plan, not the
            // answer), tool-call-end, citation events: nothing to hand on.
            _ => {}
        }
    }
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Translator for ChatReader {
    fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    fn whole(&mut self, body: &[u8]) {
        self.whole_answer(body);
    }

    fn event(&mut self, data: &str) {
        self.stream_event(data);
    }

    fn closed(&mut self) {}
}

/// An embedding model behind Cohere's v2 Embed API.
#[derive(Debug, Clone)]
pub struct CohereEmbeddings {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

impl CohereEmbeddings {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        Self {
            client,
            upstream,
            label: label.into(),
        }
    }

    pub fn request_body(&self, texts: &[String]) -> Value {
        json!({
            "model": self.upstream.model,
            "texts": texts,
            "input_type": "search_document",
            "embedding_types": ["float"],
        })
    }

    pub async fn embed(&self, inputs: &[String]) -> Result<Embedded, CoreError> {
        let url = format!("{}/embed", self.upstream.base_url.trim_end_matches('/'));
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut input_tokens = Vec::with_capacity(inputs.len());
        for texts in inputs.chunks(MAX_EMBED_TEXTS) {
            let mut request = self
                .client
                .post(&url)
                .timeout(self.upstream.timeout)
                .json(&self.request_body(texts));
            if let Some(key) = &self.upstream.api_key {
                request = request.bearer_auth(key);
            }
            let answer = exchange_json(request, &self.label).await?;
            let bad = |what: &str| CoreError::ModelError(format!("{} answered {what}", self.label));
            let floats = answer
                .pointer("/embeddings/float")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("without embeddings.float"))?;
            if floats.len() != texts.len() {
                return Err(bad(&format!(
                    "{} vectors for {} texts",
                    floats.len(),
                    texts.len()
                )));
            }
            for v in floats {
                vectors.push(
                    unit_vector(Some(v))
                        .ok_or_else(|| bad("an embedding that is not a list of numbers"))?,
                );
            }
            let billed = answer
                .pointer("/meta/billed_units/input_tokens")
                .and_then(Value::as_f64)
                .unwrap_or(0.0) as u64;
            input_tokens.extend(split_tokens(billed, texts));
        }
        Ok(Embedded {
            vectors,
            input_tokens,
        })
    }
}

/// A streaming reader of this wire, for [`crate::replay`].
pub(crate) fn chat_reader(label: String, started: Instant) -> impl crate::exchange::Translator {
    ChatReader::new(label, started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{Message, ToolConfig, ToolSpec};
    use std::time::Duration;

    fn chat() -> CohereChat {
        CohereChat::new(
            reqwest::Client::new().into(),
            Upstream {
                base_url: "http://127.0.0.1:1/v2".into(),
                model: "command-r".into(),
                api_key: None,
                aws: None,
                timeout: Duration::from_secs(1),
            },
            "test cohere",
        )
    }

    fn tools(choice: ToolChoice) -> Option<ToolConfig> {
        Some(ToolConfig {
            tools: ["a", "b"]
                .iter()
                .map(|n| ToolSpec {
                    name: n.to_string(),
                    description: None,
                    input_schema: json!({"type": "object"}),
                })
                .collect(),
            choice,
        })
    }

    #[test]
    fn requests_use_cohere_names_and_a_named_tool_becomes_the_only_required_one() {
        let request = ChatRequest {
            model_id: "x".into(),
            system: vec!["Be brief.".into()],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::Text("hi".into())],
            }],
            params: InferenceParams {
                top_p: Some(1.0),
                top_k: Some(40),
                seed: Some(3),
                stop_sequences: vec!["END".into()],
                ..Default::default()
            },
            tools: tools(ToolChoice::Tool("b".into())),
            response_schema: None,
            stream: true,
        };
        let body = chat().request_body(&request, 10).expect("translates");
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            (
                body["p"].as_f64(),
                body["k"].as_u64(),
                body["seed"].as_u64()
            ),
            (Some(0.99), Some(40), Some(3))
        );
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["tools"][0]["function"]["name"], "b");
        assert_eq!(body["tool_choice"], "REQUIRED");
        let auto = chat()
            .request_body(
                &ChatRequest {
                    tools: tools(ToolChoice::Auto),
                    ..request
                },
                10,
            )
            .expect("translates");
        assert!(
            auto.get("tool_choice").is_none() && auto["tools"].as_array().map(Vec::len) == Some(2)
        );
    }

    #[test]
    fn the_event_stream_becomes_deltas() {
        let mut r = ChatReader::new("up".into(), Instant::now());
        for e in [
            r#"{"type":"message-start","id":"m","delta":{"message":{"role":"assistant"}}}"#,
            r#"{"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}"#,
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hel"}}}}"#,
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"lo"}}}}"#,
            r#"{"type":"content-end","index":0}"#,
            r#"{"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will call f"}}}"#,
            r#"{"type":"tool-call-start","index":1,"delta":{"message":{"tool_calls":{"id":"f_1","type":"function","function":{"name":"f","arguments":""}}}}}"#,
            r#"{"type":"tool-call-delta","index":1,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\"x\":"}}}}}"#,
            r#"{"type":"tool-call-delta","index":1,"delta":{"message":{"tool_calls":{"function":{"arguments":"1}"}}}}}"#,
            r#"{"type":"tool-call-end","index":1}"#,
            r#"{"type":"message-end","id":"m","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":3,"output_tokens":4},"tokens":{"input_tokens":70,"output_tokens":9}}}}"#,
        ] {
            r.stream_event(e);
        }
        assert!(r.outbox.is_finished());
        let deltas = r.outbox.drain();
        assert!(matches!(&deltas[0], GenerationDelta::Text(t) if t == "Hel"));
        assert!(
            matches!(&deltas[2], GenerationDelta::ToolCall(c) if c.id == "f_1" && c.input == json!({"x": 1}))
        );
        assert!(
            matches!(&deltas[3], GenerationDelta::End { stop_reason: StopReason::ToolUse, usage, .. }
            if usage.input_tokens == 70 && usage.output_tokens == 9)
        );
    }

    #[test]
    fn an_error_finish_is_a_model_error() {
        let mut r = ChatReader::new("up".into(), Instant::now());
        r.whole_answer(
            br#"{"id":"x","finish_reason":"ERROR","message":{"role":"assistant","content":[]}}"#,
        );
        assert!(matches!(
            r.outbox.drain().last(),
            Some(GenerationDelta::Error(CoreError::ModelError(_)))
        ));
    }
}
