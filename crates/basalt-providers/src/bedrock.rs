//! Amazon Bedrock as an upstream: the runtime's Converse (`POST
//! {base}/model/{modelId}/converse`) and ConverseStream (`…/converse-stream`, an AWS
//! event stream), signed with SigV4 (`aws-sigv4`, service `bedrock`) from the
//! configured access key, or sent with a Bedrock API key as a bearer token. `base` is
//! e.g. `https://bedrock-runtime.us-east-1.amazonaws.com`.
//!
//! The request is Converse's own JSON (system, messages with text / toolUse /
//! toolResult blocks, inferenceConfig, toolConfig with auto / any / tool choice,
//! `additionalModelRequestFields` for top_k, seed and structured output). The answer —
//! one JSON body, or event-stream frames (`messageStart`, `contentBlockStart`,
//! `contentBlockDelta` with text or tool-input fragments, `contentBlockStop`,
//! `messageStop`, `metadata` with usage; exception frames such as
//! `throttlingException` or `modelStreamErrorException`) decoded with
//! `aws-smithy-eventstream` — becomes deltas. HTTP errors carry `x-amzn-ErrorType` and
//! `{"message"}`; they map by status like every provider's.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use basalt_types::{
    ChatRequest, ContentBlock, CoreError, GenerationDelta, InferenceParams, Role, StopReason,
    TokenUsage, ToolChoice,
};
use bytes::Buf;
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::exchange::{send_checked, Outbox};
use crate::partial_call::{push_all, PartialCall};
use crate::{error_for_transport, DeltaStream, Upstream};

/// SigV4 credentials for an upstream (redacted in `Debug`, never logged).
#[derive(Clone)]
pub struct AwsSigning {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

impl std::fmt::Debug for AwsSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSigning")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .finish()
    }
}

/// A chat model on Amazon Bedrock (or anything serving Bedrock's runtime API).
#[derive(Debug, Clone)]
pub struct BedrockChat {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

/// A path segment as botocore encodes it (`:` → `%3A`).
pub(crate) fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl BedrockChat {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        Self {
            client,
            upstream,
            label: label.into(),
        }
    }

    /// The Converse JSON body for `request`.
    pub fn request_body(&self, request: &ChatRequest, max_tokens: u32) -> Result<Value, CoreError> {
        let mut messages = Vec::new();
        for message in &request.messages {
            let blocks = message
                .content
                .iter()
                .map(|block| match block {
                    ContentBlock::Text(t) => Ok(json!({"text": t})),
                    ContentBlock::Image(image) => Ok(json!({"image": {
                        "format": image.format.name(), "source": {"bytes": image.base64()}}})),
                    ContentBlock::ToolUse(call) => Ok(json!({"toolUse": {
                        "toolUseId": call.id, "name": call.name, "input": call.input}})),
                    ContentBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => {
                        let mut result =
                            json!({"toolUseId": tool_use_id, "content": [{"text": content}]});
                        if *is_error {
                            result["status"] = json!("error");
                        }
                        Ok(json!({ "toolResult": result }))
                    }
                    ContentBlock::Other { kind } => Err(CoreError::Validation(format!(
                        "this model does not accept {kind} content blocks"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(json!({"role": role, "content": blocks}));
        }
        let mut body = Map::new();
        body.insert("messages".into(), Value::Array(messages));
        if !request.system.is_empty() {
            body.insert(
                "system".into(),
                Value::Array(request.system.iter().map(|s| json!({"text": s})).collect()),
            );
        }
        let (inference, mut additional) = inference_config(&request.params, max_tokens);
        body.insert("inferenceConfig".into(), Value::Object(inference));
        if let Some(tools) = &request.tools {
            let specs: Vec<Value> = tools
                .tools
                .iter()
                .map(|t| json!({"toolSpec": crate::tool_declaration(t, "inputSchema", json!({"json": t.input_schema}))}))
                .collect();
            let choice = match &tools.choice {
                ToolChoice::Auto => json!({"auto": {}}),
                ToolChoice::Any => json!({"any": {}}),
                ToolChoice::Tool(name) => json!({"tool": {"name": name}}),
            };
            body.insert(
                "toolConfig".into(),
                json!({"tools": specs, "toolChoice": choice}),
            );
        }
        if let Some(schema) = &request.response_schema {
            additional.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"schema": schema}}),
            );
        }
        if !additional.is_empty() {
            body.insert(
                "additionalModelRequestFields".into(),
                Value::Object(additional),
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

    /// The request, signed (SigV4) or with the bearer key.
    fn build(
        &self,
        url: &str,
        body: Vec<u8>,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, CoreError> {
        let accept = if stream {
            "application/vnd.amazon.eventstream"
        } else {
            "application/json"
        };
        authorized_post(&self.client, &self.upstream, &self.label, url, body, accept)
    }

    async fn send(&self, body: Value, stream: bool) -> Result<DeltaStream, CoreError> {
        let started = Instant::now();
        let url = format!(
            "{}/model/{}/{}",
            self.upstream.base_url.trim_end_matches('/'),
            encode_segment(&self.upstream.model),
            if stream {
                "converse-stream"
            } else {
                "converse"
            }
        );
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| CoreError::Internal(format!("cannot encode the request: {e}")))?;
        let request = self.build(&url, bytes, stream)?;
        let (response, is_json) = send_checked(request, &self.label).await?;
        let mut reader = ConverseReader::new(self.label.clone(), started);
        if is_json {
            let body = response
                .bytes()
                .await
                .map_err(|e| error_for_transport(&self.label, &e))?;
            reader.whole(&body);
            return Ok(Box::pin(futures::stream::iter(reader.outbox.take_queued())));
        }
        let state = (
            reader,
            response.bytes_stream(),
            MessageFrameDecoder::new(),
            bytes::BytesMut::new(),
        );
        Ok(Box::pin(futures::stream::unfold(
            state,
            |(mut reader, mut body, mut decoder, mut buffer)| async move {
                loop {
                    if let Some(delta) = reader.outbox.pop() {
                        return Some((delta, (reader, body, decoder, buffer)));
                    }
                    if reader.outbox.is_finished() {
                        return None;
                    }
                    // Whole frames already buffered first, then more bytes.
                    match decoder.decode_frame(&mut buffer) {
                        Ok(DecodedFrame::Complete(message)) => {
                            reader.frame(&message);
                            continue;
                        }
                        Ok(DecodedFrame::Incomplete) => {}
                        Err(e) => {
                            let label = reader.label.clone();
                            reader.outbox.fail(CoreError::ModelError(format!(
                                "{label} sent an event-stream frame that does not decode: {e}"
                            )));
                            continue;
                        }
                    }
                    match body.next().await {
                        Some(Ok(chunk)) => buffer.extend_from_slice(chunk.chunk()),
                        Some(Err(e)) => {
                            let label = reader.label.clone();
                            reader.outbox.fail(error_for_transport(&label, &e));
                        }
                        None => reader.closed(),
                    }
                }
            },
        )))
    }
}

/// A POST of a JSON `body` to a Bedrock runtime `url`, signed with SigV4 (service
/// `bedrock`) from the upstream's access key, or carrying its Bedrock API key as a
/// bearer token.
pub(crate) fn authorized_post(
    client: &crate::HttpClient,
    upstream: &Upstream,
    label: &str,
    url: &str,
    body: Vec<u8>,
    accept: &str,
) -> Result<reqwest::RequestBuilder, CoreError> {
    let mut request = client
        .post(url)
        .timeout(upstream.timeout)
        .header("content-type", "application/json")
        .header("accept", accept);
    if let Some(aws) = &upstream.aws {
        let identity = aws_credential_types::Credentials::new(
            aws.access_key_id.clone(),
            aws.secret_access_key.clone(),
            aws.session_token.clone(),
            None,
            "basalt-config",
        )
        .into();
        let cannot_sign = |e: &dyn std::fmt::Display| {
            CoreError::Internal(format!("cannot sign for {label}: {e}"))
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&aws.region)
            .name("bedrock")
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| cannot_sign(&e))?
            .into();
        let headers = [("content-type", "application/json"), ("accept", accept)];
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            url,
            headers.into_iter(),
            aws_sigv4::http_request::SignableBody::Bytes(&body),
        )
        .map_err(|e| cannot_sign(&e))?;
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| cannot_sign(&e))?
            .into_parts();
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
    } else if let Some(key) = &upstream.api_key {
        request = request.bearer_auth(key);
    }
    Ok(request.body(body))
}

fn inference_config(
    params: &InferenceParams,
    max_tokens: u32,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut inference = Map::new();
    inference.insert("maxTokens".into(), json!(max_tokens));
    if let Some(t) = params.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = params.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if !params.stop_sequences.is_empty() {
        inference.insert("stopSequences".into(), json!(params.stop_sequences));
    }
    let mut additional = Map::new();
    if let Some(k) = params.top_k {
        additional.insert("top_k".into(), json!(k));
    }
    if let Some(seed) = params.seed {
        additional.insert("seed".into(), json!(seed));
    }
    (inference, additional)
}

fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "model_context_window_exceeded" => StopReason::ModelContextWindowExceeded,
        "content_filtered" | "guardrail_intervened" => StopReason::ContentFiltered,
        _ => StopReason::EndTurn,
    }
}

/// Reads a Converse response or a ConverseStream's frames into deltas.
struct ConverseReader {
    label: String,
    outbox: Outbox,
    tools: BTreeMap<u64, PartialCall>,
    stop: Option<StopReason>,
    usage: TokenUsage,
    started: Instant,
    first_token_ms: Option<u64>,
}

fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

impl ConverseReader {
    fn new(label: String, started: Instant) -> Self {
        Self {
            label,
            outbox: Outbox::default(),
            tools: BTreeMap::new(),
            stop: None,
            usage: TokenUsage::default(),
            started,
            first_token_ms: None,
        }
    }

    fn read_usage(&mut self, usage: &Value) {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        // Bedrock's `inputTokens` leaves out the prompt read from and written to its
        // cache; the whole prompt is what every other provider counts.
        self.usage = TokenUsage {
            input_tokens: n("inputTokens")
                .saturating_add(n("cacheReadInputTokens"))
                .saturating_add(n("cacheWriteInputTokens")),
            output_tokens: n("outputTokens"),
            cache_read_input_tokens: n("cacheReadInputTokens"),
        };
    }

    fn end(&mut self) {
        let tools = std::mem::take(&mut self.tools);
        if !push_all(&mut self.outbox, tools, &self.label) {
            return;
        }
        self.outbox.finish(GenerationDelta::End {
            stop_reason: self.stop.unwrap_or(StopReason::EndTurn),
            usage: self.usage,
            latency_ms: self.started.elapsed().as_millis() as u64,
            first_token_ms: self.first_token_ms,
        });
    }

    /// A whole Converse response.
    fn whole(&mut self, body: &[u8]) {
        let response: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let label = self.label.clone();
                self.outbox.fail(CoreError::ModelError(format!(
                    "{label} answered with JSON that does not parse: {e}"
                )));
                return;
            }
        };
        for (i, block) in response
            .pointer("/output/message/content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(text) = block.get("text").and_then(Value::as_str) {
                self.outbox.push(GenerationDelta::Text(text.to_string()));
            } else if let Some(tool) = block.get("toolUse") {
                let s = |k: &str| {
                    tool.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                self.tools.insert(
                    i as u64,
                    PartialCall {
                        id: s("toolUseId"),
                        name: s("name"),
                        arguments: tool.get("input").map(Value::to_string).unwrap_or_default(),
                    },
                );
            }
        }
        if let Some(usage) = response.get("usage") {
            self.read_usage(usage);
        }
        self.stop = response
            .get("stopReason")
            .and_then(Value::as_str)
            .map(stop_reason);
        self.end();
    }

    /// One event-stream frame.
    fn frame(&mut self, message: &Message) {
        let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
        if header(message, ":message-type") == Some("exception") {
            let kind = header(message, ":exception-type").unwrap_or("exception");
            let text = payload
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            let label = self.label.clone();
            let full = format!("{label} sent {kind}: {text}");
            self.outbox.fail(match kind {
                "throttlingException" => CoreError::Throttled(full),
                "serviceUnavailableException" => CoreError::ServiceUnavailable(full),
                "validationException" => CoreError::Validation(full),
                "modelTimeoutException" => CoreError::ModelTimeout(full),
                _ => CoreError::ModelError(full),
            });
            return;
        }
        let index = payload
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match header(message, ":event-type") {
            Some("contentBlockStart") => {
                if let Some(tool) = payload.pointer("/start/toolUse") {
                    let s = |k: &str| {
                        tool.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    self.tools.insert(
                        index,
                        PartialCall {
                            id: s("toolUseId"),
                            name: s("name"),
                            arguments: String::new(),
                        },
                    );
                }
            }
            Some("contentBlockDelta") => {
                if self.first_token_ms.is_none() {
                    self.first_token_ms = Some(self.started.elapsed().as_millis() as u64);
                }
                if let Some(text) = payload.pointer("/delta/text").and_then(Value::as_str) {
                    self.outbox.push(GenerationDelta::Text(text.to_string()));
                } else if let Some(part) = payload
                    .pointer("/delta/toolUse/input")
                    .and_then(Value::as_str)
                {
                    self.tools
                        .entry(index)
                        .or_default()
                        .arguments
                        .push_str(part);
                }
            }
            Some("messageStop") => {
                self.stop = payload
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .map(stop_reason);
            }
            Some("metadata") => {
                if let Some(usage) = payload.get("usage") {
                    self.read_usage(usage);
                }
                self.end();
            }
            // messageStart, contentBlockStop: nothing to hand on.
            _ => {}
        }
    }

    fn closed(&mut self) {
        if self.stop.is_some() {
            self.end();
        } else {
            let label = self.label.clone();
            self.outbox.fail(CoreError::ModelError(format!(
                "{label} ended the stream before finishing the answer"
            )));
        }
    }
}

/// A ConverseStream body read as [`BedrockChat`]'s stream reads it, for [`crate::replay`].
pub(crate) fn replay_event_stream(body: &[u8], split: usize) -> Vec<GenerationDelta> {
    let reader = std::cell::RefCell::new(ConverseReader::new("replay".into(), Instant::now()));
    crate::replay::event_stream(
        |message| reader.borrow_mut().frame(message),
        || {
            let mut r = reader.borrow_mut();
            (r.outbox.take_queued(), r.outbox.is_finished())
        },
        || reader.borrow_mut().closed(),
        |e| reader.borrow_mut().outbox.fail(e),
        body,
        split,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;
    use basalt_types::{Message as ChatMessage, ToolConfig, ToolSpec};

    fn frame(event: &str, payload: Value) -> Vec<u8> {
        let message = Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ))
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String(event.to_string().into()),
            ));
        let mut out = Vec::new();
        write_message_to(&message, &mut out).expect("frame");
        out
    }

    #[test]
    fn frames_become_deltas_across_any_split() {
        let bytes: Vec<u8> = [
            frame("messageStart", json!({"role": "assistant"})),
            frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}})),
            frame("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}})),
            frame("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":"}}})),
            frame("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "2}"}}})),
            frame("messageStop", json!({"stopReason": "tool_use"})),
            frame("metadata", json!({"usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}, "metrics": {"latencyMs": 9}})),
        ]
        .concat();
        for split in [1, 7, 64, bytes.len()] {
            let mut reader = ConverseReader::new("up".into(), Instant::now());
            let mut decoder = MessageFrameDecoder::new();
            let mut buffer = bytes::BytesMut::new();
            for chunk in bytes.chunks(split) {
                buffer.extend_from_slice(chunk);
                while let Ok(DecodedFrame::Complete(m)) = decoder.decode_frame(&mut buffer) {
                    reader.frame(&m);
                }
            }
            let deltas = reader.outbox.take_queued();
            assert!(
                matches!(&deltas[0], GenerationDelta::Text(t) if t == "Hi"),
                "split {split}"
            );
            assert!(
                matches!(&deltas[1], GenerationDelta::ToolCall(c) if c.id == "t1" && c.input == json!({"a": 2}))
            );
            assert!(
                matches!(&deltas[2], GenerationDelta::End { stop_reason: StopReason::ToolUse, usage, .. } if usage.output_tokens == 5)
            );
        }
    }

    #[test]
    fn requests_are_converse_json() {
        let chat = BedrockChat::new(
            reqwest::Client::new().into(),
            Upstream {
                base_url: "http://127.0.0.1:1".into(),
                model: "meta.llama3-8b-instruct-v1:0".into(),
                api_key: None,
                aws: None,
                timeout: std::time::Duration::from_secs(1),
            },
            "test bedrock",
        );
        let request = ChatRequest {
            model_id: "x".into(),
            system: vec!["Be brief.".into()],
            messages: vec![ChatMessage {
                role: Role::User,
                content: vec![
                    ContentBlock::Text("hi".into()),
                    ContentBlock::Image(basalt_types::Image {
                        format: basalt_types::ImageFormat::Jpeg,
                        data: vec![0xff, 0xd8, 0xff],
                    }),
                ],
            }],
            params: InferenceParams {
                top_k: Some(5),
                temperature: Some(0.0),
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
            stream: false,
        };
        let body = chat.request_body(&request, 7).expect("translates");
        assert_eq!(body["system"], json!([{"text": "Be brief."}]));
        assert_eq!(
            body["messages"][0]["content"][1],
            json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/"}}})
        );
        assert_eq!(
            body["inferenceConfig"],
            json!({"maxTokens": 7, "temperature": 0.0})
        );
        assert_eq!(body["additionalModelRequestFields"], json!({"top_k": 5}));
        assert_eq!(
            body["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        assert_eq!(
            encode_segment("meta.llama3-8b-instruct-v1:0"),
            "meta.llama3-8b-instruct-v1%3A0"
        );
    }
}
