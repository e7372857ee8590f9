//! Long-running jobs of every kind as stored: their state, progress, checkpoint and
//! the lease of the runner that works on them.
//!
//! A job is claimed by one runner at a time. The claim is a lease: the runner renews
//! it while it works; a runner that dies stops renewing, and once the lease has
//! expired any runner may claim the job and resume it from its checkpoint. Writes a
//! runner makes as the job's owner are fenced by the owner name, so a runner that
//! lost its lease cannot overwrite the work of the one that took the job over.

use std::fmt;
use std::str::FromStr;

use crate::StoreError;

/// Where a job is in its life. The names are the ones stored (and Bedrock's batch
/// status names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Submitted,
    Validating,
    Scheduled,
    InProgress,
    Stopping,
    Stopped,
    Completed,
    PartiallyCompleted,
    Failed,
    Expired,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 10] = [
        Self::Submitted,
        Self::Validating,
        Self::Scheduled,
        Self::InProgress,
        Self::Stopping,
        Self::Stopped,
        Self::Completed,
        Self::PartiallyCompleted,
        Self::Failed,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "Submitted",
            Self::Validating => "Validating",
            Self::Scheduled => "Scheduled",
            Self::InProgress => "InProgress",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Completed => "Completed",
            Self::PartiallyCompleted => "PartiallyCompleted",
            Self::Failed => "Failed",
            Self::Expired => "Expired",
        }
    }

    /// A state the job never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Stopped
                | Self::Completed
                | Self::PartiallyCompleted
                | Self::Failed
                | Self::Expired
        )
    }

    /// The final states.
    pub fn finals() -> impl Iterator<Item = JobState> {
        Self::ALL.into_iter().filter(|s| s.is_final())
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored state name that is not one of [`JobState`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a job state")]
pub struct UnknownJobState(pub String);

impl FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownJobState(s.to_owned()))
    }
}

/// How far a job is: units done (records, documents, steps) of a total once known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub done: u64,
    pub total: Option<u64>,
}

/// One job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    /// What runs it (`batch`, `ingestion`, ...).
    pub kind: String,
    pub state: JobState,
    pub message: Option<String>,
    /// What the job was created with, for its kind (JSON).
    pub payload: String,
    /// Where a resumed job starts again, for its kind (JSON); `None` before the first.
    pub checkpoint: Option<String>,
    pub progress: JobProgress,
    /// The runner holding the lease, if any.
    pub owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    /// How many times a runner claimed it (more than one: it was resumed).
    pub claims: u32,
    pub stop_requested: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub end_time_ms: Option<i64>,
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub payload: &'a str,
    pub at_ms: i64,
}

/// What a claim asks for.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The claiming runner.
    pub owner: &'a str,
    /// Kinds the runner has room for.
    pub kinds: &'a [&'a str],
    /// Jobs the runner is working on already (its own leases, not to claim twice).
    pub running: &'a [String],
    pub now_ms: i64,
    pub lease_ms: i64,
}

/// Jobs.
pub trait JobStore: Send + Sync {
    fn insert_job(&self, job: &NewJob<'_>) -> Result<(), StoreError>;
    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Jobs of a kind (every kind for `None`), oldest first.
    fn list_jobs(&self, kind: Option<&str>) -> Result<Vec<JobRecord>, StoreError>;
    /// Atomically takes the oldest open job of one of `claim.kinds` that no live lease
    /// holds, or whose lease is the claimant's own (a runner restarted under the same
    /// name takes its jobs back at once), and leases it to `claim.owner`.
    fn claim_job(&self, claim: &Claim<'_>) -> Result<Option<JobRecord>, StoreError>;
    /// Extends `owner`'s lease; false when `owner` no longer holds the job.
    fn renew_job_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Gives the lease up without ending the job (another runner may claim it).
    fn release_job(&self, id: &str, owner: &str) -> Result<(), StoreError>;
    /// Moves a job to `state` (ending it when the state is final) unless it is final
    /// already or in `unless`; `owner` fences the write when given. True if it moved.
    fn set_job_state(
        &self,
        id: &str,
        owner: Option<&str>,
        state: JobState,
        message: Option<&str>,
        at_ms: i64,
        unless: &[JobState],
    ) -> Result<bool, StoreError>;
    /// Asks an open job to stop: a job nobody runs yet ends `Stopped` at once, a
    /// running one goes `Stopping` and its runner stops it. False when it is final.
    fn request_job_stop(&self, id: &str, at_ms: i64) -> Result<bool, StoreError>;
    /// Saves progress and, when given, the checkpoint, fenced by `owner`.
    fn save_job_progress(
        &self,
        id: &str,
        owner: &str,
        progress: JobProgress,
        checkpoint: Option<&str>,
        at_ms: i64,
    ) -> Result<bool, StoreError>;
}
