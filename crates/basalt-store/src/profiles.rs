//! Application inference profiles as stored.

use crate::StoreError;

/// One application inference profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceProfileRecord {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// The catalog model its calls go to.
    pub model_id: String,
    /// `[{"key": …, "value": …}]`, as given.
    pub tags_json: Option<String>,
    pub client_token: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Application inference profiles.
pub trait InferenceProfileStore: Send + Sync {
    /// `Duplicate("name")` or `Duplicate("client token")`.
    fn insert_inference_profile(&self, record: &InferenceProfileRecord) -> Result<(), StoreError>;
    fn inference_profile(&self, id: &str) -> Result<Option<InferenceProfileRecord>, StoreError>;
    fn inference_profile_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<InferenceProfileRecord>, StoreError>;
    /// Oldest first.
    fn list_inference_profiles(&self) -> Result<Vec<InferenceProfileRecord>, StoreError>;
    fn delete_inference_profile(&self, id: &str) -> Result<bool, StoreError>;
}
