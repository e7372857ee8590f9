//! Batch inference jobs in the core: their definition, validation, persistence and
//! state ([`mod@self`]), and their run on the job runner ([`runner`]: staging, S3,
//! recovery after a crash, retries). What a record's model input means — a native
//! InvokeModel body or a Converse request — is the dialect's: the edge implements
//! [`runner::RecordInvoker`].

mod journal;
pub mod runner;

use std::sync::Arc;

use basalt_store::BatchJobRecord;
pub use basalt_store::{BatchCounts, JobState};
use basalt_store::{BatchJobStore, StoreError};

use crate::config::BatchConfig;
use crate::jobs::JobRunner;
use crate::keys::Principal;
use crate::{Basalt, CoreError};

/// How the records of a job are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    /// Each record is the model's native InvokeModel body.
    InvokeModel,
    /// Each record is a Converse request.
    Converse,
}

impl InvocationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvokeModel => "InvokeModel",
            Self::Converse => "Converse",
        }
    }

    pub fn parse(name: &str) -> Result<Self, CoreError> {
        match name {
            "InvokeModel" => Ok(Self::InvokeModel),
            "Converse" => Ok(Self::Converse),
            other => Err(CoreError::Validation(format!(
                "modelInvocationType {other:?} is not one of InvokeModel, Converse"
            ))),
        }
    }
}

/// A batch job as the service gives it out: its definition, its state (the job
/// runner's row) and its counts, typed; the edge writes its wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchJob {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub model_id: String,
    pub role_arn: String,
    pub invocation_type: InvocationType,
    pub input_uri: String,
    pub output_uri: String,
    /// The key that created it (a tenant key sees only its own jobs).
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub client_token: Option<String>,
    pub status: JobState,
    pub message: Option<String>,
    pub timeout_hours: i64,
    pub submit_time_ms: i64,
    pub last_modified_ms: i64,
    pub end_time_ms: Option<i64>,
    pub counts: BatchCounts,
}

impl TryFrom<BatchJobRecord> for BatchJob {
    type Error = CoreError;

    fn try_from(r: BatchJobRecord) -> Result<Self, CoreError> {
        Ok(Self {
            invocation_type: InvocationType::parse(&r.invocation_type).map_err(|_| {
                CoreError::Internal(format!(
                    "stored batch job {} has invocation type {:?}",
                    r.id, r.invocation_type
                ))
            })?,
            id: r.id,
            name: r.name,
            model_id: r.model_id,
            role_arn: r.role_arn,
            input_uri: r.input_uri,
            output_uri: r.output_uri,
            key_id: r.key_id,
            key_name: r.key_name,
            client_token: r.client_token,
            status: r.status,
            message: r.message,
            timeout_hours: r.timeout_hours,
            submit_time_ms: r.submit_time_ms,
            last_modified_ms: r.last_modified_ms,
            end_time_ms: r.end_time_ms,
            counts: r.counts,
        })
    }
}

/// What CreateModelInvocationJob asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchJobSpec {
    pub name: String,
    pub role_arn: String,
    pub model_id: String,
    pub invocation_type: InvocationType,
    pub input_uri: String,
    pub output_uri: String,
    pub timeout_hours: Option<i64>,
    pub client_token: Option<String>,
}

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("batch job")(e)
}

use crate::common::now_ms;

fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
}

/// The job ID in an identifier that is an ID or a job ARN.
fn job_id(identifier: &str) -> Result<&str, CoreError> {
    let id = identifier
        .rsplit_once(":model-invocation-job/")
        .map_or(identifier, |(_, id)| id);
    if crate::common::is_resource_id(id) {
        Ok(id)
    } else {
        Err(CoreError::Validation(format!(
            "jobIdentifier {identifier:?} is not a job ID (12 lowercase letters and digits) or job ARN"
        )))
    }
}

/// Batch inference jobs: their records (a [`BatchJobStore`]) and their runs on the
/// job runner ([`runner::BatchRunner`]), calling models through the calling path.
pub struct BatchService {
    core: Arc<Basalt>,
    store: Arc<dyn BatchJobStore>,
    jobs: Arc<JobRunner>,
    config: BatchConfig,
}

impl std::fmt::Debug for BatchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchService").finish_non_exhaustive()
    }
}

impl BatchService {
    pub fn new(
        core: Arc<Basalt>,
        store: Arc<dyn BatchJobStore>,
        jobs: Arc<JobRunner>,
        config: BatchConfig,
    ) -> Self {
        Self {
            core,
            store,
            jobs,
            config,
        }
    }

    /// The calling path the records run through.
    pub fn core(&self) -> &Arc<Basalt> {
        &self.core
    }

    /// Batch settings.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Where batch jobs with `s3://` locations stage their input and output.
    pub fn staging_dir(&self) -> std::path::PathBuf {
        if self.config.staging_dir.is_empty() {
            std::env::temp_dir().join("basalt-batch")
        } else {
            std::path::PathBuf::from(&self.config.staging_dir)
        }
    }

    pub fn batch_job_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:model-invocation-job/{id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    /// CreateModelInvocationJob: validates the request (locations, model, names) and
    /// records the job as `Submitted`; a repeated client token returns its job.
    pub fn create_batch_job(
        &self,
        principal: &Principal,
        spec: BatchJobSpec,
    ) -> Result<BatchJob, CoreError> {
        let store = self.store.as_ref();
        if let Some(token) = &spec.client_token {
            if let Some(job) = store
                .batch_job_by_client_token(token)
                .map_err(store_error)?
            {
                return job.try_into();
            }
        }
        if !valid_job_name(&spec.name) {
            return Err(CoreError::Validation(format!(
                "jobName {:?} must be 1 to 63 letters, digits, -, + or ., starting with a letter or digit",
                spec.name
            )));
        }
        if !(spec.role_arn.starts_with("arn:aws") && spec.role_arn.contains(":role/")) {
            return Err(CoreError::Validation(format!(
                "roleArn {:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
                spec.role_arn
            )));
        }
        let entry = self.core.resolve(&spec.model_id)?;
        if spec.invocation_type == InvocationType::Converse && entry.is_embedding() {
            return Err(CoreError::Validation(format!(
                "model {} is an embedding model; Converse records need a chat model",
                entry.id
            )));
        }
        let timeout_hours = spec.timeout_hours.unwrap_or(24);
        if !(24..=168).contains(&timeout_hours) {
            return Err(CoreError::Validation(format!(
                "timeoutDurationInHours {timeout_hours} must be between 24 and 168"
            )));
        }
        // s3:// locations: syntax and bucket permission now, the objects themselves
        // when the job is validated (as Bedrock does); file:// ones must exist now.
        if spec.input_uri.starts_with("s3://") {
            self.core.s3().check(&spec.input_uri)?;
        } else {
            self.core.allowed_paths().existing(&spec.input_uri)?;
        }
        if spec.output_uri.starts_with("s3://") {
            self.core.s3().check(&spec.output_uri)?;
        } else {
            self.core.allowed_paths().writable_dir(&spec.output_uri)?;
        }
        let at = now_ms();
        let id = crate::common::random_id(12, crate::common::LOWER_ALNUM);
        let job = BatchJobRecord {
            id,
            name: spec.name,
            model_id: entry.id.clone(),
            role_arn: spec.role_arn,
            invocation_type: spec.invocation_type.as_str().to_owned(),
            input_uri: spec.input_uri,
            output_uri: spec.output_uri,
            key_id: Some(principal.key_id.clone()),
            key_name: Some(principal.key_name.clone()),
            client_token: spec.client_token,
            status: JobState::Submitted,
            message: None,
            timeout_hours,
            submit_time_ms: at,
            last_modified_ms: at,
            end_time_ms: None,
            counts: BatchCounts::default(),
        };
        store.insert_batch_job(&job).map_err(store_error)?;
        self.jobs.wake();
        job.try_into()
    }

    /// GetModelInvocationJob.
    pub fn batch_job(&self, identifier: &str) -> Result<BatchJob, CoreError> {
        let id = job_id(identifier)?;
        self.store
            .batch_job(id)
            .map_err(store_error)?
            .ok_or_else(|| {
                CoreError::NotFound(format!("model invocation job {identifier} does not exist"))
            })?
            .try_into()
    }

    /// Every batch job, oldest first.
    pub fn list_batch_jobs(&self) -> Result<Vec<BatchJob>, CoreError> {
        self.store
            .list_batch_jobs()
            .map_err(store_error)?
            .into_iter()
            .map(BatchJob::try_from)
            .collect()
    }

    /// StopModelInvocationJob: a job no runner has claimed stops at once; a claimed
    /// one goes to `Stopping` and its runner stops it after the records in flight.
    pub fn stop_batch_job(&self, identifier: &str) -> Result<(), CoreError> {
        let job = self.batch_job(identifier)?;
        if job.status.is_final() || !self.jobs.request_stop(&job.id)? {
            return Err(CoreError::Conflict(format!(
                "job {} is {} and cannot be stopped",
                job.id, job.status
            )));
        }
        Ok(())
    }

    pub fn set_batch_counts(&self, id: &str, counts: &BatchCounts) -> Result<(), CoreError> {
        self.store
            .set_batch_counts(id, counts, now_ms())
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_identifiers() {
        assert!(valid_job_name("nightly-run.2+x"));
        assert!(!valid_job_name("-lead") && !valid_job_name("has space") && !valid_job_name(""));
        assert_eq!(job_id("abcdef123456").ok(), Some("abcdef123456"));
        assert_eq!(
            job_id("arn:aws:bedrock:us-east-1:000000000000:model-invocation-job/abcdef123456").ok(),
            Some("abcdef123456")
        );
        assert!(job_id("ABC").is_err());
    }
}
