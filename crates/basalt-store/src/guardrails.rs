//! Guardrail versions: the editable `DRAFT` and immutable numbered snapshots.

use crate::StoreError;

/// The version name of a guardrail's editable configuration.
pub const DRAFT: &str = "DRAFT";

/// One version of a guardrail as stored. The policies are an opaque JSON document
/// owned by the guardrails crate; the store only keeps versions apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailRecord {
    pub id: String,
    /// `DRAFT` or a number (`1`, `2`, …).
    pub version: String,
    pub name: String,
    pub description: Option<String>,
    pub policy_json: String,
    pub blocked_input_messaging: String,
    pub blocked_outputs_messaging: String,
    pub kms_key_id: Option<String>,
    pub tags_json: Option<String>,
    /// The idempotency token of the request that created this version.
    pub client_token: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Guardrails and their versions.
pub trait GuardrailStore: Send + Sync {
    /// Inserts a new guardrail's DRAFT. `Duplicate("name")` when a guardrail of that
    /// name exists; `Duplicate("client token")` when the token was used before.
    fn create_guardrail(&self, draft: &GuardrailRecord) -> Result<(), StoreError>;
    /// One version of a guardrail.
    fn guardrail(&self, id: &str, version: &str) -> Result<Option<GuardrailRecord>, StoreError>;
    /// The version created by the request carrying this idempotency token.
    fn guardrail_by_client_token(&self, token: &str)
        -> Result<Option<GuardrailRecord>, StoreError>;
    /// Replaces a DRAFT (name, description, policies, messages). False when there is
    /// no such guardrail; `Duplicate("name")` when another guardrail has the name.
    fn update_guardrail_draft(&self, draft: &GuardrailRecord) -> Result<bool, StoreError>;
    /// Snapshots the DRAFT as the next numbered version, atomically; the version's
    /// description replaces the draft's when given. None when there is no such
    /// guardrail.
    fn create_guardrail_version(
        &self,
        id: &str,
        description: Option<&str>,
        client_token: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<String>, StoreError>;
    /// Every guardrail's DRAFT (`id` None), or every version of one guardrail, in
    /// creation order.
    fn list_guardrails(&self, id: Option<&str>) -> Result<Vec<GuardrailRecord>, StoreError>;
    /// Deletes one numbered version, or (version None) the guardrail with all its
    /// versions. False when nothing matched.
    fn delete_guardrail(&self, id: &str, version: Option<&str>) -> Result<bool, StoreError>;
}
