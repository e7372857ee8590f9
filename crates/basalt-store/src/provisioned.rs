//! Provisioned throughput as stored.

use crate::StoreError;

/// One provisioned model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedRecord {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub model_id: String,
    pub desired_model_id: String,
    pub model_units: u32,
    /// `Creating`, `InService`, `Updating` or `Failed`.
    pub status: String,
    pub failure_message: Option<String>,
    /// `OneMonth`, `SixMonths`, or none (no commitment).
    pub commitment: Option<String>,
    pub commitment_expires_ms: Option<i64>,
    pub client_token: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Provisioned models.
pub trait ProvisionedStore: Send + Sync {
    /// `Duplicate("name")` or `Duplicate("client token")`.
    fn insert_provisioned(&self, record: &ProvisionedRecord) -> Result<(), StoreError>;
    /// By ID or name.
    fn provisioned(&self, id_or_name: &str) -> Result<Option<ProvisionedRecord>, StoreError>;
    fn provisioned_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<ProvisionedRecord>, StoreError>;
    /// Oldest first.
    fn list_provisioned(&self) -> Result<Vec<ProvisionedRecord>, StoreError>;
    /// Replaces the mutable fields (name, models, status, failure message, updated time).
    fn update_provisioned(&self, record: &ProvisionedRecord) -> Result<(), StoreError>;
    fn delete_provisioned(&self, id: &str) -> Result<bool, StoreError>;
}
