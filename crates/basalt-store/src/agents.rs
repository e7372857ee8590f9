//! Bedrock Agents records: an agent's versions (the whole definition of each as one
//! JSON body), aliases, sessions and memories. Every write is a compare-and-swap on
//! the record's revision, so two concurrent edits of one agent cannot lose either.

use crate::StoreError;

/// Which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// `DRAFT` or a numbered snapshot; key = the version.
    Version,
    /// key = the alias ID.
    Alias,
    /// A conversation; key = `<alias ID>/<session ID>`.
    Session,
    /// A session summary; key = `<memory ID>/<session ID>`.
    Memory,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Alias => "alias",
            Self::Session => "session",
            Self::Memory => "memory",
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub kind: AgentKind,
    pub agent_id: String,
    pub key: String,
    /// `(scope, name)`, unique among the records of the kind: agent names in scope
    /// `agents` (DRAFT rows), alias names in their agent's scope.
    pub name: Option<(String, String)>,
    pub body: String,
    /// Starts at 1, bumped by every update.
    pub revision: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the record may be dropped (idle sessions); `None`: kept.
    pub expires_ms: Option<i64>,
}

/// Agents' records.
pub trait AgentStore: Send + Sync {
    /// `Duplicate("name")` when the name is taken, `Duplicate("id")` when the key is.
    fn insert_agent_record(&self, record: &AgentRecord) -> Result<(), StoreError>;
    /// Replaces name, body, updated and expiry times when the stored revision is
    /// `record.revision`, storing `record.revision + 1`; false when the record is gone
    /// or was changed meanwhile.
    fn update_agent_record(&self, record: &AgentRecord) -> Result<bool, StoreError>;
    fn agent_record(
        &self,
        kind: AgentKind,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<AgentRecord>, StoreError>;
    /// Oldest first; `agent_id` `None` lists the kind's records of every agent.
    fn list_agent_records(
        &self,
        kind: AgentKind,
        agent_id: Option<&str>,
    ) -> Result<Vec<AgentRecord>, StoreError>;
    fn delete_agent_record(
        &self,
        kind: AgentKind,
        agent_id: &str,
        key: &str,
    ) -> Result<bool, StoreError>;
    /// Every record of the agent (all kinds), in one transaction.
    fn delete_agent(&self, agent_id: &str) -> Result<bool, StoreError>;
    /// Records of `kind` whose expiry is at or before `now_ms`, oldest first, at most `limit`.
    fn expired_agent_records(
        &self,
        kind: AgentKind,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, StoreError>;
}
