//! OpenAI Chat Completions (`POST {base}/chat/completions`), as OpenAI documents it
//! and as every OpenAI-compatible server (vLLM, TGI, llama-server, Ollama's `/v1`,
//! another Basalt) serves it.
//!
//! A caller who streams gets an upstream stream (`stream: true` with
//! `stream_options.include_usage`, so usage arrives in the last chunk), relayed delta by
//! delta; a caller who does not gets one upstream JSON completion. Either kind of
//! answer is read by its `content-type`, so a server that ignores `stream` still works.
//! Tool-call argument fragments are joined per `index` and handed on as whole calls
//! once the upstream finishes.
//!
//! Mistral's chat completions API (`https://api.mistral.ai/v1`) is this wire format
//! with its own differences, chosen by [`Flavor::Mistral`]: `random_seed` for `seed`,
//! `tool_choice: "any"` for "required", no `stream_options` (the last chunk carries
//! `usage` anyway), no `top_k`, tool-call IDs of exactly nine letters and digits, and
//! the finish reasons `model_length` and `error`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use basalt_types::{ChatRequest, CoreError, GenerationDelta, StopReason, TokenUsage};
use serde_json::Value;

use crate::exchange::{exchange, Outbox, Translator};
use crate::partial_call::{push_all, PartialCall};
use crate::{DeltaStream, Upstream};

mod request;
mod wire;

/// Which API of the OpenAI family an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI and the servers compatible with it.
    OpenAi,
    /// Mistral's chat completions.
    Mistral,
}

/// A chat model behind an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    client: crate::HttpClient,
    upstream: Upstream,
    /// The name used in error messages (e.g. "OpenAI", "vLLM at gpu-1").
    label: String,
    flavor: Flavor,
    /// `{base_url}/chat/completions`, parsed once (URL parsing with IDNA was ~1 % of a
    /// proxied request's CPU); the text, to fail with reqwest's own error, if it does
    /// not parse.
    chat_url: Result<reqwest::Url, String>,
}

impl OpenAiChat {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        let url = format!(
            "{}/chat/completions",
            upstream.base_url.trim_end_matches('/')
        );
        Self {
            client,
            upstream,
            label: label.into(),
            flavor: Flavor::OpenAi,
            chat_url: reqwest::Url::parse(&url).map_err(|_| url),
        }
    }

    /// A model behind Mistral's API.
    pub fn mistral(
        client: crate::HttpClient,
        upstream: Upstream,
        label: impl Into<String>,
    ) -> Self {
        Self {
            flavor: Flavor::Mistral,
            ..Self::new(client, upstream, label)
        }
    }

    /// The JSON body for `request`, as a `Value` (for inspection; [`Self::chat`]
    /// serialises the typed body straight to bytes).
    pub fn request_body(&self, request: &ChatRequest, max_tokens: u32) -> Result<Value, CoreError> {
        let body = self.wire_body(request, max_tokens)?;
        serde_json::to_value(&body)
            .map_err(|e| CoreError::Internal(format!("cannot encode a request body: {e}")))
    }

    fn wire_body<'a>(
        &'a self,
        request: &'a ChatRequest,
        max_tokens: u32,
    ) -> Result<request::ChatBody<'a>, CoreError> {
        request::ChatBody::new(
            &self.upstream.model,
            request,
            max_tokens,
            self.flavor,
            &self.label,
        )
    }

    /// Sends a chat request and streams the answer.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        let body = self.wire_body(request, max_tokens)?;
        self.send(&body).await
    }

    /// A raw prompt (a native InvokeModel body) sent as one user message.

    async fn send(&self, body: &impl serde::Serialize) -> Result<DeltaStream, CoreError> {
        let started = Instant::now();
        let mut request = match &self.chat_url {
            Ok(url) => self.client.post(url.clone()),
            Err(text) => self.client.post(text.as_str()),
        }
        .timeout(self.upstream.timeout)
        .header("accept", "text/event-stream")
        .json(body);
        if let Some(key) = &self.upstream.api_key {
            request = request.bearer_auth(key);
        }
        let state = StreamState::new(self.label.clone(), started);
        exchange(request, self.label.clone(), state).await
    }
}

/// A tool-call ID as Mistral takes them (exactly nine ASCII letters and digits): kept
/// when it already is one, otherwise derived from it (FNV-1a, base 62), so a call and
/// its result still match.
fn mistral_tool_id(id: &str) -> String {
    if id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let digit = DIGITS[(hash % 62) as usize] as char;
            hash /= 62;
            digit
        })
        .collect()
}

struct StreamState {
    label: String,
    outbox: Outbox,
    tool_calls: BTreeMap<u64, PartialCall>,
    usage: Option<TokenUsage>,
    finish: Option<StopReason>,
    started: Instant,
    first_token_ms: Option<u64>,
}

impl StreamState {
    fn new(label: String, started: Instant) -> Self {
        StreamState {
            label,
            outbox: Outbox::default(),
            tool_calls: BTreeMap::new(),
            usage: None,
            finish: None,
            started,
            first_token_ms: None,
        }
    }

    /// A whole (non-streamed) chat completion, read as if it had been one chunk.
    fn completion(&mut self, body: &[u8]) {
        let completion = match wire::Chunk::parse(body) {
            Ok(c) => c,
            Err(e) => {
                self.outbox.fail(CoreError::ModelError(format!(
                    "{} answered with JSON that is not a chat completion: {e}",
                    self.label
                )));
                return;
            }
        };
        if self.failed_with(&completion) {
            return;
        }
        let Some(choice) = completion.choices.and_then(|c| c.into_iter().next()) else {
            self.outbox.fail(CoreError::ModelError(format!(
                "{} answered without choices",
                self.label
            )));
            return;
        };
        self.read_usage(completion.usage);
        // A whole message's tool calls are numbered by their place, not by `index`.
        self.apply(choice.message, choice.finish_reason, true);
        if !self.outbox.is_finished() {
            self.end();
        }
    }

    fn event(&mut self, data: &str) {
        if data == "[DONE]" {
            self.end();
            return;
        }
        match wire::Chunk::parse(data.as_bytes()) {
            Ok(chunk) => self.chunk(chunk),
            Err(e) => self.outbox.fail(CoreError::ModelError(format!(
                "{} sent a stream event that is not a chat completion chunk: {e}",
                self.label
            ))),
        }
    }

    /// One `chat.completion.chunk`.
    fn chunk(&mut self, chunk: wire::Chunk) {
        if self.failed_with(&chunk) {
            return;
        }
        self.read_usage(chunk.usage);
        if let Some(choice) = chunk.choices.and_then(|c| c.into_iter().next()) {
            self.apply(choice.delta, choice.finish_reason, false);
        }
    }

    /// Fails the answer if the upstream sent an error in its place.
    fn failed_with(&mut self, chunk: &wire::Chunk) -> bool {
        let Some(error) = &chunk.error else {
            return false;
        };
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
            .unwrap_or("unknown error");
        self.outbox.fail(CoreError::ModelError(format!(
            "{} failed while answering: {message}",
            self.label
        )));
        true
    }

    fn read_usage(&mut self, usage: Option<wire::Usage>) {
        if let Some(usage) = usage {
            let count = |n: Option<u64>| n.unwrap_or(0) as u32;
            self.usage = Some(TokenUsage {
                input_tokens: count(usage.prompt_tokens),
                output_tokens: count(usage.completion_tokens),
                cache_read_input_tokens: count(
                    usage.prompt_tokens_details.and_then(|d| d.cached_tokens),
                ),
            });
        }
    }

    /// Hands on a message's (or an increment's) text, gathers its tool-call fragments,
    /// and notes the finish reason.
    fn apply(
        &mut self,
        delta: Option<wire::Delta>,
        finish_reason: Option<Cow<str>>,
        calls_by_position: bool,
    ) {
        if let Some(delta) = delta {
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.first_token();
                self.outbox.push(GenerationDelta::Text(text.into_owned()));
            }
            if let Some(calls) = delta.tool_calls {
                self.first_token();
                for (position, call) in calls.into_iter().enumerate() {
                    let index = if calls_by_position {
                        position as u64
                    } else {
                        call.index.unwrap_or(0)
                    };
                    let partial = self.tool_calls.entry(index).or_default();
                    if let Some(id) = call.id {
                        partial.id = id.into_owned();
                    }
                    if let Some(f) = call.function {
                        if let Some(name) = f.name {
                            partial.name.push_str(&name);
                        }
                        if let Some(args) = f.arguments {
                            partial.arguments.push_str(&args);
                        }
                    }
                }
            }
        }
        if let Some(reason) = finish_reason {
            self.finish = Some(match &*reason {
                "length" => StopReason::MaxTokens,
                // Mistral: the prompt and answer reached the model's context window.
                "model_length" => StopReason::ModelContextWindowExceeded,
                "error" => {
                    self.outbox.fail(CoreError::ModelError(format!(
                        "{} stopped the answer with an error",
                        self.label
                    )));
                    return;
                }
                "tool_calls" | "function_call" => StopReason::ToolUse,
                "content_filter" => StopReason::ContentFiltered,
                _ => StopReason::EndTurn,
            });
        }
    }

    fn first_token(&mut self) {
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.started.elapsed().as_millis() as u64);
        }
    }

    /// Emits the assembled tool calls and the end of the generation.
    fn end(&mut self) {
        let calls = std::mem::take(&mut self.tool_calls);
        let had_calls = !calls.is_empty();
        if !push_all(&mut self.outbox, calls, &self.label) {
            return;
        }
        let stop_reason = match self.finish {
            Some(_) if had_calls => StopReason::ToolUse,
            Some(reason) => reason,
            None => StopReason::EndTurn,
        };
        self.outbox.finish(GenerationDelta::End {
            stop_reason,
            usage: self.usage.unwrap_or_default(),
            latency_ms: self.started.elapsed().as_millis() as u64,
            first_token_ms: self.first_token_ms,
        });
    }
}

impl Translator for StreamState {
    fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    fn whole(&mut self, body: &[u8]) {
        self.completion(body);
    }

    fn event(&mut self, data: &str) {
        StreamState::event(self, data);
    }

    fn closed(&mut self) {
        // Some servers end the stream after the last chunk without [DONE].
        if self.finish.is_some() {
            self.end();
        }
    }
}

/// A streaming reader of this wire, for [`crate::replay`].
pub(crate) fn stream_state(label: String, started: Instant) -> impl crate::exchange::Translator {
    StreamState::new(label, started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{
        ContentBlock, InferenceParams, Message, Role, ToolCall, ToolChoice, ToolConfig, ToolSpec,
    };
    use serde_json::json;
    use std::time::Duration;

    fn adapter() -> OpenAiChat {
        OpenAiChat::new(
            reqwest::Client::new().into(),
            Upstream {
                base_url: "http://127.0.0.1:1/v1".into(),
                model: "gpt-test".into(),
                api_key: None,
                aws: None,
                timeout: Duration::from_secs(1),
            },
            "test upstream",
        )
    }

    #[test]
    fn a_tool_round_trip_becomes_openai_messages() {
        let request = ChatRequest {
            model_id: "x".into(),
            system: vec!["Be brief.".into()],
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::Text("Weather in Paris?".into())],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::ToolUse(ToolCall {
                        id: "call_1".into(),
                        name: "weather".into(),
                        input: json!({"city": "Paris"}),
                    })],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "call_1".into(),
                        content: "{\"temp\": 21}".into(),
                        is_error: false,
                    }],
                },
            ],
            params: InferenceParams {
                temperature: Some(0.0),
                stop_sequences: vec!["END".into()],
                ..Default::default()
            },
            tools: Some(ToolConfig {
                tools: vec![ToolSpec {
                    name: "weather".into(),
                    description: Some("Current weather".into()),
                    input_schema: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                }],
                choice: ToolChoice::Any,
            }),
            response_schema: None,
            stream: false,
        };
        let body = adapter().request_body(&request, 64).expect("translates");
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["tools"][0]["function"]["name"], "weather");
        let messages = body["messages"].as_array().expect("messages");
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            messages[1],
            json!({"role": "user", "content": "Weather in Paris?"})
        );
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[2]["content"], Value::Null);
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"})
        );
        assert!(
            body.get("stream").is_none(),
            "a caller who does not stream gets one JSON answer"
        );
        let streamed = adapter()
            .request_body(
                &ChatRequest {
                    stream: true,
                    ..request
                },
                64,
            )
            .expect("translates");
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed["stream_options"]["include_usage"], true);
    }

    #[test]
    fn the_mistral_flavour_speaks_mistrals_differences() {
        let mistral = OpenAiChat::mistral(
            reqwest::Client::new().into(),
            Upstream {
                base_url: "http://127.0.0.1:1/v1".into(),
                model: "mistral-small-latest".into(),
                api_key: None,
                aws: None,
                timeout: Duration::from_secs(1),
            },
            "test mistral",
        );
        let call = ToolCall {
            id: "tooluse_8NqHz0JdQ3yWJpYk5sYxkA".into(),
            name: "weather".into(),
            input: json!({"city": "Paris"}),
        };
        let request = ChatRequest {
            model_id: "x".into(),
            system: vec![],
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::Text("Weather?".into())],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::ToolUse(call.clone())],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: call.id.clone(),
                        content: "sunny".into(),
                        is_error: false,
                    }],
                },
            ],
            params: InferenceParams {
                seed: Some(7),
                ..Default::default()
            },
            tools: Some(ToolConfig {
                tools: vec![ToolSpec {
                    name: "weather".into(),
                    description: None,
                    input_schema: json!({"type": "object"}),
                }],
                choice: ToolChoice::Any,
            }),
            response_schema: None,
            stream: true,
        };
        let body = mistral.request_body(&request, 32).expect("translates");
        assert_eq!(body["random_seed"], 7);
        assert!(
            body.get("seed").is_none() && body.get("stream_options").is_none(),
            "{body}"
        );
        assert_eq!(body["tool_choice"], "any");
        let id = body["messages"][1]["tool_calls"][0]["id"]
            .as_str()
            .expect("id")
            .to_string();
        assert!(
            id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{id}"
        );
        assert_eq!(
            body["messages"][2]["tool_call_id"],
            id.as_str(),
            "the result names the same call"
        );
        assert_eq!(
            mistral_tool_id("D681PevKs"),
            "D681PevKs",
            "Mistral's own IDs are kept"
        );
        assert_ne!(mistral_tool_id("call_1"), mistral_tool_id("call_2"));
        let top_k = ChatRequest {
            params: InferenceParams {
                top_k: Some(5),
                ..Default::default()
            },
            ..request
        };
        assert!(
            matches!(mistral.request_body(&top_k, 32), Err(CoreError::Validation(m)) if m.contains("top_k"))
        );
    }

    #[test]
    fn image_blocks_are_refused_with_a_validation_error() {
        let request = ChatRequest {
            model_id: "x".into(),
            system: vec![],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::Other {
                    kind: "image".into(),
                }],
            }],
            params: InferenceParams::default(),
            tools: None,
            response_schema: None,
            stream: false,
        };
        assert!(matches!(
            adapter().request_body(&request, 8),
            Err(CoreError::Validation(_))
        ));
    }

    fn state() -> StreamState {
        StreamState::new("up".into(), Instant::now())
    }

    #[test]
    fn a_whole_completion_becomes_the_same_deltas() {
        let mut s = state();
        s.completion(br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},{"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#);
        let deltas: Vec<_> = s.outbox.drain();
        assert_eq!(deltas.len(), 3, "{deltas:?}");
        assert_eq!(
            deltas[0],
            GenerationDelta::ToolCall(ToolCall {
                id: "a".into(),
                name: "f".into(),
                input: json!({"x": 1})
            })
        );
        assert_eq!(
            deltas[1],
            GenerationDelta::ToolCall(ToolCall {
                id: "b".into(),
                name: "g".into(),
                input: json!({})
            })
        );
        assert!(
            matches!(&deltas[2], GenerationDelta::End { stop_reason: StopReason::ToolUse, usage, .. } if usage.output_tokens == 7)
        );
        let mut s = state();
        s.completion(b"not json");
        assert!(matches!(
            s.outbox.drain().into_iter().next(),
            Some(GenerationDelta::Error(CoreError::ModelError(_)))
        ));
    }

    #[test]
    fn streamed_tool_call_fragments_are_joined() {
        let mut s = state();
        s.event(r#"{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"weather","arguments":""}}]}}]}"#);
        s.event(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}"#);
        s.event(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Oslo\"}"}}]}}]}"#);
        s.event(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#);
        s.event(r#"{"choices":[],"usage":{"prompt_tokens":31,"completion_tokens":9,"total_tokens":40,"prompt_tokens_details":{"cached_tokens":16}}}"#);
        s.event("[DONE]");
        let deltas: Vec<_> = s.outbox.drain();
        assert_eq!(
            deltas[0],
            GenerationDelta::ToolCall(ToolCall {
                id: "call_9".into(),
                name: "weather".into(),
                input: json!({"city": "Oslo"})
            })
        );
        match &deltas[1] {
            GenerationDelta::End {
                stop_reason, usage, ..
            } => {
                assert_eq!(*stop_reason, StopReason::ToolUse);
                assert_eq!(
                    *usage,
                    TokenUsage {
                        input_tokens: 31,
                        output_tokens: 9,
                        cache_read_input_tokens: 16
                    }
                );
            }
            other => panic!("expected End, got {other:?}"),
        }
    }

    #[test]
    fn an_error_event_mid_stream_ends_it_with_a_model_error() {
        let mut s = state();
        s.event(r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#);
        s.event(r#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#);
        let deltas: Vec<_> = s.outbox.drain();
        assert_eq!(deltas[0], GenerationDelta::Text("Hel".into()));
        assert!(
            matches!(&deltas[1], GenerationDelta::Error(CoreError::ModelError(m)) if m.contains("upstream overloaded"))
        );
        assert!(s.outbox.is_finished());
    }

    #[test]
    fn finish_reasons_map_to_bedrock_stop_reasons() {
        for (reason, want) in [
            ("stop", StopReason::EndTurn),
            ("length", StopReason::MaxTokens),
            ("content_filter", StopReason::ContentFiltered),
        ] {
            let mut s = state();
            s.event(&format!(r#"{{"choices":[{{"index":0,"delta":{{"content":"x"}},"finish_reason":"{reason}"}}]}}"#));
            s.event("[DONE]");
            let end = s.outbox.drain().pop().expect("an end");
            assert!(
                matches!(end, GenerationDelta::End { stop_reason, .. } if stop_reason == want),
                "{reason}"
            );
        }
    }
}
