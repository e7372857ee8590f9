//! Agents (Bedrock Agents): the control plane (agents, action groups, knowledge-base
//! links, versions, aliases; [`AgentService`]) and the runtime ([`run`]): the loop
//! that calls the agent's model through the calling path, runs the actions it asks
//! for (by the caller, an HTTP executor or a knowledge-base search) and streams
//! [`run::AgentEvent`]s back. Sessions live in the store ([`session`]), so a restart
//! between two calls of a session loses nothing.
//!
//! Each version of an agent is one record holding its whole definition
//! ([`definition::AgentVersion`]); an edit of DRAFT is a compare-and-swap on it, and
//! an alias created without a routing snapshots DRAFT into the next numbered version.

pub mod definition;
pub mod executor;
pub mod mcp;
pub mod memory;
pub mod openapi;
pub mod prompts;
pub mod run;
pub mod session;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use basalt_store::{AgentKind, AgentRecord, AgentStore};
use serde::Deserialize;

use crate::common::{now_ms, random_id, store_error, UPPER_ALNUM};
use crate::guardrails::GuardrailService;
use crate::knowledge::KnowledgeService;
use crate::{Basalt, CoreError};
use definition::{
    ActionGroup, ActionSchema, AgentAlias, AgentSettings, AgentStatus, AgentVersion,
    AliasHistoryEvent, ApiSource, BuiltIn, Collaboration, Collaborator, Executor,
    KnowledgeBaseLink, DRAFT, TEST_ALIAS,
};

/// `[agents]`: the loop's limits and the HTTP executors of Lambda action groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Model calls in one InvokeAgent turn before the turn fails.
    pub max_steps: u32,
    /// Most messages kept in a session's history (older turns are dropped whole).
    pub max_history_messages: usize,
    /// Largest `inputText`, in characters.
    pub max_input_chars: usize,
    /// Largest action result given to the model, in characters (longer is cut).
    pub max_observation_chars: usize,
    /// `[agents.executors.<Lambda function name>]`: where a Lambda ARN's actions run.
    pub executors: BTreeMap<String, executor::ExecutorConfig>,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            max_steps: 10,
            max_history_messages: 200,
            max_input_chars: 25_000_000,
            max_observation_chars: 20_000,
            executors: BTreeMap::new(),
        }
    }
}

/// What CreateAgent and UpdateAgent give.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub settings: AgentSettings,
    pub client_token: Option<String>,
}

/// What CreateAgentActionGroup and UpdateAgentActionGroup give.
#[derive(Debug, Clone)]
pub struct ActionGroupSpec {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub executor: Executor,
    /// Functions, an inline API payload or an S3 object (parsed here), or none.
    pub schema: ActionSchemaSpec,
    pub built_in: Option<BuiltIn>,
}

/// An action group's schema as given.
#[derive(Debug, Clone)]
pub enum ActionSchemaSpec {
    Functions(Vec<definition::Function>),
    Api(ApiSource),
    None,
}

/// What CreateAgentAlias and UpdateAgentAlias give.
#[derive(Debug, Clone)]
pub struct AliasSpec {
    pub name: String,
    pub description: Option<String>,
    /// The version to route to; `None` snapshots DRAFT into a new version.
    pub version: Option<String>,
    pub client_token: Option<String>,
}

/// What AssociateAgentCollaborator and UpdateAgentCollaborator give.
#[derive(Debug, Clone)]
pub struct CollaboratorSpec {
    pub name: String,
    pub instruction: String,
    pub alias_arn: String,
    pub relay_history: bool,
    pub client_token: Option<String>,
}

/// Most collaborators of one supervisor.
const MAX_COLLABORATORS: usize = 10;

/// An agent as ListAgents shows it.
#[derive(Debug, Clone)]
pub struct AgentSummary {
    pub draft: AgentVersion,
    /// The highest numbered version, if any.
    pub latest_version: Option<String>,
}

/// Largest API schema payload.
const MAX_API_SCHEMA_BYTES: u64 = 1024 * 1024;
/// Most action groups and knowledge bases per agent, functions per group.
const MAX_ACTION_GROUPS: usize = 20;
const MAX_KNOWLEDGE_BASES: usize = 10;
const MAX_FUNCTIONS: usize = 50;
/// Attempts of a read-modify-write of one record before giving up.
const EDIT_ATTEMPTS: usize = 16;

/// Agents: their records (an [`AgentStore`]) and their invocations.
pub struct AgentService {
    core: Arc<Basalt>,
    knowledge: Arc<KnowledgeService>,
    guardrails: Arc<GuardrailService>,
    store: Arc<dyn AgentStore>,
    config: AgentsConfig,
    executors: executor::Executors,
    /// Sessions with a turn running now (`<agent>/<alias>/<session>`).
    busy: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("config", &self.config)
            .finish()
    }
}

fn parse_version(record: &AgentRecord) -> Result<AgentVersion, CoreError> {
    serde_json::from_str(&record.body).map_err(|e| {
        CoreError::Internal(format!(
            "stored agent {} version {} does not parse: {e}",
            record.agent_id, record.key
        ))
    })
}

fn parse_alias(record: &AgentRecord) -> Result<AgentAlias, CoreError> {
    serde_json::from_str(&record.body).map_err(|e| {
        CoreError::Internal(format!(
            "stored alias {} of agent {} does not parse: {e}",
            record.key, record.agent_id
        ))
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CoreError> {
    serde_json::to_string(value)
        .map_err(|e| CoreError::Internal(format!("an agent record does not serialize: {e}")))
}

fn not_found(what: &str) -> CoreError {
    CoreError::NotFound(what.to_string())
}

fn check_draft(version: &str) -> Result<(), CoreError> {
    if version == DRAFT {
        Ok(())
    } else {
        Err(CoreError::Validation(format!(
            "agentVersion must be DRAFT here, got {version}: only the working draft can be edited"
        )))
    }
}

fn version_record(version: &AgentVersion, revision: i64) -> Result<AgentRecord, CoreError> {
    Ok(AgentRecord {
        kind: AgentKind::Version,
        agent_id: version.agent_id.clone(),
        key: version.version.clone(),
        name: (version.version == DRAFT)
            .then(|| ("agents".to_string(), version.settings.name.clone())),
        body: to_json(version)?,
        revision,
        created_ms: version.created_ms,
        updated_ms: version.updated_ms,
        expires_ms: None,
    })
}

fn alias_record(alias: &AgentAlias, revision: i64) -> Result<AgentRecord, CoreError> {
    Ok(AgentRecord {
        kind: AgentKind::Alias,
        agent_id: alias.agent_id.clone(),
        key: alias.alias_id.clone(),
        name: Some((alias.agent_id.clone(), alias.name.clone())),
        body: to_json(alias)?,
        revision,
        created_ms: alias.created_ms,
        updated_ms: alias.updated_ms,
        expires_ms: None,
    })
}

impl AgentService {
    pub fn new(
        core: Arc<Basalt>,
        knowledge: Arc<KnowledgeService>,
        guardrails: Arc<GuardrailService>,
        store: Arc<dyn AgentStore>,
        config: AgentsConfig,
    ) -> Result<Self, CoreError> {
        let executors = executor::Executors::new(&config.executors)?;
        Ok(Self {
            core,
            knowledge,
            guardrails,
            store,
            config,
            executors,
            busy: Mutex::new(Default::default()),
        })
    }

    pub fn config(&self) -> &AgentsConfig {
        &self.config
    }

    pub fn agent_arn(&self, agent_id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:agent/{agent_id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    pub fn alias_arn(&self, agent_id: &str, alias_id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:agent-alias/{agent_id}/{alias_id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    fn check_settings(&self, settings: &AgentSettings) -> Result<(), CoreError> {
        if !definition::is_resource_name(&settings.name) {
            return Err(CoreError::Validation(format!(
                "agentName {:?} must match ([0-9a-zA-Z][_-]?){{1,100}}",
                settings.name
            )));
        }
        if let Some(instruction) = &settings.instruction {
            let chars = instruction.chars().count();
            if !(40..=20_000).contains(&chars) {
                return Err(CoreError::Validation(format!(
                    "instruction must be 40 to 20000 characters, got {chars}"
                )));
            }
        }
        if !(60..=5400).contains(&settings.idle_session_ttl_secs) {
            return Err(CoreError::Validation(format!(
                "idleSessionTTLInSeconds must be 60..5400, got {}",
                settings.idle_session_ttl_secs
            )));
        }
        if let Some(model) = &settings.foundation_model {
            self.core.resolve(model).map_err(|e| match e {
                CoreError::NotFound(m) => CoreError::Validation(format!("foundationModel: {m}")),
                other => other,
            })?;
        }
        if let Some(memory) = &settings.memory {
            if memory.storage_days > 365 || memory.max_recent_sessions == 0 {
                return Err(CoreError::Validation(
                    "memoryConfiguration: storageDays must be 0..365 and maxRecentSessions at least 1"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    // ---- agents ------------------------------------------------------------------

    pub fn create_agent(&self, spec: AgentSpec) -> Result<AgentVersion, CoreError> {
        self.check_settings(&spec.settings)?;
        if let Some(token) = &spec.client_token {
            if let Some(existing) = self
                .drafts()?
                .into_iter()
                .find(|d| d.client_token.as_deref() == Some(token))
            {
                return if existing.settings == spec.settings {
                    Ok(existing)
                } else {
                    Err(CoreError::Conflict(
                        "clientToken was used for another agent".into(),
                    ))
                };
            }
        }
        let now = now_ms();
        let draft = AgentVersion {
            agent_id: random_id(10, UPPER_ALNUM),
            version: DRAFT.into(),
            settings: spec.settings,
            status: AgentStatus::NotPrepared,
            failure_reasons: Vec::new(),
            recommended_actions: Vec::new(),
            action_groups: Vec::new(),
            knowledge_bases: Vec::new(),
            collaborators: Vec::new(),
            client_token: spec.client_token,
            created_ms: now,
            updated_ms: now,
            prepared_ms: None,
        };
        self.store
            .insert_agent_record(&version_record(&draft, 1)?)
            .map_err(|e| match e {
                basalt_store::StoreError::Duplicate("name") => CoreError::Conflict(format!(
                    "an agent named {} already exists",
                    draft.settings.name
                )),
                other => store_error("agent")(other),
            })?;
        Ok(draft)
    }

    fn drafts(&self) -> Result<Vec<AgentVersion>, CoreError> {
        self.store
            .list_agent_records(AgentKind::Version, None)
            .map_err(store_error("agent"))?
            .iter()
            .filter(|r| r.key == DRAFT)
            .map(parse_version)
            .collect()
    }

    fn version_with_revision(
        &self,
        agent_id: &str,
        version: &str,
    ) -> Result<(AgentVersion, i64), CoreError> {
        let record = self
            .store
            .agent_record(AgentKind::Version, agent_id, version)
            .map_err(store_error("agent"))?
            .ok_or_else(|| {
                if version == DRAFT {
                    not_found(&format!("agent {agent_id} does not exist"))
                } else {
                    not_found(&format!("agent {agent_id} has no version {version}"))
                }
            })?;
        Ok((parse_version(&record)?, record.revision))
    }

    /// The agent's DRAFT.
    pub fn agent(&self, agent_id: &str) -> Result<AgentVersion, CoreError> {
        Ok(self.version_with_revision(agent_id, DRAFT)?.0)
    }

    pub fn list_agents(&self) -> Result<Vec<AgentSummary>, CoreError> {
        let records = self
            .store
            .list_agent_records(AgentKind::Version, None)
            .map_err(store_error("agent"))?;
        let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &records {
            if let Ok(n) = r.key.parse::<u64>() {
                let slot = latest.entry(r.agent_id.as_str()).or_default();
                *slot = (*slot).max(n);
            }
        }
        records
            .iter()
            .filter(|r| r.key == DRAFT)
            .map(|r| {
                Ok(AgentSummary {
                    draft: parse_version(r)?,
                    latest_version: latest.get(r.agent_id.as_str()).map(u64::to_string),
                })
            })
            .collect()
    }

    /// Applies `edit` to the DRAFT (retried when another writer got there first);
    /// the agent is NOT_PREPARED afterwards.
    fn edit_draft<T>(
        &self,
        agent_id: &str,
        mut edit: impl FnMut(&mut AgentVersion) -> Result<T, CoreError>,
    ) -> Result<(AgentVersion, T), CoreError> {
        for _ in 0..EDIT_ATTEMPTS {
            let (mut draft, revision) = self.version_with_revision(agent_id, DRAFT)?;
            let out = edit(&mut draft)?;
            draft.status = AgentStatus::NotPrepared;
            draft.updated_ms = now_ms().max(draft.updated_ms);
            let written =
                self.store
                    .update_agent_record(&version_record(&draft, revision)?)
                    .map_err(|e| match e {
                        basalt_store::StoreError::Duplicate("name") => CoreError::Conflict(
                            format!("an agent named {} already exists", draft.settings.name),
                        ),
                        other => store_error("agent")(other),
                    })?;
            if written {
                return Ok((draft, out));
            }
        }
        Err(CoreError::Conflict(format!(
            "agent {agent_id} is being changed by other requests; try again"
        )))
    }

    /// UpdateAgent: a full replace of the settings.
    pub fn update_agent(&self, agent_id: &str, spec: AgentSpec) -> Result<AgentVersion, CoreError> {
        self.check_settings(&spec.settings)?;
        Ok(self
            .edit_draft(agent_id, |draft| {
                draft.settings = spec.settings.clone();
                Ok(())
            })?
            .0)
    }

    /// DeleteAgent; refused while the agent has aliases unless `skip_in_use_check`.
    pub fn delete_agent(
        &self,
        agent_id: &str,
        skip_in_use_check: bool,
    ) -> Result<AgentVersion, CoreError> {
        let mut draft = self.agent(agent_id)?;
        if !skip_in_use_check && !self.aliases(agent_id)?.is_empty() {
            return Err(CoreError::Conflict(format!(
                "agent {agent_id} has aliases; delete them first or set skipResourceInUseCheck"
            )));
        }
        self.store
            .delete_agent(agent_id)
            .map_err(store_error("agent"))?;
        draft.status = AgentStatus::Deleting;
        Ok(draft)
    }

    /// PrepareAgent: checks everything an invocation will need, then PREPARED, or
    /// FAILED with the reasons.
    pub fn prepare_agent(&self, agent_id: &str) -> Result<AgentVersion, CoreError> {
        for _ in 0..EDIT_ATTEMPTS {
            let (mut draft, revision) = self.version_with_revision(agent_id, DRAFT)?;
            let (reasons, actions) = self.preparation_problems(&draft);
            if reasons.is_empty() {
                draft.status = AgentStatus::Prepared;
                draft.failure_reasons.clear();
                draft.recommended_actions.clear();
                draft.prepared_ms = Some(now_ms());
            } else {
                draft.status = AgentStatus::Failed;
                draft.failure_reasons = reasons;
                draft.recommended_actions = actions;
            }
            if self
                .store
                .update_agent_record(&version_record(&draft, revision)?)
                .map_err(store_error("agent"))?
            {
                return Ok(draft);
            }
        }
        Err(CoreError::Conflict(format!(
            "agent {agent_id} is being changed by other requests; try again"
        )))
    }

    /// Why a version could not run, and what to do about it.
    fn preparation_problems(&self, version: &AgentVersion) -> (Vec<String>, Vec<String>) {
        let mut reasons = Vec::new();
        let mut actions = Vec::new();
        let settings = &version.settings;
        if settings.instruction.is_none() {
            reasons.push("the agent has no instruction".to_string());
            actions.push("set instruction (40 characters or more) with UpdateAgent".to_string());
        }
        match settings
            .foundation_model
            .as_deref()
            .map(|m| (m, self.core.resolve(m)))
        {
            None => {
                reasons.push("the agent has no foundationModel".to_string());
                actions.push("set foundationModel with UpdateAgent".to_string());
            }
            Some((model, Ok(entry))) if !entry.tools => {
                reasons.push(format!(
                    "foundation model {model} does not support tool use, which an agent needs"
                ));
                actions.push("choose a model whose catalog entry has tools = true".into());
            }
            Some((_, Ok(_))) => {}
            Some((model, Err(e))) => reasons.push(format!("foundation model {model}: {e}")),
        }
        for group in version.action_groups.iter().filter(|g| g.enabled) {
            if let Executor::Lambda(arn) = &group.executor {
                match executor::lambda_function_name(arn) {
                    Some(name) if self.config.executors.contains_key(name) => {}
                    Some(name) => {
                        reasons.push(format!(
                            "action group {}: no executor is configured for Lambda function {name} ([agents.executors.{name}] in the server config)",
                            group.name
                        ));
                        actions.push(format!(
                            "set url in [agents.executors.{name}] of the server config"
                        ));
                    }
                    None => reasons.push(format!(
                        "action group {}: {arn} is not a Lambda function ARN",
                        group.name
                    )),
                }
            }
        }
        for link in version.knowledge_bases.iter().filter(|k| k.enabled) {
            if let Err(e) = self.knowledge.knowledge_base(&link.knowledge_base_id) {
                reasons.push(format!("knowledge base {}: {e}", link.knowledge_base_id));
            }
        }
        if let Some(g) = &settings.guardrail {
            if let Err(e) = self
                .guardrails
                .get_guardrail(&g.identifier, Some(&g.version))
            {
                reasons.push(format!(
                    "guardrail {} version {}: {e}",
                    g.identifier, g.version
                ));
            }
        }
        match (settings.collaboration, version.collaborators.is_empty()) {
            (Collaboration::Disabled, false) => reasons
                .push("the agent has collaborators but agentCollaboration is DISABLED".to_string()),
            (Collaboration::Supervisor | Collaboration::SupervisorRouter, true) => {
                reasons.push(format!(
                    "agentCollaboration is {} but the agent has no collaborators",
                    settings.collaboration
                ));
                actions.push("associate collaborators with AssociateAgentCollaborator".into());
            }
            _ => {}
        }
        for c in &version.collaborators {
            if let Err(e) = self.collaborator_target(&version.agent_id, &c.alias_arn) {
                reasons.push(format!("collaborator {}: {e}", c.name));
            }
        }
        if let Err(e) = tools::ToolSet::of(version) {
            reasons.push(e.to_string());
        }
        (reasons, actions)
    }

    // ---- action groups -----------------------------------------------------------

    async fn action_schema(&self, spec: &ActionSchemaSpec) -> Result<ActionSchema, CoreError> {
        Ok(match spec {
            ActionSchemaSpec::None => ActionSchema::None,
            ActionSchemaSpec::Functions(functions) => {
                if functions.is_empty() || functions.len() > MAX_FUNCTIONS {
                    return Err(CoreError::Validation(format!(
                        "functionSchema.functions must hold 1..{MAX_FUNCTIONS} functions"
                    )));
                }
                for f in functions {
                    if !tools::is_tool_part(&f.name) {
                        return Err(CoreError::Validation(format!(
                            "function name {:?} must match ^[a-zA-Z0-9_-]{{1,64}}$",
                            f.name
                        )));
                    }
                    for p in &f.parameters {
                        if !tools::is_tool_part(&p.name) {
                            return Err(CoreError::Validation(format!(
                                "function {}: parameter name {:?} must match ^[a-zA-Z0-9_-]{{1,64}}$",
                                f.name, p.name
                            )));
                        }
                    }
                }
                let mut names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
                names.sort_unstable();
                if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                    return Err(CoreError::Validation(format!(
                        "functionSchema names function {} twice",
                        w[0]
                    )));
                }
                ActionSchema::Functions(functions.clone())
            }
            ActionSchemaSpec::Api(source) => {
                let payload = match source {
                    ApiSource::Payload(p) => p.clone(),
                    ApiSource::S3 { bucket, key } => self.read_s3_schema(bucket, key).await?,
                };
                let operations = openapi::parse_api_schema(&payload)
                    .map_err(|e| CoreError::Validation(e.to_string()))?;
                ActionSchema::Api {
                    source: source.clone(),
                    operations,
                }
            }
        })
    }

    async fn read_s3_schema(&self, bucket: &str, key: &str) -> Result<String, CoreError> {
        let uri = format!("s3://{bucket}/{key}");
        let location = self.core.s3().check(&uri)?;
        // The object itself (a HEAD), not a listing under it as a folder.
        let objects = self.core.s3().objects(&location, "").await?;
        let object = objects
            .iter()
            .find(|o| o.key == key)
            .ok_or_else(|| CoreError::Validation(format!("apiSchema: {uri} does not exist")))?;
        let bytes = self
            .core
            .s3()
            .read(bucket, object, MAX_API_SCHEMA_BYTES)
            .await?;
        String::from_utf8(bytes)
            .map_err(|_| CoreError::Validation(format!("apiSchema: {uri} is not UTF-8 text")))
    }

    async fn action_group_of(
        &self,
        spec: &ActionGroupSpec,
        id: String,
        created_ms: i64,
    ) -> Result<ActionGroup, CoreError> {
        if !definition::is_resource_name(&spec.name) {
            return Err(CoreError::Validation(format!(
                "actionGroupName {:?} must match ([0-9a-zA-Z][_-]?){{1,100}}",
                spec.name
            )));
        }
        match spec.built_in {
            Some(BuiltIn::CodeInterpreter) => return Err(CoreError::Validation(
                "parentActionGroupSignature AMAZON.CodeInterpreter is not supported by this server"
                    .into(),
            )),
            Some(BuiltIn::UserInput) => {
                if spec.description.is_some()
                    || spec.executor != Executor::None
                    || !matches!(spec.schema, ActionSchemaSpec::None)
                {
                    return Err(CoreError::Validation(
                        "an AMAZON.UserInput action group takes no description, actionGroupExecutor, apiSchema or functionSchema"
                            .into(),
                    ));
                }
            }
            None => {
                if spec.executor == Executor::None {
                    return Err(CoreError::Validation(
                        "actionGroupExecutor is required (lambda or customControl RETURN_CONTROL)"
                            .into(),
                    ));
                }
                let mcp = match &spec.executor {
                    Executor::Lambda(arn) => executor::lambda_function_name(arn)
                        .and_then(|name| self.executors.mcp(name)),
                    _ => None,
                };
                if matches!(spec.schema, ActionSchemaSpec::Api(_)) && mcp.is_some() {
                    return Err(CoreError::Validation(
                        "an MCP executor runs functions: give functionSchema, or no schema to take the server's tools/list"
                            .into(),
                    ));
                }
                if matches!(spec.schema, ActionSchemaSpec::None) {
                    let Some(config) = mcp else {
                        return Err(CoreError::Validation(
                            "an action group needs apiSchema or functionSchema (or an MCP executor, whose tools/list is its functions)"
                                .into(),
                        ));
                    };
                    let functions = mcp::list_functions(config)
                        .await
                        .map_err(CoreError::Validation)?;
                    if functions.is_empty() {
                        return Err(CoreError::Validation(format!(
                            "the MCP server at {} lists no tools",
                            config.url
                        )));
                    }
                    return self.finish_action_group(
                        spec,
                        id,
                        created_ms,
                        ActionSchema::Functions(functions),
                    );
                }
            }
        }
        if let Executor::Lambda(arn) = &spec.executor {
            if executor::lambda_function_name(arn).is_none() {
                return Err(CoreError::Validation(format!(
                    "actionGroupExecutor.lambda {arn:?} is not a Lambda function ARN"
                )));
            }
        }
        let schema = self.action_schema(&spec.schema).await?;
        self.finish_action_group(spec, id, created_ms, schema)
    }

    fn finish_action_group(
        &self,
        spec: &ActionGroupSpec,
        id: String,
        created_ms: i64,
        schema: ActionSchema,
    ) -> Result<ActionGroup, CoreError> {
        Ok(ActionGroup {
            id,
            name: spec.name.clone(),
            description: spec.description.clone(),
            enabled: spec.enabled,
            executor: spec.executor.clone(),
            schema,
            built_in: spec.built_in,
            created_ms,
            updated_ms: now_ms(),
        })
    }

    /// An action group of an inline agent (InvokeInlineAgent), checked as a stored one.
    pub async fn inline_action_group(
        &self,
        spec: ActionGroupSpec,
    ) -> Result<ActionGroup, CoreError> {
        self.action_group_of(&spec, random_id(10, UPPER_ALNUM), now_ms())
            .await
    }

    pub async fn create_action_group(
        &self,
        agent_id: &str,
        version: &str,
        spec: ActionGroupSpec,
    ) -> Result<ActionGroup, CoreError> {
        check_draft(version)?;
        self.agent(agent_id)?;
        let group = self
            .action_group_of(&spec, random_id(10, UPPER_ALNUM), now_ms())
            .await?;
        self.edit_draft(agent_id, |draft| {
            if draft.action_groups.iter().any(|g| g.name == group.name) {
                return Err(CoreError::Conflict(format!(
                    "agent {agent_id} already has an action group named {}",
                    group.name
                )));
            }
            if group.built_in.is_some()
                && draft
                    .action_groups
                    .iter()
                    .any(|g| g.built_in == group.built_in)
            {
                return Err(CoreError::Conflict(
                    "the agent already has an action group with this parentActionGroupSignature"
                        .into(),
                ));
            }
            if draft.action_groups.len() >= MAX_ACTION_GROUPS {
                return Err(CoreError::QuotaExceeded(format!(
                    "an agent has at most {MAX_ACTION_GROUPS} action groups"
                )));
            }
            draft.action_groups.push(group.clone());
            Ok(())
        })?;
        Ok(group)
    }

    pub fn action_group(
        &self,
        agent_id: &str,
        version: &str,
        group_id: &str,
    ) -> Result<ActionGroup, CoreError> {
        self.version(agent_id, version)?
            .action_groups
            .into_iter()
            .find(|g| g.id == group_id)
            .ok_or_else(|| not_found(&format!("action group {group_id} does not exist")))
    }

    pub fn list_action_groups(
        &self,
        agent_id: &str,
        version: &str,
    ) -> Result<Vec<ActionGroup>, CoreError> {
        Ok(self.version(agent_id, version)?.action_groups)
    }

    pub async fn update_action_group(
        &self,
        agent_id: &str,
        version: &str,
        group_id: &str,
        spec: ActionGroupSpec,
    ) -> Result<ActionGroup, CoreError> {
        check_draft(version)?;
        let existing = self.action_group(agent_id, version, group_id)?;
        let group = self
            .action_group_of(&spec, existing.id.clone(), existing.created_ms)
            .await?;
        self.edit_draft(agent_id, |draft| {
            if draft
                .action_groups
                .iter()
                .any(|g| g.name == group.name && g.id != group.id)
            {
                return Err(CoreError::Conflict(format!(
                    "agent {agent_id} already has an action group named {}",
                    group.name
                )));
            }
            let slot = draft
                .action_groups
                .iter_mut()
                .find(|g| g.id == group.id)
                .ok_or_else(|| not_found(&format!("action group {group_id} does not exist")))?;
            *slot = group.clone();
            Ok(())
        })?;
        Ok(group)
    }

    pub fn delete_action_group(
        &self,
        agent_id: &str,
        version: &str,
        group_id: &str,
    ) -> Result<(), CoreError> {
        check_draft(version)?;
        self.edit_draft(agent_id, |draft| {
            let before = draft.action_groups.len();
            draft.action_groups.retain(|g| g.id != group_id);
            if draft.action_groups.len() == before {
                return Err(not_found(&format!(
                    "action group {group_id} does not exist"
                )));
            }
            Ok(())
        })?;
        Ok(())
    }

    // ---- knowledge bases ---------------------------------------------------------

    pub fn associate_knowledge_base(
        &self,
        agent_id: &str,
        version: &str,
        knowledge_base_id: &str,
        description: String,
        enabled: bool,
    ) -> Result<KnowledgeBaseLink, CoreError> {
        check_draft(version)?;
        self.knowledge.knowledge_base(knowledge_base_id)?;
        check_description(&description)?;
        let now = now_ms();
        let link = KnowledgeBaseLink {
            knowledge_base_id: knowledge_base_id.to_string(),
            description,
            enabled,
            created_ms: now,
            updated_ms: now,
        };
        self.edit_draft(agent_id, |draft| {
            if draft
                .knowledge_bases
                .iter()
                .any(|k| k.knowledge_base_id == link.knowledge_base_id)
            {
                return Err(CoreError::Conflict(format!(
                    "knowledge base {knowledge_base_id} is already associated with agent {agent_id}"
                )));
            }
            if draft.knowledge_bases.len() >= MAX_KNOWLEDGE_BASES {
                return Err(CoreError::QuotaExceeded(format!(
                    "an agent has at most {MAX_KNOWLEDGE_BASES} knowledge bases"
                )));
            }
            draft.knowledge_bases.push(link.clone());
            Ok(())
        })?;
        Ok(link)
    }

    pub fn knowledge_base_link(
        &self,
        agent_id: &str,
        version: &str,
        knowledge_base_id: &str,
    ) -> Result<KnowledgeBaseLink, CoreError> {
        self.version(agent_id, version)?
            .knowledge_bases
            .into_iter()
            .find(|k| k.knowledge_base_id == knowledge_base_id)
            .ok_or_else(|| {
                not_found(&format!(
                    "knowledge base {knowledge_base_id} is not associated with agent {agent_id}"
                ))
            })
    }

    pub fn update_knowledge_base_link(
        &self,
        agent_id: &str,
        version: &str,
        knowledge_base_id: &str,
        description: Option<String>,
        enabled: Option<bool>,
    ) -> Result<KnowledgeBaseLink, CoreError> {
        check_draft(version)?;
        if let Some(d) = &description {
            check_description(d)?;
        }
        let (_, link) = self.edit_draft(agent_id, |draft| {
            let link = draft
                .knowledge_bases
                .iter_mut()
                .find(|k| k.knowledge_base_id == knowledge_base_id)
                .ok_or_else(|| {
                    not_found(&format!(
                        "knowledge base {knowledge_base_id} is not associated with agent {agent_id}"
                    ))
                })?;
            if let Some(d) = &description {
                link.description = d.clone();
            }
            if let Some(e) = enabled {
                link.enabled = e;
            }
            link.updated_ms = now_ms();
            Ok(link.clone())
        })?;
        Ok(link)
    }

    pub fn disassociate_knowledge_base(
        &self,
        agent_id: &str,
        version: &str,
        knowledge_base_id: &str,
    ) -> Result<(), CoreError> {
        check_draft(version)?;
        self.edit_draft(agent_id, |draft| {
            let before = draft.knowledge_bases.len();
            draft
                .knowledge_bases
                .retain(|k| k.knowledge_base_id != knowledge_base_id);
            if draft.knowledge_bases.len() == before {
                return Err(not_found(&format!(
                    "knowledge base {knowledge_base_id} is not associated with agent {agent_id}"
                )));
            }
            Ok(())
        })?;
        Ok(())
    }

    pub fn list_knowledge_base_links(
        &self,
        agent_id: &str,
        version: &str,
    ) -> Result<Vec<KnowledgeBaseLink>, CoreError> {
        Ok(self.version(agent_id, version)?.knowledge_bases)
    }

    // ---- versions ----------------------------------------------------------------

    pub fn version(&self, agent_id: &str, version: &str) -> Result<AgentVersion, CoreError> {
        if !definition::is_version(version) {
            return Err(CoreError::Validation(format!(
                "agentVersion {version:?} must be DRAFT or a version number"
            )));
        }
        Ok(self.version_with_revision(agent_id, version)?.0)
    }

    pub fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentVersion>, CoreError> {
        self.agent(agent_id)?;
        let mut versions: Vec<AgentVersion> = self
            .store
            .list_agent_records(AgentKind::Version, Some(agent_id))
            .map_err(store_error("agent"))?
            .iter()
            .map(parse_version)
            .collect::<Result<_, _>>()?;
        versions.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(0));
        Ok(versions)
    }

    pub fn delete_version(
        &self,
        agent_id: &str,
        version: &str,
        skip_in_use_check: bool,
    ) -> Result<(), CoreError> {
        if version == DRAFT {
            return Err(CoreError::Validation(
                "the DRAFT version cannot be deleted; delete the agent".into(),
            ));
        }
        self.version(agent_id, version)?;
        if !skip_in_use_check {
            if let Some(alias) = self
                .aliases(agent_id)?
                .iter()
                .find(|a| a.version == version)
            {
                return Err(CoreError::Conflict(format!(
                    "version {version} is used by alias {}",
                    alias.alias_id
                )));
            }
        }
        self.store
            .delete_agent_record(AgentKind::Version, agent_id, version)
            .map_err(store_error("agent"))?;
        Ok(())
    }

    /// Snapshots the prepared DRAFT into the next numbered version.
    fn snapshot(&self, agent_id: &str) -> Result<String, CoreError> {
        let draft = self.agent(agent_id)?;
        if draft.status != AgentStatus::Prepared {
            return Err(CoreError::Validation(format!(
                "agent {agent_id} is {}; prepare it before creating a version",
                draft.status
            )));
        }
        for _ in 0..EDIT_ATTEMPTS {
            let next = self
                .store
                .list_agent_records(AgentKind::Version, Some(agent_id))
                .map_err(store_error("agent"))?
                .iter()
                .filter_map(|r| r.key.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
                + 1;
            let now = now_ms();
            let snapshot = AgentVersion {
                version: next.to_string(),
                client_token: None,
                created_ms: now,
                updated_ms: now,
                ..draft.clone()
            };
            match self
                .store
                .insert_agent_record(&version_record(&snapshot, 1)?)
            {
                Ok(()) => return Ok(snapshot.version),
                Err(basalt_store::StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(store_error("agent")(e)),
            }
        }
        Err(CoreError::Conflict(format!(
            "agent {agent_id} is being versioned by other requests; try again"
        )))
    }

    // ---- aliases -----------------------------------------------------------------

    fn routed_version(&self, agent_id: &str, version: Option<&str>) -> Result<String, CoreError> {
        match version {
            None => self.snapshot(agent_id),
            Some(v) => {
                self.version(agent_id, v)?;
                Ok(v.to_string())
            }
        }
    }

    pub fn create_alias(&self, agent_id: &str, spec: AliasSpec) -> Result<AgentAlias, CoreError> {
        check_alias_name(&spec.name)?;
        self.agent(agent_id)?;
        if let Some(token) = &spec.client_token {
            if let Some(existing) = self
                .aliases(agent_id)?
                .into_iter()
                .find(|a| a.client_token.as_deref() == Some(token))
            {
                return Ok(existing);
            }
        }
        if self.aliases(agent_id)?.iter().any(|a| a.name == spec.name) {
            return Err(CoreError::Conflict(format!(
                "agent {agent_id} already has an alias named {}",
                spec.name
            )));
        }
        let version = self.routed_version(agent_id, spec.version.as_deref())?;
        let now = now_ms();
        let alias = AgentAlias {
            agent_id: agent_id.to_string(),
            alias_id: random_id(10, UPPER_ALNUM),
            name: spec.name,
            description: spec.description,
            version: version.clone(),
            status: AgentStatus::Prepared,
            accepts_invocations: true,
            history: vec![AliasHistoryEvent {
                version,
                start_ms: now,
                end_ms: None,
            }],
            client_token: spec.client_token,
            created_ms: now,
            updated_ms: now,
        };
        self.store
            .insert_agent_record(&alias_record(&alias, 1)?)
            .map_err(store_error("agent alias"))?;
        Ok(alias)
    }

    fn alias_with_revision(
        &self,
        agent_id: &str,
        alias_id: &str,
    ) -> Result<(AgentAlias, i64), CoreError> {
        let record = self
            .store
            .agent_record(AgentKind::Alias, agent_id, alias_id)
            .map_err(store_error("agent alias"))?
            .ok_or_else(|| not_found(&format!("agent {agent_id} has no alias {alias_id}")))?;
        Ok((parse_alias(&record)?, record.revision))
    }

    /// An alias; `TSTALIASID` is the DRAFT's test alias.
    pub fn alias(&self, agent_id: &str, alias_id: &str) -> Result<AgentAlias, CoreError> {
        if alias_id == TEST_ALIAS {
            let draft = self.agent(agent_id)?;
            return Ok(AgentAlias {
                agent_id: agent_id.to_string(),
                alias_id: TEST_ALIAS.into(),
                name: "AgentTestAlias".into(),
                description: Some("Test Alias for Agent".into()),
                version: DRAFT.into(),
                status: AgentStatus::Prepared,
                accepts_invocations: true,
                history: Vec::new(),
                client_token: None,
                created_ms: draft.created_ms,
                updated_ms: draft.updated_ms,
            });
        }
        self.agent(agent_id)?;
        Ok(self.alias_with_revision(agent_id, alias_id)?.0)
    }

    /// The agent's aliases (without the test alias).
    pub fn aliases(&self, agent_id: &str) -> Result<Vec<AgentAlias>, CoreError> {
        self.store
            .list_agent_records(AgentKind::Alias, Some(agent_id))
            .map_err(store_error("agent alias"))?
            .iter()
            .map(parse_alias)
            .collect()
    }

    /// The agent's aliases for ListAgentAliases: the test alias first.
    pub fn list_aliases(&self, agent_id: &str) -> Result<Vec<AgentAlias>, CoreError> {
        let mut all = vec![self.alias(agent_id, TEST_ALIAS)?];
        all.extend(self.aliases(agent_id)?);
        Ok(all)
    }

    pub fn update_alias(
        &self,
        agent_id: &str,
        alias_id: &str,
        spec: AliasSpec,
        accepts_invocations: Option<bool>,
    ) -> Result<AgentAlias, CoreError> {
        if alias_id == TEST_ALIAS {
            return Err(CoreError::Validation(
                "the test alias TSTALIASID cannot be changed".into(),
            ));
        }
        check_alias_name(&spec.name)?;
        let (current, _) = self.alias_with_revision(agent_id, alias_id)?;
        if current.name != spec.name && self.aliases(agent_id)?.iter().any(|a| a.name == spec.name)
        {
            return Err(CoreError::Conflict(format!(
                "agent {agent_id} already has an alias named {}",
                spec.name
            )));
        }
        let version = self.routed_version(agent_id, spec.version.as_deref())?;
        for _ in 0..EDIT_ATTEMPTS {
            let (mut alias, revision) = self.alias_with_revision(agent_id, alias_id)?;
            let now = now_ms();
            if alias.version != version {
                if let Some(last) = alias.history.last_mut() {
                    last.end_ms.get_or_insert(now);
                }
                alias.history.push(AliasHistoryEvent {
                    version: version.clone(),
                    start_ms: now,
                    end_ms: None,
                });
                let excess = alias.history.len().saturating_sub(10);
                alias.history.drain(..excess);
            }
            alias.name = spec.name.clone();
            alias.description = spec.description.clone();
            alias.version = version.clone();
            if let Some(accepts) = accepts_invocations {
                alias.accepts_invocations = accepts;
            }
            alias.updated_ms = now;
            if self
                .store
                .update_agent_record(&alias_record(&alias, revision)?)
                .map_err(store_error("agent alias"))?
            {
                return Ok(alias);
            }
        }
        Err(CoreError::Conflict(format!(
            "alias {alias_id} is being changed by other requests; try again"
        )))
    }

    pub fn delete_alias(&self, agent_id: &str, alias_id: &str) -> Result<AgentAlias, CoreError> {
        if alias_id == TEST_ALIAS {
            return Err(CoreError::Validation(
                "the test alias TSTALIASID cannot be deleted".into(),
            ));
        }
        let (mut alias, _) = self.alias_with_revision(agent_id, alias_id)?;
        self.store
            .delete_agent_record(AgentKind::Alias, agent_id, alias_id)
            .map_err(store_error("agent alias"))?;
        alias.status = AgentStatus::Deleting;
        Ok(alias)
    }
}

impl AgentService {
    /// The agent version a collaborator's alias runs, checked: it exists, is not
    /// the supervisor itself, runs prepared, and has no collaborators of its own.
    pub(crate) fn collaborator_target(
        &self,
        supervisor_id: &str,
        alias_arn: &str,
    ) -> Result<AgentVersion, CoreError> {
        let (agent_id, alias_id) = definition::parse_alias_arn(alias_arn).ok_or_else(|| {
            CoreError::Validation(format!(
                "agentDescriptor.aliasArn {alias_arn:?} is not an agent alias ARN"
            ))
        })?;
        if agent_id == supervisor_id {
            return Err(CoreError::Validation(
                "an agent cannot be its own collaborator".into(),
            ));
        }
        let alias = self.alias(agent_id, alias_id)?;
        let version = self.version(agent_id, &alias.version)?;
        if version.status != AgentStatus::Prepared {
            return Err(CoreError::Validation(format!(
                "collaborator agent {agent_id} is {}; prepare it first",
                version.status
            )));
        }
        if version.settings.collaboration != Collaboration::Disabled {
            return Err(CoreError::Validation(format!(
                "agent {agent_id} is a supervisor itself; collaborators cannot have collaborators"
            )));
        }
        Ok(version)
    }

    fn check_collaborator(
        &self,
        agent_id: &str,
        version: &str,
        spec: &CollaboratorSpec,
    ) -> Result<(), CoreError> {
        check_draft(version)?;
        if !definition::is_resource_name(&spec.name) {
            return Err(CoreError::Validation(format!(
                "collaboratorName {:?} must match ([0-9a-zA-Z][_-]?){{1,100}}",
                spec.name
            )));
        }
        let chars = spec.instruction.chars().count();
        if !(1..=4000).contains(&chars) {
            return Err(CoreError::Validation(format!(
                "collaborationInstruction must be 1 to 4000 characters, got {chars}"
            )));
        }
        let draft = self.agent(agent_id)?;
        if draft.settings.collaboration == Collaboration::Disabled {
            return Err(CoreError::Validation(format!(
                "agent {agent_id} has agentCollaboration DISABLED; make it a SUPERVISOR or SUPERVISOR_ROUTER first"
            )));
        }
        self.collaborator_target(agent_id, &spec.alias_arn)?;
        Ok(())
    }

    pub fn associate_collaborator(
        &self,
        agent_id: &str,
        version: &str,
        spec: CollaboratorSpec,
    ) -> Result<Collaborator, CoreError> {
        self.check_collaborator(agent_id, version, &spec)?;
        let now = now_ms();
        let collaborator = Collaborator {
            id: random_id(10, UPPER_ALNUM),
            name: spec.name,
            instruction: spec.instruction,
            alias_arn: spec.alias_arn,
            relay_history: spec.relay_history,
            client_token: spec.client_token,
            created_ms: now,
            updated_ms: now,
        };
        let target = |arn: &str| definition::parse_alias_arn(arn).map(|(a, _)| a.to_string());
        self.edit_draft(agent_id, |draft| {
            // Results of returned actions are routed back by the collaborator's agent
            // ID, so one agent is one collaborator.
            if draft
                .collaborators
                .iter()
                .any(|c| target(&c.alias_arn) == target(&collaborator.alias_arn))
            {
                return Err(CoreError::Conflict(format!(
                    "agent {agent_id} already has a collaborator on that agent"
                )));
            }
            if draft
                .collaborators
                .iter()
                .any(|c| c.name == collaborator.name)
            {
                return Err(CoreError::Conflict(format!(
                    "agent {agent_id} already has a collaborator named {}",
                    collaborator.name
                )));
            }
            if draft.collaborators.len() >= MAX_COLLABORATORS {
                return Err(CoreError::QuotaExceeded(format!(
                    "an agent has at most {MAX_COLLABORATORS} collaborators"
                )));
            }
            draft.collaborators.push(collaborator.clone());
            Ok(())
        })?;
        Ok(collaborator)
    }

    pub fn collaborator(
        &self,
        agent_id: &str,
        version: &str,
        collaborator_id: &str,
    ) -> Result<Collaborator, CoreError> {
        self.version(agent_id, version)?
            .collaborators
            .into_iter()
            .find(|c| c.id == collaborator_id)
            .ok_or_else(|| not_found(&format!("collaborator {collaborator_id} does not exist")))
    }

    pub fn list_collaborators(
        &self,
        agent_id: &str,
        version: &str,
    ) -> Result<Vec<Collaborator>, CoreError> {
        Ok(self.version(agent_id, version)?.collaborators)
    }

    pub fn update_collaborator(
        &self,
        agent_id: &str,
        version: &str,
        collaborator_id: &str,
        spec: CollaboratorSpec,
    ) -> Result<Collaborator, CoreError> {
        self.check_collaborator(agent_id, version, &spec)?;
        let (_, updated) = self.edit_draft(agent_id, |draft| {
            if draft
                .collaborators
                .iter()
                .any(|c| c.name == spec.name && c.id != collaborator_id)
            {
                return Err(CoreError::Conflict(format!(
                    "agent {agent_id} already has a collaborator named {}",
                    spec.name
                )));
            }
            let slot = draft
                .collaborators
                .iter_mut()
                .find(|c| c.id == collaborator_id)
                .ok_or_else(|| {
                    not_found(&format!("collaborator {collaborator_id} does not exist"))
                })?;
            slot.name = spec.name.clone();
            slot.instruction = spec.instruction.clone();
            slot.alias_arn = spec.alias_arn.clone();
            slot.relay_history = spec.relay_history;
            slot.updated_ms = now_ms();
            Ok(slot.clone())
        })?;
        Ok(updated)
    }

    pub fn disassociate_collaborator(
        &self,
        agent_id: &str,
        version: &str,
        collaborator_id: &str,
    ) -> Result<(), CoreError> {
        check_draft(version)?;
        self.edit_draft(agent_id, |draft| {
            let before = draft.collaborators.len();
            draft.collaborators.retain(|c| c.id != collaborator_id);
            if draft.collaborators.len() == before {
                return Err(not_found(&format!(
                    "collaborator {collaborator_id} does not exist"
                )));
            }
            Ok(())
        })?;
        Ok(())
    }
}

fn check_alias_name(name: &str) -> Result<(), CoreError> {
    if definition::is_resource_name(name) {
        Ok(())
    } else {
        Err(CoreError::Validation(format!(
            "agentAliasName {name:?} must match ([0-9a-zA-Z][_-]?){{1,100}}"
        )))
    }
}

fn check_description(description: &str) -> Result<(), CoreError> {
    let chars = description.chars().count();
    if (1..=200).contains(&chars) {
        Ok(())
    } else {
        Err(CoreError::Validation(format!(
            "description must be 1 to 200 characters, got {chars}"
        )))
    }
}
