//! Batch inference jobs as stored.

use crate::jobs::JobState;
use crate::StoreError;

/// One batch job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchJobRecord {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub model_id: String,
    pub role_arn: String,
    /// `InvokeModel` or `Converse`.
    pub invocation_type: String,
    pub input_uri: String,
    pub output_uri: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub client_token: Option<String>,
    /// The state of the job's row in the job table.
    pub status: JobState,
    pub message: Option<String>,
    pub timeout_hours: i64,
    pub submit_time_ms: i64,
    pub last_modified_ms: i64,
    pub end_time_ms: Option<i64>,
    pub counts: BatchCounts,
}

/// A job's record and token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub total: Option<u64>,
    pub processed: u64,
    pub success: u64,
    pub error: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The kind of a batch job's row in the job table.
pub const BATCH_JOB_KIND: &str = "batch";

/// Batch jobs: their definition and counts; their state, message and times are the
/// job row's ([`crate::JobStore`]), written through it.
pub trait BatchJobStore: Send + Sync {
    /// Inserts the job and its `Submitted` job row (kind [`BATCH_JOB_KIND`]) in one
    /// transaction; `Duplicate("client token")` when the token was used before.
    fn insert_batch_job(&self, job: &BatchJobRecord) -> Result<(), StoreError>;
    fn batch_job(&self, id: &str) -> Result<Option<BatchJobRecord>, StoreError>;
    fn batch_job_by_client_token(&self, token: &str) -> Result<Option<BatchJobRecord>, StoreError>;
    /// Every job, oldest first.
    fn list_batch_jobs(&self) -> Result<Vec<BatchJobRecord>, StoreError>;
    /// Saves the counts (and the job row's progress: processed of total).
    fn set_batch_counts(
        &self,
        id: &str,
        counts: &BatchCounts,
        at_ms: i64,
    ) -> Result<(), StoreError>;
}
