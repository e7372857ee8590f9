//! What an agent is: its settings, action groups and knowledge-base links, stored
//! together per version (`DRAFT` or a numbered snapshot), and its aliases. These are
//! the core's types; the edge reads and writes Bedrock's JSON for them.

use serde::{Deserialize, Serialize};

use super::openapi::ApiOperation;

crate::types::named_values! {
    /// An agent's (or alias's) lifecycle state (Bedrock's names).
    pub enum AgentStatus {
        Creating => "CREATING",
        Preparing => "PREPARING",
        Prepared => "PREPARED",
        NotPrepared => "NOT_PREPARED",
        Deleting => "DELETING",
        Failed => "FAILED",
        Versioning => "VERSIONING",
        Updating => "UPDATING",
    }
}

crate::types::named_values! {
    /// How an agent works with collaborators.
    pub enum Collaboration {
        Disabled => "DISABLED",
        Supervisor => "SUPERVISOR",
        SupervisorRouter => "SUPERVISOR_ROUTER",
    }
}

crate::types::named_values! {
    /// A built-in action group.
    pub enum BuiltIn {
        UserInput => "AMAZON.UserInput",
        CodeInterpreter => "AMAZON.CodeInterpreter",
    }
}

crate::types::named_values! {
    /// The JSON type of a function parameter (Bedrock's `ParameterDetail.type`).
    pub enum ParameterType {
        String => "string",
        Number => "number",
        Integer => "integer",
        Boolean => "boolean",
        Array => "array",
    }
}

/// Serde for a `named_values!` enum as its spelling.
macro_rules! serde_as_str {
    ($($name:ident),+) => {$(
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} {text}", stringify!($name)))
                })
            }
        }
    )+};
}
serde_as_str!(AgentStatus, Collaboration, BuiltIn, ParameterType);

/// A guardrail version an agent applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailRef {
    pub identifier: String,
    pub version: String,
}

/// SESSION_SUMMARY memory settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySettings {
    /// Days a summary is kept (0..=365).
    pub storage_days: u32,
    /// Most recent sessions whose summaries go into the prompt.
    pub max_recent_sessions: u32,
}

/// An agent's own settings (what CreateAgent / UpdateAgent set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSettings {
    pub name: String,
    pub description: Option<String>,
    pub instruction: Option<String>,
    /// A catalog model ID, alias or inference-profile ARN (needed to prepare).
    pub foundation_model: Option<String>,
    pub role_arn: Option<String>,
    pub idle_session_ttl_secs: u32,
    pub guardrail: Option<GuardrailRef>,
    pub memory: Option<MemorySettings>,
    /// Prompt overrides as given (Bedrock's `promptOverrideConfiguration`), kept and
    /// shown back; the orchestration template's `basePromptTemplate` replaces the
    /// system prompt.
    pub prompt_overrides: Option<serde_json::Value>,
    pub collaboration: Collaboration,
    pub customer_encryption_key_arn: Option<String>,
}

/// Who runs an action group's actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// The caller: actions go back in a `returnControl` event.
    ReturnControl,
    /// A Lambda ARN, run by the HTTP executor the config names for its function.
    Lambda(String),
    /// Built-in groups have none.
    None,
}

/// One parameter of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionParameter {
    pub name: String,
    pub kind: ParameterType,
    pub description: Option<String>,
    pub required: bool,
}

/// One function of a `functionSchema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Vec<FunctionParameter>,
    pub require_confirmation: bool,
    /// The full input schema, when the function came from an MCP server's
    /// `tools/list` (the model sees it instead of one built from `parameters`).
    #[serde(default)]
    pub input_schema: Option<serde_json::Value>,
}

/// Where an API schema came from (shown back as given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiSource {
    Payload(String),
    S3 { bucket: String, key: String },
}

/// What an action group can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionSchema {
    Functions(Vec<Function>),
    Api {
        source: ApiSource,
        operations: Vec<ApiOperation>,
    },
    /// Built-ins.
    None,
}

/// One action group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionGroup {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub executor: Executor,
    pub schema: ActionSchema,
    pub built_in: Option<BuiltIn>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A knowledge base an agent searches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeBaseLink {
    pub knowledge_base_id: String,
    pub description: String,
    pub enabled: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// An agent a supervisor can hand work to (by one of its aliases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collaborator {
    pub id: String,
    pub name: String,
    /// When and how the supervisor should use it.
    pub instruction: String,
    pub alias_arn: String,
    /// `relayConversationHistory` TO_COLLABORATOR: it sees the conversation so far.
    pub relay_history: bool,
    pub client_token: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// `arn:aws:bedrock:<region>:<account>:agent-alias/<agent ID>/<alias ID>` → the IDs.
pub fn parse_alias_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:bedrock:")?;
    let mut parts = rest.splitn(3, ':');
    let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    let ids = resource.strip_prefix("agent-alias/")?;
    let (agent, alias) = ids.split_once('/')?;
    (is_resource_id(agent) && is_resource_id(alias)).then_some((agent, alias))
}

/// One version of an agent: everything an invocation of it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentVersion {
    pub agent_id: String,
    /// `DRAFT` or `1`, `2`, ...
    pub version: String,
    pub settings: AgentSettings,
    pub status: AgentStatus,
    pub failure_reasons: Vec<String>,
    pub recommended_actions: Vec<String>,
    pub action_groups: Vec<ActionGroup>,
    pub knowledge_bases: Vec<KnowledgeBaseLink>,
    /// A supervisor's collaborators.
    #[serde(default)]
    pub collaborators: Vec<Collaborator>,
    pub client_token: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub prepared_ms: Option<i64>,
}

/// One event in an alias's routing history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasHistoryEvent {
    pub version: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

/// An alias of an agent: a name for one of its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAlias {
    pub agent_id: String,
    pub alias_id: String,
    pub name: String,
    pub description: Option<String>,
    pub version: String,
    pub status: AgentStatus,
    /// `ACCEPT_INVOCATIONS` unless set to reject.
    pub accepts_invocations: bool,
    pub history: Vec<AliasHistoryEvent>,
    pub client_token: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The test alias: always the DRAFT version.
pub const TEST_ALIAS: &str = "TSTALIASID";
/// The working version.
pub const DRAFT: &str = "DRAFT";

/// Bedrock's agent, alias and action-group IDs: ten letters and digits.
pub fn is_resource_id(id: &str) -> bool {
    id.len() == 10 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `([0-9a-zA-Z][_-]?){1,100}`: agent, alias and action-group names.
pub fn is_resource_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 200 || !bytes[0].is_ascii_alphanumeric() {
        return false;
    }
    let mut groups = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            return false;
        }
        groups += 1;
        i += 1;
        if i < bytes.len() && (bytes[i] == b'_' || bytes[i] == b'-') {
            i += 1;
        }
    }
    groups <= 100
}

/// `[0-9a-zA-Z._:-]{2,100}`: session and memory IDs.
pub fn is_session_id(id: &str) -> bool {
    (2..=100).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `DRAFT` or `[0-9]{0,4}[1-9][0-9]{0,4}`.
pub fn is_version(version: &str) -> bool {
    version == DRAFT
        || (!version.is_empty()
            && version.len() <= 9
            && version.bytes().all(|b| b.is_ascii_digit())
            && version.bytes().any(|b| b != b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_bedrocks_patterns() {
        assert!(is_resource_id("AB12cd34EF"));
        assert!(!is_resource_id("AB12cd34E"));
        assert!(!is_resource_id("AB12cd34E!"));
        assert!(is_resource_name("order_bot-2"));
        assert!(!is_resource_name("order__bot"));
        assert!(!is_resource_name("-bot"));
        assert!(!is_resource_name("bot bot"));
        assert!(is_session_id("user-42.session:1"));
        assert!(!is_session_id("a"));
        assert!(!is_session_id("a b"));
        assert!(is_version("DRAFT") && is_version("1") && is_version("120"));
        assert!(!is_version("0") && !is_version("draft") && !is_version("1a"));
    }

    #[test]
    fn alias_arns_name_an_agent_and_an_alias() {
        assert_eq!(
            parse_alias_arn(
                "arn:aws:bedrock:us-east-1:123456789012:agent-alias/AGENT12345/ALIAS12345"
            ),
            Some(("AGENT12345", "ALIAS12345"))
        );
        assert_eq!(
            parse_alias_arn("arn:aws:bedrock:us-east-1:1:agent/AGENT12345"),
            None
        );
        assert_eq!(
            parse_alias_arn("arn:aws:bedrock:us-east-1:1:agent-alias/AGENT12345/../x"),
            None
        );
    }

    #[test]
    fn protocol_values_round_trip_through_serde() {
        let json = serde_json::to_string(&AgentStatus::NotPrepared).expect("serialize");
        assert_eq!(json, "\"NOT_PREPARED\"");
        let back: AgentStatus = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, AgentStatus::NotPrepared);
        assert!(serde_json::from_str::<BuiltIn>("\"AMAZON.Other\"").is_err());
    }
}
