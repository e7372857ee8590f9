//! Model import, as Bedrock's CreateModelImportJob: a `file://` or `s3://` folder
//! holding a GGUF model (served as it is, by the local engine) or a Hugging Face PEFT
//! LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`, converted to a
//! GGUF adapter onto the catalog model it was trained on). The result is an imported
//! model (`…:imported-model/<id>`), invocable on demand; a cold one answers
//! ModelNotReady while its engine loads.
//!
//! A Hugging Face model folder (`config.json`, the tokenizer files and `*.safetensors`
//! of a Llama, Mistral or Qwen2 layout) is converted to GGUF in Rust
//! ([`basalt_engine::convert`]) and quantized by llama.cpp's quantizer to
//! `[customization] import_quantization`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use basalt_engine::convert;
use basalt_store::{CustomModelRecord, JobState};
use serde::{Deserialize, Serialize};

use super::CustomizationService;
use crate::catalog::EngineKind;
use crate::common::{now_ms, random_id, LOWER_ALNUM};
use crate::custom_models::IMPORTED;
use crate::jobs::{ActiveJob, JobEnd, JobHandler, JobKind, JobProgress};
use crate::CoreError;

/// What CreateModelImportJob asks for (the job's payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSpec {
    pub job_name: String,
    pub imported_model_name: String,
    pub role_arn: String,
    /// The folder (`modelDataSource.s3DataSource.s3Uri`).
    pub source_uri: String,
    pub client_token: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
}

/// What an import job produced (its checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportResult {
    pub imported_model_id: Option<String>,
}

/// An import job as the service gives it out.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportJob {
    pub id: String,
    pub spec: ImportSpec,
    pub state: JobState,
    pub message: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub end_ms: Option<i64>,
    pub result: ImportResult,
}

/// How an imported model is described (GetImportedModel).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImportDetails {
    pub spec: ImportSpec,
    /// `general.architecture` of the model (of the base, for an adapter).
    pub architecture: String,
    /// Whether it has a chat template (Converse works).
    pub instruct_supported: bool,
    /// What the folder held: `GGUF` or `PEFT_LORA`.
    pub format: String,
}

impl ImportJob {
    pub(crate) fn from_record(record: crate::jobs::JobRecord) -> Result<Self, CoreError> {
        let spec: ImportSpec = serde_json::from_str(&record.payload)
            .map_err(|e| CoreError::Internal(format!("stored import job {}: {e}", record.id)))?;
        let result = record
            .checkpoint
            .as_deref()
            .map(serde_json::from_str::<ImportResult>)
            .transpose()
            .map_err(|e| CoreError::Internal(format!("stored import result {}: {e}", record.id)))?
            .unwrap_or_default();
        Ok(Self {
            id: record.id,
            spec,
            state: record.state,
            message: record.message,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            end_ms: record.end_time_ms,
            result,
        })
    }
}

/// The job runner's handler for import jobs.
pub struct ImportJobs {
    service: Arc<CustomizationService>,
}

impl ImportJobs {
    pub fn new(service: Arc<CustomizationService>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl JobHandler for ImportJobs {
    fn kind(&self) -> JobKind {
        JobKind::Import
    }

    async fn run(&self, job: ActiveJob) -> JobEnd {
        match self.import(&job).await {
            Ok(()) => JobEnd::ended(JobState::Completed, None),
            Err(e) if job.lease_lost() => {
                tracing::warn!(job = job.id(), error = %e, "import job lost its lease");
                JobEnd::Released
            }
            Err(e) => JobEnd::ended(JobState::Failed, Some(e.to_string())),
        }
    }
}

/// The files of a source folder, by name.
struct Folder {
    dir: PathBuf,
    names: Vec<String>,
}

impl ImportJobs {
    async fn import(&self, job: &ActiveJob) -> Result<(), CoreError> {
        let spec: ImportSpec = serde_json::from_str(&job.record().payload)
            .map_err(|e| CoreError::Internal(format!("stored import job: {e}")))?;
        job.set_state(JobState::InProgress, &[JobState::Stopping])?;
        let service = &self.service;
        let store = service.core().custom_models().store();
        // A run that recorded the model and died before ending the job.
        if let Some(existing) = store
            .custom_model_by_name(&spec.imported_model_name)
            .map_err(|e| CoreError::Internal(e.to_string()))?
        {
            if existing.job_id == job.id() {
                return self.finish(job, &existing.id);
            }
            return Err(CoreError::Conflict(format!(
                "a model named {:?} was created while this job ran",
                spec.imported_model_name
            )));
        }
        let id = random_id(12, LOWER_ALNUM);
        let dir = service.data_root().join("models").join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CoreError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let result = self.convert(&spec, &dir).await;
        let (path, base_model_id, details) = match result {
            Ok(found) => found,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // What came from S3 was only needed for the conversion.
        let _ = std::fs::remove_dir_all(dir.join("source"));
        let sha256 = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || crate::model_artifacts::file_sha256(&path))
                .await
                .map_err(|e| CoreError::Internal(format!("the checksum stopped: {e}")))??
        };
        // Other nodes of a fleet copy the file from the shared location, so it is
        // there before the record that names it.
        if let Err(e) = service
            .core()
            .custom_models()
            .artifacts()
            .publish(&id, &path)
            .await
        {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let record = CustomModelRecord {
            id: id.clone(),
            name: spec.imported_model_name.clone(),
            key_id: spec.key_id.clone(),
            base_model_id,
            job_id: job.id().to_owned(),
            customization_type: IMPORTED.to_owned(),
            adapter_path: path.to_string_lossy().into_owned(),
            adapter_sha256: sha256,
            details_json: serde_json::to_string(&details)
                .map_err(|e| CoreError::Internal(e.to_string()))?,
            created_ms: now_ms(),
        };
        store.insert_custom_model(&record).map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            CoreError::Internal(format!("cannot record the imported model: {e}"))
        })?;
        self.finish(job, &id)
    }

    fn finish(&self, job: &ActiveJob, model_id: &str) -> Result<(), CoreError> {
        let result = ImportResult {
            imported_model_id: Some(model_id.to_owned()),
        };
        let text =
            serde_json::to_string(&result).map_err(|e| CoreError::Internal(e.to_string()))?;
        job.save_progress(
            JobProgress {
                done: 1,
                total: Some(1),
            },
            Some(&text),
        )?;
        Ok(())
    }

    /// Brings the source folder here and turns it into a GGUF file in `dir`: the
    /// model's path, its base (for an adapter) and its description.
    async fn convert(
        &self,
        spec: &ImportSpec,
        dir: &Path,
    ) -> Result<(PathBuf, String, ImportDetails), CoreError> {
        let folder = self.fetch(&spec.source_uri, dir).await?;
        let has = |name: &str| folder.names.iter().any(|n| n == name);
        let ggufs: Vec<String> = folder
            .names
            .iter()
            .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
            .cloned()
            .collect();
        let hf_model = has("config.json");
        if has("adapter_config.json") {
            return self.convert_peft(spec, &folder, dir);
        }
        match ggufs.as_slice() {
            [one] => {
                let source = folder.dir.join(one);
                let target = dir.join("model.gguf");
                copy_file(&source, &target)?;
                let info = basalt_train::describe_gguf(&target)
                    .map_err(|e| CoreError::Validation(e.to_string()))?;
                if info.kind == "adapter" {
                    return Err(CoreError::Validation(format!(
                        "{one} is a LoRA adapter, not a model; import a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) instead"
                    )));
                }
                Ok((
                    target,
                    String::new(),
                    ImportDetails {
                        spec: spec.clone(),
                        architecture: info.architecture,
                        instruct_supported: info.chat_template,
                        format: "GGUF".into(),
                    },
                ))
            }
            [] if hf_model => self.convert_hf(spec, folder, dir).await,
            [] => Err(CoreError::Validation(format!(
                "{} holds no GGUF file and no PEFT adapter (adapter_config.json + adapter_model.safetensors)",
                spec.source_uri
            ))),
            _ => Err(CoreError::Validation(format!(
                "{} holds more than one GGUF file; put one model in a folder",
                spec.source_uri
            ))),
        }
    }

    /// A Hugging Face model folder: converted to GGUF beside the model, then quantized
    /// into `model.gguf`, on a blocking thread (a large model takes minutes).
    async fn convert_hf(
        &self,
        spec: &ImportSpec,
        folder: Folder,
        dir: &Path,
    ) -> Result<(PathBuf, String, ImportDetails), CoreError> {
        let config = self.service.config();
        let quantization = config.import_quantization;
        let threads = config.job_threads();
        let converted_path = dir.join("converted.gguf");
        let target = dir.join("model.gguf");
        let target_path = target.clone();
        let name = spec.imported_model_name.clone();
        let model = tokio::task::spawn_blocking(move || {
            let model =
                convert::convert_hf_model(&folder.dir, &folder.names, &converted_path, &name)?;
            let quantized = convert::quantize(&converted_path, &target_path, quantization, threads);
            let _ = std::fs::remove_file(&converted_path);
            quantized.map(|()| model)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("the conversion stopped: {e}")))?
        .map_err(|e| match e {
            convert::ConvertError::Refused(why) => {
                CoreError::Validation(format!("{}: {why}", spec.source_uri))
            }
            other => CoreError::Internal(other.to_string()),
        })?;
        tracing::info!(
            model = %spec.imported_model_name,
            architecture = %model.architecture,
            parameters = model.parameters,
            quantization = quantization.name(),
            "converted a Hugging Face model folder"
        );
        Ok((
            target,
            String::new(),
            ImportDetails {
                spec: spec.clone(),
                architecture: model.architecture,
                instruct_supported: model.chat_template,
                format: format!("HF_SAFETENSORS:{}", quantization.name()),
            },
        ))
    }

    fn convert_peft(
        &self,
        spec: &ImportSpec,
        folder: &Folder,
        dir: &Path,
    ) -> Result<(PathBuf, String, ImportDetails), CoreError> {
        let config_text = std::fs::read_to_string(folder.dir.join("adapter_config.json"))
            .map_err(|e| CoreError::Validation(format!("adapter_config.json: {e}")))?;
        let config: serde_json::Value = serde_json::from_str(&config_text)
            .map_err(|e| CoreError::Validation(format!("adapter_config.json is not JSON: {e}")))?;
        let named = config
            .get("base_model_name_or_path")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let core = self.service.core();
        let base = base_for(core.catalog(), named)?;
        let engine = core.local_chat_engine(base).ok_or_else(|| {
            CoreError::Validation(format!(
                "model {} is not served by a local engine here",
                base.id
            ))
        })?;
        let base_config = basalt_train::LlamaConfig::read(&engine.config().model_path)
            .map_err(|e| CoreError::Validation(e.to_string()))?;
        let target = dir.join("adapter.gguf");
        basalt_train::convert_peft_adapter(&folder.dir, &base_config, &target)
            .map_err(|e| CoreError::Validation(format!("the PEFT adapter: {e}")))?;
        Ok((
            target,
            base.id.clone(),
            ImportDetails {
                spec: spec.clone(),
                architecture: base_config.architecture,
                instruct_supported: true,
                format: "PEFT_LORA".into(),
            },
        ))
    }

    /// The source folder's files, read in place (`file://`) or downloaded into
    /// `dir/source` (`s3://`).
    async fn fetch(&self, uri: &str, dir: &Path) -> Result<Folder, CoreError> {
        let core = self.service.core();
        if uri.starts_with("s3://") {
            let location = core.s3().check(uri)?;
            let objects = core.s3().objects_under(&location).await?;
            let objects: Vec<_> = objects
                .into_iter()
                .filter(|o| !o.name.is_empty() && !o.name.contains('/'))
                .collect();
            self.check_size(uri, objects.iter().map(|o| o.size))?;
            let local = dir.join("source");
            std::fs::create_dir_all(&local).map_err(|e| {
                CoreError::Internal(format!("cannot create {}: {e}", local.display()))
            })?;
            let mut names = Vec::new();
            for object in &objects {
                core.s3()
                    .download(&location.bucket, object, &local.join(&object.name))
                    .await?;
                names.push(object.name.clone());
            }
            return Ok(Folder { dir: local, names });
        }
        let path = core.allowed_paths().existing(uri)?;
        if !path.is_dir() {
            return Err(CoreError::Validation(format!("{uri} is not a folder")));
        }
        let mut names = Vec::new();
        let mut sizes = Vec::new();
        let entries = std::fs::read_dir(&path)
            .map_err(|e| CoreError::Validation(format!("{uri} cannot be listed: {e}")))?;
        for entry in entries.flatten() {
            // Every file is opened by the path the allowed-paths check resolves
            // (a symlink out of the allowed folders is refused).
            let resolved = core.allowed_paths().resolve(&entry.path())?;
            if resolved.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
                sizes.push(resolved.metadata().map(|m| m.len()).unwrap_or(0));
            }
        }
        self.check_size(uri, sizes)?;
        Ok(Folder { dir: path, names })
    }

    /// Refuses a folder larger than `[customization] max_import_bytes`.
    fn check_size(&self, uri: &str, sizes: impl IntoIterator<Item = u64>) -> Result<(), CoreError> {
        let total: u64 = sizes.into_iter().fold(0u64, u64::saturating_add);
        let limit = self.service.config().max_import_bytes;
        if total > limit {
            return Err(CoreError::Validation(format!(
                "{uri} holds {total} bytes; [customization] max_import_bytes allows {limit}"
            )));
        }
        Ok(())
    }
}

fn copy_file(from: &Path, to: &Path) -> Result<(), CoreError> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| CoreError::Internal(format!("cannot copy {}: {e}", from.display())))
}

/// The catalog model a PEFT adapter was trained on: `base_model_name_or_path` as a
/// catalog ID or alias, or a Hugging Face repository whose name the IDs of local
/// llama.cpp models contain (`HuggingFaceTB/SmolLM2-135M-Instruct` →
/// `huggingfacetb.smollm2-135m-instruct-v1:0`). Entries on the same weights file are
/// the same base: the active one that allows customization is taken.
fn base_for<'c>(
    catalog: &'c crate::catalog::Catalog,
    named: &str,
) -> Result<&'c crate::catalog::ModelEntry, CoreError> {
    if let Some(entry) = catalog.lookup(named) {
        return Ok(entry);
    }
    let repo = named
        .rsplit('/')
        .next()
        .unwrap_or(named)
        .to_ascii_lowercase();
    let matches: Vec<&crate::catalog::ModelEntry> = catalog
        .models()
        .filter(|m| m.engine == EngineKind::LlamaCpp && !repo.is_empty() && m.id.contains(&repo))
        .collect();
    let mut weights: Vec<&Option<String>> = matches.iter().map(|m| &m.weights).collect();
    weights.dedup();
    if weights.len() > 1 {
        return Err(CoreError::Validation(format!(
            "base_model_name_or_path {named:?} matches catalog models on different weights; set it to one catalog model ID"
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    let active = |m: &&&crate::catalog::ModelEntry| {
        m.lifecycle.status_at(now) == crate::catalog::LifecycleStatus::Active
    };
    matches
        .iter()
        .filter(active)
        .find(|m| !m.customizations.is_empty())
        .or_else(|| matches.iter().find(active))
        .copied()
        .ok_or_else(|| {
            CoreError::Validation(format!(
                "adapter_config.json's base_model_name_or_path {named:?} names no active local model of this server's catalog; set it to the catalog model ID the adapter was trained on"
            ))
        })
}
