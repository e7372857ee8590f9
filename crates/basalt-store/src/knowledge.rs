//! Knowledge-base control-plane records (knowledge bases, data sources, ingestion
//! jobs), stored as their JSON bodies under a kind, an ID and a parent.

use crate::StoreError;

/// Which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnowledgeKind {
    KnowledgeBase,
    DataSource,
    IngestionJob,
    /// A RetrieveAndGenerate conversation (its turns).
    Session,
}

impl KnowledgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KnowledgeBase => "knowledge_base",
            Self::DataSource => "data_source",
            Self::IngestionJob => "ingestion_job",
            Self::Session => "rag_session",
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeRecord {
    pub kind: KnowledgeKind,
    pub id: String,
    /// The knowledge base of a data source; `<kb>/<data source>` of a job; empty for a KB.
    pub parent: String,
    /// Unique among the parent's records of the kind (jobs: their ID).
    pub name: String,
    /// The record's JSON.
    pub body: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Knowledge-base records.
pub trait KnowledgeStore: Send + Sync {
    /// `Duplicate("name")` when the parent already has one of that name.
    fn insert_knowledge(&self, record: &KnowledgeRecord) -> Result<(), StoreError>;
    /// Replaces name, body and updated time; false when the record is gone.
    fn update_knowledge(&self, record: &KnowledgeRecord) -> Result<bool, StoreError>;
    fn knowledge(
        &self,
        kind: KnowledgeKind,
        id: &str,
    ) -> Result<Option<KnowledgeRecord>, StoreError>;
    /// Oldest first; `parent` `None` lists every record of the kind.
    fn list_knowledge(
        &self,
        kind: KnowledgeKind,
        parent: Option<&str>,
    ) -> Result<Vec<KnowledgeRecord>, StoreError>;
    fn delete_knowledge(&self, kind: KnowledgeKind, id: &str) -> Result<bool, StoreError>;
}
