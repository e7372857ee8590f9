//! bedrock-runtime operations: Converse, ConverseStream, InvokeModel,
//! InvokeModelWithResponseStream, CountTokens.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::catalog::NativeBody;
use basalt_core::guardrails::{GuardTrace, GuardedGeneration};
use basalt_core::keys::Principal;
use basalt_core::types::{CompletionRequest, GenerationDelta, StopReason, TokenUsage};
use basalt_core::{Basalt, CallContext};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};

use super::documents::inline_documents;
use super::guardrails::{action_reason, assessment_json};
use super::wire::{parse_json, ConverseBody, CountTokensBody, LlamaBody, TitanEmbedBody};
use crate::auth::RequestId;
use crate::error::BedrockError;
use crate::eventstream;
use crate::AppState;

fn context(principal: Principal, request_id: RequestId, operation: &'static str) -> CallContext {
    CallContext::new(Some(principal), request_id.0, operation)
}

/// Converse's `usage`. With cache points in the request, the prompt is split as
/// Bedrock splits it: `cacheReadInputTokens` is what the engine really served from its
/// prefix cache (or what the upstream reported), `inputTokens` the rest. Basalt's
/// engine keeps every prompt prefix without a write step or charge, so
/// `cacheWriteInputTokens` is 0. Without cache points, the prompt is all
/// `inputTokens`, as on Bedrock.
fn usage_json(usage: &TokenUsage, cache_points: bool) -> Value {
    let mut out = json!({ "inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens, "totalTokens": usage.total() });
    if cache_points {
        let read = usage.cache_read_input_tokens.min(usage.input_tokens);
        out["inputTokens"] = json!(usage.input_tokens - read);
        out["cacheReadInputTokens"] = json!(read);
        out["cacheWriteInputTokens"] = json!(0);
    }
    out
}

fn with_lifecycle(mut response: Response, core: &Basalt, model_id: &str) -> Response {
    if core.is_legacy(model_id) {
        response.headers_mut().insert(
            "x-basalt-model-lifecycle",
            HeaderValue::from_static("LEGACY"),
        );
    }
    response
}

pub async fn converse(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let mut converse = parse_json::<ConverseBody>(&body)?;
    inline_documents(&mut converse).await?;
    let cache_points = converse.names_cache_points();
    let (request, guardrail) = converse.into_guarded_request(&model_id, false)?;
    let ctx = context(principal, request_id, "Converse");
    let (generation, trace) = match guardrail {
        None => (state.core.chat(ctx, request).await?, None),
        Some(call) => {
            let guarded = state
                .guardrails
                .chat_guarded(ctx, request, call.guard)
                .await?;
            let trace = call.trace.then(|| guardrail_trace(&guarded));
            (guarded.generation, trace)
        }
    };
    let mut body = converse_body(&generation, cache_points);
    if let Some(trace) = trace {
        body["trace"] = json!({ "guardrail": trace });
    }
    let mut response = Json(body).into_response();
    answered_by(&mut response, &generation.model_id);
    Ok(with_lifecycle(response, &state.core, &model_id))
}

/// The `trace.guardrail` member of a guarded Converse answer.
pub(crate) fn guardrail_trace(guarded: &GuardedGeneration) -> Value {
    let mut trace = json!({
        "inputAssessment": { &guarded.guardrail_id: assessment_json(&guarded.input.assessment, false) },
    });
    if let Some(output) = &guarded.output {
        trace["outputAssessments"] =
            json!({ &guarded.guardrail_id: [assessment_json(&output.assessment, false)] });
    }
    if let Some(original) = &guarded.model_output {
        trace["modelOutput"] = json!([original]);
    }
    if guarded.intervened() {
        let verdict = guarded
            .output
            .as_ref()
            .filter(|o| o.intervened())
            .unwrap_or(&guarded.input);
        trace["actionReason"] = json!(action_reason(verdict));
    }
    trace
}

/// Names the model that answered (the requested one, or a fallback).
pub(crate) fn answered_by(response: &mut Response, model_id: &str) {
    if let Ok(value) = HeaderValue::from_str(model_id) {
        response.headers_mut().insert("x-basalt-answered-by", value);
    }
}

/// Waits for the first delta so that a failure before any output is a plain HTTP
/// error rather than an error event in a 200 stream.
async fn first_delta<S>(stream: &mut S) -> Result<Option<GenerationDelta>, BedrockError>
where
    S: futures::Stream<Item = GenerationDelta> + Unpin,
{
    match stream.next().await {
        Some(GenerationDelta::Error(e)) => Err(e.into()),
        other => Ok(other),
    }
}

fn event_stream_response(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(eventstream::CONTENT_TYPE),
    );
    response
}

pub async fn converse_stream(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let mut converse = parse_json::<ConverseBody>(&body)?;
    inline_documents(&mut converse).await?;
    let cache_points = converse.names_cache_points();
    let (request, guardrail) = converse.into_guarded_request(&model_id, true)?;
    let ctx = context(principal, request_id, "ConverseStream");
    match guardrail {
        None => {
            let stream = state.core.chat_stream(ctx, request).await?;
            let answering = stream.model_id().to_string();
            converse_stream_response(&state, &model_id, answering, stream, None, cache_points).await
        }
        Some(call) => {
            let stream = state
                .guardrails
                .chat_stream_guarded(ctx, request, call.guard, call.asynchronous)
                .await?;
            let answering = stream.model_id().to_string();
            let trace = call.trace.then(|| stream.trace());
            converse_stream_response(&state, &model_id, answering, stream, trace, cache_points)
                .await
        }
    }
}

/// The event stream of ConverseStream; `trace` (a guarded stream's findings, asked
/// for with `trace: enabled`) goes into the closing `metadata` event.
async fn converse_stream_response<S>(
    state: &AppState,
    model_id: &str,
    answering: String,
    mut stream: S,
    trace: Option<Arc<std::sync::Mutex<GuardTrace>>>,
    cache_points: bool,
) -> Result<Response, BedrockError>
where
    S: futures::Stream<Item = GenerationDelta> + Send + Unpin + 'static,
{
    let first = first_delta(&mut stream).await?;
    let prelude = vec![eventstream::event(
        "messageStart",
        &json!({ "role": "assistant" }),
    )];
    // Content blocks are numbered in order; a text block stays open until
    // something else starts or the message ends.
    let mut blocks = 0u32;
    let mut open_text: Option<u32> = None;
    let encode = move |delta: GenerationDelta| {
        let mut frames: Vec<Bytes> = Vec::new();
        match delta {
            GenerationDelta::Text(text) => {
                let index = *open_text.get_or_insert_with(|| {
                    blocks += 1;
                    blocks - 1
                });
                frames.push(eventstream::event(
                    "contentBlockDelta",
                    &json!({ "contentBlockIndex": index, "delta": { "text": text } }),
                ));
            }
            GenerationDelta::ToolCall(call) => {
                if let Some(index) = open_text.take() {
                    frames.push(eventstream::event(
                        "contentBlockStop",
                        &json!({ "contentBlockIndex": index }),
                    ));
                }
                let index = blocks;
                blocks += 1;
                frames.push(eventstream::event(
                    "contentBlockStart",
                    &json!({ "contentBlockIndex": index, "start": { "toolUse": { "toolUseId": call.id, "name": call.name } } }),
                ));
                frames.push(eventstream::event(
                    "contentBlockDelta",
                    &json!({ "contentBlockIndex": index, "delta": { "toolUse": { "input": call.input.to_string() } } }),
                ));
                frames.push(eventstream::event(
                    "contentBlockStop",
                    &json!({ "contentBlockIndex": index }),
                ));
            }
            GenerationDelta::End {
                stop_reason,
                usage,
                latency_ms,
                ..
            } => {
                if let Some(index) = open_text.take() {
                    frames.push(eventstream::event(
                        "contentBlockStop",
                        &json!({ "contentBlockIndex": index }),
                    ));
                } else if blocks == 0 {
                    frames.push(eventstream::event(
                        "contentBlockStop",
                        &json!({ "contentBlockIndex": 0 }),
                    ));
                }
                frames.push(eventstream::event(
                    "messageStop",
                    &json!({ "stopReason": stop_reason.as_bedrock() }),
                ));
                let mut metadata = json!({ "usage": usage_json(&usage, cache_points), "metrics": { "latencyMs": latency_ms } });
                if let Some(trace) = trace
                    .as_ref()
                    .and_then(|t| t.lock().ok().map(|t| t.clone()))
                {
                    metadata["trace"] = json!({ "guardrail": stream_trace_json(&trace) });
                }
                frames.push(eventstream::event("metadata", &metadata));
            }
            GenerationDelta::Error(e) => {
                frames.push(eventstream::exception(&BedrockError::from(e)))
            }
        }
        frames
    };
    let body = crate::streaming::forward(prelude, first, stream, encode);
    let mut response = event_stream_response(body);
    answered_by(&mut response, &answering);
    Ok(with_lifecycle(response, &state.core, model_id))
}

/// The `trace.guardrail` member of a guarded ConverseStream's metadata event.
fn stream_trace_json(trace: &GuardTrace) -> Value {
    let mut out = json!({});
    if let Some(input) = &trace.input {
        out["inputAssessment"] =
            json!({ &trace.guardrail_id: assessment_json(&input.assessment, false) });
    }
    if !trace.outputs.is_empty() {
        let list: Vec<Value> = trace
            .outputs
            .iter()
            .map(|v| assessment_json(&v.assessment, false))
            .collect();
        out["outputAssessments"] = json!({ &trace.guardrail_id: list });
    }
    if let Some(original) = &trace.model_output {
        out["modelOutput"] = json!([original]);
    }
    if let Some(verdict) = trace.deciding() {
        out["actionReason"] = json!(action_reason(verdict));
    }
    out
}

/// A model's native InvokeModel body run to completion: the response body, the token
/// usage and the latency (InvokeModel, and batch records).
pub(crate) async fn invoke_native(
    core: &Arc<Basalt>,
    ctx: CallContext,
    model_id: &str,
    body: &[u8],
) -> Result<(Value, TokenUsage, u64), BedrockError> {
    let entry = core.resolve(model_id)?;
    match entry.native_body {
        NativeBody::MetaLlama => {
            let request = parse_json::<LlamaBody>(body)?;
            let params = request.params()?;
            let generation = core
                .complete(
                    ctx,
                    CompletionRequest {
                        model_id: model_id.to_string(),
                        prompt: request.prompt,
                        params,
                    },
                )
                .await?;
            let out = json!({
                "generation": generation.text,
                "prompt_token_count": generation.usage.input_tokens,
                "generation_token_count": generation.usage.output_tokens,
                "stop_reason": llama_stop_reason(generation.stop_reason),
            });
            Ok((out, generation.usage, generation.latency_ms))
        }
        NativeBody::TitanEmbed => embed_titan(core, ctx, model_id, body).await,
        NativeBody::Rerank => super::rerank::invoke_native(core, ctx, model_id, body).await,
    }
}

/// A Converse body run to completion: the Converse response body and the usage
/// (batch records of `modelInvocationType: Converse`; no guardrail).
pub(crate) async fn converse_native(
    core: &Arc<Basalt>,
    ctx: CallContext,
    model_id: &str,
    body: &[u8],
) -> Result<(Value, TokenUsage), BedrockError> {
    let mut converse = parse_json::<ConverseBody>(body)?;
    inline_documents(&mut converse).await?;
    let cache_points = converse.names_cache_points();
    let request = converse.into_chat_request(model_id)?;
    let generation = core.chat(ctx, request).await?;
    Ok((converse_body(&generation, cache_points), generation.usage))
}

fn converse_body(generation: &basalt_core::types::Generation, cache_points: bool) -> Value {
    let mut content = Vec::new();
    if !generation.text.is_empty() || generation.tool_calls.is_empty() {
        content.push(json!({ "text": generation.text }));
    }
    for call in &generation.tool_calls {
        content.push(
            json!({ "toolUse": { "toolUseId": call.id, "name": call.name, "input": call.input } }),
        );
    }
    json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": generation.stop_reason.as_bedrock(),
        "usage": usage_json(&generation.usage, cache_points),
        "metrics": { "latencyMs": generation.latency_ms },
    })
}

/// InvokeModel does not apply guardrails yet; a request that names one is refused
/// rather than answered unchecked.
fn refuse_guardrail_headers(headers: &HeaderMap) -> Result<(), BedrockError> {
    if headers.contains_key("x-amzn-bedrock-guardrailidentifier") {
        return Err(BedrockError::validation(
            "guardrails on InvokeModel are not supported by this server yet; use Converse with guardrailConfig, or ApplyGuardrail",
        ));
    }
    Ok(())
}

fn check_accept(headers: &HeaderMap, name: &str) -> Result<(), BedrockError> {
    match headers.get(name).and_then(|v| v.to_str().ok()) {
        None => Ok(()),
        Some(v) if v.contains("application/json") || v.contains("*/*") => Ok(()),
        Some(v) => Err(BedrockError::validation(format!(
            "{name} {v} is not supported; this model answers application/json"
        ))),
    }
}

fn llama_stop_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => "length",
        StopReason::EndTurn | StopReason::StopSequence | StopReason::ToolUse => "stop",
        StopReason::ContentFiltered => "content_filtered",
        StopReason::GuardrailIntervened => "guardrail_intervened",
    }
}

fn invoke_headers(response: &mut Response, usage: &TokenUsage, latency_ms: u64) {
    let h = response.headers_mut();
    for (name, value) in [
        (
            "x-amzn-bedrock-input-token-count",
            usage.input_tokens as u64,
        ),
        (
            "x-amzn-bedrock-output-token-count",
            usage.output_tokens as u64,
        ),
        ("x-amzn-bedrock-invocation-latency", latency_ms),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            h.insert(name, v);
        }
    }
}

async fn embed_titan(
    core: &Arc<Basalt>,
    ctx: CallContext,
    model_id: &str,
    body: &[u8],
) -> Result<(Value, TokenUsage, u64), BedrockError> {
    let request = parse_json::<TitanEmbedBody>(body)?;
    let dimensions = core.embedding_dimensions(model_id)?;
    if let Some(d) = request.dimensions {
        if d as usize != dimensions {
            return Err(BedrockError::validation(format!("dimensions {d} is not supported; this model's vectors have {dimensions} dimensions")));
        }
    }
    if request.normalize == Some(false) {
        return Err(BedrockError::validation(
            "normalize=false is not supported; this model returns normalised vectors",
        ));
    }
    if let Some(types) = &request.embedding_types {
        if types.iter().any(|t| t != "float") {
            return Err(BedrockError::validation(
                "embeddingTypes supports only \"float\"",
            ));
        }
    }
    let started = ctx.started;
    let embeddings = core.embed(ctx, model_id, vec![request.input_text]).await?;
    let tokens = embeddings.tokens.first().copied().unwrap_or(0);
    let vector = embeddings.vectors.into_iter().next().unwrap_or_default();
    let mut out = json!({ "embedding": vector, "inputTextTokenCount": tokens });
    if request.embedding_types.is_some() {
        out["embeddingsByType"] = json!({ "float": out["embedding"].clone() });
    }
    Ok((
        out,
        TokenUsage {
            input_tokens: tokens,
            ..TokenUsage::default()
        },
        started.elapsed().as_millis() as u64,
    ))
}

pub async fn invoke_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BedrockError> {
    check_accept(&headers, "accept")?;
    refuse_guardrail_headers(&headers)?;
    let ctx = context(principal, request_id, "InvokeModel");
    let (out, usage, latency) = invoke_native(&state.core, ctx, &model_id, &body).await?;
    let mut response = Json(out).into_response();
    invoke_headers(&mut response, &usage, latency);
    Ok(with_lifecycle(response, &state.core, &model_id))
}

fn chunk(payload: &Value) -> Bytes {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(payload).unwrap_or_default());
    eventstream::event("chunk", &json!({ "bytes": encoded }))
}

pub async fn invoke_model_stream(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BedrockError> {
    check_accept(&headers, "x-amzn-bedrock-accept")?;
    refuse_guardrail_headers(&headers)?;
    let entry = state.core.resolve(&model_id)?;
    if entry.native_body != NativeBody::MetaLlama || !entry.streaming {
        return Err(BedrockError::validation(format!(
            "model {model_id} does not support response streaming"
        )));
    }
    let request = parse_json::<LlamaBody>(&body)?;
    let params = request.params()?;
    let prompt_tokens = state
        .core
        .count_text_tokens(&model_id, &request.prompt)
        .await?;
    let ctx = context(principal, request_id, "InvokeModelWithResponseStream");
    let mut stream = state
        .core
        .completion_stream(
            ctx,
            CompletionRequest {
                model_id: model_id.clone(),
                prompt: request.prompt,
                params,
            },
        )
        .await?;
    let first = first_delta(&mut stream).await?;
    let mut generated = 0u32;
    let mut first_chunk = true;
    let encode = move |delta: GenerationDelta| match delta {
        GenerationDelta::Text(text) => {
            generated += 1;
            let prompt_count = if first_chunk {
                json!(prompt_tokens)
            } else {
                Value::Null
            };
            first_chunk = false;
            vec![chunk(
                &json!({ "generation": text, "prompt_token_count": prompt_count, "generation_token_count": generated, "stop_reason": null }),
            )]
        }
        GenerationDelta::End {
            stop_reason,
            usage,
            latency_ms,
            first_token_ms,
        } => vec![chunk(&json!({
            "generation": "",
            "prompt_token_count": if first_chunk { json!(usage.input_tokens) } else { Value::Null },
            "generation_token_count": usage.output_tokens,
            "stop_reason": llama_stop_reason(stop_reason),
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": usage.input_tokens,
                "outputTokenCount": usage.output_tokens,
                "invocationLatency": latency_ms,
                "firstByteLatency": first_token_ms.unwrap_or(latency_ms),
            }
        }))],
        GenerationDelta::Error(e) => vec![eventstream::exception(&BedrockError::from(e))],
        // Raw completions carry no tools.
        GenerationDelta::ToolCall(_) => Vec::new(),
    };
    let body = crate::streaming::forward(Vec::new(), first, stream, encode);
    let mut response = event_stream_response(body);
    response.headers_mut().insert(
        "x-amzn-bedrock-content-type",
        HeaderValue::from_static("application/json"),
    );
    Ok(with_lifecycle(response, &state.core, &model_id))
}

pub async fn count_tokens(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let request = parse_json::<CountTokensBody>(&body)?;
    let mut members = request.input.into_iter();
    let (Some((kind, value)), None) = (members.next(), members.next()) else {
        return Err(BedrockError::validation(
            "input must set exactly one of converse, invokeModel",
        ));
    };
    let input_tokens = match kind.as_str() {
        "converse" => {
            let mut converse: ConverseBody = serde_json::from_value(value).map_err(|e| {
                BedrockError::validation(format!("input.converse is malformed: {e}"))
            })?;
            inline_documents(&mut converse).await?;
            let request = converse.into_chat_request(&model_id)?;
            state.core.count_chat_tokens(&request).await?
        }
        "invokeModel" => {
            let encoded = value.get("body").and_then(Value::as_str).ok_or_else(|| {
                BedrockError::validation("input.invokeModel.body must be a base64 string")
            })?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| {
                    BedrockError::validation(format!("input.invokeModel.body is not base64: {e}"))
                })?;
            let entry = state.core.resolve(&model_id)?;
            let text = match entry.native_body {
                NativeBody::MetaLlama => parse_json::<LlamaBody>(&raw)?.prompt,
                NativeBody::TitanEmbed => parse_json::<TitanEmbedBody>(&raw)?.input_text,
                NativeBody::Rerank => {
                    return Err(BedrockError::validation(format!(
                        "model {model_id} is a reranking model, billed in search units, not tokens; CountTokens does not apply"
                    )))
                }
            };
            state.core.count_text_tokens(&model_id, &text).await?
        }
        other => {
            return Err(BedrockError::validation(format!(
                "input.{other} is not supported; use converse or invokeModel"
            )))
        }
    };
    Ok(Json(json!({ "inputTokens": input_tokens })).into_response())
}
