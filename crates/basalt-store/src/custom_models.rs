//! Custom models as stored: a base model plus a LoRA adapter file, made by a
//! customization job.

use crate::StoreError;

/// One custom model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomModelRecord {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    /// The key that created it (a tenant key sees only its own).
    pub key_id: Option<String>,
    /// The catalog model the adapter applies to.
    pub base_model_id: String,
    /// The customization job that made it.
    pub job_id: String,
    pub customization_type: String,
    /// The GGUF LoRA adapter, under the server's data directory.
    pub adapter_path: String,
    pub adapter_sha256: String,
    /// What the job was given and measured (JSON, the core's to read).
    pub details_json: String,
    pub created_ms: i64,
}

/// One custom-model deployment (on-demand use of a custom model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub key_id: Option<String>,
    /// The custom model it serves (its ID).
    pub model_id: String,
    pub description: Option<String>,
    pub client_token: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Custom models and their deployments.
pub trait CustomModelStore: Send + Sync {
    /// `Duplicate("name")` when the name is taken.
    fn insert_custom_model(&self, record: &CustomModelRecord) -> Result<(), StoreError>;
    fn custom_model(&self, id: &str) -> Result<Option<CustomModelRecord>, StoreError>;
    fn custom_model_by_name(&self, name: &str) -> Result<Option<CustomModelRecord>, StoreError>;
    /// Oldest first.
    fn list_custom_models(&self) -> Result<Vec<CustomModelRecord>, StoreError>;
    fn delete_custom_model(&self, id: &str) -> Result<bool, StoreError>;
    /// `Duplicate("name")` or `Duplicate("client token")`.
    fn insert_deployment(&self, record: &DeploymentRecord) -> Result<(), StoreError>;
    /// By ID, or by name when no ID matches.
    fn deployment(&self, id_or_name: &str) -> Result<Option<DeploymentRecord>, StoreError>;
    fn deployment_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError>;
    /// Oldest first.
    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError>;
    /// Points a deployment at another custom model.
    fn update_deployment(&self, record: &DeploymentRecord) -> Result<bool, StoreError>;
    fn delete_deployment(&self, id: &str) -> Result<bool, StoreError>;
}
