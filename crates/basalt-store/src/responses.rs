//! Stored model responses (OpenAI's Responses API), as opaque documents of the
//! dialect that wrote them.

use crate::StoreError;

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponseRecord {
    pub id: String,
    /// The key that made it (None: no key, e.g. a test server without auth).
    pub key_id: Option<String>,
    pub created_ms: i64,
    pub model_id: String,
    /// The response document as returned (JSON).
    pub response_json: String,
    /// The conversation up to and including this response (JSON items).
    pub conversation_json: String,
}

/// Stored responses.
pub trait ResponseStore: Send + Sync {
    /// `Duplicate("id")` when the ID exists.
    fn insert_response(&self, record: &StoredResponseRecord) -> Result<(), StoreError>;
    fn response(&self, id: &str) -> Result<Option<StoredResponseRecord>, StoreError>;
    fn delete_response(&self, id: &str) -> Result<bool, StoreError>;
    /// Deletes responses created before `before_ms`; returns how many.
    fn prune_responses(&self, before_ms: i64) -> Result<usize, StoreError>;
}
