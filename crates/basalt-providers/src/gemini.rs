//! Google's Gemini API (`generativelanguage`, v1beta): `POST
//! {base}/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` and
//! `:batchEmbedContents`, with `base` e.g.
//! `https://generativelanguage.googleapis.com/v1beta` and the key in `x-goog-api-key`.
//!
//! Request: `systemInstruction`, `contents` with roles `user` / `model` and parts
//! `text`, `functionCall {name, args}` and `functionResponse {name, response}` (Gemini
//! names a result by its function's name, so a `toolResult` is matched to its call by
//! the `toolUseId` of the earlier `toolUse` turn), `tools.functionDeclarations`,
//! `toolConfig.functionCallingConfig` (`AUTO`, `ANY`, or `ANY` with
//! `allowedFunctionNames` for a named tool), `generationConfig` (`maxOutputTokens`,
//! `temperature`, `topP`, `topK`, `stopSequences`, `seed`, and `responseMimeType` +
//! `responseJsonSchema` for structured output). The stream is server-sent events, each
//! a partial `GenerateContentResponse`; the last carries `finishReason` and
//! `usageMetadata`. Gemini gives function calls no IDs, so each call gets one here
//! (`tooluse_<n>_<name>`).
//!
//! Errors are `{"error": {"code", "message", "status"}}`; Google answers an invalid API
//! key with 400 `API_KEY_INVALID`, which is mapped to an access error, not the caller's
//! validation error. Embeddings report no token count, so input tokens are estimated
//! (4 characters a token) for metering.

use std::collections::HashMap;
use std::time::Instant;

use basalt_types::{
    ChatRequest, ContentBlock, CoreError, GenerationDelta, InferenceParams, Role, StopReason,
    TokenUsage, ToolCall, ToolChoice,
};
use serde_json::{json, Map, Value};

use crate::embeddings::{unit_vector, Embedded};
use crate::exchange::{exchange, exchange_json, Outbox, Translator};
use crate::{DeltaStream, Upstream};

/// Most texts in one `batchEmbedContents` call.
pub const MAX_EMBED_BATCH: usize = 100;

/// A chat model behind the Gemini API.
#[derive(Debug, Clone)]
pub struct GeminiChat {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

/// Google's answer to a bad key is a 400; it is the server's credential, not the
/// caller's request, that is wrong.
fn key_refusal(e: CoreError) -> CoreError {
    match e {
        CoreError::Validation(m)
            if m.contains("API key not valid") || m.contains("API_KEY_INVALID") =>
        {
            CoreError::AccessDenied(format!(
                "{m} (the upstream refused Basalt's credentials for this model)"
            ))
        }
        other => other,
    }
}

impl GeminiChat {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        Self {
            client,
            upstream,
            label: label.into(),
        }
    }

    /// The JSON body for `request`.
    pub fn request_body(&self, request: &ChatRequest, max_tokens: u32) -> Result<Value, CoreError> {
        // Gemini names tool results by function name: the names of the calls so far.
        let mut call_names: HashMap<&str, &str> = HashMap::new();
        let mut contents = Vec::new();
        for message in &request.messages {
            let mut parts = Vec::new();
            for block in &message.content {
                parts.push(match block {
                    ContentBlock::Text(t) => json!({"text": t}),
                    ContentBlock::Image(image) => json!({"inlineData": {
                        "mimeType": image.format.mime(), "data": image.base64()}}),
                    ContentBlock::ToolUse(call) => {
                        call_names.insert(call.id.as_str(), call.name.as_str());
                        json!({"functionCall": {"name": call.name, "args": call.input}})
                    }
                    ContentBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => {
                        let name = call_names.get(tool_use_id.as_str()).ok_or_else(|| {
                            CoreError::Validation(format!(
                                "toolResult {tool_use_id} answers no toolUse earlier in the conversation (Gemini matches results to calls by the call's name)"
                            ))
                        })?;
                        let response = match serde_json::from_str::<Value>(content) {
                            Ok(Value::Object(o)) if !is_error => Value::Object(o),
                            _ if *is_error => json!({"error": content}),
                            _ => json!({"result": content}),
                        };
                        json!({"functionResponse": {"name": name, "response": response}})
                    }
                    ContentBlock::Other { kind } => {
                        return Err(CoreError::Validation(format!(
                            "this model does not accept {kind} content blocks"
                        )))
                    }
                });
            }
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            contents.push(json!({"role": role, "parts": parts}));
        }
        let mut body = Map::new();
        if !request.system.is_empty() {
            body.insert(
                "systemInstruction".into(),
                json!({"parts": [{"text": request.system.join("\n")}]}),
            );
        }
        body.insert("contents".into(), Value::Array(contents));
        let mut generation = generation_config(&request.params, max_tokens);
        if let Some(schema) = &request.response_schema {
            generation.insert("responseMimeType".into(), json!("application/json"));
            generation.insert("responseJsonSchema".into(), schema.clone());
        }
        body.insert("generationConfig".into(), Value::Object(generation));
        if let Some(tools) = &request.tools {
            let declarations: Vec<Value> = tools
                .tools
                .iter()
                .map(|t| crate::tool_declaration(t, "parametersJsonSchema", t.input_schema.clone()))
                .collect();
            body.insert(
                "tools".into(),
                json!([{"functionDeclarations": declarations}]),
            );
            let config = match &tools.choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::Any => json!({"mode": "ANY"}),
                ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            };
            body.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": config}),
            );
        }
        Ok(Value::Object(body))
    }

    pub async fn chat(
        &self,
        request: &ChatRequest,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        let body = self.request_body(request, max_tokens)?;
        self.send(body, request.stream).await
    }

    /// A raw prompt sent as one user turn.

    async fn send(&self, body: Value, stream: bool) -> Result<DeltaStream, CoreError> {
        let started = Instant::now();
        let base = self.upstream.base_url.trim_end_matches('/');
        let url = if stream {
            format!(
                "{base}/models/{}:streamGenerateContent?alt=sse",
                self.upstream.model
            )
        } else {
            format!("{base}/models/{}:generateContent", self.upstream.model)
        };
        let mut request = self
            .client
            .post(&url)
            .timeout(self.upstream.timeout)
            .json(&body);
        if let Some(key) = &self.upstream.api_key {
            request = request.header("x-goog-api-key", key);
        }
        exchange(
            request,
            self.label.clone(),
            ResponseReader::new(self.label.clone(), started),
        )
        .await
        .map_err(key_refusal)
    }
}

fn generation_config(params: &InferenceParams, max_tokens: u32) -> Map<String, Value> {
    let mut g = Map::new();
    g.insert("maxOutputTokens".into(), json!(max_tokens));
    if let Some(t) = params.temperature {
        g.insert("temperature".into(), json!(t));
    }
    if let Some(p) = params.top_p {
        g.insert("topP".into(), json!(p));
    }
    if let Some(k) = params.top_k {
        g.insert("topK".into(), json!(k));
    }
    if !params.stop_sequences.is_empty() {
        g.insert("stopSequences".into(), json!(params.stop_sequences));
    }
    if let Some(seed) = params.seed {
        g.insert("seed".into(), json!(seed));
    }
    g
}

/// Reads `GenerateContentResponse`s (one whole, or a stream of partial ones).
struct ResponseReader {
    label: String,
    outbox: Outbox,
    calls: Vec<ToolCall>,
    usage: TokenUsage,
    finish: Option<String>,
    started: Instant,
    first_token_ms: Option<u64>,
}

impl ResponseReader {
    fn new(label: String, started: Instant) -> Self {
        Self {
            label,
            outbox: Outbox::default(),
            calls: Vec::new(),
            usage: TokenUsage::default(),
            finish: None,
            started,
            first_token_ms: None,
        }
    }

    /// One response (or stream chunk).
    fn response(&mut self, response: &Value) {
        if let Some(error) = response.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            let label = self.label.clone();
            self.outbox.fail(CoreError::ModelError(format!(
                "{label} failed while answering: {message}"
            )));
            return;
        }
        if let Some(reason) = response
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str)
        {
            self.finish = Some(format!("BLOCKED:{reason}"));
        }
        if let Some(candidate) = response.pointer("/candidates/0") {
            for part in candidate
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                if let Some(text) = part
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    if self.first_token_ms.is_none() {
                        self.first_token_ms = Some(self.started.elapsed().as_millis() as u64);
                    }
                    self.outbox.push(GenerationDelta::Text(text.to_string()));
                }
                if let Some(call) = part.get("functionCall") {
                    let name = call
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let id = call.get("id").and_then(Value::as_str).map_or_else(
                        || format!("tooluse_{}_{name}", self.calls.len()),
                        str::to_string,
                    );
                    self.calls.push(ToolCall {
                        id,
                        name,
                        input: call.get("args").cloned().unwrap_or_else(|| json!({})),
                    });
                }
            }
            if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
                self.finish = Some(reason.to_string());
            }
        }
        if let Some(usage) = response.get("usageMetadata") {
            let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
            self.usage = TokenUsage {
                input_tokens: n("promptTokenCount"),
                output_tokens: n("candidatesTokenCount") + n("thoughtsTokenCount"),
                cache_read_input_tokens: n("cachedContentTokenCount"),
            };
        }
    }

    fn end(&mut self) {
        let had_calls = !self.calls.is_empty();
        for call in std::mem::take(&mut self.calls) {
            self.outbox.push(GenerationDelta::ToolCall(call));
        }
        let stop_reason = match self.finish.as_deref() {
            _ if had_calls => StopReason::ToolUse,
            Some("MAX_TOKENS") => StopReason::MaxTokens,
            Some("STOP") | None => StopReason::EndTurn,
            // SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, a blocked prompt:
            // Google's own filters stopped the answer.
            Some(_) => StopReason::ContentFiltered,
        };
        self.outbox.finish(GenerationDelta::End {
            stop_reason,
            usage: self.usage,
            latency_ms: self.started.elapsed().as_millis() as u64,
            first_token_ms: self.first_token_ms,
        });
    }

    fn parse(&mut self, data: &[u8]) -> Option<Value> {
        match serde_json::from_slice(data) {
            Ok(v) => Some(v),
            Err(e) => {
                let label = self.label.clone();
                self.outbox.fail(CoreError::ModelError(format!(
                    "{label} answered with JSON that does not parse: {e}"
                )));
                None
            }
        }
    }
}

impl Translator for ResponseReader {
    fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    fn whole(&mut self, body: &[u8]) {
        // A server may answer a stream request with one JSON array of chunks.
        match self.parse(body) {
            Some(Value::Array(chunks)) => chunks.iter().for_each(|c| self.response(c)),
            Some(response) => self.response(&response),
            None => return,
        }
        if !self.outbox.is_finished() {
            self.end();
        }
    }

    fn event(&mut self, data: &str) {
        if let Some(chunk) = self.parse(data.as_bytes()) {
            self.response(&chunk);
        }
    }

    fn closed(&mut self) {
        // The stream has no end marker: a chunk with a finish reason was the last.
        if self.finish.is_some() {
            self.end();
        }
    }
}

/// An embedding model behind the Gemini API (`batchEmbedContents`).
#[derive(Debug, Clone)]
pub struct GeminiEmbeddings {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

impl GeminiEmbeddings {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        Self {
            client,
            upstream,
            label: label.into(),
        }
    }

    pub fn request_body(&self, texts: &[String]) -> Value {
        let model = format!("models/{}", self.upstream.model);
        json!({ "requests": texts.iter().map(|t| json!({
            "model": model,
            "content": {"parts": [{"text": t}]},
            "taskType": "RETRIEVAL_DOCUMENT",
        })).collect::<Vec<_>>() })
    }

    pub async fn embed(&self, inputs: &[String]) -> Result<Embedded, CoreError> {
        let url = format!(
            "{}/models/{}:batchEmbedContents",
            self.upstream.base_url.trim_end_matches('/'),
            self.upstream.model
        );
        let mut vectors = Vec::with_capacity(inputs.len());
        for texts in inputs.chunks(MAX_EMBED_BATCH) {
            let mut request = self
                .client
                .post(&url)
                .timeout(self.upstream.timeout)
                .json(&self.request_body(texts));
            if let Some(key) = &self.upstream.api_key {
                request = request.header("x-goog-api-key", key);
            }
            let answer = exchange_json(request, &self.label)
                .await
                .map_err(key_refusal)?;
            let bad = |what: &str| CoreError::ModelError(format!("{} answered {what}", self.label));
            let embeddings = answer
                .get("embeddings")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("without embeddings"))?;
            if embeddings.len() != texts.len() {
                return Err(bad(&format!(
                    "{} vectors for {} texts",
                    embeddings.len(),
                    texts.len()
                )));
            }
            for e in embeddings {
                vectors.push(
                    unit_vector(e.get("values"))
                        .ok_or_else(|| bad("an embedding whose values are not numbers"))?,
                );
            }
        }
        Ok(Embedded {
            vectors,
            input_tokens: inputs
                .iter()
                .map(|t| (t.chars().count() as u32).div_ceil(4).max(1))
                .collect(),
        })
    }
}

/// A streaming reader of this wire, for [`crate::replay`].
pub(crate) fn response_reader(label: String, started: Instant) -> impl crate::exchange::Translator {
    ResponseReader::new(label, started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{Message, ToolConfig, ToolSpec};
    use std::time::Duration;

    fn chat() -> GeminiChat {
        GeminiChat::new(
            reqwest::Client::new().into(),
            Upstream {
                base_url: "http://127.0.0.1:1/v1beta".into(),
                model: "gemini-2.0-flash".into(),
                api_key: None,
                aws: None,
                timeout: Duration::from_secs(1),
            },
            "test gemini",
        )
    }

    #[test]
    fn tool_results_are_named_after_their_calls() {
        let call = ToolCall {
            id: "t1".into(),
            name: "weather".into(),
            input: json!({"city": "Oslo"}),
        };
        let request = ChatRequest {
            model_id: "x".into(),
            system: vec!["Be brief.".into()],
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::Text("Weather?".into())],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::ToolUse(call)],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "t1".into(),
                        content: "{\"temp\": 3}".into(),
                        is_error: false,
                    }],
                },
            ],
            params: InferenceParams {
                top_k: Some(20),
                ..Default::default()
            },
            tools: Some(ToolConfig {
                tools: vec![ToolSpec {
                    name: "weather".into(),
                    description: None,
                    input_schema: json!({"type": "object"}),
                }],
                choice: ToolChoice::Tool("weather".into()),
            }),
            response_schema: None,
            stream: false,
        };
        let body = chat().request_body(&request, 9).expect("translates");
        assert_eq!(
            body["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(
            body["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]})
        );
        assert_eq!(
            body["contents"][2]["parts"][0],
            json!({"functionResponse": {"name": "weather", "response": {"temp": 3}}})
        );
        assert_eq!(
            body["generationConfig"],
            json!({"maxOutputTokens": 9, "topK": 20})
        );
        assert_eq!(
            body["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["weather"]})
        );
        let orphan = ChatRequest {
            messages: vec![request.messages[2].clone()],
            ..request
        };
        assert!(matches!(
            chat().request_body(&orphan, 9),
            Err(CoreError::Validation(_))
        ));
    }

    #[test]
    fn stream_chunks_become_deltas() {
        let mut r = ResponseReader::new("up".into(), Instant::now());
        r.event(
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}]}"#,
        );
        r.event(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"},{"functionCall":{"name":"f","args":{"x":1}}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}"#);
        r.closed();
        let deltas = r.outbox.drain();
        assert!(matches!(&deltas[1], GenerationDelta::Text(t) if t == "lo"));
        assert!(
            matches!(&deltas[2], GenerationDelta::ToolCall(c) if c.name == "f" && c.id == "tooluse_0_f")
        );
        assert!(
            matches!(&deltas[3], GenerationDelta::End { stop_reason: StopReason::ToolUse, usage, .. } if usage.input_tokens == 4 && usage.output_tokens == 2)
        );
        let mut blocked = ResponseReader::new("up".into(), Instant::now());
        blocked.whole(br#"{"candidates":[{"content":{"parts":[]},"finishReason":"SAFETY"}]}"#);
        assert!(matches!(
            blocked.outbox.drain().last(),
            Some(GenerationDelta::End {
                stop_reason: StopReason::ContentFiltered,
                ..
            })
        ));
    }

    #[test]
    fn an_invalid_key_is_an_access_error() {
        let e = key_refusal(CoreError::Validation(
            "returned HTTP 400: API key not valid. Please pass a valid API key.".into(),
        ));
        assert!(matches!(e, CoreError::AccessDenied(_)));
        assert!(matches!(
            key_refusal(CoreError::Validation("bad field".into())),
            CoreError::Validation(_)
        ));
    }
}
