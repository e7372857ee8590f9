//! The agent loop. A turn: the input (text, the caller's results of returned
//! actions, or the user's answer to a question) goes into the session's
//! conversation; then, up to `[agents] max_steps` times, the agent's model is called
//! through the calling path (quotas, placement, metering tagged with the session)
//! with every tool of the agent; the actions it asks for run (at once and in
//! parallel: HTTP executors and knowledge-base searches; or they go back to the
//! caller in a `returnControl`, or the question goes to the user), their results
//! go back as tool results; an answer without tool calls ends the turn. The session
//! is written back when the turn ends, so an interrupted turn leaves the session
//! as it was before it.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::definition::{AgentStatus, AgentVersion, Executor, DRAFT, TEST_ALIAS};
use super::session::{
    self, ActionInput, ActionTarget, LoadedSession, NamedValue, Pending, PendingCall, SessionKey,
    StoredBlock, StoredMessage,
};
use super::tools::{ToolAction, ToolSet};
use super::AgentService;
use crate::common::{now_ms, random_id};
use crate::guardrail_policy::{Segment, Source};
use crate::keys::Principal;
use crate::knowledge::retrieve::{cite, Citation, RetrieveSpec, Retrieved};
use crate::service::CallContext;
use crate::types::{
    ChatRequest, GenerationDelta, InferenceParams, TokenUsage, ToolCall, ToolChoice, ToolConfig,
};
use crate::CoreError;

/// How long a turn waits for a caller that does not read its events.
const STALLED_CALLER: std::time::Duration = std::time::Duration::from_secs(60);

/// Lines of a tool result the guardrail also checks one by one.
const MAX_GUARDED_LINES: usize = 64;

/// The agent ID inline agents' sessions are kept under.
pub const INLINE_AGENT: &str = "INLINE";

/// Which agent runs.
#[derive(Debug, Clone)]
pub enum Target {
    Stored {
        agent_id: String,
        alias_id: String,
    },
    /// InvokeInlineAgent: the definition comes with the request.
    Inline(Box<AgentVersion>),
}

/// A knowledge base's search settings for this call.
#[derive(Debug, Clone, Default)]
pub struct KnowledgeBaseSearch {
    pub knowledge_base_id: String,
    pub number_of_results: Option<usize>,
    pub search_type: Option<basalt_kb::index::SearchType>,
    pub filter: Option<Value>,
    pub implicit_filter: Option<crate::knowledge::retrieve::ImplicitFilter>,
    pub reranking: Option<crate::knowledge::retrieve::Reranking>,
}

/// The caller's result of a returned action.
#[derive(Debug, Clone)]
pub struct ActionResult {
    pub action_group: String,
    pub target: ActionTarget,
    pub body: String,
    /// `responseState` FAILURE.
    pub failed: bool,
    /// `confirmationState` DENY.
    pub denied: bool,
    pub http_status: Option<u16>,
    /// `agentId`: the collaborator whose action this answers, when not this agent.
    pub agent_id: Option<String>,
}

/// One InvokeAgent / InvokeInlineAgent call.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub target: Target,
    pub session_id: String,
    pub input_text: Option<String>,
    pub enable_trace: bool,
    pub end_session: bool,
    pub stream_final_response: bool,
    pub session_attributes: Option<BTreeMap<String, String>>,
    pub prompt_session_attributes: Option<BTreeMap<String, String>>,
    pub invocation_id: Option<String>,
    pub results: Vec<ActionResult>,
    pub knowledge_base_searches: Vec<KnowledgeBaseSearch>,
    /// SESSION_SUMMARY memory this session reads and is summarized into.
    pub memory_id: Option<String>,
    /// `sessionState.conversationHistory`: replaces the session's history (user or
    /// assistant text, oldest first).
    pub conversation_history: Option<Vec<(bool, String)>>,
    /// `applyGuardrailInterval`: characters of a streamed answer between two checks
    /// of the agent's guardrail (default 50).
    pub guardrail_interval: Option<u32>,
    /// `promptCreationConfigurations`: which earlier turns the model sees.
    pub context: session::ContextShape,
}

/// How an action ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    Lambda,
    ReturnControl,
}

/// One part of a step's trace.
#[derive(Debug, Clone)]
pub enum TracePart {
    ModelInput {
        text: String,
        foundation_model: String,
        params: InferenceParams,
    },
    ModelOutput {
        raw: String,
        usage: TokenUsage,
        start_ms: i64,
        end_ms: i64,
    },
    Rationale(String),
    ActionInvocation {
        input: ActionInput,
        execution: Execution,
    },
    KnowledgeBaseLookup {
        knowledge_base_id: String,
        text: String,
    },
    ActionObservation {
        action_group: String,
        text: String,
    },
    KnowledgeBaseObservation {
        references: Vec<Retrieved>,
    },
    AskUser {
        question: String,
    },
    Finish {
        text: String,
    },
    /// The agent's guardrail intervened on `what` (`input`, `output`, `tool result`).
    Guardrail {
        what: &'static str,
        blocked: bool,
    },
    Failure {
        reason: String,
    },
    /// The supervisor hands work to a collaborator.
    CollaboratorInvocation {
        name: String,
        alias_arn: String,
        input: String,
    },
    CollaboratorObservation {
        name: String,
        alias_arn: String,
        output: String,
    },
    /// A router's classification step (its model call and the choice).
    Routing(Box<TracePart>),
    /// A trace of a collaborator's own turn, shown in the supervisor's stream.
    OfCollaborator {
        name: String,
        /// The supervisor's alias ARN, then the collaborator's.
        caller_chain: Vec<String>,
        agent_id: String,
        alias_id: String,
        version: String,
        trace: Box<Trace>,
    },
}

/// A trace event: the step's trace ID and what happened.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: String,
    pub part: TracePart,
}

/// What an invocation streams.
#[derive(Debug, Clone)]
pub enum AgentEvent {
    Trace(Trace),
    /// Answer text; the attribution of the final chunk.
    Chunk {
        text: String,
        citations: Vec<Citation>,
    },
    /// Actions for the caller to run; ends the stream.
    ReturnControl {
        invocation_id: String,
        inputs: Vec<ActionInput>,
    },
    /// The turn failed; ends the stream.
    Failed(AgentFailure),
}

/// Why a turn failed after its stream started.
#[derive(Debug, Clone)]
pub enum AgentFailure {
    /// `[agents] max_steps` model calls without a final answer.
    StepLimit(String),
    /// A model call failed.
    Model(CoreError),
}

/// A started invocation.
#[derive(Debug)]
pub struct Started {
    pub agent_id: String,
    pub alias_id: String,
    pub version: String,
    pub session_id: String,
    pub events: mpsc::Receiver<AgentEvent>,
}

/// Removes a session from the busy set when the turn ends.
struct BusyGuard {
    service: Arc<AgentService>,
    label: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.service.busy.lock() {
            busy.remove(&self.label);
        }
    }
}

fn uuid_like() -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    let raw = random_id(32, HEX);
    format!(
        "{}-{}-{}-{}-{}",
        &raw[..8],
        &raw[8..12],
        &raw[12..16],
        &raw[16..20],
        &raw[20..]
    )
}

/// A parameter value as the text Bedrock passes.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "string",
    }
}

/// The inputs of an action call from the model's arguments.
fn action_input(action: &ToolAction, arguments: &Value) -> Option<ActionInput> {
    let args = arguments.as_object();
    let get = |name: &str| args.and_then(|a| a.get(name));
    match action {
        ToolAction::Function {
            action_group,
            function,
            ..
        } => Some(ActionInput {
            action_group: action_group.clone(),
            target: ActionTarget::Function(function.name.clone()),
            parameters: function
                .parameters
                .iter()
                .filter_map(|p| {
                    get(&p.name).map(|v| NamedValue {
                        name: p.name.clone(),
                        kind: p.kind.as_str().into(),
                        value: value_text(v),
                    })
                })
                .collect(),
            body: None,
            collaborator: None,
        }),
        ToolAction::Api {
            action_group,
            operation,
            ..
        } => {
            let parameters = operation
                .parameters
                .iter()
                .filter_map(|p| {
                    get(&p.name).map(|v| NamedValue {
                        name: p.name.clone(),
                        kind: p
                            .schema
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or(json_type(v))
                            .to_string(),
                        value: value_text(v),
                    })
                })
                .collect();
            let body = operation.request_body.as_ref().map(|b| {
                let properties = b
                    .schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|props| {
                        props
                            .iter()
                            .filter_map(|(name, schema)| {
                                get(name).map(|v| NamedValue {
                                    name: name.clone(),
                                    kind: schema
                                        .get("type")
                                        .and_then(Value::as_str)
                                        .unwrap_or(json_type(v))
                                        .to_string(),
                                    value: value_text(v),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (b.content_type.clone(), properties)
            });
            Some(ActionInput {
                action_group: action_group.clone(),
                target: ActionTarget::Api {
                    method: operation.method.clone(),
                    path: operation.path.clone(),
                },
                parameters,
                body,
                collaborator: None,
            })
        }
        _ => None,
    }
}

fn named_values_json(values: &[NamedValue]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"name": v.name, "type": v.kind, "value": v.value}))
            .collect(),
    )
}

/// The result text in a Bedrock `responseBody` map (`{"TEXT": {"body": …}}`,
/// `{"application/json": {"body": …}}`).
pub fn response_body_text(body: &Value) -> Option<String> {
    let map = body.as_object()?;
    map.values().find_map(|v| v.get("body").map(value_text))
}

/// What the system prompt says.
fn system_prompt(
    version: &AgentVersion,
    prompt_attributes: &BTreeMap<String, String>,
    memory: &[String],
) -> String {
    super::prompts::orchestration(version, prompt_attributes, memory)
}

/// Sampling settings of the orchestration steps.
fn step_params(version: &AgentVersion) -> InferenceParams {
    super::prompts::params(version, "ORCHESTRATION")
}

/// One invocation's fixed parts, shared by its steps.
struct Turn {
    service: Arc<AgentService>,
    principal: Option<Principal>,
    request_id: String,
    version: AgentVersion,
    alias_id: String,
    key: SessionKey,
    tools: ToolSet,
    enable_trace: bool,
    stream_final: bool,
    /// Characters of a streamed answer between two guardrail checks.
    guardrail_interval: usize,
    searches: Vec<KnowledgeBaseSearch>,
    /// Summaries of the memory's earlier sessions.
    memory: Vec<String>,
    /// Which earlier turns the model calls see.
    context: session::ContextShape,
    events: mpsc::Sender<AgentEvent>,
    /// The caller stopped reading (or went away): events are no longer sent.
    caller_gone: std::sync::atomic::AtomicBool,
    /// The session's claim: released once the session is written, before the turn's
    /// last event goes out, so a caller that has read the whole answer finds the
    /// session written and free (else when the turn ends).
    busy: std::sync::Mutex<Option<BusyGuard>>,
}

/// What one executed action gave.
struct Observation {
    tool_use_id: String,
    content: String,
    traces: Vec<TracePart>,
    references: Vec<Retrieved>,
    session_attributes: Option<BTreeMap<String, String>>,
    prompt_session_attributes: Option<BTreeMap<String, String>>,
    /// A collaborator that returned control: what it waits for and its actions.
    returned: Option<(session::CollaboratorWait, Vec<ActionInput>)>,
}

/// How a collaborator's turn ended.
enum CollaboratorOutcome {
    Answer(String),
    /// The collaborator refused the call before its turn started (for a resume: the
    /// caller's results do not fit what it waits for).
    Refused(CoreError),
    /// It returned control: its invocation and the actions (for the caller).
    Returned {
        agent_id: String,
        invocation_id: String,
        inputs: Vec<ActionInput>,
    },
}

/// What a collaborator's turn is given.
enum CollaboratorInput {
    Text(String),
    /// The caller's results of the collaborator's returned actions.
    Results {
        invocation_id: String,
        results: Vec<ActionResult>,
    },
}

fn string_map(value: Option<&Value>) -> Option<BTreeMap<String, String>> {
    value?
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), value_text(v))).collect())
}

impl AgentService {
    /// InvokeAgent / InvokeInlineAgent: checks the request, then runs the turn in the
    /// background, streaming its events. Errors before the stream starts (unknown
    /// agent or alias, an agent not prepared, results for no waiting action) come
    /// back here.
    pub async fn invoke(
        self: &Arc<Self>,
        principal: Option<Principal>,
        request_id: String,
        request: InvokeRequest,
    ) -> Result<Started, CoreError> {
        if !super::definition::is_session_id(&request.session_id) {
            return Err(CoreError::Validation(format!(
                "sessionId {:?} must match [0-9a-zA-Z._:-]{{2,100}}",
                request.session_id
            )));
        }
        if let Some(text) = &request.input_text {
            let chars = text.chars().count();
            if chars > self.config.max_input_chars {
                return Err(CoreError::Validation(format!(
                    "inputText is {chars} characters; the limit is {}",
                    self.config.max_input_chars
                )));
            }
        }
        let (version, alias_id, agent_id) = match &request.target {
            Target::Stored { agent_id, alias_id } => {
                let alias = self.alias(agent_id, alias_id)?;
                if !alias.accepts_invocations {
                    return Err(CoreError::Validation(format!(
                        "alias {alias_id} does not accept invocations"
                    )));
                }
                let version = self.version(agent_id, &alias.version)?;
                if version.version == DRAFT && version.status != AgentStatus::Prepared {
                    return Err(CoreError::Validation(format!(
                        "agent {agent_id} is {}; call PrepareAgent before invoking {TEST_ALIAS}",
                        version.status
                    )));
                }
                (version, alias_id.clone(), agent_id.clone())
            }
            Target::Inline(version) => {
                let (reasons, _) = self.preparation_problems(version);
                if let Some(reason) = reasons.first() {
                    return Err(CoreError::Validation(reason.clone()));
                }
                (
                    (**version).clone(),
                    TEST_ALIAS.to_string(),
                    INLINE_AGENT.to_string(),
                )
            }
        };
        let tools = ToolSet::of(&version)?;
        if let Some(memory_id) = &request.memory_id {
            super::memory::check_memory_id(memory_id)?;
            if version.settings.memory.is_none() {
                return Err(CoreError::Validation(format!(
                    "memoryId was given, but agent {agent_id} has no memoryConfiguration"
                )));
            }
        }
        let key = SessionKey {
            agent_id: agent_id.clone(),
            alias_id: alias_id.clone(),
            session_id: request.session_id.clone(),
        };
        let label = key.label();
        {
            let mut busy = self
                .busy
                .lock()
                .map_err(|_| CoreError::Internal("the agent session set is poisoned".into()))?;
            if !busy.insert(label.clone()) {
                return Err(CoreError::Conflict(format!(
                    "session {} is answering another request",
                    request.session_id
                )));
            }
        }
        let guard = BusyGuard {
            service: Arc::clone(self),
            label,
        };
        // One SQLite row by its key (WAL: readers do not wait for writers): on this
        // thread, as the other services' small records are.
        let mut session = session::load(self.store.as_ref(), &key)?;
        if let Some((ended, expiry)) = session.expired.take() {
            let service = Arc::clone(self);
            // Metered to the key whose session it was, when that is the caller.
            let owner = principal
                .clone()
                .filter(|p| ended.key_id.as_deref() == Some(p.key_id.as_str()));
            let (principal, key) = (owner, key.clone());
            tokio::spawn(async move { service.summarize(principal, &key, ended, expiry).await });
        }
        let caller = principal.as_ref().map(|p| p.key_id.clone());
        if session.revision.is_some() && session.state.key_id != caller {
            return Err(CoreError::AccessDenied(format!(
                "session {} belongs to another key",
                request.session_id
            )));
        }
        session.state.key_id = caller;
        session.state.version = version.version.clone();
        if let Some(history) = &request.conversation_history {
            self.replace_history(&mut session.state, history)?;
        }
        if request.memory_id.is_some() {
            session.state.memory_id = request.memory_id.clone();
        }
        // On this thread, as the session's own row (see above).
        let memory = match &session.state.memory_id {
            Some(memory_id) => self.recent_summaries(principal.as_ref(), &version, memory_id),
            None => Vec::new(),
        };
        let before = session.state.clone();
        let mut resumes = Vec::new();
        let opening = self
            .open_turn(&mut session, &request, &mut resumes)?
            .map(|text| (text, before));
        if let Some(attributes) = request.session_attributes.clone() {
            session.state.session_attributes = attributes;
        }
        if let Some(attributes) = request.prompt_session_attributes.clone() {
            session.state.prompt_session_attributes = attributes;
        }
        let (events, receiver) = mpsc::channel(64);
        let turn = Turn {
            service: Arc::clone(self),
            principal,
            request_id,
            version: version.clone(),
            alias_id: alias_id.clone(),
            key,
            tools,
            enable_trace: request.enable_trace,
            stream_final: request.stream_final_response,
            guardrail_interval: request.guardrail_interval.unwrap_or(50).max(1) as usize,
            searches: request.knowledge_base_searches.clone(),
            memory,
            context: request.context,
            events,
            caller_gone: std::sync::atomic::AtomicBool::new(false),
            busy: std::sync::Mutex::new(Some(guard)),
        };
        let end_session = request.end_session;
        tokio::spawn(async move {
            turn.run(session, opening, resumes, end_session).await;
        });
        Ok(Started {
            agent_id,
            alias_id,
            version: version.version,
            session_id: request.session_id,
            events: receiver,
        })
    }

    /// Puts the turn's input into the conversation: the caller's results of the
    /// waiting actions, the user's answer to a question, or new input text. Returns
    /// the text the input guardrail checks, if any.
    fn open_turn(
        &self,
        session: &mut LoadedSession,
        request: &InvokeRequest,
        resumes: &mut Vec<(session::CollaboratorWait, Vec<ActionResult>)>,
    ) -> Result<Option<String>, CoreError> {
        let state = &mut session.state;
        match state.pending.take() {
            Some(Pending::ReturnControl {
                invocation_id,
                calls,
                done,
                collaborators,
            }) => {
                if request.invocation_id.as_deref() != Some(invocation_id.as_str()) {
                    return Err(CoreError::Validation(format!(
                        "session {} is waiting for the results of invocation {invocation_id}; sessionState.invocationId must name it",
                        request.session_id
                    )));
                }
                let mut results = request.results.clone();
                // The results for a collaborator's actions go back to it.
                for wait in collaborators {
                    let (theirs, ours): (Vec<ActionResult>, Vec<ActionResult>) = results
                        .into_iter()
                        .partition(|r| r.agent_id.as_deref() == Some(wait.agent_id.as_str()));
                    results = ours;
                    if theirs.is_empty() {
                        return Err(CoreError::Validation(format!(
                            "returnControlInvocationResults has no result for collaborator {} (agentId {})",
                            wait.name, wait.agent_id
                        )));
                    }
                    resumes.push((wait, theirs));
                }
                let mut blocks: Vec<StoredBlock> =
                    done.into_iter().map(StoredBlock::result).collect();
                for call in &calls {
                    let at = results
                        .iter()
                        .position(|r| {
                            r.action_group == call.input.action_group
                                && r.target == call.input.target
                        })
                        .ok_or_else(|| {
                            CoreError::Validation(format!(
                                "returnControlInvocationResults has no result for {} {}",
                                call.input.action_group,
                                target_name(&call.input.target)
                            ))
                        })?;
                    let result = results.remove(at);
                    let (content, is_error) = if result.denied {
                        ("The user denied this action.".to_string(), false)
                    } else if result.failed {
                        (format!("The action failed: {}", result.body), true)
                    } else {
                        (result.body, false)
                    };
                    blocks.push(StoredBlock::ToolResult {
                        tool_use_id: call.tool_use_id.clone(),
                        content: self.cut_observation(content),
                        is_error,
                    });
                }
                if let Some(extra) = results.first() {
                    return Err(CoreError::Validation(format!(
                        "returnControlInvocationResults has a result for {} {}, which invocation {invocation_id} did not ask for",
                        extra.action_group,
                        target_name(&extra.target)
                    )));
                }
                state.messages.push(StoredMessage {
                    assistant: false,
                    blocks,
                });
                Ok(None)
            }
            pending => {
                if request.invocation_id.is_some() || !request.results.is_empty() {
                    state.pending = pending;
                    return Err(CoreError::Validation(format!(
                        "session {} has no action waiting for results (the invocation is unknown or was already answered)",
                        request.session_id
                    )));
                }
                let text = request
                    .input_text
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        CoreError::Validation(
                            "inputText is required unless sessionState returns action results"
                                .into(),
                        )
                    })?
                    .to_string();
                state.turn_input = text.clone();
                match pending {
                    Some(Pending::AskUser { tool_use_id, done }) => {
                        let mut blocks: Vec<StoredBlock> =
                            done.into_iter().map(StoredBlock::result).collect();
                        blocks.push(StoredBlock::ToolResult {
                            tool_use_id,
                            content: text.clone(),
                            is_error: false,
                        });
                        state.messages.push(StoredMessage {
                            assistant: false,
                            blocks,
                        });
                    }
                    _ => state.messages.push(StoredMessage::user_text(&text)),
                }
                Ok(Some(text))
            }
        }
    }

    /// The caller's conversation history in place of the stored one.
    fn replace_history(
        &self,
        state: &mut session::SessionState,
        history: &[(bool, String)],
    ) -> Result<(), CoreError> {
        if state.pending.is_some() {
            return Err(CoreError::Validation(
                "conversationHistory cannot replace the history of a session that waits for action results"
                    .into(),
            ));
        }
        if history.len() > self.config.max_history_messages {
            return Err(CoreError::Validation(format!(
                "conversationHistory holds {} messages; the limit is {} ([agents] max_history_messages)",
                history.len(),
                self.config.max_history_messages
            )));
        }
        let mut expect_assistant = false;
        for (i, (assistant, text)) in history.iter().enumerate() {
            if *assistant != expect_assistant || text.trim().is_empty() {
                return Err(CoreError::Validation(format!(
                    "conversationHistory.messages[{i}]: messages must alternate user, assistant, ... starting with user, each with text"
                )));
            }
            expect_assistant = !expect_assistant;
        }
        if history.last().is_some_and(|(assistant, _)| !assistant) {
            return Err(CoreError::Validation(
                "conversationHistory must end with an assistant message (the new input follows it)"
                    .into(),
            ));
        }
        state.messages = history
            .iter()
            .map(|(assistant, text)| StoredMessage {
                assistant: *assistant,
                blocks: vec![StoredBlock::Text { text: text.clone() }],
            })
            .collect();
        Ok(())
    }

    fn cut_observation(&self, text: String) -> String {
        let max = self.config.max_observation_chars;
        if text.chars().count() <= max {
            text
        } else {
            let cut: String = text.chars().take(max).collect();
            format!("{cut}\n[cut at {max} characters]")
        }
    }
}

fn target_name(target: &ActionTarget) -> String {
    match target {
        ActionTarget::Function(f) => format!("function {f}"),
        ActionTarget::Api { method, path } => format!("{method} {path}"),
    }
}

impl Turn {
    /// Sends an event; a caller that reads nothing for `STALLED_CALLER` is let go
    /// (the turn finishes, so the session stays whole, and its events are dropped).
    async fn send(&self, event: AgentEvent) {
        if self.caller_gone.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if self
            .events
            .send_timeout(event, STALLED_CALLER)
            .await
            .is_err()
        {
            self.caller_gone
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn trace(&self, trace_id: &str, part: TracePart) {
        if self.enable_trace {
            self.send(AgentEvent::Trace(Trace {
                trace_id: trace_id.to_string(),
                part,
            }))
            .await;
        }
    }

    async fn save(&self, session: &LoadedSession, end_session: bool) {
        let store = self.service.store.as_ref();
        let key = &self.key;
        let mut session = session.clone();
        session.state.trim(self.service.config.max_history_messages);
        let ttl = self.version.settings.idle_session_ttl_secs;
        let ended = end_session.then(|| session.state.clone());
        // One SQLite row written on this thread (see `invoke`).
        let outcome = if end_session {
            // A session that was never stored ends too: nothing to delete.
            session::end(store, key).map(|_| true)
        } else {
            session::save(store, key, &session, ttl)
        };
        match outcome {
            Ok(true) => {
                if let Some(state) = ended {
                    // In the background: the caller's stream ends now.
                    let (service, principal, key) = (
                        Arc::clone(&self.service),
                        self.principal.clone(),
                        self.key.clone(),
                    );
                    tokio::spawn(async move {
                        service.summarize(principal, &key, state, now_ms()).await
                    });
                }
            }
            Ok(false) => {
                tracing::warn!(session = %self.key.label(), "an agent session was written by another turn meanwhile; this turn's changes are dropped")
            }
            Err(e) => {
                tracing::error!(session = %self.key.label(), error = %e, "writing an agent session failed")
            }
        }
        if let Ok(mut busy) = self.busy.lock() {
            busy.take();
        }
    }

    /// Checks `text` with the agent's guardrail; the replacement when it is blocked.
    async fn guard(
        &self,
        trace_id: &str,
        source: Source,
        what: &'static str,
        text: &str,
    ) -> Option<Guarded> {
        let guardrail = self.version.settings.guardrail.as_ref()?;
        // A tool result is checked line by line as well as whole: an injection after
        // a benign lead-in scores low when the two are scored as one text.
        let mut segments = vec![Segment::guarded(text)];
        if what == "tool result" {
            segments.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 16 && l.len() < text.trim().len())
                    .take(MAX_GUARDED_LINES)
                    .map(Segment::guarded),
            );
        }
        let outcome = self
            .service
            .guardrails
            .apply_guardrail(&guardrail.identifier, &guardrail.version, source, segments)
            .await;
        match outcome {
            Ok(outcome) if outcome.verdict.blocked => {
                self.trace(
                    trace_id,
                    TracePart::Guardrail {
                        what,
                        blocked: true,
                    },
                )
                .await;
                Some(Guarded::Blocked(outcome.blocked_message))
            }
            Ok(outcome) if outcome.verdict.anonymized => {
                self.trace(
                    trace_id,
                    TracePart::Guardrail {
                        what,
                        blocked: false,
                    },
                )
                .await;
                outcome
                    .verdict
                    .masked
                    .into_iter()
                    .next()
                    .map(Guarded::Masked)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the agent's guardrail could not be applied");
                Some(Guarded::Blocked(format!(
                    "[the guardrail could not check this {what}]"
                )))
            }
        }
    }

    /// Runs the turn. `input` is the new text with the session as it was before it.
    async fn run(
        self,
        mut session: LoadedSession,
        input: Option<(String, session::SessionState)>,
        resumes: Vec<(session::CollaboratorWait, Vec<ActionResult>)>,
        end_session: bool,
    ) {
        let turn_id = uuid_like();
        if !resumes.is_empty()
            && !self
                .resume_collaborators(&turn_id, &mut session, resumes)
                .await
        {
            return;
        }
        if let Some((text, before)) = input {
            match self
                .guard(&format!("{turn_id}-0"), Source::Input, "input", &text)
                .await
            {
                Some(Guarded::Blocked(blocked)) => {
                    // The blocked input never reaches the model or the history.
                    session.state = before;
                    self.save(&session, end_session).await;
                    self.send(AgentEvent::Chunk {
                        text: blocked,
                        citations: Vec::new(),
                    })
                    .await;
                    return;
                }
                // The model and the history see the masked text.
                Some(Guarded::Masked(masked)) => mask_last_input(&mut session.state, masked),
                None => {}
            }
        }
        if self.version.settings.collaboration == super::definition::Collaboration::SupervisorRouter
        {
            let last_text = match session.state.messages.last() {
                Some(m) if !m.assistant => m.blocks.iter().find_map(|b| match b {
                    StoredBlock::Text { text } => Some(text.clone()),
                    _ => None,
                }),
                _ => None,
            };
            if let Some(input) = last_text {
                if let Some(answer) = self.route(&turn_id, &session, &input).await {
                    session.state.messages.push(StoredMessage {
                        assistant: true,
                        blocks: vec![StoredBlock::Text {
                            text: answer.clone(),
                        }],
                    });
                    self.save(&session, end_session).await;
                    self.send(AgentEvent::Chunk {
                        text: answer,
                        citations: Vec::new(),
                    })
                    .await;
                    return;
                }
            }
        }
        let mut references: Vec<Retrieved> = Vec::new();
        let model = self
            .version
            .settings
            .foundation_model
            .clone()
            .unwrap_or_default();
        for step in 0..self.service.config.max_steps {
            let trace_id = format!("{turn_id}-{step}");
            let request = ChatRequest {
                model_id: model.clone(),
                system: vec![system_prompt(
                    &self.version,
                    &session.state.prompt_session_attributes,
                    &self.memory,
                )],
                messages: session.state.context(self.context),
                params: step_params(&self.version),
                tools: (!self.tools.is_empty()).then(|| ToolConfig {
                    tools: self.tools.specs.clone(),
                    choice: ToolChoice::Auto,
                }),
                response_schema: None,
                // The upstream streams only when the answer goes out as generated.
                stream: self.stream_final,
            };
            if self.enable_trace {
                self.trace(
                    &trace_id,
                    TracePart::ModelInput {
                        text: model_input_text(&request),
                        foundation_model: model.clone(),
                        params: request.params.clone(),
                    },
                )
                .await;
            }
            let ctx = self.call_context(&step.to_string());
            let start_ms = now_ms();
            let (text, calls, usage, sent) = match self.generate(ctx, request, &trace_id).await {
                Ok(out) => out,
                Err(e) => {
                    self.trace(
                        &trace_id,
                        TracePart::Failure {
                            reason: e.to_string(),
                        },
                    )
                    .await;
                    self.send(AgentEvent::Failed(AgentFailure::Model(e))).await;
                    return;
                }
            };
            if self.enable_trace {
                self.trace(
                    &trace_id,
                    TracePart::ModelOutput {
                        raw: model_output_text(&text, &calls),
                        usage,
                        start_ms,
                        end_ms: now_ms(),
                    },
                )
                .await;
            }
            if calls.is_empty() {
                let mut answer = text;
                // What is still to send: the unsent rest, or the guardrail's answer
                // (after a streamed prefix that passed it).
                let mut rest = answer[sent..].to_string();
                match self
                    .guard(&trace_id, Source::Output, "answer", &answer)
                    .await
                {
                    Some(Guarded::Blocked(replaced)) => {
                        answer = replaced.clone();
                        rest = replaced;
                    }
                    Some(Guarded::Masked(masked)) => {
                        // What went out already passed: send only what follows it.
                        rest = match masked.strip_prefix(&answer[..sent]) {
                            Some(tail) => tail.to_string(),
                            None => masked.clone(),
                        };
                        answer = masked;
                    }
                    None => {}
                }
                session.state.messages.push(StoredMessage {
                    assistant: true,
                    blocks: vec![StoredBlock::Text {
                        text: answer.clone(),
                    }],
                });
                self.trace(
                    &trace_id,
                    TracePart::Finish {
                        text: answer.clone(),
                    },
                )
                .await;
                let citations = if references.is_empty() {
                    Vec::new()
                } else {
                    cite(&answer, &references)
                };
                // Written first: an answer the caller has read is in the session.
                self.save(&session, end_session).await;
                if !rest.is_empty() || !citations.is_empty() {
                    self.send(AgentEvent::Chunk {
                        text: rest,
                        citations,
                    })
                    .await;
                }
                return;
            }
            if !text.trim().is_empty() {
                self.trace(&trace_id, TracePart::Rationale(text.trim().to_string()))
                    .await;
            }
            let mut blocks = Vec::new();
            if !text.trim().is_empty() {
                blocks.push(StoredBlock::Text { text: text.clone() });
            }
            blocks.extend(calls.iter().map(|c| StoredBlock::ToolUse {
                id: c.id.clone(),
                name: c.name.clone(),
                input: c.input.clone(),
            }));
            session.state.messages.push(StoredMessage {
                assistant: true,
                blocks,
            });
            match self
                .act(&trace_id, &mut session, &calls, &mut references)
                .await
            {
                Some(StepEnd::Waiting(event)) => {
                    // Written first: a caller that answers at once finds it waiting.
                    self.save(&session, false).await;
                    self.send(event).await;
                    return;
                }
                Some(StepEnd::Continue) | None => {}
            }
        }
        let reason = format!(
            "the agent made {} model calls in this turn without a final answer ([agents] max_steps)",
            self.service.config.max_steps
        );
        self.trace(
            &format!("{turn_id}-{}", self.service.config.max_steps),
            TracePart::Failure {
                reason: reason.clone(),
            },
        )
        .await;
        // The conversation must alternate: the turn ends with the agent's word, so the
        // next input of this session follows an assistant message.
        session.state.messages.push(StoredMessage {
            assistant: true,
            blocks: vec![StoredBlock::Text {
                text: "(I stopped here: this turn reached its step limit.)".into(),
            }],
        });
        self.save(&session, end_session).await;
        self.send(AgentEvent::Failed(AgentFailure::StepLimit(reason)))
            .await;
    }

    /// The metering context of one of this turn's model calls (`part` names it).
    fn call_context(&self, part: &str) -> CallContext {
        let mut ctx = CallContext::new(
            self.principal.clone(),
            format!("{}-{part}", self.request_id),
            "InvokeAgent",
        );
        ctx.agent_session = Some(format!("{}/{}", self.key.agent_id, self.key.session_id));
        ctx
    }

    /// One model call: its text, tool calls, usage, and whether the text went out
    /// as it was generated.
    async fn generate(
        &self,
        ctx: CallContext,
        request: ChatRequest,
        trace_id: &str,
    ) -> Result<(String, Vec<ToolCall>, TokenUsage, usize), CoreError> {
        let mut stream = self.service.core.chat_stream(ctx, request).await?;
        let mut text = String::new();
        let mut calls = Vec::new();
        // Bytes of `text` already sent; with a guardrail, text goes out only after
        // the answer so far passed it (every `applyGuardrailInterval` characters).
        let mut sent = 0;
        let mut live = self.stream_final;
        while let Some(delta) = stream.next().await {
            match delta {
                GenerationDelta::Text(t) => {
                    text.push_str(&t);
                    if !live || !calls.is_empty() || text.len() == sent {
                        continue;
                    }
                    if self.version.settings.guardrail.is_some() {
                        if text[sent..].chars().count() < self.guardrail_interval {
                            continue;
                        }
                        if self
                            .guard(trace_id, Source::Output, "answer", &text)
                            .await
                            .is_some()
                        {
                            // The rest goes out as the guardrail's final answer.
                            live = false;
                            continue;
                        }
                    }
                    self.send(AgentEvent::Chunk {
                        text: text[sent..].to_string(),
                        citations: Vec::new(),
                    })
                    .await;
                    sent = text.len();
                }
                GenerationDelta::ToolCall(call) => calls.push(call),
                GenerationDelta::End { usage, .. } => return Ok((text, calls, usage, sent)),
                GenerationDelta::Error(e) => return Err(e),
            }
        }
        Err(CoreError::ModelError(
            "the model's answer ended early".into(),
        ))
    }

    /// Runs a step's actions; `Waiting` when the turn ends waiting for the caller.
    async fn act(
        &self,
        trace_id: &str,
        session: &mut LoadedSession,
        calls: &[ToolCall],
        references: &mut Vec<Retrieved>,
    ) -> Option<StepEnd> {
        let mut returned: Vec<PendingCall> = Vec::new();
        let mut ask: Option<(String, String)> = None;
        let mut immediate: Vec<(String, String)> = Vec::new();
        let mut runs = Vec::new();
        for call in calls {
            match self.tools.action(&call.name) {
                None => immediate.push((
                    call.id.clone(),
                    format!("There is no tool named {}.", call.name),
                )),
                Some(ToolAction::AskUser) => {
                    let question = call
                        .input
                        .get("question")
                        .map(value_text)
                        .unwrap_or_default();
                    if ask.is_some() || question.trim().is_empty() {
                        immediate.push((
                            call.id.clone(),
                            "Ask one question at a time, with a non-empty question.".into(),
                        ));
                    } else {
                        ask = Some((call.id.clone(), question));
                    }
                }
                Some(ToolAction::KnowledgeBase { knowledge_base_id }) => {
                    runs.push(self.search(call, knowledge_base_id.clone()).boxed());
                }
                Some(ToolAction::Collaborator {
                    name,
                    alias_arn,
                    relay_history,
                }) => {
                    let input = call.input.get("input").map(value_text).unwrap_or_default();
                    let input = if *relay_history {
                        with_history(&session.state, &input)
                    } else {
                        input
                    };
                    runs.push(
                        self.delegate(call.id.clone(), name.clone(), alias_arn.clone(), input)
                            .boxed(),
                    );
                }
                Some(action) => {
                    let Some(input) = action_input(action, &call.input) else {
                        continue;
                    };
                    let executor = match action {
                        ToolAction::Function { executor, .. }
                        | ToolAction::Api { executor, .. } => executor.clone(),
                        _ => Executor::None,
                    };
                    match executor {
                        Executor::Lambda(arn) => {
                            self.trace(
                                trace_id,
                                TracePart::ActionInvocation {
                                    input: input.clone(),
                                    execution: Execution::Lambda,
                                },
                            )
                            .await;
                            let event = self.lambda_event(session, &input);
                            runs.push(
                                self.execute(
                                    call.id.clone(),
                                    arn,
                                    input,
                                    event,
                                    call.input.clone(),
                                )
                                .boxed(),
                            );
                        }
                        _ => {
                            self.trace(
                                trace_id,
                                TracePart::ActionInvocation {
                                    input: input.clone(),
                                    execution: Execution::ReturnControl,
                                },
                            )
                            .await;
                            returned.push(PendingCall {
                                tool_use_id: call.id.clone(),
                                input,
                            });
                        }
                    }
                }
            }
        }
        let observations = futures::future::join_all(runs).await;
        let mut done = immediate;
        let mut waits: Vec<session::CollaboratorWait> = Vec::new();
        let mut relayed: Vec<ActionInput> = Vec::new();
        for mut observation in observations {
            for part in observation.traces.drain(..) {
                self.trace(trace_id, part).await;
            }
            if let Some((wait, inputs)) = observation.returned.take() {
                // A collaborator returned control: its actions go to the caller.
                waits.push(wait);
                relayed.extend(inputs);
                continue;
            }
            if let Some(a) = observation.session_attributes.take() {
                session.state.session_attributes = a;
            }
            if let Some(a) = observation.prompt_session_attributes.take() {
                session.state.prompt_session_attributes = a;
            }
            let mut content = self.service.cut_observation(observation.content);
            match self
                .guard(trace_id, Source::Input, "tool result", &content)
                .await
            {
                Some(Guarded::Blocked(message)) => {
                    content = format!(
                        "[This tool result was withheld: the agent's guardrail flagged it. {message}]"
                    );
                }
                Some(Guarded::Masked(masked)) => content = masked,
                None => {}
            }
            references.extend(observation.references);
            done.push((observation.tool_use_id, content));
        }
        if let Some((tool_use_id, question)) = ask.clone().filter(|_| waits.is_empty()) {
            self.trace(
                trace_id,
                TracePart::AskUser {
                    question: question.clone(),
                },
            )
            .await;
            // Actions returned to the caller in the same step are dropped: one
            // question first.
            for call in returned {
                done.push((
                    call.tool_use_id,
                    "Not run: the user was asked a question first.".into(),
                ));
            }
            session.state.pending = Some(Pending::AskUser { tool_use_id, done });
            return Some(StepEnd::Waiting(AgentEvent::Chunk {
                text: question,
                citations: Vec::new(),
            }));
        }
        if let (Some((tool_use_id, _)), false) = (ask, waits.is_empty()) {
            done.push((
                tool_use_id,
                "Not asked: actions were returned to the caller first.".into(),
            ));
        }
        if !returned.is_empty() || !waits.is_empty() {
            let invocation_id = uuid_like();
            let mut inputs: Vec<ActionInput> = returned.iter().map(|c| c.input.clone()).collect();
            inputs.extend(relayed);
            session.state.pending = Some(Pending::ReturnControl {
                invocation_id: invocation_id.clone(),
                calls: returned,
                done,
                collaborators: waits,
            });
            return Some(StepEnd::Waiting(AgentEvent::ReturnControl {
                invocation_id,
                inputs,
            }));
        }
        session.state.messages.push(StoredMessage {
            assistant: false,
            blocks: done.into_iter().map(StoredBlock::result).collect(),
        });
        Some(StepEnd::Continue)
    }

    /// Gives collaborators the caller's results of their returned actions. Their
    /// answers join the step's tool results; true when the turn goes on, false when
    /// one returned control again (the stream has ended with it, the session saved).
    async fn resume_collaborators(
        &self,
        turn_id: &str,
        session: &mut LoadedSession,
        resumes: Vec<(session::CollaboratorWait, Vec<ActionResult>)>,
    ) -> bool {
        let trace_id = format!("{turn_id}-resume");
        let mut answered = Vec::new();
        let mut waits = Vec::new();
        let mut relayed = Vec::new();
        for (wait, results) in resumes {
            let mut traces = Vec::new();
            let outcome = self
                .run_collaborator(
                    &wait.name,
                    &wait.alias_arn,
                    CollaboratorInput::Results {
                        invocation_id: wait.invocation_id.clone(),
                        results,
                    },
                    &mut traces,
                )
                .await;
            for part in traces {
                self.trace(&trace_id, part).await;
            }
            match outcome {
                CollaboratorOutcome::Refused(e) => {
                    // The caller's results do not fit: nothing is saved, so the
                    // supervisor and the collaborator both still wait for them.
                    self.send(AgentEvent::Failed(AgentFailure::Model(e))).await;
                    return false;
                }
                CollaboratorOutcome::Answer(text) => {
                    self.trace(
                        &trace_id,
                        TracePart::CollaboratorObservation {
                            name: wait.name.clone(),
                            alias_arn: wait.alias_arn.clone(),
                            output: text.clone(),
                        },
                    )
                    .await;
                    answered.push((wait.tool_use_id, self.service.cut_observation(text)));
                }
                CollaboratorOutcome::Returned {
                    invocation_id,
                    inputs,
                    ..
                } => {
                    relayed.extend(inputs);
                    waits.push(session::CollaboratorWait {
                        invocation_id,
                        ..wait
                    });
                }
            }
        }
        if waits.is_empty() {
            if let Some(message) = session.state.messages.last_mut() {
                message
                    .blocks
                    .extend(answered.into_iter().map(StoredBlock::result));
            }
            return true;
        }
        // Another return of control: the results so far wait with it.
        let mut done: Vec<(String, String)> = session
            .state
            .messages
            .pop()
            .map(|m| {
                m.blocks
                    .into_iter()
                    .filter_map(|b| match b {
                        StoredBlock::ToolResult {
                            tool_use_id,
                            content,
                            ..
                        } => Some((tool_use_id, content)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        done.extend(answered);
        let invocation_id = uuid_like();
        session.state.pending = Some(Pending::ReturnControl {
            invocation_id: invocation_id.clone(),
            calls: Vec::new(),
            done,
            collaborators: waits,
        });
        self.save(session, false).await;
        self.send(AgentEvent::ReturnControl {
            invocation_id,
            inputs: relayed,
        })
        .await;
        false
    }

    /// Runs a collaborator's turn on the same session ID and gives its answer back
    /// as the observation; its traces go into this stream with the caller chain.
    async fn delegate(
        &self,
        tool_use_id: String,
        name: String,
        alias_arn: String,
        input: String,
    ) -> Observation {
        let mut traces = vec![TracePart::CollaboratorInvocation {
            name: name.clone(),
            alias_arn: alias_arn.clone(),
            input: input.clone(),
        }];
        let outcome = self
            .run_collaborator(
                &name,
                &alias_arn,
                CollaboratorInput::Text(input),
                &mut traces,
            )
            .await;
        self.collaborator_observation(tool_use_id, name, alias_arn, outcome, traces)
    }

    fn collaborator_observation(
        &self,
        tool_use_id: String,
        name: String,
        alias_arn: String,
        outcome: CollaboratorOutcome,
        mut traces: Vec<TracePart>,
    ) -> Observation {
        let (output, returned) = match outcome {
            CollaboratorOutcome::Answer(text) => (text, None),
            CollaboratorOutcome::Refused(e) => (
                format!("The collaborator {name} could not be invoked: {e}"),
                None,
            ),
            CollaboratorOutcome::Returned {
                agent_id,
                invocation_id,
                inputs,
            } => (
                String::new(),
                Some((
                    session::CollaboratorWait {
                        tool_use_id: tool_use_id.clone(),
                        name: name.clone(),
                        alias_arn: alias_arn.clone(),
                        agent_id,
                        invocation_id,
                    },
                    inputs,
                )),
            ),
        };
        if returned.is_none() {
            traces.push(TracePart::CollaboratorObservation {
                name,
                alias_arn,
                output: output.clone(),
            });
        }
        Observation {
            tool_use_id,
            content: output,
            traces,
            references: Vec::new(),
            session_attributes: None,
            prompt_session_attributes: None,
            returned,
        }
    }

    /// The collaborator's answer (or what went wrong), collecting its traces.
    async fn run_collaborator(
        &self,
        name: &str,
        alias_arn: &str,
        input: CollaboratorInput,
        traces: &mut Vec<TracePart>,
    ) -> CollaboratorOutcome {
        let answer = |text: String| CollaboratorOutcome::Answer(text);
        // Checked again at run time: an alias may point at another version by now.
        if let Err(e) = self
            .service
            .collaborator_target(&self.key.agent_id, alias_arn)
        {
            return answer(format!("The collaborator {name} cannot run: {e}"));
        }
        let Some((agent_id, alias_id)) = super::definition::parse_alias_arn(alias_arn) else {
            return answer(format!("The collaborator {name} has no valid alias ARN."));
        };
        let (input_text, invocation_id, results) = match input {
            CollaboratorInput::Text(text) => (Some(text), None, Vec::new()),
            CollaboratorInput::Results {
                invocation_id,
                results,
            } => (None, Some(invocation_id), results),
        };
        let request = InvokeRequest {
            target: Target::Stored {
                agent_id: agent_id.to_string(),
                alias_id: alias_id.to_string(),
            },
            session_id: self.key.session_id.clone(),
            input_text,
            enable_trace: self.enable_trace,
            end_session: false,
            stream_final_response: false,
            session_attributes: None,
            prompt_session_attributes: None,
            invocation_id,
            results,
            knowledge_base_searches: self.searches.clone(),
            memory_id: None,
            conversation_history: None,
            guardrail_interval: None,
            context: self.context,
        };
        let started = invoke_boxed(
            Arc::clone(&self.service),
            self.principal.clone(),
            format!("{}-{name}", self.request_id),
            request,
        )
        .await;
        let mut started = match started {
            Ok(s) => s,
            Err(e) => return CollaboratorOutcome::Refused(e),
        };
        let supervisor_arn = self.service.alias_arn(&self.key.agent_id, &self.alias_id);
        let mut text = String::new();
        while let Some(event) = started.events.recv().await {
            match event {
                AgentEvent::Trace(trace) => traces.push(TracePart::OfCollaborator {
                    name: name.to_string(),
                    caller_chain: vec![supervisor_arn.clone(), alias_arn.to_string()],
                    agent_id: started.agent_id.clone(),
                    alias_id: started.alias_id.clone(),
                    version: started.version.clone(),
                    trace: Box::new(trace),
                }),
                AgentEvent::Chunk { text: part, .. } => text.push_str(&part),
                AgentEvent::ReturnControl {
                    invocation_id,
                    inputs,
                } => {
                    let inputs = inputs
                        .into_iter()
                        .map(|mut i| {
                            i.collaborator = Some((started.agent_id.clone(), name.to_string()));
                            i
                        })
                        .collect();
                    return CollaboratorOutcome::Returned {
                        agent_id: started.agent_id.clone(),
                        invocation_id,
                        inputs,
                    };
                }
                AgentEvent::Failed(AgentFailure::StepLimit(m)) => {
                    return answer(format!("The collaborator {name} failed: {m}"))
                }
                AgentEvent::Failed(AgentFailure::Model(e)) => {
                    return answer(format!("The collaborator {name} failed: {e}"))
                }
            }
        }
        answer(text)
    }

    /// SUPERVISOR_ROUTER: the model picks one collaborator for the input, which
    /// then answers it directly; `None` when it picks none (the supervisor answers).
    async fn route(&self, turn_id: &str, session: &LoadedSession, input: &str) -> Option<String> {
        let trace_id = format!("{turn_id}-routing");
        let collaborators = self.tools.collaborators_only();
        let model = self
            .version
            .settings
            .foundation_model
            .clone()
            .unwrap_or_default();
        let request = ChatRequest {
            model_id: model.clone(),
            system: vec![super::prompts::routing_classifier(&self.version)],
            messages: session
                .state
                .messages
                .iter()
                .map(StoredMessage::to_message)
                .collect(),
            // The ROUTING_CLASSIFIER entry's sampling when it sets one, else the steps'.
            params: if super::prompts::has_inference_configuration(
                &self.version,
                "ROUTING_CLASSIFIER",
            ) {
                super::prompts::params(&self.version, "ROUTING_CLASSIFIER")
            } else {
                step_params(&self.version)
            },
            tools: Some(ToolConfig {
                tools: collaborators,
                choice: ToolChoice::Any,
            }),
            response_schema: None,
            stream: false,
        };
        if self.enable_trace {
            self.trace(
                &trace_id,
                TracePart::Routing(Box::new(TracePart::ModelInput {
                    text: model_input_text(&request),
                    foundation_model: model,
                    params: request.params.clone(),
                })),
            )
            .await;
        }
        let ctx = self.call_context("routing");
        let start_ms = now_ms();
        let (text, calls, usage, _) = self.generate(ctx, request, &trace_id).await.ok()?;
        if self.enable_trace {
            self.trace(
                &trace_id,
                TracePart::Routing(Box::new(TracePart::ModelOutput {
                    raw: model_output_text(&text, &calls),
                    usage,
                    start_ms,
                    end_ms: now_ms(),
                })),
            )
            .await;
        }
        let (name, alias_arn) = calls
            .iter()
            .find_map(|c| match self.tools.action(&c.name) {
                Some(ToolAction::Collaborator {
                    name, alias_arn, ..
                }) => Some((name.clone(), alias_arn.clone())),
                _ => None,
            })?;
        self.trace(
            &trace_id,
            TracePart::Routing(Box::new(TracePart::CollaboratorInvocation {
                name: name.clone(),
                alias_arn: alias_arn.clone(),
                input: input.to_string(),
            })),
        )
        .await;
        let mut traces = Vec::new();
        let answer = match self
            .run_collaborator(&name, &alias_arn, CollaboratorInput::Text(input.to_string()), &mut traces)
            .await
        {
            CollaboratorOutcome::Answer(text) => text,
            CollaboratorOutcome::Refused(e) => {
                format!("The collaborator {name} could not be invoked: {e}")
            }
            CollaboratorOutcome::Returned { .. } => format!(
                "The collaborator {name} asked for actions its caller must run, which a router does not relay; use SUPERVISOR mode for collaborators with RETURN_CONTROL actions."
            ),
        };
        for part in traces {
            self.trace(&trace_id, part).await;
        }
        self.trace(
            &trace_id,
            TracePart::Routing(Box::new(TracePart::CollaboratorObservation {
                name,
                alias_arn,
                output: answer.clone(),
            })),
        )
        .await;
        Some(answer)
    }

    fn lambda_event(&self, session: &LoadedSession, input: &ActionInput) -> Value {
        let mut event = json!({
            "messageVersion": "1.0",
            "agent": {
                "name": self.version.settings.name,
                "id": self.key.agent_id,
                "alias": self.alias_id,
                "version": self.version.version,
            },
            "inputText": session.state.turn_input,
            "sessionId": self.key.session_id,
            "actionGroup": input.action_group,
            "parameters": named_values_json(&input.parameters),
            "sessionAttributes": session.state.session_attributes,
            "promptSessionAttributes": session.state.prompt_session_attributes,
        });
        match &input.target {
            ActionTarget::Function(f) => event["function"] = json!(f),
            ActionTarget::Api { method, path } => {
                event["apiPath"] = json!(path);
                event["httpMethod"] = json!(method);
                if let Some((content_type, properties)) = &input.body {
                    event["requestBody"] = json!({"content": {content_type: {"properties": named_values_json(properties)}}});
                }
            }
        }
        event
    }

    async fn execute(
        &self,
        tool_use_id: String,
        arn: String,
        input: ActionInput,
        event: Value,
        arguments: Value,
    ) -> Observation {
        let name = super::executor::lambda_function_name(&arn)
            .unwrap_or_default()
            .to_string();
        if let (Some(config), ActionTarget::Function(tool)) =
            (self.service.executors.mcp(&name), &input.target)
        {
            let content = match super::mcp::call(config, tool, &arguments).await {
                Ok(text) => text,
                Err(message) => format!("The action failed: {message}"),
            };
            return Observation {
                tool_use_id,
                traces: vec![TracePart::ActionObservation {
                    action_group: input.action_group,
                    text: content.clone(),
                }],
                content,
                references: Vec::new(),
                session_attributes: None,
                prompt_session_attributes: None,
                returned: None,
            };
        }
        let outcome = self.service.executors.call(&name, &event).await;
        let (content, session_attributes, prompt_session_attributes) = match outcome {
            Ok(answer) => {
                let response = answer.get("response");
                let body = response.and_then(|r| {
                    r.get("functionResponse")
                        .and_then(|f| f.get("responseBody"))
                        .or_else(|| r.get("responseBody"))
                });
                let failed = response
                    .and_then(|r| r.get("functionResponse"))
                    .and_then(|f| f.get("responseState"))
                    .and_then(Value::as_str)
                    == Some("FAILURE");
                match body.and_then(response_body_text) {
                    Some(text) if failed => (format!("The action failed: {text}"), None, None),
                    Some(text) => (
                        text,
                        string_map(answer.get("sessionAttributes")),
                        string_map(answer.get("promptSessionAttributes")),
                    ),
                    None => (
                        format!(
                            "The action failed: the executor of {name} answered without response.functionResponse.responseBody or response.responseBody"
                        ),
                        None,
                        None,
                    ),
                }
            }
            Err(message) => (format!("The action failed: {message}"), None, None),
        };
        Observation {
            tool_use_id,
            traces: vec![TracePart::ActionObservation {
                action_group: input.action_group,
                text: content.clone(),
            }],
            content,
            references: Vec::new(),
            session_attributes,
            prompt_session_attributes,
            returned: None,
        }
    }

    async fn search(&self, call: &ToolCall, knowledge_base_id: String) -> Observation {
        let query = call
            .input
            .get("searchQuery")
            .map(value_text)
            .unwrap_or_default();
        let settings = self
            .searches
            .iter()
            .find(|s| s.knowledge_base_id == knowledge_base_id)
            .cloned()
            .unwrap_or_default();
        let mut traces = vec![TracePart::KnowledgeBaseLookup {
            knowledge_base_id: knowledge_base_id.clone(),
            text: query.clone(),
        }];
        let spec = RetrieveSpec {
            knowledge_base_id: knowledge_base_id.clone(),
            text: query.clone(),
            number_of_results: settings.number_of_results,
            search_type: settings.search_type,
            filter: settings.filter,
            implicit_filter: settings.implicit_filter,
            reranking: settings.reranking,
        };
        let outcome = if query.trim().is_empty() {
            Err(CoreError::Validation("searchQuery is empty".into()))
        } else {
            self.service
                .knowledge
                .retrieve(self.principal.as_ref(), &self.request_id, &spec)
                .await
        };
        let (content, references) = match outcome {
            Ok(found) if found.is_empty() => ("No passages matched the search.".to_string(), found),
            Ok(found) => {
                let text = found
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        format!(
                            "<passage id=\"{}\" source=\"{}\">\n{}\n</passage>",
                            i + 1,
                            r.uri,
                            r.text
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                (text, found)
            }
            Err(e) => (format!("The search failed: {e}"), Vec::new()),
        };
        traces.push(TracePart::KnowledgeBaseObservation {
            references: references.clone(),
        });
        Observation {
            tool_use_id: call.id.clone(),
            content,
            traces,
            references,
            session_attributes: None,
            prompt_session_attributes: None,
            returned: None,
        }
    }
}

/// A collaborator's input with the conversation so far (TO_COLLABORATOR).
fn with_history(state: &session::SessionState, input: &str) -> String {
    let history: Vec<String> = state
        .messages
        .iter()
        .flat_map(|m| {
            m.blocks.iter().filter_map(move |b| match b {
                StoredBlock::Text { text } if m.assistant => Some(format!("Assistant: {text}")),
                StoredBlock::Text { text } => Some(format!("User: {text}")),
                _ => None,
            })
        })
        .collect();
    if history.is_empty() {
        input.to_string()
    } else {
        format!(
            "Conversation so far:\n{}\n\nRequest: {input}",
            history.join("\n")
        )
    }
}

/// [`AgentService::invoke`] behind a boxed future: a supervisor's turn invokes its
/// collaborators, so the future types would otherwise contain themselves.
fn invoke_boxed(
    service: Arc<AgentService>,
    principal: Option<Principal>,
    request_id: String,
    request: InvokeRequest,
) -> futures::future::BoxFuture<'static, Result<Started, CoreError>> {
    async move { service.invoke(principal, request_id, request).await }.boxed()
}

/// What the agent's guardrail did to a text.
enum Guarded {
    /// Replaced by the guardrail's blocked message.
    Blocked(String),
    /// The text with its findings masked.
    Masked(String),
}

/// Writes the masked input over the turn's input (new text or the answer to a question).
fn mask_last_input(state: &mut session::SessionState, masked: String) {
    let Some(message) = state.messages.last_mut().filter(|m| !m.assistant) else {
        return;
    };
    match message.blocks.last_mut() {
        Some(StoredBlock::Text { text }) => *text = masked,
        Some(StoredBlock::ToolResult { content, .. }) => *content = masked,
        _ => {}
    }
}

/// How a step ended when the turn goes on or waits.
enum StepEnd {
    Continue,
    Waiting(AgentEvent),
}

/// The model input a trace shows: the system prompt, the messages and the tools.
fn model_input_text(request: &ChatRequest) -> String {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            json!({
                "role": m.role.as_str(),
                "content": m.content.iter().map(|b| match b {
                    crate::types::ContentBlock::Text(t) => json!({"text": t}),
                    crate::types::ContentBlock::ToolUse(c) => json!({"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.input}}),
                    crate::types::ContentBlock::ToolResult { tool_use_id, content, .. } => json!({"toolResult": {"toolUseId": tool_use_id, "content": [{"text": content}]}}),
                    _ => json!({}),
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let tools: Vec<Value> = request
        .tools
        .iter()
        .flat_map(|t| t.tools.iter())
        .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
        .collect();
    json!({"system": request.system.join("\n"), "messages": messages, "tools": tools}).to_string()
}

/// The model output a trace shows.
fn model_output_text(text: &str, calls: &[ToolCall]) -> String {
    let mut content: Vec<Value> = Vec::new();
    if !text.is_empty() {
        content.push(json!({"text": text}));
    }
    content.extend(
        calls
            .iter()
            .map(|c| json!({"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.input}})),
    );
    json!({"content": content}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::definition::{Function, FunctionParameter, ParameterType};

    #[test]
    fn function_arguments_become_bedrocks_named_text_values() {
        let action = ToolAction::Function {
            action_group: "orders".into(),
            executor: Executor::ReturnControl,
            function: Function {
                name: "get_order".into(),
                description: None,
                parameters: vec![
                    FunctionParameter {
                        name: "order_id".into(),
                        kind: ParameterType::String,
                        description: None,
                        required: true,
                    },
                    FunctionParameter {
                        name: "count".into(),
                        kind: ParameterType::Integer,
                        description: None,
                        required: false,
                    },
                ],
                require_confirmation: false,
                input_schema: None,
            },
        };
        let input = action_input(
            &action,
            &json!({"order_id": "A1", "count": 3, "extra": true}),
        )
        .expect("an input");
        assert_eq!(input.target, ActionTarget::Function("get_order".into()));
        assert_eq!(
            input.parameters,
            vec![
                NamedValue {
                    name: "order_id".into(),
                    kind: "string".into(),
                    value: "A1".into()
                },
                NamedValue {
                    name: "count".into(),
                    kind: "integer".into(),
                    value: "3".into()
                },
            ]
        );
    }

    #[test]
    fn response_bodies_are_read_from_any_content_type() {
        assert_eq!(
            response_body_text(&json!({"TEXT": {"body": "shipped"}})).as_deref(),
            Some("shipped")
        );
        assert_eq!(
            response_body_text(&json!({"application/json": {"body": "{\"a\":1}"}})).as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(response_body_text(&json!({"TEXT": {}})), None);
    }
}
