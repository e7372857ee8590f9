//! Agents on the `bedrock-agent-runtime` wire: InvokeAgent and InvokeInlineAgent.
//! The answer is an AWS event stream of `chunk`, `trace` and `returnControl` events
//! (and a modelled exception event when the turn fails after it started); errors
//! found before the turn starts are ordinary JSON errors.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use basalt_core::agents::definition::{
    AgentSettings, AgentStatus, AgentVersion, Collaboration, KnowledgeBaseLink, DRAFT,
};
use basalt_core::agents::run::{
    ActionResult, AgentEvent, AgentFailure, Execution, InvokeRequest, KnowledgeBaseSearch, Started,
    Target, Trace, TracePart, INLINE_AGENT,
};
use basalt_core::agents::session::{ActionInput, ActionTarget, ContextShape, NamedValue};
use basalt_core::common::now_ms;
use basalt_core::keys::Principal;
use basalt_core::CoreError;
use base64::Engine as _;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::agents::{guardrail_ref, ActionGroupBody};
use super::knowledge::agent;
use super::retrieval::{citation_json, result_json, retrieve_spec, RetrievalConfiguration};
use super::wire::{parse_json, required};
use crate::auth::RequestId;
use crate::common::timestamp;
use crate::error::{BedrockError, BedrockErrorCode};
use crate::eventstream;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KnowledgeBaseConfigBody {
    knowledge_base_id: Option<String>,
    retrieval_configuration: Option<RetrievalConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FunctionResultBody {
    action_group: Option<String>,
    agent_id: Option<String>,
    confirmation_state: Option<String>,
    function: Option<String>,
    response_body: Option<Value>,
    response_state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApiResultBody {
    action_group: Option<String>,
    agent_id: Option<String>,
    api_path: Option<String>,
    confirmation_state: Option<String>,
    http_method: Option<String>,
    http_status_code: Option<u16>,
    response_body: Option<Value>,
    response_state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResultBody {
    function_result: Option<FunctionResultBody>,
    api_result: Option<ApiResultBody>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionStateBody {
    session_attributes: Option<BTreeMap<String, String>>,
    prompt_session_attributes: Option<BTreeMap<String, String>>,
    invocation_id: Option<String>,
    return_control_invocation_results: Option<Vec<ResultBody>>,
    knowledge_base_configurations: Option<Vec<KnowledgeBaseConfigBody>>,
    files: Option<Value>,
    conversation_history: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StreamingBody {
    stream_final_response: Option<bool>,
    apply_guardrail_interval: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvokeAgentBody {
    input_text: Option<String>,
    enable_trace: Option<bool>,
    end_session: Option<bool>,
    memory_id: Option<String>,
    session_state: Option<SessionStateBody>,
    streaming_configurations: Option<StreamingBody>,
    #[allow(dead_code)]
    bedrock_model_configurations: Option<Value>,
    prompt_creation_configurations: Option<PromptCreationBody>,
    #[allow(dead_code)]
    source_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PromptCreationBody {
    exclude_previous_thinking_steps: Option<bool>,
    previous_conversation_turns_to_include: Option<u32>,
}

impl PromptCreationBody {
    fn shape(body: Option<Self>) -> ContextShape {
        body.map_or_else(ContextShape::default, |b| ContextShape {
            previous_turns: b.previous_conversation_turns_to_include.map(|n| n as usize),
            exclude_thinking: b.exclude_previous_thinking_steps.unwrap_or(false),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InlineKnowledgeBaseBody {
    knowledge_base_id: Option<String>,
    description: Option<String>,
    retrieval_configuration: Option<RetrievalConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvokeInlineAgentBody {
    input_text: Option<String>,
    enable_trace: Option<bool>,
    end_session: Option<bool>,
    foundation_model: Option<String>,
    instruction: Option<String>,
    agent_name: Option<String>,
    #[serde(rename = "idleSessionTTLInSeconds")]
    idle_session_ttl_in_seconds: Option<u32>,
    action_groups: Option<Vec<ActionGroupBody>>,
    knowledge_bases: Option<Vec<InlineKnowledgeBaseBody>>,
    guardrail_configuration: Option<Value>,
    prompt_override_configuration: Option<Value>,
    inline_session_state: Option<SessionStateBody>,
    streaming_configurations: Option<StreamingBody>,
    agent_collaboration: Option<String>,
    collaborators: Option<Value>,
    collaborator_configurations: Option<Value>,
    custom_orchestration: Option<Value>,
    orchestration_type: Option<String>,
    customer_encryption_key_arn: Option<String>,
    #[allow(dead_code)]
    bedrock_model_configurations: Option<Value>,
    prompt_creation_configurations: Option<PromptCreationBody>,
}

fn confirmation_denied(state: Option<&str>) -> Result<bool, BedrockError> {
    match state {
        None | Some("CONFIRM") => Ok(false),
        Some("DENY") => Ok(true),
        Some(other) => Err(BedrockError::validation(format!(
            "confirmationState {other:?} must be CONFIRM or DENY"
        ))),
    }
}

fn response_failed(state: Option<&str>) -> Result<bool, BedrockError> {
    match state {
        None | Some("REPROMPT") => Ok(false),
        Some("FAILURE") => Ok(true),
        Some(other) => Err(BedrockError::validation(format!(
            "responseState {other:?} must be FAILURE or REPROMPT"
        ))),
    }
}

fn body_text(body: Option<Value>, denied: bool, what: &str) -> Result<String, BedrockError> {
    match body {
        None if denied => Ok(String::new()),
        None => Err(BedrockError::validation(format!(
            "{what}.responseBody is required"
        ))),
        Some(b) => basalt_core::agents::run::response_body_text(&b).ok_or_else(|| {
            BedrockError::validation(format!(
                "{what}.responseBody must map a content type to {{\"body\": ...}}"
            ))
        }),
    }
}

fn results(list: Vec<ResultBody>) -> Result<Vec<ActionResult>, BedrockError> {
    if list.len() > 5 {
        return Err(BedrockError::validation(
            "returnControlInvocationResults holds at most 5 results",
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let what = format!("returnControlInvocationResults[{i}]");
            match (r.function_result, r.api_result) {
                (Some(f), None) => {
                    let denied = confirmation_denied(f.confirmation_state.as_deref())?;
                    Ok(ActionResult {
                        action_group: required(
                            f.action_group,
                            &format!("{what}.functionResult.actionGroup"),
                        )?,
                        target: ActionTarget::Function(required(
                            f.function,
                            &format!("{what}.functionResult.function"),
                        )?),
                        body: body_text(
                            f.response_body,
                            denied,
                            &format!("{what}.functionResult"),
                        )?,
                        failed: response_failed(f.response_state.as_deref())?,
                        denied,
                        http_status: None,
                        agent_id: f.agent_id,
                    })
                }
                (None, Some(a)) => {
                    let denied = confirmation_denied(a.confirmation_state.as_deref())?;
                    Ok(ActionResult {
                        action_group: required(
                            a.action_group,
                            &format!("{what}.apiResult.actionGroup"),
                        )?,
                        target: ActionTarget::Api {
                            method: required(
                                a.http_method,
                                &format!("{what}.apiResult.httpMethod"),
                            )?
                            .to_ascii_uppercase(),
                            path: required(a.api_path, &format!("{what}.apiResult.apiPath"))?,
                        },
                        body: body_text(a.response_body, denied, &format!("{what}.apiResult"))?,
                        failed: response_failed(a.response_state.as_deref())?
                            || a.http_status_code.is_some_and(|c| c >= 400),
                        denied,
                        http_status: a.http_status_code,
                        agent_id: a.agent_id,
                    })
                }
                _ => Err(BedrockError::validation(format!(
                    "{what} must have exactly one of functionResult or apiResult"
                ))),
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HistoryMessage {
    role: Option<String>,
    content: Option<Vec<HistoryBlock>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HistoryBlock {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HistoryBody {
    messages: Option<Vec<HistoryMessage>>,
}

/// `sessionState.conversationHistory`: (is the assistant's, text) per message.
fn conversation_history(value: Value) -> Result<Vec<(bool, String)>, BedrockError> {
    let body: HistoryBody = serde_json::from_value(value)
        .map_err(|e| BedrockError::validation(format!("conversationHistory: {e}")))?;
    body.messages
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let assistant = match m.role.as_deref() {
                Some("user") => false,
                Some("assistant") => true,
                _ => {
                    return Err(BedrockError::validation(format!(
                        "conversationHistory.messages[{i}].role must be user or assistant"
                    )))
                }
            };
            let text: Vec<String> = m
                .content
                .unwrap_or_default()
                .into_iter()
                .map(|b| {
                    b.text.ok_or_else(|| {
                        BedrockError::validation(format!(
                            "conversationHistory.messages[{i}]: only text blocks are supported"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok((assistant, text.join("\n")))
        })
        .collect()
}

fn searches(list: Vec<KnowledgeBaseConfigBody>) -> Result<Vec<KnowledgeBaseSearch>, BedrockError> {
    list.into_iter()
        .enumerate()
        .map(|(i, c)| {
            let id = required(
                c.knowledge_base_id,
                &format!("knowledgeBaseConfigurations[{i}].knowledgeBaseId"),
            )?;
            let spec = retrieve_spec(id, String::new(), c.retrieval_configuration)?;
            Ok(KnowledgeBaseSearch {
                knowledge_base_id: spec.knowledge_base_id,
                number_of_results: spec.number_of_results,
                search_type: spec.search_type,
                filter: spec.filter,
                implicit_filter: spec.implicit_filter,
                reranking: spec.reranking,
            })
        })
        .collect()
}

/// The parts of InvokeAgent and InvokeInlineAgent requests that are the same.
fn invoke_request(
    target: Target,
    session_id: String,
    input_text: Option<String>,
    enable_trace: Option<bool>,
    end_session: Option<bool>,
    session_state: Option<SessionStateBody>,
    streaming: Option<StreamingBody>,
) -> Result<InvokeRequest, BedrockError> {
    let state = session_state.unwrap_or_default();
    if state.files.is_some() {
        return Err(BedrockError::validation(
            "sessionState.files is not supported by this server (there is no code interpreter)",
        ));
    }
    let conversation_history = state
        .conversation_history
        .map(conversation_history)
        .transpose()?;
    let streaming = streaming.unwrap_or_default();
    if streaming
        .apply_guardrail_interval
        .is_some_and(|i| !(1..=10_000).contains(&i))
    {
        return Err(BedrockError::validation(
            "streamingConfigurations.applyGuardrailInterval must be at least 1",
        ));
    }
    Ok(InvokeRequest {
        target,
        session_id,
        input_text,
        enable_trace: enable_trace.unwrap_or(false),
        end_session: end_session.unwrap_or(false),
        stream_final_response: streaming.stream_final_response.unwrap_or(false),
        session_attributes: state.session_attributes,
        prompt_session_attributes: state.prompt_session_attributes,
        invocation_id: state.invocation_id,
        results: results(state.return_control_invocation_results.unwrap_or_default())?,
        knowledge_base_searches: searches(state.knowledge_base_configurations.unwrap_or_default())?,
        memory_id: None,
        conversation_history,
        guardrail_interval: streaming.apply_guardrail_interval,
        context: ContextShape::default(),
    })
}

pub async fn invoke_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path((agent_id, alias_id, session_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: InvokeAgentBody = parse_json(&body)?;
    let mut request = invoke_request(
        Target::Stored { agent_id, alias_id },
        session_id,
        body.input_text,
        body.enable_trace,
        body.end_session,
        body.session_state,
        body.streaming_configurations,
    )?;
    request.memory_id = body.memory_id;
    request.context = PromptCreationBody::shape(body.prompt_creation_configurations);
    let memory_id = request.memory_id.clone();
    let started = agent(
        state
            .agents
            .invoke(Some(principal), request_id.0.clone(), request)
            .await,
    )?;
    let mut response = stream_response(started);
    if let Some(v) = memory_id.and_then(|m| HeaderValue::from_str(&m).ok()) {
        response
            .headers_mut()
            .insert("x-amz-bedrock-agent-memory-id", v);
    }
    Ok(response)
}

pub async fn invoke_inline_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(session_id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: InvokeInlineAgentBody = parse_json(&body)?;
    if body.collaborators.is_some()
        || body.collaborator_configurations.is_some()
        || body
            .agent_collaboration
            .as_deref()
            .is_some_and(|c| c != "DISABLED")
    {
        return Err(BedrockError::validation(
            "inline collaborators are not supported by this server yet",
        ));
    }
    if body.custom_orchestration.is_some()
        || body
            .orchestration_type
            .as_deref()
            .is_some_and(|t| t != "DEFAULT")
    {
        return Err(BedrockError::validation(
            "custom orchestration is not supported by this server; orchestrationType must be DEFAULT",
        ));
    }
    let ttl = body.idle_session_ttl_in_seconds.unwrap_or(600);
    if !(60..=3600).contains(&ttl) {
        return Err(BedrockError::validation(format!(
            "idleSessionTTLInSeconds must be 60..3600 for an inline agent, got {ttl}"
        )));
    }
    let instruction = required(body.instruction, "instruction")?;
    if instruction.chars().count() < 40 {
        return Err(BedrockError::validation(
            "instruction must be at least 40 characters",
        ));
    }
    let guardrail = match body.guardrail_configuration {
        None => None,
        Some(g) => {
            guardrail_ref(Some(serde_json::from_value(g).map_err(|e| {
                BedrockError::validation(format!("guardrailConfiguration: {e}"))
            })?))?
        }
    };
    let now = now_ms();
    let mut version = AgentVersion {
        agent_id: INLINE_AGENT.into(),
        version: DRAFT.into(),
        settings: AgentSettings {
            name: body.agent_name.unwrap_or_else(|| "InlineAgent".into()),
            description: None,
            instruction: Some(instruction),
            foundation_model: Some(required(body.foundation_model, "foundationModel")?),
            role_arn: None,
            idle_session_ttl_secs: ttl,
            guardrail,
            memory: None,
            prompt_overrides: body.prompt_override_configuration,
            collaboration: Collaboration::Disabled,
            customer_encryption_key_arn: body.customer_encryption_key_arn,
        },
        status: AgentStatus::Prepared,
        failure_reasons: Vec::new(),
        recommended_actions: Vec::new(),
        action_groups: Vec::new(),
        knowledge_bases: Vec::new(),
        collaborators: Vec::new(),
        client_token: None,
        created_ms: now,
        updated_ms: now,
        prepared_ms: Some(now),
    };
    let mut kb_searches = Vec::new();
    for (i, kb) in body
        .knowledge_bases
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let id = required(
            kb.knowledge_base_id,
            &format!("knowledgeBases[{i}].knowledgeBaseId"),
        )?;
        let spec = retrieve_spec(id.clone(), String::new(), kb.retrieval_configuration)?;
        kb_searches.push(KnowledgeBaseSearch {
            knowledge_base_id: id.clone(),
            number_of_results: spec.number_of_results,
            search_type: spec.search_type,
            filter: spec.filter,
            implicit_filter: spec.implicit_filter,
            reranking: spec.reranking,
        });
        version.knowledge_bases.push(KnowledgeBaseLink {
            knowledge_base_id: id,
            description: required(kb.description, &format!("knowledgeBases[{i}].description"))?,
            enabled: true,
            created_ms: now,
            updated_ms: now,
        });
    }
    for group in body.action_groups.unwrap_or_default() {
        let spec = group.spec()?;
        let built = agent(state.agents.inline_action_group(spec).await)?;
        version.action_groups.push(built);
    }
    let mut request = invoke_request(
        Target::Inline(Box::new(version)),
        session_id,
        body.input_text,
        body.enable_trace,
        body.end_session,
        body.inline_session_state,
        body.streaming_configurations,
    )?;
    request.knowledge_base_searches.extend(kb_searches);
    request.context = PromptCreationBody::shape(body.prompt_creation_configurations);
    let started = agent(
        state
            .agents
            .invoke(Some(principal), request_id.0.clone(), request)
            .await,
    )?;
    Ok(stream_response(started))
}

/// The event stream of a started invocation.
fn stream_response(started: Started) -> Response {
    let Started {
        agent_id,
        alias_id,
        version,
        session_id,
        events,
    } = started;
    let context = TraceContext {
        agent_id,
        alias_id,
        version,
        session_id: session_id.clone(),
    };
    let frames = tokio_stream::wrappers::ReceiverStream::new(events)
        .map(move |event| Ok::<_, std::convert::Infallible>(context.frame(event)));
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    headers.insert(
        "x-amzn-bedrock-agent-content-type",
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&session_id) {
        headers.insert("x-amz-bedrock-agent-session-id", v);
    }
    response
}

struct TraceContext {
    agent_id: String,
    alias_id: String,
    version: String,
    session_id: String,
}

fn named_values(values: &[NamedValue]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"name": v.name, "type": v.kind, "value": v.value}))
            .collect(),
    )
}

fn request_body_json(input: &ActionInput) -> Option<Value> {
    input.body.as_ref().map(|(content_type, properties)| {
        json!({"content": {content_type.as_str(): {"properties": named_values(properties)}}})
    })
}

fn invocation_input_json(input: &ActionInput, agent_id: &str) -> Value {
    let (agent_id, collaborator) = match &input.collaborator {
        Some((id, name)) => (id.as_str(), Some(name.as_str())),
        None => (agent_id, None),
    };
    let mut out = invocation_input_of(input, agent_id);
    if let (Some(name), Some(member)) = (
        collaborator,
        out.as_object_mut().and_then(|o| o.values_mut().next()),
    ) {
        member["collaboratorName"] = json!(name);
    }
    out
}

fn invocation_input_of(input: &ActionInput, agent_id: &str) -> Value {
    match &input.target {
        ActionTarget::Function(function) => json!({"functionInvocationInput": {
            "actionGroup": input.action_group,
            "function": function,
            "parameters": named_values(&input.parameters),
            "actionInvocationType": "RESULT",
            "agentId": agent_id,
        }}),
        ActionTarget::Api { method, path } => {
            let mut api = json!({
                "actionGroup": input.action_group,
                "httpMethod": method,
                "apiPath": path,
                "parameters": named_values(&input.parameters),
                "actionInvocationType": "RESULT",
                "agentId": agent_id,
            });
            if let Some(body) = request_body_json(input) {
                api["requestBody"] = body;
            }
            json!({"apiInvocationInput": api})
        }
    }
}

fn stream_exception(member: &'static str, message: String) -> Bytes {
    eventstream::exception_member(member, &message)
}

/// The InvokeAgent stream's exception member for a core error.
fn exception_of(e: &CoreError) -> &'static str {
    let code = BedrockError::agent(e.clone()).code;
    match code {
        BedrockErrorCode::ModelError | BedrockErrorCode::ModelTimeout => {
            "dependencyFailedException"
        }
        BedrockErrorCode::ServiceUnavailable => "badGatewayException",
        other => other.stream_member(),
    }
}

impl TraceContext {
    fn frame(&self, event: AgentEvent) -> Bytes {
        match event {
            AgentEvent::Chunk { text, citations } => {
                let mut chunk = json!({
                    "bytes": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                });
                if !citations.is_empty() {
                    chunk["attribution"] = json!({
                        "citations": citations.iter().map(citation_json).collect::<Vec<_>>(),
                    });
                }
                eventstream::event("chunk", &chunk)
            }
            AgentEvent::ReturnControl {
                invocation_id,
                inputs,
            } => eventstream::event(
                "returnControl",
                &json!({
                    "invocationId": invocation_id,
                    "invocationInputs": inputs.iter().map(|i| invocation_input_json(i, &self.agent_id)).collect::<Vec<_>>(),
                }),
            ),
            AgentEvent::Trace(trace) => eventstream::event("trace", &self.trace_json(trace)),
            AgentEvent::Failed(AgentFailure::StepLimit(message)) => {
                stream_exception("dependencyFailedException", message)
            }
            AgentEvent::Failed(AgentFailure::Model(e)) => {
                stream_exception(exception_of(&e), e.to_string())
            }
        }
    }

    fn trace_json(&self, trace: Trace) -> Value {
        match trace.part {
            TracePart::OfCollaborator {
                name,
                caller_chain,
                agent_id,
                alias_id,
                version,
                trace,
            } => json!({
                "agentId": agent_id,
                "agentAliasId": alias_id,
                "agentVersion": version,
                "sessionId": self.session_id,
                "eventTime": timestamp(now_ms()),
                "collaboratorName": name,
                "callerChain": caller_chain.iter().map(|a| json!({"agentAliasArn": a})).collect::<Vec<_>>(),
                "trace": part_json(trace.trace_id, trace.part),
            }),
            part => json!({
                "agentId": self.agent_id,
                "agentAliasId": self.alias_id,
                "agentVersion": self.version,
                "sessionId": self.session_id,
                "eventTime": timestamp(now_ms()),
                "trace": part_json(trace.trace_id, part),
            }),
        }
    }
}

/// The `trace` member of a trace event.
fn part_json(id: String, part: TracePart) -> Value {
    let inner = match part {
        TracePart::ModelInput {
            text,
            foundation_model,
            params,
        } => {
            let mut config = serde_json::Map::new();
            if let Some(t) = params.temperature {
                config.insert("temperature".into(), json!(t));
            }
            if let Some(t) = params.top_p {
                config.insert("topP".into(), json!(t));
            }
            if let Some(k) = params.top_k {
                config.insert("topK".into(), json!(k));
            }
            if let Some(m) = params.max_tokens {
                config.insert("maximumLength".into(), json!(m));
            }
            if !params.stop_sequences.is_empty() {
                config.insert("stopSequences".into(), json!(params.stop_sequences));
            }
            json!({"orchestrationTrace": {"modelInvocationInput": {
                "traceId": id, "text": text, "type": "ORCHESTRATION",
                "foundationModel": foundation_model,
                "inferenceConfiguration": config,
                "promptCreationMode": "DEFAULT", "parserMode": "DEFAULT",
            }}})
        }
        TracePart::ModelOutput {
            raw,
            usage,
            start_ms,
            end_ms,
        } => json!({"orchestrationTrace": {"modelInvocationOutput": {
            "traceId": id,
            "rawResponse": {"content": raw},
            "metadata": {
                "usage": {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens},
                "startTime": timestamp(start_ms), "endTime": timestamp(end_ms),
                "totalTimeMs": (end_ms - start_ms).max(0),
            },
        }}}),
        TracePart::Rationale(text) => {
            json!({"orchestrationTrace": {"rationale": {"traceId": id, "text": text}}})
        }
        TracePart::ActionInvocation { input, execution } => {
            let mut group = json!({
                "actionGroupName": input.action_group,
                "parameters": named_values(&input.parameters),
                "executionType": match execution { Execution::Lambda => "LAMBDA", Execution::ReturnControl => "RETURN_CONTROL" },
            });
            match &input.target {
                ActionTarget::Function(f) => group["function"] = json!(f),
                ActionTarget::Api { method, path } => {
                    group["apiPath"] = json!(path);
                    group["verb"] = json!(method.to_ascii_lowercase());
                    if let Some(body) = request_body_json(&input) {
                        group["requestBody"] = body;
                    }
                }
            }
            json!({"orchestrationTrace": {"invocationInput": {
                "traceId": id, "invocationType": "ACTION_GROUP", "actionGroupInvocationInput": group,
            }}})
        }
        TracePart::KnowledgeBaseLookup {
            knowledge_base_id,
            text,
        } => json!({"orchestrationTrace": {"invocationInput": {
            "traceId": id, "invocationType": "KNOWLEDGE_BASE",
            "knowledgeBaseLookupInput": {"knowledgeBaseId": knowledge_base_id, "text": text},
        }}}),
        TracePart::ActionObservation { text, .. } => json!({"orchestrationTrace": {"observation": {
            "traceId": id, "type": "ACTION_GROUP", "actionGroupInvocationOutput": {"text": text},
        }}}),
        TracePart::KnowledgeBaseObservation { references } => {
            json!({"orchestrationTrace": {"observation": {
                "traceId": id, "type": "KNOWLEDGE_BASE",
                "knowledgeBaseLookupOutput": {"retrievedReferences": references.iter().map(|r| result_json(r, false)).collect::<Vec<_>>()},
            }}})
        }
        TracePart::AskUser { question } => json!({"orchestrationTrace": {"observation": {
            "traceId": id, "type": "ASK_USER", "finalResponse": {"text": question},
        }}}),
        TracePart::Finish { text } => json!({"orchestrationTrace": {"observation": {
            "traceId": id, "type": "FINISH", "finalResponse": {"text": text},
        }}}),
        TracePart::Guardrail { what, blocked } => json!({"guardrailTrace": {
            "traceId": id, "action": "INTERVENED",
            "metadata": {"clientRequestId": format!("{what}: {}", if blocked { "blocked" } else { "masked" })},
        }}),
        TracePart::Failure { reason } => json!({"failureTrace": {
            "traceId": id, "failureReason": reason, "failureCode": 424,
        }}),
        TracePart::CollaboratorInvocation {
            name,
            alias_arn,
            input,
        } => json!({"orchestrationTrace": {"invocationInput": {
            "traceId": id, "invocationType": "AGENT_COLLABORATOR",
            "agentCollaboratorInvocationInput": {
                "agentCollaboratorName": name, "agentCollaboratorAliasArn": alias_arn,
                "input": {"type": "TEXT", "text": input},
            },
        }}}),
        TracePart::CollaboratorObservation {
            name,
            alias_arn,
            output,
        } => json!({"orchestrationTrace": {"observation": {
            "traceId": id, "type": "AGENT_COLLABORATOR",
            "agentCollaboratorInvocationOutput": {
                "agentCollaboratorName": name, "agentCollaboratorAliasArn": alias_arn,
                "output": {"type": "TEXT", "text": output},
            },
        }}}),
        TracePart::Routing(inner) => {
            let rendered = part_json(id, *inner);
            let body = rendered
                .get("orchestrationTrace")
                .cloned()
                .unwrap_or(rendered);
            json!({"routingClassifierTrace": body})
        }
        // Rendered with its own envelope by `trace_json`; nested, it is dropped.
        TracePart::OfCollaborator { .. } => json!({}),
    };
    inner
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemoryQuery {
    memory_id: Option<String>,
    memory_type: Option<String>,
    max_items: Option<String>,
    next_token: Option<String>,
    session_id: Option<String>,
}

/// GetAgentMemory: `GET /agents/{agentId}/agentAliases/{agentAliasId}/memories`.
pub async fn get_agent_memory(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((agent_id, alias_id)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<MemoryQuery>,
) -> Result<Response, BedrockError> {
    let memory_id = required(query.memory_id, "memoryId")?;
    let key_id = principal.key_id.clone();
    if query.memory_type.as_deref() != Some("SESSION_SUMMARY") {
        return Err(BedrockError::validation(
            "memoryType must be SESSION_SUMMARY",
        ));
    }
    let agents = std::sync::Arc::clone(&state.agents);
    let summaries = agent(
        tokio::task::spawn_blocking(move || {
            agents.memories(Some(&principal), &agent_id, &alias_id, &memory_id)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("reading agent memory failed: {e}")))
        .and_then(|r| r),
    )?;
    let paging = super::paging::Paging::from_query(
        "GetAgentMemory",
        &key_id,
        query.max_items.as_deref(),
        query.next_token.as_deref(),
    )?;
    let out = paging.page(summaries).into_json("memoryContents", |s| {
        json!({"sessionSummary": {
            "memoryId": s.memory_id,
            "sessionId": s.session_id,
            "sessionStartTime": timestamp(s.session_start_ms),
            "sessionExpiryTime": timestamp(s.session_expiry_ms),
            "summaryText": s.summary_text,
        }})
    });
    Ok(axum::Json(out).into_response())
}

/// DeleteAgentMemory: `DELETE …/memories?memoryId=&sessionId=` → 202 `{}`.
pub async fn delete_agent_memory(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((agent_id, alias_id)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<MemoryQuery>,
) -> Result<Response, BedrockError> {
    if let Some(m) = &query.memory_id {
        agent(basalt_core::agents::memory::check_memory_id(m))?;
    }
    let agents = std::sync::Arc::clone(&state.agents);
    agent(
        tokio::task::spawn_blocking(move || {
            agents.delete_memory(
                Some(&principal),
                &agent_id,
                &alias_id,
                query.memory_id.as_deref(),
                query.session_id.as_deref(),
            )
        })
        .await
        .map_err(|e| CoreError::Internal(format!("deleting agent memory failed: {e}")))
        .and_then(|r| r),
    )?;
    Ok(super::knowledge::accepted(json!({})))
}
