//! Model customization: LoRA fine-tuning and continued pre-training of local
//! llama-architecture models, as Bedrock's CreateModelCustomizationJob, and the
//! custom models the jobs make.
//!
//! A job is a row of the job runner (kind `customization`): its payload is the
//! [`CustomizationSpec`], its checkpoint the [`TrainingState`] (phase, the loss of
//! every step so far, the adapter checkpoint's step). [`training`] runs it: reads and
//! checks every line of the data ([`data`]), tokenizes with the serving engine's own
//! tokenizer and chat template, trains in `basalt-train` on the weights the engine
//! serves, writes Bedrock's metrics files and a GGUF LoRA adapter, and records the
//! custom model ([`crate::custom_models`] serves it).

pub mod data;
pub mod hyper;
pub mod import;
mod training;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub use basalt_store::{CustomModelRecord, DeploymentRecord};
use basalt_store::{JobState, StoreError};
use serde::{Deserialize, Serialize};

use crate::catalog::EngineKind;
use crate::common::{now_ms, random_id, LOWER_ALNUM};
use crate::jobs::{JobKind, JobRecord, JobRunner};
use crate::keys::Principal;
use crate::types::CustomizationType;
use crate::{Basalt, CoreError};

pub use import::{ImportDetails, ImportJob, ImportJobs, ImportSpec};
pub use training::CustomizationJobs;

/// One point of a loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LossPoint {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
}

/// A customization job's losses so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LossCurve {
    pub training: Vec<LossPoint>,
    pub validation: Vec<LossPoint>,
}

/// `[customization]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomizationConfig {
    /// CPU threads one training job uses (0: half the cores, at least one), so the
    /// rest keep serving.
    pub threads: usize,
    /// Steps between adapter checkpoints (a job killed resumes from the last one).
    pub checkpoint_every_steps: usize,
    /// Most records in a training or validation file.
    pub max_records: usize,
    /// Most tokens a job may train on (tokens of the training records × epochs).
    pub max_training_tokens: u64,
    /// Largest training or validation file, in bytes.
    pub max_data_bytes: u64,
    /// Jobs trained at once on this server.
    pub max_running: usize,
    /// Sequences each custom model's engine decodes together.
    pub adapter_slots: u32,
    /// Where adapters and checkpoints are kept (the binary sets
    /// `<data dir>/customization` when empty).
    pub data_dir: String,
    /// The type an imported Hugging Face model is quantized to by llama.cpp's quantizer
    /// (`Q8_0`, `Q4_K_M`, `F16`, … as `llama-quantize` names them).
    #[serde(deserialize_with = "quantization_name")]
    pub import_quantization: basalt_engine::convert::QuantType,
    /// Largest folder an import job reads (the sum of its files), in bytes.
    pub max_import_bytes: u64,
    /// Where a fleet shares models' files (`s3://bucket/prefix/`; empty: not shared,
    /// a model is served only by the node that made it). See `model_artifacts`.
    pub artifacts: String,
}

impl CustomizationConfig {
    /// Where jobs keep their work files and models their adapters and GGUF files.
    pub fn data_root(&self) -> std::path::PathBuf {
        if self.data_dir.is_empty() {
            std::env::temp_dir().join("basalt-customization")
        } else {
            std::path::PathBuf::from(&self.data_dir)
        }
    }

    /// The CPU threads a training or import job uses: `threads`, or half the cores
    /// (at least one) when it is 0.
    pub fn job_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map(|n| (n.get() / 2).max(1))
                .unwrap_or(1),
            n => n,
        }
    }
}

fn quantization_name<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<basalt_engine::convert::QuantType, D::Error> {
    let name = String::deserialize(de)?;
    name.parse().map_err(serde::de::Error::custom)
}

impl Default for CustomizationConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            checkpoint_every_steps: 5,
            max_records: 10_000,
            max_training_tokens: 2_000_000,
            max_data_bytes: 64 << 20,
            max_running: 1,
            adapter_slots: 2,
            data_dir: String::new(),
            import_quantization: basalt_engine::convert::QuantType::Q8_0,
            max_import_bytes: 64 << 30,
            artifacts: String::new(),
        }
    }
}

/// What CreateModelCustomizationJob asks for (the job's payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomizationSpec {
    pub job_name: String,
    pub custom_model_name: String,
    pub role_arn: String,
    /// The catalog model ID (resolved from an ID or ARN at creation).
    pub base_model_id: String,
    pub customization_type: CustomizationKind,
    pub training_uri: String,
    pub validation_uris: Vec<String>,
    pub output_uri: String,
    /// As given (strings, as on Bedrock).
    pub hyper_parameters: BTreeMap<String, String>,
    pub client_token: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
}

/// The customization types this server trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomizationKind {
    FineTuning,
    ContinuedPreTraining,
}

impl CustomizationKind {
    pub fn as_type(self) -> CustomizationType {
        match self {
            Self::FineTuning => CustomizationType::FineTuning,
            Self::ContinuedPreTraining => CustomizationType::ContinuedPreTraining,
        }
    }

    pub fn parse(name: &str) -> Result<Self, CoreError> {
        match name {
            "FINE_TUNING" => Ok(Self::FineTuning),
            "CONTINUED_PRE_TRAINING" => Ok(Self::ContinuedPreTraining),
            "DISTILLATION" | "REINFORCEMENT_FINE_TUNING" => Err(CoreError::Validation(format!(
                "customizationType {name} is not supported by this server (FINE_TUNING, CONTINUED_PRE_TRAINING)"
            ))),
            other => Err(CoreError::Validation(format!(
                "customizationType {other:?} is not one of FINE_TUNING, CONTINUED_PRE_TRAINING"
            ))),
        }
    }
}

/// Where a job's work is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Validation,
    DataProcessing,
    Training,
    Done,
}

/// One row of a metrics file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossRow {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
}

/// A job's progress and results (its checkpoint in the job runner).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub phase: Phase,
    pub total_steps: usize,
    /// Steps covered by the adapter checkpoint on disk (a resumed job starts here).
    pub checkpoint_step: usize,
    /// The last step trained (the job's `trainingMetrics`); every step's loss is in
    /// the metrics file, not here, so the state stays small however long the job.
    pub last_step: Option<LossRow>,
    /// One row per epoch.
    pub validation: Vec<LossRow>,
    pub custom_model_id: Option<String>,
    pub phase_times_ms: BTreeMap<String, i64>,
}

/// A customization job as the service gives it out.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomizationJob {
    pub id: String,
    pub spec: CustomizationSpec,
    pub state: JobState,
    pub message: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub end_ms: Option<i64>,
    pub training: TrainingState,
}

/// A custom model as the service gives it out.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomModel {
    pub record: CustomModelRecord,
    /// The spec of the job that made it.
    pub spec: CustomizationSpec,
    pub training_loss: Option<f64>,
    pub validation_loss: Option<f64>,
}

/// The customization control plane.
pub struct CustomizationService {
    core: Arc<Basalt>,
    jobs: Arc<JobRunner>,
    config: CustomizationConfig,
    /// Serialises name checks with the creation that follows them.
    creating: Mutex<()>,
}

impl std::fmt::Debug for CustomizationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomizationService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("custom model")(e)
}

/// `[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*`, 1 to 63 characters.
fn valid_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    (1..=63).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
}

/// `([0-9a-zA-Z][_-]?){1,63}`.
fn valid_model_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 126 {
        return false;
    }
    let mut units = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            return false;
        }
        i += 1;
        if i < bytes.len() && matches!(bytes[i], b'_' | b'-') {
            i += 1;
        }
        units += 1;
    }
    units <= 63
}

/// A job's name, the name of the model it makes (`field`) and its role ARN, as
/// Bedrock's patterns want them.
fn check_names(
    job_name: &str,
    field: &str,
    model_name: &str,
    role_arn: &str,
) -> Result<(), CoreError> {
    if !valid_job_name(job_name) {
        return Err(CoreError::Validation(format!(
            "jobName {job_name:?} must be 1 to 63 letters, digits, -, + or ., starting with a letter or digit"
        )));
    }
    if !valid_model_name(model_name) {
        return Err(CoreError::Validation(format!(
            "{field} {model_name:?} must be 1 to 63 letters or digits, each optionally followed by _ or -"
        )));
    }
    if !(role_arn.starts_with("arn:aws") && role_arn.contains(":role/")) {
        return Err(CoreError::Validation(format!(
            "roleArn {role_arn:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        )));
    }
    Ok(())
}

/// The 12-character ID of a job ID or job ARN.
fn job_id(identifier: &str) -> Result<&str, CoreError> {
    let id = identifier.rsplit('/').next().unwrap_or(identifier);
    if crate::common::is_resource_id(id) {
        Ok(id)
    } else {
        Err(CoreError::NotFound(format!(
            "model customization job {identifier} does not exist"
        )))
    }
}

impl CustomizationService {
    pub fn new(core: Arc<Basalt>, jobs: Arc<JobRunner>, config: CustomizationConfig) -> Self {
        Self {
            core,
            jobs,
            config,
            creating: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &CustomizationConfig {
        &self.config
    }

    pub(crate) fn core(&self) -> &Arc<Basalt> {
        &self.core
    }

    /// Where jobs keep their work files and models their adapters and GGUF files.
    pub(crate) fn data_root(&self) -> std::path::PathBuf {
        self.config.data_root()
    }

    pub fn job_arn(&self, job: &CustomizationJob) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:model-customization-job/{}/{}",
            self.core.region(),
            self.core.account_id(),
            job.spec.base_model_id,
            job.id
        )
    }

    pub fn base_model_arn(&self, model_id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}::foundation-model/{model_id}",
            self.core.region()
        )
    }

    pub fn custom_model_arn(&self, record: &CustomModelRecord) -> String {
        self.core
            .custom_models()
            .arn(&record.base_model_id, &record.id)
    }

    /// CreateModelCustomizationJob: checks everything that can be checked without
    /// reading the data (names, base model, hyperparameters, locations) and queues the
    /// job; the data is read and checked line by line when the job starts.
    pub fn create_job(
        &self,
        principal: &Principal,
        mut spec: CustomizationSpec,
    ) -> Result<CustomizationJob, CoreError> {
        let _guard = self
            .creating
            .lock()
            .map_err(|_| CoreError::Internal("customization lock poisoned".into()))?;
        let jobs = self.all_jobs()?;
        if let Some(token) = &spec.client_token {
            if let Some(job) = jobs
                .iter()
                .find(|j| j.spec.client_token.as_deref() == Some(token.as_str()))
            {
                return Ok(job.clone());
            }
        }
        check_names(
            &spec.job_name,
            "customModelName",
            &spec.custom_model_name,
            &spec.role_arn,
        )?;
        let base_id = spec
            .base_model_id
            .rsplit_once(":foundation-model/")
            .map_or(spec.base_model_id.as_str(), |(_, id)| id)
            .to_owned();
        let entry = self.core.resolve(&base_id)?;
        if entry.custom {
            return Err(CoreError::Validation(format!(
                "baseModelIdentifier {} is a custom model; customize its base model",
                spec.base_model_id
            )));
        }
        if entry.engine != EngineKind::LlamaCpp
            || !entry
                .customizations
                .contains(&spec.customization_type.as_type())
        {
            return Err(CoreError::Validation(format!(
                "model {} does not support customization type {} (its catalog entry's customizations: {})",
                entry.id,
                spec.customization_type.as_type().as_str(),
                if entry.customizations.is_empty() {
                    "none".to_owned()
                } else {
                    entry
                        .customizations
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        spec.base_model_id = entry.id.clone();
        hyper::parse_hyper_parameters(&spec.hyper_parameters).map_err(CoreError::Validation)?;
        if spec.validation_uris.len() > 10 {
            return Err(CoreError::Validation(
                "validationDataConfig.validators holds at most 10 locations".into(),
            ));
        }
        for uri in std::iter::once(&spec.training_uri).chain(&spec.validation_uris) {
            self.check_input(uri)?;
        }
        if spec.output_uri.starts_with("s3://") {
            self.core.s3().check(&spec.output_uri)?;
        } else {
            self.core.allowed_paths().writable_dir(&spec.output_uri)?;
        }
        if jobs.iter().any(|j| j.spec.job_name == spec.job_name) {
            return Err(CoreError::Conflict(format!(
                "a model customization job named {:?} already exists",
                spec.job_name
            )));
        }
        let pending = jobs
            .iter()
            .map(|j| (j.state, j.spec.custom_model_name.as_str()));
        if self.model_name_taken(&spec.custom_model_name, pending)? {
            return Err(CoreError::Conflict(format!(
                "a custom model named {:?} already exists or is being trained",
                spec.custom_model_name
            )));
        }
        spec.key_id = Some(principal.key_id.clone());
        let id = random_id(12, LOWER_ALNUM);
        let payload = serde_json::to_string(&spec)
            .map_err(|e| CoreError::Internal(format!("customization spec: {e}")))?;
        self.jobs.submit(&id, JobKind::Customization, &payload)?;
        self.find_job(&id)?
            .ok_or_else(|| CoreError::Internal(format!("job {id} vanished after creation")))
    }

    /// Whether a model has `name`, or a job that did not fail or stop will make one
    /// (`jobs`: each job's state and the name of the model it makes).
    fn model_name_taken<'a>(
        &self,
        name: &str,
        mut jobs: impl Iterator<Item = (JobState, &'a str)>,
    ) -> Result<bool, CoreError> {
        let exists = self
            .core
            .custom_models()
            .store()
            .custom_model_by_name(name)
            .map_err(store_error)?
            .is_some();
        Ok(exists
            || jobs.any(|(state, made)| {
                !matches!(state, JobState::Failed | JobState::Stopped) && made == name
            }))
    }

    fn check_input(&self, uri: &str) -> Result<(), CoreError> {
        if uri.starts_with("s3://") {
            self.core.s3().check(uri)?;
        } else {
            let path = self.core.allowed_paths().existing(uri)?;
            if !path.is_file() {
                return Err(CoreError::Validation(format!("{uri} is not a file")));
            }
        }
        Ok(())
    }

    fn job_of(record: JobRecord) -> Result<CustomizationJob, CoreError> {
        let spec: CustomizationSpec = serde_json::from_str(&record.payload).map_err(|e| {
            CoreError::Internal(format!("stored customization job {}: {e}", record.id))
        })?;
        let training = record
            .checkpoint
            .as_deref()
            .map(serde_json::from_str::<TrainingState>)
            .transpose()
            .map_err(|e| {
                CoreError::Internal(format!("stored customization state {}: {e}", record.id))
            })?
            .unwrap_or_default();
        Ok(CustomizationJob {
            id: record.id,
            spec,
            state: record.state,
            message: record.message,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            end_ms: record.end_time_ms,
            training,
        })
    }

    fn find_job(&self, id: &str) -> Result<Option<CustomizationJob>, CoreError> {
        match self.jobs.job(id)? {
            Some(r) if r.kind == JobKind::Customization.as_str() => Self::job_of(r).map(Some),
            _ => Ok(None),
        }
    }

    fn all_jobs(&self) -> Result<Vec<CustomizationJob>, CoreError> {
        self.jobs
            .list(Some(JobKind::Customization))?
            .into_iter()
            .map(Self::job_of)
            .collect()
    }

    /// GetModelCustomizationJob.
    pub fn job(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<CustomizationJob, CoreError> {
        let missing = || {
            CoreError::NotFound(format!(
                "model customization job {identifier} does not exist"
            ))
        };
        let id = job_id(identifier)?;
        let job = self.find_job(id)?.ok_or_else(missing)?;
        if !principal.may_act_on(job.spec.key_id.as_deref()) {
            return Err(missing());
        }
        Ok(job)
    }

    /// A job's loss curve so far: training loss per step and validation loss per
    /// evaluation, read from the metrics files the job writes (the last 10,000 rows).
    pub fn loss_curve(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<LossCurve, CoreError> {
        let job = self.job(principal, identifier)?;
        let Some((training, validation)) = training::metrics_files(self, &job.id, &job.spec) else {
            return Ok(LossCurve::default());
        };
        Ok(LossCurve {
            training: training::read_loss_rows(&training, 10_000),
            validation: training::read_loss_rows(&validation, 10_000),
        })
    }

    /// ListModelCustomizationJobs: the jobs `principal` may see, oldest first.
    pub fn list_jobs(&self, principal: &Principal) -> Result<Vec<CustomizationJob>, CoreError> {
        Ok(self
            .all_jobs()?
            .into_iter()
            .filter(|j| principal.may_act_on(j.spec.key_id.as_deref()))
            .collect())
    }

    /// StopModelCustomizationJob: a queued job stops at once, a running one at its
    /// next step (no custom model is made).
    pub fn stop_job(&self, principal: &Principal, identifier: &str) -> Result<(), CoreError> {
        let job = self.job(principal, identifier)?;
        if job.state.is_final() || !self.jobs.request_stop(&job.id)? {
            return Err(CoreError::Validation(format!(
                "model customization job {} is {} and cannot be stopped",
                job.spec.job_name,
                training::bedrock_status(job.state)
            )));
        }
        Ok(())
    }

    fn custom_model_of(&self, record: CustomModelRecord) -> Result<CustomModel, CoreError> {
        let details: training::ModelDetails = serde_json::from_str(&record.details_json)
            .map_err(|e| CoreError::Internal(format!("stored custom model {}: {e}", record.id)))?;
        Ok(CustomModel {
            record,
            spec: details.spec,
            training_loss: details.training_loss,
            validation_loss: details.validation_loss,
        })
    }

    /// GetCustomModel by name, ID or ARN.
    pub fn custom_model(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<CustomModel, CoreError> {
        let store = self.core.custom_models().store();
        let id = crate::custom_models::custom_model_id(identifier).unwrap_or(identifier);
        let record = match store.custom_model(id).map_err(store_error)? {
            Some(r) => Some(r),
            None => store
                .custom_model_by_name(identifier)
                .map_err(store_error)?,
        };
        match record {
            Some(r)
                if principal.may_act_on(r.key_id.as_deref())
                    && r.customization_type != crate::custom_models::IMPORTED =>
            {
                self.custom_model_of(r)
            }
            _ => Err(CoreError::NotFound(format!(
                "custom model {identifier} does not exist"
            ))),
        }
    }

    /// ListCustomModels: the models `principal` may see, oldest first.
    pub fn list_custom_models(&self, principal: &Principal) -> Result<Vec<CustomModel>, CoreError> {
        self.core
            .custom_models()
            .store()
            .list_custom_models()
            .map_err(store_error)?
            .into_iter()
            .filter(|r| principal.may_act_on(r.key_id.as_deref()))
            .filter(|r| r.customization_type != crate::custom_models::IMPORTED)
            .map(|r| self.custom_model_of(r))
            .collect()
    }

    /// CreateCustomModelDeployment: on-demand use of a custom model through the
    /// deployment's ARN; active at once (the model's engine loads on its first call).
    pub fn create_deployment(
        &self,
        principal: &Principal,
        name: &str,
        model_identifier: &str,
        description: Option<String>,
        client_token: Option<String>,
    ) -> Result<DeploymentRecord, CoreError> {
        let store = self.core.custom_models().store();
        if let Some(token) = &client_token {
            if let Some(existing) = store
                .deployment_by_client_token(token)
                .map_err(store_error)?
            {
                return Ok(existing);
            }
        }
        if !valid_model_name(name) {
            return Err(CoreError::Validation(format!(
                "modelDeploymentName {name:?} must be 1 to 63 letters or digits, each optionally followed by _ or -"
            )));
        }
        let model = self.custom_model(principal, model_identifier)?;
        let at = now_ms();
        let record = DeploymentRecord {
            id: random_id(12, LOWER_ALNUM),
            name: name.to_owned(),
            key_id: Some(principal.key_id.clone()),
            model_id: model.record.id,
            description,
            client_token,
            created_ms: at,
            updated_ms: at,
        };
        store.insert_deployment(&record).map_err(|e| match e {
            StoreError::Duplicate(_) => CoreError::Conflict(format!(
                "a custom model deployment named {name:?} already exists"
            )),
            other => store_error(other),
        })?;
        Ok(record)
    }

    /// GetCustomModelDeployment by name, ID or ARN.
    pub fn deployment(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<DeploymentRecord, CoreError> {
        let id = crate::custom_models::deployment_id(identifier).unwrap_or(identifier);
        match self
            .core
            .custom_models()
            .store()
            .deployment(id)
            .map_err(store_error)?
        {
            Some(d) if principal.may_act_on(d.key_id.as_deref()) => Ok(d),
            _ => Err(CoreError::NotFound(format!(
                "custom model deployment {identifier} does not exist"
            ))),
        }
    }

    /// ListCustomModelDeployments: those `principal` may see, oldest first.
    pub fn list_deployments(
        &self,
        principal: &Principal,
    ) -> Result<Vec<DeploymentRecord>, CoreError> {
        Ok(self
            .core
            .custom_models()
            .store()
            .list_deployments()
            .map_err(store_error)?
            .into_iter()
            .filter(|d| principal.may_act_on(d.key_id.as_deref()))
            .collect())
    }

    /// UpdateCustomModelDeployment: the deployment serves another custom model.
    pub fn update_deployment(
        &self,
        principal: &Principal,
        identifier: &str,
        model_identifier: &str,
    ) -> Result<DeploymentRecord, CoreError> {
        let mut record = self.deployment(principal, identifier)?;
        let model = self.custom_model(principal, model_identifier)?;
        record.model_id = model.record.id;
        record.updated_ms = now_ms();
        self.core
            .custom_models()
            .store()
            .update_deployment(&record)
            .map_err(store_error)?;
        Ok(record)
    }

    /// DeleteCustomModelDeployment.
    pub fn delete_deployment(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<(), CoreError> {
        let record = self.deployment(principal, identifier)?;
        self.core
            .custom_models()
            .store()
            .delete_deployment(&record.id)
            .map_err(store_error)?;
        Ok(())
    }

    pub fn deployment_arn(&self, id: &str) -> String {
        self.core.custom_models().deployment_arn(id)
    }

    /// The custom model a deployment serves (for its ARN), if it still exists.
    pub fn deployment_model(&self, record: &DeploymentRecord) -> Option<CustomModelRecord> {
        self.core
            .custom_models()
            .record(&record.model_id)
            .ok()
            .flatten()
    }

    /// DeleteCustomModel: refused while a provisioned throughput serves it.
    pub async fn delete_custom_model(
        &self,
        principal: &Principal,
        identifier: &str,
        provisioned_model_ids: &[String],
    ) -> Result<(), CoreError> {
        let model = self.custom_model(principal, identifier)?;
        let arn = self.custom_model_arn(&model.record);
        if provisioned_model_ids.contains(&arn) {
            return Err(CoreError::Validation(format!(
                "custom model {} is used by a provisioned throughput; delete that first",
                model.record.name
            )));
        }
        let deployed = self
            .core
            .custom_models()
            .store()
            .list_deployments()
            .map_err(store_error)?
            .into_iter()
            .find(|d| d.model_id == model.record.id);
        if let Some(d) = deployed {
            return Err(CoreError::Validation(format!(
                "custom model {} is served by deployment {}; delete that first",
                model.record.name, d.name
            )));
        }
        self.remove_model_files(&model.record).await
    }

    /// CreateModelImportJob: checks the names and the source folder's location and
    /// queues the job (the folder is read when it runs).
    pub fn create_import_job(
        &self,
        principal: &Principal,
        mut spec: ImportSpec,
    ) -> Result<ImportJob, CoreError> {
        let _guard = self
            .creating
            .lock()
            .map_err(|_| CoreError::Internal("customization lock poisoned".into()))?;
        let jobs = self.all_import_jobs()?;
        if let Some(token) = &spec.client_token {
            if let Some(job) = jobs
                .iter()
                .find(|j| j.spec.client_token.as_deref() == Some(token.as_str()))
            {
                return Ok(job.clone());
            }
        }
        check_names(
            &spec.job_name,
            "importedModelName",
            &spec.imported_model_name,
            &spec.role_arn,
        )?;
        if spec.source_uri.starts_with("s3://") {
            self.core.s3().check(&spec.source_uri)?;
        } else if !self
            .core
            .allowed_paths()
            .existing(&spec.source_uri)?
            .is_dir()
        {
            return Err(CoreError::Validation(format!(
                "{} is not a folder (modelDataSource.s3DataSource.s3Uri names the folder of the model)",
                spec.source_uri
            )));
        }
        if jobs.iter().any(|j| j.spec.job_name == spec.job_name) {
            return Err(CoreError::Conflict(format!(
                "a model import job named {:?} already exists",
                spec.job_name
            )));
        }
        let pending = jobs
            .iter()
            .map(|j| (j.state, j.spec.imported_model_name.as_str()));
        if self.model_name_taken(&spec.imported_model_name, pending)? {
            return Err(CoreError::Conflict(format!(
                "a model named {:?} already exists or is being imported",
                spec.imported_model_name
            )));
        }
        spec.key_id = Some(principal.key_id.clone());
        let id = random_id(12, LOWER_ALNUM);
        let payload = serde_json::to_string(&spec)
            .map_err(|e| CoreError::Internal(format!("import spec: {e}")))?;
        self.jobs.submit(&id, JobKind::Import, &payload)?;
        match self.jobs.job(&id)? {
            Some(r) => ImportJob::from_record(r),
            None => Err(CoreError::Internal(format!(
                "job {id} vanished after creation"
            ))),
        }
    }

    fn all_import_jobs(&self) -> Result<Vec<ImportJob>, CoreError> {
        self.jobs
            .list(Some(JobKind::Import))?
            .into_iter()
            .map(ImportJob::from_record)
            .collect()
    }

    pub fn import_job_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:model-import-job/{id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    /// GetModelImportJob.
    pub fn import_job(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<ImportJob, CoreError> {
        let missing =
            || CoreError::NotFound(format!("model import job {identifier} does not exist"));
        let id = job_id(identifier).map_err(|_| missing())?;
        match self.jobs.job(id)? {
            Some(r) if r.kind == JobKind::Import.as_str() => {
                let job = ImportJob::from_record(r)?;
                if principal.may_act_on(job.spec.key_id.as_deref()) {
                    Ok(job)
                } else {
                    Err(missing())
                }
            }
            _ => Err(missing()),
        }
    }

    /// ListModelImportJobs: those `principal` may see, oldest first.
    pub fn list_import_jobs(&self, principal: &Principal) -> Result<Vec<ImportJob>, CoreError> {
        Ok(self
            .all_import_jobs()?
            .into_iter()
            .filter(|j| principal.may_act_on(j.spec.key_id.as_deref()))
            .collect())
    }

    fn imported_record(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<CustomModelRecord, CoreError> {
        let store = self.core.custom_models().store();
        let id = crate::custom_models::imported_model_id(identifier).unwrap_or(identifier);
        let record = match store.custom_model(id).map_err(store_error)? {
            Some(r) => Some(r),
            None => store
                .custom_model_by_name(identifier)
                .map_err(store_error)?,
        };
        match record {
            Some(r)
                if principal.may_act_on(r.key_id.as_deref())
                    && r.customization_type == crate::custom_models::IMPORTED =>
            {
                Ok(r)
            }
            _ => Err(CoreError::NotFound(format!(
                "imported model {identifier} does not exist"
            ))),
        }
    }

    /// GetImportedModel by name, ID or ARN: the record and its description.
    pub fn imported_model(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<(CustomModelRecord, ImportDetails), CoreError> {
        let record = self.imported_record(principal, identifier)?;
        let details = serde_json::from_str(&record.details_json).map_err(|e| {
            CoreError::Internal(format!("stored imported model {}: {e}", record.id))
        })?;
        Ok((record, details))
    }

    /// ListImportedModels: those `principal` may see, oldest first.
    pub fn list_imported_models(
        &self,
        principal: &Principal,
    ) -> Result<Vec<(CustomModelRecord, ImportDetails)>, CoreError> {
        self.core
            .custom_models()
            .store()
            .list_custom_models()
            .map_err(store_error)?
            .into_iter()
            .filter(|r| principal.may_act_on(r.key_id.as_deref()))
            .filter(|r| r.customization_type == crate::custom_models::IMPORTED)
            .map(|r| {
                let details = serde_json::from_str(&r.details_json).map_err(|e| {
                    CoreError::Internal(format!("stored imported model {}: {e}", r.id))
                })?;
                Ok((r, details))
            })
            .collect()
    }

    /// DeleteImportedModel: its files go with it.
    pub async fn delete_imported_model(
        &self,
        principal: &Principal,
        identifier: &str,
    ) -> Result<(), CoreError> {
        let record = self.imported_record(principal, identifier)?;
        self.remove_model_files(&record).await
    }

    async fn remove_model_files(&self, record: &CustomModelRecord) -> Result<(), CoreError> {
        self.core
            .custom_models()
            .store()
            .delete_custom_model(&record.id)
            .map_err(store_error)?;
        let models = self.core.custom_models();
        models.unload(&record.id);
        // This node's files (the model's folder where it was made, or this node's
        // copy), then the shared copy; other nodes drop theirs when next asked.
        let dir = std::path::Path::new(&record.adapter_path)
            .parent()
            .filter(|d| d.ends_with(&record.id) && d.exists())
            .map(std::path::Path::to_path_buf);
        if let Some(dir) = dir {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted model's files");
            }
        }
        models.artifacts().forget(&record.id);
        models.artifacts().remove(record).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_bedrocks_patterns() {
        assert!(valid_job_name("ft-1.v2+x"));
        assert!(!valid_job_name("-ft"));
        assert!(!valid_job_name(""));
        assert!(!valid_job_name(&"a".repeat(64)));
        assert!(valid_model_name("support-bot_2"));
        assert!(!valid_model_name("support--bot"));
        assert!(!valid_model_name("bot!"));
        assert!(!valid_model_name(""));
    }

    #[test]
    fn job_identifiers_are_ids_or_arns() -> Result<(), CoreError> {
        assert_eq!(job_id("abcdef123456")?, "abcdef123456");
        assert_eq!(
            job_id("arn:aws:bedrock:us-east-1:0:model-customization-job/m:0/abcdef123456")?,
            "abcdef123456"
        );
        assert!(job_id("nope").is_err());
        Ok(())
    }
}
