//! Agents on the `bedrock-agent` wire: agents, action groups, knowledge-base links,
//! versions and aliases. Trailing slashes are part of the routes (`PUT /agents/`
//! creates, `GET /agents/{id}/` reads, `POST /agents/{id}/` prepares).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::agents::definition::{
    ActionGroup, ActionSchema, AgentAlias, AgentSettings, AgentVersion, ApiSource, BuiltIn,
    Collaboration, Collaborator, Executor, Function, FunctionParameter, GuardrailRef,
    KnowledgeBaseLink, MemorySettings, ParameterType, DRAFT,
};
use basalt_core::agents::{
    ActionGroupSpec, ActionSchemaSpec, AgentSpec, AliasSpec, CollaboratorSpec,
};
use basalt_core::keys::Principal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::knowledge::{accepted, agent, list_body};
use super::wire::{parse_json, required};
use crate::common::timestamp;
use crate::error::BedrockError;
use crate::AppState;

type Answer = Result<Response, BedrockError>;

/// Bedrock's default idle session TTL.
const DEFAULT_IDLE_TTL_SECS: u32 = 600;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct InUseQuery {
    skip_resource_in_use_check: Option<bool>,
}

// ---- agents ----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct GuardrailBody {
    guardrail_identifier: Option<String>,
    guardrail_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionSummaryBody {
    max_recent_sessions: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemoryBody {
    enabled_memory_types: Option<Vec<String>>,
    storage_days: Option<u32>,
    session_summary_configuration: Option<SessionSummaryBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AgentBody {
    agent_name: Option<String>,
    client_token: Option<String>,
    instruction: Option<String>,
    foundation_model: Option<String>,
    description: Option<String>,
    orchestration_type: Option<String>,
    custom_orchestration: Option<Value>,
    #[serde(rename = "idleSessionTTLInSeconds")]
    idle_session_ttl_in_seconds: Option<u32>,
    agent_resource_role_arn: Option<String>,
    customer_encryption_key_arn: Option<String>,
    #[allow(dead_code)]
    tags: Option<BTreeMap<String, String>>,
    prompt_override_configuration: Option<Value>,
    guardrail_configuration: Option<GuardrailBody>,
    memory_configuration: Option<MemoryBody>,
    agent_collaboration: Option<String>,
}

pub(super) fn guardrail_ref(
    body: Option<GuardrailBody>,
) -> Result<Option<GuardrailRef>, BedrockError> {
    let Some(g) = body else { return Ok(None) };
    match (g.guardrail_identifier, g.guardrail_version) {
        (None, None) => Ok(None),
        (Some(identifier), Some(version)) => Ok(Some(GuardrailRef {
            identifier,
            version,
        })),
        _ => Err(BedrockError::validation(
            "guardrailConfiguration needs guardrailIdentifier and guardrailVersion",
        )),
    }
}

fn memory_settings(body: Option<MemoryBody>) -> Result<Option<MemorySettings>, BedrockError> {
    let Some(m) = body else { return Ok(None) };
    let types = required(
        m.enabled_memory_types,
        "memoryConfiguration.enabledMemoryTypes",
    )?;
    if types != ["SESSION_SUMMARY"] {
        return Err(BedrockError::validation(
            "memoryConfiguration.enabledMemoryTypes must be [\"SESSION_SUMMARY\"]",
        ));
    }
    Ok(Some(MemorySettings {
        storage_days: m.storage_days.unwrap_or(30),
        max_recent_sessions: m
            .session_summary_configuration
            .and_then(|s| s.max_recent_sessions)
            .unwrap_or(20),
    }))
}

fn collaboration(text: Option<String>) -> Result<Collaboration, BedrockError> {
    match text {
        None => Ok(Collaboration::Disabled),
        Some(t) => Collaboration::parse(&t).ok_or_else(|| {
            BedrockError::validation(format!(
                "agentCollaboration {t:?} must be one of {}",
                Collaboration::spellings()
            ))
        }),
    }
}

impl AgentBody {
    /// The settings; `update` requires what UpdateAgent requires.
    pub(super) fn spec(self, update: bool) -> Result<AgentSpec, BedrockError> {
        if self
            .orchestration_type
            .as_deref()
            .is_some_and(|t| t != "DEFAULT")
            || self.custom_orchestration.is_some()
        {
            return Err(BedrockError::validation(
                "custom orchestration is not supported by this server; orchestrationType must be DEFAULT",
            ));
        }
        let collaboration = collaboration(self.agent_collaboration)?;
        if let Some(p) = &self.prompt_override_configuration {
            let configurations = p.get("promptConfigurations");
            if !p.is_object() || configurations.is_some_and(|c| !c.is_array()) {
                return Err(BedrockError::validation(
                    "promptOverrideConfiguration must be an object whose promptConfigurations is a list",
                ));
            }
            if configurations
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|c| !c.is_object()))
            {
                return Err(BedrockError::validation(
                    "promptOverrideConfiguration.promptConfigurations must hold objects",
                ));
            }
        }
        let foundation_model = if update {
            Some(required(self.foundation_model, "foundationModel")?)
        } else {
            self.foundation_model
        };
        let role_arn = if update {
            Some(required(
                self.agent_resource_role_arn,
                "agentResourceRoleArn",
            )?)
        } else {
            self.agent_resource_role_arn
        };
        Ok(AgentSpec {
            settings: AgentSettings {
                name: required(self.agent_name, "agentName")?,
                description: self.description,
                instruction: self.instruction,
                foundation_model,
                role_arn,
                idle_session_ttl_secs: self
                    .idle_session_ttl_in_seconds
                    .unwrap_or(DEFAULT_IDLE_TTL_SECS),
                guardrail: guardrail_ref(self.guardrail_configuration)?,
                memory: memory_settings(self.memory_configuration)?,
                prompt_overrides: self.prompt_override_configuration,
                collaboration,
                customer_encryption_key_arn: self.customer_encryption_key_arn,
            },
            client_token: self.client_token,
        })
    }
}

/// The settings every agent-shaped answer shares (Agent, AgentVersion).
fn settings_json(out: &mut Value, v: &AgentVersion) {
    let s = &v.settings;
    let mut put = |k: &str, value: Value| {
        out[k] = value;
    };
    if let Some(d) = &s.description {
        put("description", json!(d));
    }
    if let Some(i) = &s.instruction {
        put("instruction", json!(i));
    }
    if let Some(m) = &s.foundation_model {
        put("foundationModel", json!(m));
    }
    if let Some(k) = &s.customer_encryption_key_arn {
        put("customerEncryptionKeyArn", json!(k));
    }
    // The agent's entries and the default of every prompt type it leaves alone.
    put(
        "promptOverrideConfiguration",
        basalt_core::agents::prompts::shown(v),
    );
    if let Some(g) = &s.guardrail {
        put(
            "guardrailConfiguration",
            json!({"guardrailIdentifier": g.identifier, "guardrailVersion": g.version}),
        );
    }
    if let Some(m) = &s.memory {
        put(
            "memoryConfiguration",
            json!({"enabledMemoryTypes": ["SESSION_SUMMARY"], "storageDays": m.storage_days,
                   "sessionSummaryConfiguration": {"maxRecentSessions": m.max_recent_sessions}}),
        );
    }
    if !v.failure_reasons.is_empty() {
        put("failureReasons", json!(v.failure_reasons));
    }
    if !v.recommended_actions.is_empty() {
        put("recommendedActions", json!(v.recommended_actions));
    }
}

fn agent_json(state: &AppState, v: &AgentVersion) -> Value {
    let s = &v.settings;
    let mut out = json!({
        "agentId": v.agent_id,
        "agentName": s.name,
        "agentArn": state.agents.agent_arn(&v.agent_id),
        "agentVersion": v.version,
        "agentStatus": v.status.as_str(),
        "idleSessionTTLInSeconds": s.idle_session_ttl_secs,
        "agentResourceRoleArn": s.role_arn.clone().unwrap_or_default(),
        "orchestrationType": "DEFAULT",
        "agentCollaboration": s.collaboration.as_str(),
        "createdAt": timestamp(v.created_ms),
        "updatedAt": timestamp(v.updated_ms),
    });
    if let Some(t) = &v.client_token {
        out["clientToken"] = json!(t);
    }
    if let Some(p) = v.prepared_ms {
        out["preparedAt"] = timestamp(p);
    }
    settings_json(&mut out, v);
    out
}

fn version_json(state: &AppState, v: &AgentVersion) -> Value {
    let s = &v.settings;
    let mut out = json!({
        "agentId": v.agent_id,
        "agentName": s.name,
        "agentArn": state.agents.agent_arn(&v.agent_id),
        "version": v.version,
        "agentStatus": v.status.as_str(),
        "idleSessionTTLInSeconds": s.idle_session_ttl_secs,
        "agentResourceRoleArn": s.role_arn.clone().unwrap_or_default(),
        "agentCollaboration": s.collaboration.as_str(),
        "createdAt": timestamp(v.created_ms),
        "updatedAt": timestamp(v.updated_ms),
    });
    settings_json(&mut out, v);
    out
}

fn guardrail_summary(out: &mut Value, v: &AgentVersion) {
    if let Some(g) = &v.settings.guardrail {
        out["guardrailConfiguration"] =
            json!({"guardrailIdentifier": g.identifier, "guardrailVersion": g.version});
    }
}

pub async fn create_agent(State(state): State<AppState>, body: Bytes) -> Answer {
    let spec = parse_json::<AgentBody>(&body)?.spec(false)?;
    let draft = agent(state.agents.create_agent(spec))?;
    Ok(accepted(json!({ "agent": agent_json(&state, &draft) })))
}

pub async fn list_agents(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.agents.list_agents())?;
    let paging = list.paging("ListAgents", &principal.key_id)?;
    let out = paging.page(all).into_json("agentSummaries", |a| {
        let mut s = json!({
            "agentId": a.draft.agent_id,
            "agentName": a.draft.settings.name,
            "agentStatus": a.draft.status.as_str(),
            "updatedAt": timestamp(a.draft.updated_ms),
        });
        if let Some(d) = &a.draft.settings.description {
            s["description"] = json!(d);
        }
        // Bedrock names DRAFT while the agent has no numbered version.
        s["latestAgentVersion"] = json!(a.latest_version.as_deref().unwrap_or(DRAFT));
        guardrail_summary(&mut s, &a.draft);
        s
    });
    Ok(Json(out).into_response())
}

pub async fn get_agent(State(state): State<AppState>, Path(agent_id): Path<String>) -> Answer {
    let draft = agent(state.agents.agent(&agent_id))?;
    Ok(Json(json!({ "agent": agent_json(&state, &draft) })).into_response())
}

pub async fn update_agent(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<AgentBody>(&body)?.spec(true)?;
    let draft = agent(state.agents.update_agent(&agent_id, spec))?;
    Ok(accepted(json!({ "agent": agent_json(&state, &draft) })))
}

pub async fn delete_agent(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    Query(query): Query<InUseQuery>,
) -> Answer {
    let deleted = agent(
        state
            .agents
            .delete_agent(&agent_id, query.skip_resource_in_use_check.unwrap_or(false)),
    )?;
    Ok(accepted(json!({
        "agentId": deleted.agent_id,
        "agentStatus": deleted.status.as_str(),
    })))
}

pub async fn prepare_agent(State(state): State<AppState>, Path(agent_id): Path<String>) -> Answer {
    let prepared = agent(state.agents.prepare_agent(&agent_id))?;
    Ok(accepted(json!({
        "agentId": prepared.agent_id,
        "agentStatus": prepared.status.as_str(),
        "agentVersion": prepared.version,
        "preparedAt": timestamp(prepared.prepared_ms.unwrap_or(prepared.updated_ms)),
    })))
}

// ---- action groups ---------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ExecutorBody {
    lambda: Option<String>,
    custom_control: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct S3Body {
    s3_bucket_name: Option<String>,
    s3_object_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ApiSchemaBody {
    payload: Option<String>,
    s3: Option<S3Body>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ParameterBody {
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    required: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FunctionBody {
    name: Option<String>,
    description: Option<String>,
    parameters: Option<BTreeMap<String, ParameterBody>>,
    require_confirmation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FunctionSchemaBody {
    functions: Option<Vec<FunctionBody>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ActionGroupBody {
    pub(super) action_group_name: Option<String>,
    #[allow(dead_code)]
    client_token: Option<String>,
    pub(super) description: Option<String>,
    pub(super) parent_action_group_signature: Option<String>,
    pub(super) parent_action_group_signature_params: Option<Value>,
    pub(super) action_group_executor: Option<ExecutorBody>,
    pub(super) api_schema: Option<ApiSchemaBody>,
    pub(super) action_group_state: Option<String>,
    pub(super) function_schema: Option<FunctionSchemaBody>,
}

fn functions(body: FunctionSchemaBody) -> Result<Vec<Function>, BedrockError> {
    let list = required(body.functions, "functionSchema.functions")?;
    list.into_iter()
        .enumerate()
        .map(|(i, f)| {
            let name = required(f.name, &format!("functionSchema.functions[{i}].name"))?;
            let parameters = f
                .parameters
                .unwrap_or_default()
                .into_iter()
                .map(|(p, detail)| {
                    let kind_text = required(
                        detail.kind,
                        &format!("functionSchema.functions[{i}].parameters.{p}.type"),
                    )?;
                    let kind = ParameterType::parse(&kind_text).ok_or_else(|| {
                        BedrockError::validation(format!(
                            "functionSchema.functions[{i}].parameters.{p}.type {kind_text:?} must be one of {}",
                            ParameterType::spellings()
                        ))
                    })?;
                    Ok(FunctionParameter {
                        name: p,
                        kind,
                        description: detail.description,
                        required: detail.required.unwrap_or(false),
                    })
                })
                .collect::<Result<Vec<_>, BedrockError>>()?;
            let require_confirmation = match f.require_confirmation.as_deref() {
                None | Some("DISABLED") => false,
                Some("ENABLED") => true,
                Some(other) => {
                    return Err(BedrockError::validation(format!(
                        "requireConfirmation {other:?} must be ENABLED or DISABLED"
                    )))
                }
            };
            Ok(Function {
                name,
                description: f.description,
                parameters,
                require_confirmation,
                input_schema: None,
            })
        })
        .collect()
}

impl ActionGroupBody {
    pub(super) fn spec(self) -> Result<ActionGroupSpec, BedrockError> {
        let built_in = match self.parent_action_group_signature.as_deref() {
            None => None,
            Some(s) => Some(BuiltIn::parse(s).ok_or_else(|| {
                BedrockError::validation(format!(
                    "parentActionGroupSignature {s:?} is not supported; this server knows {}",
                    BuiltIn::spellings()
                ))
            })?),
        };
        if self.parent_action_group_signature_params.is_some() {
            return Err(BedrockError::validation(
                "parentActionGroupSignatureParams is not supported by this server",
            ));
        }
        let executor = match self.action_group_executor {
            None => Executor::None,
            Some(ExecutorBody {
                lambda: Some(arn),
                custom_control: None,
            }) => Executor::Lambda(arn),
            Some(ExecutorBody {
                lambda: None,
                custom_control: Some(c),
            }) if c == "RETURN_CONTROL" => Executor::ReturnControl,
            Some(_) => return Err(BedrockError::validation(
                "actionGroupExecutor must be exactly one of lambda or customControl RETURN_CONTROL",
            )),
        };
        let schema = match (self.api_schema, self.function_schema) {
            (Some(_), Some(_)) => {
                return Err(BedrockError::validation(
                    "give apiSchema or functionSchema, not both",
                ))
            }
            (Some(api), None) => ActionSchemaSpec::Api(match (api.payload, api.s3) {
                (Some(payload), None) => ApiSource::Payload(payload),
                (None, Some(s3)) => ApiSource::S3 {
                    bucket: required(s3.s3_bucket_name, "apiSchema.s3.s3BucketName")?,
                    key: required(s3.s3_object_key, "apiSchema.s3.s3ObjectKey")?,
                },
                _ => {
                    return Err(BedrockError::validation(
                        "apiSchema must have exactly one of payload or s3",
                    ))
                }
            }),
            (None, Some(f)) => ActionSchemaSpec::Functions(functions(f)?),
            (None, None) => ActionSchemaSpec::None,
        };
        let enabled = match self.action_group_state.as_deref() {
            None | Some("ENABLED") => true,
            Some("DISABLED") => false,
            Some(other) => {
                return Err(BedrockError::validation(format!(
                    "actionGroupState {other:?} must be ENABLED or DISABLED"
                )))
            }
        };
        Ok(ActionGroupSpec {
            name: required(self.action_group_name, "actionGroupName")?,
            description: self.description,
            enabled,
            executor,
            schema,
            built_in,
        })
    }
}

pub(super) fn action_group_json(agent_id: &str, version: &str, g: &ActionGroup) -> Value {
    let mut out = json!({
        "agentId": agent_id,
        "agentVersion": version,
        "actionGroupId": g.id,
        "actionGroupName": g.name,
        "actionGroupState": if g.enabled { "ENABLED" } else { "DISABLED" },
        "createdAt": timestamp(g.created_ms),
        "updatedAt": timestamp(g.updated_ms),
    });
    if let Some(d) = &g.description {
        out["description"] = json!(d);
    }
    match &g.executor {
        Executor::Lambda(arn) => out["actionGroupExecutor"] = json!({ "lambda": arn }),
        Executor::ReturnControl => {
            out["actionGroupExecutor"] = json!({ "customControl": "RETURN_CONTROL" })
        }
        Executor::None => {}
    }
    if let Some(b) = g.built_in {
        out["parentActionSignature"] = json!(b.as_str());
    }
    match &g.schema {
        ActionSchema::Functions(functions) => {
            out["functionSchema"] = json!({
                "functions": functions.iter().map(|f| {
                    let mut fj = json!({
                        "name": f.name,
                        "parameters": f.parameters.iter().map(|p| {
                            let mut pj = json!({"type": p.kind.as_str(), "required": p.required});
                            if let Some(d) = &p.description {
                                pj["description"] = json!(d);
                            }
                            (p.name.clone(), pj)
                        }).collect::<serde_json::Map<_, _>>(),
                    });
                    if let Some(d) = &f.description {
                        fj["description"] = json!(d);
                    }
                    if f.require_confirmation {
                        fj["requireConfirmation"] = json!("ENABLED");
                    }
                    fj
                }).collect::<Vec<_>>()
            });
        }
        ActionSchema::Api { source, .. } => {
            out["apiSchema"] = match source {
                ApiSource::Payload(p) => json!({ "payload": p }),
                ApiSource::S3 { bucket, key } => {
                    json!({ "s3": { "s3BucketName": bucket, "s3ObjectKey": key } })
                }
            };
        }
        ActionSchema::None => {}
    }
    out
}

pub async fn create_action_group(
    State(state): State<AppState>,
    Path((agent_id, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<ActionGroupBody>(&body)?.spec()?;
    let group = agent(
        state
            .agents
            .create_action_group(&agent_id, &version, spec)
            .await,
    )?;
    Ok(
        Json(json!({ "agentActionGroup": action_group_json(&agent_id, &version, &group) }))
            .into_response(),
    )
}

pub async fn list_action_groups(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((agent_id, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.agents.list_action_groups(&agent_id, &version))?;
    let paging = list.paging("ListAgentActionGroups", &principal.key_id)?;
    let out = paging.page(all).into_json("actionGroupSummaries", |g| {
        let mut s = json!({
            "actionGroupId": g.id,
            "actionGroupName": g.name,
            "actionGroupState": if g.enabled { "ENABLED" } else { "DISABLED" },
            "updatedAt": timestamp(g.updated_ms),
        });
        if let Some(d) = &g.description {
            s["description"] = json!(d);
        }
        s
    });
    Ok(Json(out).into_response())
}

pub async fn get_action_group(
    State(state): State<AppState>,
    Path((agent_id, version, group_id)): Path<(String, String, String)>,
) -> Answer {
    let group = agent(state.agents.action_group(&agent_id, &version, &group_id))?;
    Ok(
        Json(json!({ "agentActionGroup": action_group_json(&agent_id, &version, &group) }))
            .into_response(),
    )
}

pub async fn update_action_group(
    State(state): State<AppState>,
    Path((agent_id, version, group_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<ActionGroupBody>(&body)?.spec()?;
    let group = agent(
        state
            .agents
            .update_action_group(&agent_id, &version, &group_id, spec)
            .await,
    )?;
    Ok(
        Json(json!({ "agentActionGroup": action_group_json(&agent_id, &version, &group) }))
            .into_response(),
    )
}

pub async fn delete_action_group(
    State(state): State<AppState>,
    Path((agent_id, version, group_id)): Path<(String, String, String)>,
) -> Answer {
    agent(
        state
            .agents
            .delete_action_group(&agent_id, &version, &group_id),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- knowledge bases -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KnowledgeBaseLinkBody {
    knowledge_base_id: Option<String>,
    description: Option<String>,
    knowledge_base_state: Option<String>,
}

fn kb_state(text: Option<&str>) -> Result<Option<bool>, BedrockError> {
    match text {
        None => Ok(None),
        Some("ENABLED") => Ok(Some(true)),
        Some("DISABLED") => Ok(Some(false)),
        Some(other) => Err(BedrockError::validation(format!(
            "knowledgeBaseState {other:?} must be ENABLED or DISABLED"
        ))),
    }
}

fn kb_link_json(agent_id: &str, version: &str, k: &KnowledgeBaseLink) -> Value {
    json!({
        "agentId": agent_id,
        "agentVersion": version,
        "knowledgeBaseId": k.knowledge_base_id,
        "description": k.description,
        "knowledgeBaseState": if k.enabled { "ENABLED" } else { "DISABLED" },
        "createdAt": timestamp(k.created_ms),
        "updatedAt": timestamp(k.updated_ms),
    })
}

pub async fn associate_knowledge_base(
    State(state): State<AppState>,
    Path((agent_id, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let body: KnowledgeBaseLinkBody = parse_json(&body)?;
    let enabled = kb_state(body.knowledge_base_state.as_deref())?.unwrap_or(true);
    let kb_id = required(body.knowledge_base_id, "knowledgeBaseId")?;
    let description = required(body.description, "description")?;
    let agents = std::sync::Arc::clone(&state.agents);
    let (id, ver) = (agent_id.clone(), version.clone());
    let link = agent(
        on_blocking(move || {
            agents.associate_knowledge_base(&id, &ver, &kb_id, description, enabled)
        })
        .await,
    )?;
    Ok(
        Json(json!({ "agentKnowledgeBase": kb_link_json(&agent_id, &version, &link) }))
            .into_response(),
    )
}

/// Runs a call that may read a knowledge base's record on the blocking pool.
async fn on_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, basalt_core::CoreError> + Send + 'static,
) -> Result<T, basalt_core::CoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| basalt_core::CoreError::Internal(format!("an agent call failed: {e}")))?
}

pub async fn list_knowledge_bases(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((agent_id, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.agents.list_knowledge_base_links(&agent_id, &version))?;
    let paging = list.paging("ListAgentKnowledgeBases", &principal.key_id)?;
    let out = paging
        .page(all)
        .into_json("agentKnowledgeBaseSummaries", |k| {
            json!({
                "knowledgeBaseId": k.knowledge_base_id,
                "description": k.description,
                "knowledgeBaseState": if k.enabled { "ENABLED" } else { "DISABLED" },
                "updatedAt": timestamp(k.updated_ms),
            })
        });
    Ok(Json(out).into_response())
}

pub async fn get_knowledge_base(
    State(state): State<AppState>,
    Path((agent_id, version, kb_id)): Path<(String, String, String)>,
) -> Answer {
    let link = agent(
        state
            .agents
            .knowledge_base_link(&agent_id, &version, &kb_id),
    )?;
    Ok(
        Json(json!({ "agentKnowledgeBase": kb_link_json(&agent_id, &version, &link) }))
            .into_response(),
    )
}

pub async fn update_knowledge_base(
    State(state): State<AppState>,
    Path((agent_id, version, kb_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Answer {
    let body: KnowledgeBaseLinkBody = parse_json(&body)?;
    let enabled = kb_state(body.knowledge_base_state.as_deref())?;
    let link = agent(state.agents.update_knowledge_base_link(
        &agent_id,
        &version,
        &kb_id,
        body.description,
        enabled,
    ))?;
    Ok(
        Json(json!({ "agentKnowledgeBase": kb_link_json(&agent_id, &version, &link) }))
            .into_response(),
    )
}

pub async fn disassociate_knowledge_base(
    State(state): State<AppState>,
    Path((agent_id, version, kb_id)): Path<(String, String, String)>,
) -> Answer {
    agent(
        state
            .agents
            .disassociate_knowledge_base(&agent_id, &version, &kb_id),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- versions --------------------------------------------------------------------

pub async fn list_versions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(agent_id): Path<String>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.agents.list_versions(&agent_id))?;
    let paging = list.paging("ListAgentVersions", &principal.key_id)?;
    let out = paging.page(all).into_json("agentVersionSummaries", |v| {
        let mut s = json!({
            "agentName": v.settings.name,
            "agentStatus": v.status.as_str(),
            "agentVersion": v.version,
            "createdAt": timestamp(v.created_ms),
            "updatedAt": timestamp(v.updated_ms),
        });
        if let Some(d) = &v.settings.description {
            s["description"] = json!(d);
        }
        guardrail_summary(&mut s, v);
        s
    });
    Ok(Json(out).into_response())
}

pub async fn get_version(
    State(state): State<AppState>,
    Path((agent_id, version)): Path<(String, String)>,
) -> Answer {
    let v = agent(state.agents.version(&agent_id, &version))?;
    Ok(Json(json!({ "agentVersion": version_json(&state, &v) })).into_response())
}

pub async fn delete_version(
    State(state): State<AppState>,
    Path((agent_id, version)): Path<(String, String)>,
    Query(query): Query<InUseQuery>,
) -> Answer {
    agent(state.agents.delete_version(
        &agent_id,
        &version,
        query.skip_resource_in_use_check.unwrap_or(false),
    ))?;
    Ok(accepted(json!({
        "agentId": agent_id,
        "agentVersion": version,
        "agentStatus": "DELETING",
    })))
}

// ---- aliases ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoutingBody {
    agent_version: Option<String>,
    provisioned_throughput: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AliasBody {
    agent_alias_name: Option<String>,
    client_token: Option<String>,
    description: Option<String>,
    routing_configuration: Option<Vec<RoutingBody>>,
    #[allow(dead_code)]
    tags: Option<BTreeMap<String, String>>,
    alias_invocation_state: Option<String>,
}

impl AliasBody {
    fn spec(self) -> Result<(AliasSpec, Option<bool>), BedrockError> {
        let version = match self.routing_configuration {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(mut list) if list.len() == 1 => {
                let item = list.remove(0);
                if item.provisioned_throughput.is_some() {
                    return Err(BedrockError::validation(
                        "routingConfiguration.provisionedThroughput is not supported for agents by this server",
                    ));
                }
                item.agent_version
            }
            Some(_) => {
                return Err(BedrockError::validation(
                    "routingConfiguration holds at most one item",
                ))
            }
        };
        let accepts = match self.alias_invocation_state.as_deref() {
            None => None,
            Some("ACCEPT_INVOCATIONS") => Some(true),
            Some("REJECT_INVOCATIONS") => Some(false),
            Some(other) => {
                return Err(BedrockError::validation(format!(
                "aliasInvocationState {other:?} must be ACCEPT_INVOCATIONS or REJECT_INVOCATIONS"
            )))
            }
        };
        Ok((
            AliasSpec {
                name: required(self.agent_alias_name, "agentAliasName")?,
                description: self.description,
                version,
                client_token: self.client_token,
            },
            accepts,
        ))
    }
}

fn alias_json(state: &AppState, a: &AgentAlias, summary: bool) -> Value {
    let mut out = json!({
        "agentAliasId": a.alias_id,
        "agentAliasName": a.name,
        "routingConfiguration": [{ "agentVersion": a.version }],
        "agentAliasStatus": a.status.as_str(),
        "aliasInvocationState": if a.accepts_invocations { "ACCEPT_INVOCATIONS" } else { "REJECT_INVOCATIONS" },
        "createdAt": timestamp(a.created_ms),
        "updatedAt": timestamp(a.updated_ms),
    });
    if let Some(d) = &a.description {
        out["description"] = json!(d);
    }
    if !summary {
        out["agentId"] = json!(a.agent_id);
        out["agentAliasArn"] = json!(state.agents.alias_arn(&a.agent_id, &a.alias_id));
        if let Some(t) = &a.client_token {
            out["clientToken"] = json!(t);
        }
        out["agentAliasHistoryEvents"] = Value::Array(
            a.history
                .iter()
                .map(|h| {
                    let mut e = json!({
                        "routingConfiguration": [{ "agentVersion": h.version }],
                        "startDate": timestamp(h.start_ms),
                    });
                    if let Some(end) = h.end_ms {
                        e["endDate"] = timestamp(end);
                    }
                    e
                })
                .collect(),
        );
    }
    out
}

pub async fn create_alias(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    body: Bytes,
) -> Answer {
    let (spec, accepts) = parse_json::<AliasBody>(&body)?.spec()?;
    if accepts.is_some() {
        return Err(BedrockError::validation(
            "aliasInvocationState is set with UpdateAgentAlias",
        ));
    }
    let alias = agent(state.agents.create_alias(&agent_id, spec))?;
    Ok(accepted(
        json!({ "agentAlias": alias_json(&state, &alias, false) }),
    ))
}

pub async fn list_aliases(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(agent_id): Path<String>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.agents.list_aliases(&agent_id))?;
    let paging = list.paging("ListAgentAliases", &principal.key_id)?;
    let out = paging
        .page(all)
        .into_json("agentAliasSummaries", |a| alias_json(&state, a, true));
    Ok(Json(out).into_response())
}

pub async fn get_alias(
    State(state): State<AppState>,
    Path((agent_id, alias_id)): Path<(String, String)>,
) -> Answer {
    let alias = agent(state.agents.alias(&agent_id, &alias_id))?;
    Ok(Json(json!({ "agentAlias": alias_json(&state, &alias, false) })).into_response())
}

pub async fn update_alias(
    State(state): State<AppState>,
    Path((agent_id, alias_id)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let (spec, accepts) = parse_json::<AliasBody>(&body)?.spec()?;
    let alias = agent(
        state
            .agents
            .update_alias(&agent_id, &alias_id, spec, accepts),
    )?;
    Ok(accepted(
        json!({ "agentAlias": alias_json(&state, &alias, false) }),
    ))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Path((agent_id, alias_id)): Path<(String, String)>,
) -> Answer {
    let alias = agent(state.agents.delete_alias(&agent_id, &alias_id))?;
    Ok(accepted(json!({
        "agentId": alias.agent_id,
        "agentAliasId": alias.alias_id,
        "agentAliasStatus": alias.status.as_str(),
    })))
}

// ---- collaborators ---------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescriptorBody {
    alias_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CollaboratorBody {
    agent_descriptor: Option<DescriptorBody>,
    collaborator_name: Option<String>,
    collaboration_instruction: Option<String>,
    relay_conversation_history: Option<String>,
    client_token: Option<String>,
}

impl CollaboratorBody {
    fn spec(self) -> Result<CollaboratorSpec, BedrockError> {
        let relay_history = match self.relay_conversation_history.as_deref() {
            None | Some("DISABLED") => false,
            Some("TO_COLLABORATOR") => true,
            Some(other) => {
                return Err(BedrockError::validation(format!(
                    "relayConversationHistory {other:?} must be TO_COLLABORATOR or DISABLED"
                )))
            }
        };
        Ok(CollaboratorSpec {
            name: required(self.collaborator_name, "collaboratorName")?,
            instruction: required(self.collaboration_instruction, "collaborationInstruction")?,
            alias_arn: required(
                self.agent_descriptor.and_then(|d| d.alias_arn),
                "agentDescriptor.aliasArn",
            )?,
            relay_history,
            client_token: self.client_token,
        })
    }
}

fn collaborator_json(agent_id: &str, version: &str, c: &Collaborator, summary: bool) -> Value {
    let mut out = json!({
        "agentId": agent_id,
        "agentVersion": version,
        "collaboratorId": c.id,
        "collaboratorName": c.name,
        "collaborationInstruction": c.instruction,
        "agentDescriptor": {"aliasArn": c.alias_arn},
        "relayConversationHistory": if c.relay_history { "TO_COLLABORATOR" } else { "DISABLED" },
        "createdAt": timestamp(c.created_ms),
        "lastUpdatedAt": timestamp(c.updated_ms),
    });
    if let (false, Some(t)) = (summary, &c.client_token) {
        out["clientToken"] = json!(t);
    }
    out
}

pub async fn associate_collaborator(
    State(state): State<AppState>,
    Path((agent_id, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<CollaboratorBody>(&body)?.spec()?;
    let c = agent(
        state
            .agents
            .associate_collaborator(&agent_id, &version, spec),
    )?;
    Ok(
        Json(json!({ "agentCollaborator": collaborator_json(&agent_id, &version, &c, false) }))
            .into_response(),
    )
}

pub async fn list_collaborators(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((agent_id, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.agents.list_collaborators(&agent_id, &version))?;
    let paging = list.paging("ListAgentCollaborators", &principal.key_id)?;
    let out = paging
        .page(all)
        .into_json("agentCollaboratorSummaries", |c| {
            collaborator_json(&agent_id, &version, c, true)
        });
    Ok(Json(out).into_response())
}

pub async fn get_collaborator(
    State(state): State<AppState>,
    Path((agent_id, version, collaborator_id)): Path<(String, String, String)>,
) -> Answer {
    let c = agent(
        state
            .agents
            .collaborator(&agent_id, &version, &collaborator_id),
    )?;
    Ok(
        Json(json!({ "agentCollaborator": collaborator_json(&agent_id, &version, &c, false) }))
            .into_response(),
    )
}

pub async fn update_collaborator(
    State(state): State<AppState>,
    Path((agent_id, version, collaborator_id)): Path<(String, String, String)>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<CollaboratorBody>(&body)?.spec()?;
    let c = agent(
        state
            .agents
            .update_collaborator(&agent_id, &version, &collaborator_id, spec),
    )?;
    Ok(
        Json(json!({ "agentCollaborator": collaborator_json(&agent_id, &version, &c, false) }))
            .into_response(),
    )
}

pub async fn disassociate_collaborator(
    State(state): State<AppState>,
    Path((agent_id, version, collaborator_id)): Path<(String, String, String)>,
) -> Answer {
    agent(
        state
            .agents
            .disassociate_collaborator(&agent_id, &version, &collaborator_id),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
