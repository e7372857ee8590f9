//! A customization job's run on the job runner: read and check the data, tokenize it
//! with the serving engine, train, write Bedrock's metrics files and the adapter,
//! record the custom model. Checkpoints every `checkpoint_every_steps`: a job killed
//! mid-way resumes from its last checkpoint (the steps after it are trained again,
//! and their metrics rows written once).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use basalt_engine::chat::{ChatEngine, ChatMessage};
use basalt_store::{CustomModelRecord, JobProgress, JobState};
use basalt_train::{Example, LlamaModel, LoraSpec, Target, TrainConfig, Trainer};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::data::{self, DataKind, DataLimits, Role, TrainingRecord};
use super::hyper::{parse_hyper_parameters, HyperParameters};
use super::{
    CustomizationKind, CustomizationService, CustomizationSpec, LossRow, Phase, TrainingState,
};
use crate::common::{now_ms, random_id, LOWER_ALNUM};
use crate::jobs::{ActiveJob, JobEnd, JobHandler, JobKind};
use crate::CoreError;

/// Bedrock's status name of a job state.
pub(crate) fn bedrock_status(state: JobState) -> &'static str {
    match state {
        JobState::Completed | JobState::PartiallyCompleted => "Completed",
        JobState::Failed | JobState::Expired => "Failed",
        JobState::Stopping => "Stopping",
        JobState::Stopped => "Stopped",
        _ => "InProgress",
    }
}

/// What a custom model's record keeps of the job that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ModelDetails {
    pub spec: CustomizationSpec,
    pub training_loss: Option<f64>,
    pub validation_loss: Option<f64>,
}

/// The job runner's handler for customization jobs.
pub struct CustomizationJobs {
    service: Arc<CustomizationService>,
}

impl CustomizationJobs {
    pub fn new(service: Arc<CustomizationService>) -> Self {
        Self { service }
    }
}

/// Why a run stopped before its end.
enum Halt {
    Failed(String),
    Stopped,
    Released,
}

impl From<CoreError> for Halt {
    fn from(e: CoreError) -> Self {
        Halt::Failed(e.to_string())
    }
}

impl From<basalt_train::TrainError> for Halt {
    fn from(e: basalt_train::TrainError) -> Self {
        Halt::Failed(format!("training: {e}"))
    }
}

#[async_trait]
impl JobHandler for CustomizationJobs {
    fn kind(&self) -> JobKind {
        JobKind::Customization
    }

    fn max_running(&self) -> usize {
        self.service.config().max_running.max(1)
    }

    async fn run(&self, job: ActiveJob) -> JobEnd {
        match self.run_job(&job).await {
            Ok(()) => JobEnd::ended(JobState::Completed, None),
            Err(Halt::Stopped) => JobEnd::ended(JobState::Stopped, None),
            Err(Halt::Released) => JobEnd::Released,
            Err(Halt::Failed(message)) => {
                tracing::warn!(job = job.id(), %message, "customization job failed");
                JobEnd::ended(JobState::Failed, Some(message))
            }
        }
    }
}

/// A job's files on the server: checkpoints, and output staged for `s3://`.
struct JobFiles {
    work: PathBuf,
    /// `<output>/model-customization-job-<id>/` on the local disk.
    output: PathBuf,
    /// Where to upload `output` at the end (`s3://` outputs).
    upload: Option<crate::s3::S3Uri>,
}

impl JobFiles {
    fn training_csv(&self) -> PathBuf {
        self.output
            .join("training_artifacts")
            .join("step_wise_training_metrics.csv")
    }

    fn validation_csv(&self) -> PathBuf {
        self.output
            .join("validation_artifacts")
            .join("post_fine_tuning_validation")
            .join("validation")
            .join("validation_metrics.csv")
    }

    fn checkpoint(&self) -> PathBuf {
        self.work.join("checkpoint.safetensors")
    }
}

/// Where a job's metrics files are on this server: its output folder (`file://`
/// outputs) or the staging copy of it (`s3://` outputs). None when the output is
/// not a place this server may write.
pub(super) fn metrics_files(
    service: &CustomizationService,
    id: &str,
    spec: &CustomizationSpec,
) -> Option<(PathBuf, PathBuf)> {
    let leaf = format!("model-customization-job-{id}");
    let output = if spec.output_uri.starts_with("s3://") {
        service
            .data_root()
            .join("jobs")
            .join(id)
            .join("output")
            .join(&leaf)
    } else {
        service
            .core()
            .allowed_paths()
            .writable_dir(&spec.output_uri)
            .ok()?
            .join(&leaf)
    };
    let files = JobFiles {
        work: PathBuf::new(),
        output,
        upload: None,
    };
    Some((files.training_csv(), files.validation_csv()))
}

/// The rows of a metrics CSV (`step,epoch,loss,perplexity`), at most `max`, the
/// last ones kept; a missing file has none.
pub(super) fn read_loss_rows(path: &Path, max: usize) -> Vec<super::LossPoint> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let rows: Vec<super::LossPoint> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cells = line.split(',');
            Some(super::LossPoint {
                step: cells.next()?.trim().parse().ok()?,
                epoch: cells.next()?.trim().parse().ok()?,
                loss: cells.next()?.trim().parse().ok()?,
            })
        })
        .collect();
    let skip = rows.len().saturating_sub(max);
    rows.into_iter().skip(skip).collect()
}

const TRAINING_HEADER: &str = "step_number,epoch_number,training_loss,perplexity";
const VALIDATION_HEADER: &str = "step_number,epoch_number,validation_loss,perplexity";

fn csv_row(row: &LossRow) -> String {
    format!(
        "{},{},{},{}\n",
        row.step,
        row.epoch,
        row.loss,
        row.loss.exp()
    )
}

/// Writes a metrics file whole: the header and `rows`.
fn write_csv(path: &Path, header: &str, rows: &[LossRow]) -> Result<(), Halt> {
    let io = |e: std::io::Error| Halt::Failed(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = format!("{header}\n");
    for row in rows {
        text.push_str(&csv_row(row));
    }
    std::fs::write(path, text).map_err(io)
}

/// Keeps a metrics file's rows of the steps before `below` (a resumed job trains the
/// rest again); a missing file is written with its header.
fn keep_csv_rows(path: &Path, header: &str, below: usize) -> Result<(), Halt> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Halt::Failed(format!("cannot read {}: {e}", path.display()))),
    };
    let mut kept = format!("{header}\n");
    for line in text.lines().skip(1) {
        let step = line.split(',').next().and_then(|s| s.parse::<usize>().ok());
        if step.is_some_and(|s| s < below) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(path, kept)
        .map_err(|e| Halt::Failed(format!("cannot write {}: {e}", path.display())))
}

fn append_csv(path: &Path, row: &LossRow) -> Result<(), Halt> {
    let io = |e: std::io::Error| Halt::Failed(format!("cannot write {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(csv_row(row).as_bytes()).map_err(io)
}

impl CustomizationJobs {
    async fn run_job(&self, job: &ActiveJob) -> Result<(), Halt> {
        let service = &self.service;
        let record = job.record();
        let spec: CustomizationSpec = serde_json::from_str(&record.payload)
            .map_err(|e| Halt::Failed(format!("stored job: {e}")))?;
        let mut state: TrainingState = job
            .checkpoint()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| Halt::Failed(format!("stored checkpoint: {e}")))?
            .unwrap_or_default();
        let hyper = parse_hyper_parameters(&spec.hyper_parameters).map_err(Halt::Failed)?;
        job.set_state(JobState::InProgress, &[JobState::Stopping])?;
        let files = self.files(job.id(), &spec)?;
        let core = Arc::clone(service.core());
        let entry = core.resolve(&spec.base_model_id)?.into_owned();
        let engine = core.local_chat_engine(&entry).ok_or_else(|| {
            Halt::Failed(format!(
                "model {} is not served by a local engine here",
                entry.id
            ))
        })?;
        // Validation: every line of every file read and checked before any training.
        mark(&mut state, Phase::Validation);
        save(job, &state)?;
        let kind = match spec.customization_type {
            CustomizationKind::FineTuning => DataKind::FineTuning,
            CustomizationKind::ContinuedPreTraining => DataKind::ContinuedPreTraining,
        };
        let limits = DataLimits {
            max_records: service.config().max_records,
            ..DataLimits::default()
        };
        let training = self
            .read_records(&spec.training_uri, kind, &limits, "training")
            .await?;
        let mut validation = Vec::new();
        for uri in &spec.validation_uris {
            validation.extend(self.read_records(uri, kind, &limits, "validation").await?);
        }
        check_stop(job)?;
        // Data processing: the serving engine's tokenizer and chat template.
        mark(&mut state, Phase::DataProcessing);
        save(job, &state)?;
        let max_len = hyper.max_sequence_length as usize;
        let train_examples = tokenize_all(&engine, &training, max_len, "training")?;
        let validation_examples = tokenize_all(&engine, &validation, max_len, "validation")?;
        let tokens: u64 = train_examples.iter().map(|e| e.tokens.len() as u64).sum();
        let budget = service.config().max_training_tokens;
        if tokens.saturating_mul(u64::from(hyper.epoch_count)) > budget {
            return Err(Halt::Failed(format!(
                "the training data is {tokens} tokens × {} epochs, over this server's limit of {budget} tokens ([customization] max_training_tokens)",
                hyper.epoch_count
            )));
        }
        check_stop(job)?;
        mark(&mut state, Phase::Training);
        let model_path = engine.config().model_path.clone();
        let result = self
            .train(
                job,
                &files,
                &model_path,
                &hyper,
                train_examples,
                validation_examples,
                state,
            )
            .await?;
        let (state, adapter) = result;
        self.finish(job, &spec, &files, state, &adapter).await
    }

    fn files(&self, id: &str, spec: &CustomizationSpec) -> Result<JobFiles, Halt> {
        let work = self.service.data_root().join("jobs").join(id);
        let leaf = format!("model-customization-job-{id}");
        let core = self.service.core();
        let (output, upload) = if spec.output_uri.starts_with("s3://") {
            let uri = core.s3().check(&spec.output_uri)?;
            (work.join("output").join(&leaf), Some(uri))
        } else {
            (
                core.allowed_paths()
                    .writable_dir(&spec.output_uri)?
                    .join(&leaf),
                None,
            )
        };
        for dir in [&work, &output] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Halt::Failed(format!("cannot create {}: {e}", dir.display())))?;
        }
        Ok(JobFiles {
            work,
            output,
            upload,
        })
    }

    async fn read_records(
        &self,
        uri: &str,
        kind: DataKind,
        limits: &DataLimits,
        what: &str,
    ) -> Result<Vec<TrainingRecord>, Halt> {
        let bytes = self.read_file(uri).await?;
        data::parse_jsonl(&bytes, kind, limits)
            .map_err(|errors| Halt::Failed(format!("{what} data {uri}: {errors}")))
    }

    async fn read_file(&self, uri: &str) -> Result<Vec<u8>, Halt> {
        let core = self.service.core();
        let limit = self.service.config().max_data_bytes;
        if uri.starts_with("s3://") {
            let location = core.s3().check(uri)?;
            let objects = core.s3().objects(&location, "").await?;
            let [object] = objects.as_slice() else {
                return Err(Halt::Failed(format!("{uri} is not one object")));
            };
            return Ok(core.s3().read(&location.bucket, object, limit).await?);
        }
        let path = core.allowed_paths().existing(uri)?;
        let size = std::fs::metadata(&path)
            .map_err(|e| Halt::Failed(format!("{uri} cannot be read: {e}")))?
            .len();
        if size > limit {
            return Err(Halt::Failed(format!(
                "{uri} is {size} bytes; the limit is {limit} ([customization] max_data_bytes)"
            )));
        }
        tokio::fs::read(&path)
            .await
            .map_err(|e| Halt::Failed(format!("{uri} cannot be read: {e}")))
    }

    #[allow(clippy::too_many_arguments)]
    async fn train(
        &self,
        job: &ActiveJob,
        files: &JobFiles,
        model_path: &Path,
        hyper: &HyperParameters,
        train_examples: Vec<Example>,
        validation_examples: Vec<Example>,
        mut state: TrainingState,
    ) -> Result<(TrainingState, PathBuf), Halt> {
        let config = TrainConfig {
            epochs: hyper.epoch_count as usize,
            batch_size: hyper.batch_size as usize,
            learning_rate: hyper.learning_rate,
            warmup_steps: hyper.warmup_steps as usize,
            weight_decay: hyper.weight_decay,
            lora: LoraSpec {
                rank: hyper.lora_rank as usize,
                alpha: hyper.lora_alpha,
                targets: hyper
                    .lora_target_modules
                    .iter()
                    .filter_map(|m| Target::parse(m))
                    .collect(),
                top_layers: hyper.lora_layers as usize,
            },
            seed: hyper.seed,
            shuffle: true,
        };
        let threads = self.service.config().job_threads();
        let every = self.service.config().checkpoint_every_steps.max(1);
        let job = job.clone();
        let model_path = model_path.to_path_buf();
        let training_csv = files.training_csv();
        let validation_csv = files.validation_csv();
        let checkpoint = files.checkpoint();
        let adapter = files.work.join("adapter.gguf");
        tokio::task::spawn_blocking(move || {
            // The engines plan around the job's threads while it trains.
            let _cores = basalt_engine::cpu::budget().background_work(threads);
            basalt_train::with_threads(
                threads,
                move || -> Result<(TrainingState, PathBuf), Halt> {
                    let model = LlamaModel::load(&model_path)?;
                    let mut trainer = Trainer::new(&model, config, train_examples)?;
                    state.total_steps = trainer.total_steps();
                    if state.checkpoint_step > 0 && checkpoint.is_file() {
                        let at = trainer.resume(&checkpoint)?;
                        // The steps after the checkpoint are trained again: their rows go.
                        keep_csv_rows(&training_csv, TRAINING_HEADER, at)?;
                        if !validation_examples.is_empty() {
                            keep_csv_rows(&validation_csv, VALIDATION_HEADER, at)?;
                        }
                        state.validation.retain(|r| r.step < at);
                        state.checkpoint_step = at;
                        tracing::info!(
                            job = job.id(),
                            step = at,
                            "customization job resumed from its checkpoint"
                        );
                    } else {
                        state.last_step = None;
                        state.validation.clear();
                        state.checkpoint_step = 0;
                        write_csv(&training_csv, TRAINING_HEADER, &[])?;
                        if !validation_examples.is_empty() {
                            write_csv(&validation_csv, VALIDATION_HEADER, &[])?;
                        }
                    }
                    save(&job, &state)?;
                    let per_epoch = trainer.steps_per_epoch();
                    while !trainer.finished() {
                        check_stop(&job)?;
                        let metrics = trainer.step()?;
                        let row = LossRow {
                            step: metrics.step,
                            epoch: metrics.epoch,
                            loss: metrics.loss,
                        };
                        append_csv(&training_csv, &row)?;
                        state.last_step = Some(row);
                        let done = trainer.steps_done();
                        if !validation_examples.is_empty() && done % per_epoch == 0 {
                            let loss = trainer.evaluate(&validation_examples)?;
                            let row = LossRow {
                                step: done - 1,
                                epoch: metrics.epoch,
                                loss,
                            };
                            append_csv(&validation_csv, &row)?;
                            state.validation.push(row);
                        }
                        if done % every == 0 || trainer.finished() {
                            trainer.save_checkpoint(&checkpoint)?;
                            state.checkpoint_step = done;
                            save(&job, &state)?;
                        }
                    }
                    basalt_train::write_gguf_adapter(&adapter, model.config(), trainer.lora())?;
                    Ok((state, adapter))
                },
            )?
        })
        .await
        .map_err(|e| Halt::Failed(format!("the training thread failed: {e}")))?
    }

    async fn finish(
        &self,
        job: &ActiveJob,
        spec: &CustomizationSpec,
        files: &JobFiles,
        mut state: TrainingState,
        adapter: &Path,
    ) -> Result<(), Halt> {
        let core = self.service.core();
        let store = core.custom_models().store();
        let existing = store
            .custom_model_by_name(&spec.custom_model_name)
            .map_err(|e| Halt::Failed(e.to_string()))?;
        let model_id = match existing {
            // A run that recorded the model and died before ending the job.
            Some(r) if r.job_id == job.id() => r.id,
            Some(_) => {
                return Err(Halt::Failed(format!(
                    "a custom model named {:?} was created while this job ran",
                    spec.custom_model_name
                )))
            }
            None => {
                let id = random_id(12, LOWER_ALNUM);
                let dir = self.service.data_root().join("models").join(&id);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Halt::Failed(format!("cannot create {}: {e}", dir.display())))?;
                let kept = dir.join("adapter.gguf");
                std::fs::copy(adapter, &kept)
                    .map_err(|e| Halt::Failed(format!("cannot keep the adapter: {e}")))?;
                let bytes = std::fs::read(&kept)
                    .map_err(|e| Halt::Failed(format!("cannot read the adapter: {e}")))?;
                // Other nodes of a fleet copy it from the shared location.
                core.custom_models()
                    .artifacts()
                    .publish(&id, &kept)
                    .await
                    .map_err(|e| Halt::Failed(e.to_string()))?;
                let details = ModelDetails {
                    spec: spec.clone(),
                    training_loss: state.last_step.as_ref().map(|r| r.loss),
                    validation_loss: state.validation.last().map(|r| r.loss),
                };
                store
                    .insert_custom_model(&CustomModelRecord {
                        id: id.clone(),
                        name: spec.custom_model_name.clone(),
                        key_id: spec.key_id.clone(),
                        base_model_id: spec.base_model_id.clone(),
                        job_id: job.id().to_owned(),
                        customization_type: spec.customization_type.as_type().as_str().to_owned(),
                        adapter_path: kept.to_string_lossy().into_owned(),
                        adapter_sha256: hex::encode(sha2::Sha256::digest(&bytes)),
                        details_json: serde_json::to_string(&details)
                            .map_err(|e| Halt::Failed(e.to_string()))?,
                        created_ms: now_ms(),
                    })
                    .map_err(|e| Halt::Failed(format!("cannot record the custom model: {e}")))?;
                id
            }
        };
        let out_adapter = files.output.join("adapter").join("adapter.gguf");
        if let Some(dir) = out_adapter.parent() {
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::copy(adapter, &out_adapter).map(|_| ()))
                .map_err(|e| {
                    Halt::Failed(format!("cannot write the adapter to the output: {e}"))
                })?;
        }
        if let Some(upload) = &files.upload {
            self.upload(&files.output, upload).await?;
        }
        state.custom_model_id = Some(model_id);
        mark(&mut state, Phase::Done);
        save(job, &state)?;
        if let Err(e) = std::fs::remove_dir_all(&files.work) {
            tracing::warn!(job = job.id(), error = %e, "cannot remove a finished job's work files");
        }
        Ok(())
    }

    async fn upload(&self, dir: &Path, to: &crate::s3::S3Uri) -> Result<(), Halt> {
        let core = self.service.core();
        let leaf = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current)
                .map_err(|e| Halt::Failed(format!("cannot list {}: {e}", current.display())))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(dir)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let key = format!("{}{leaf}/{relative}", to.dir_prefix());
                core.s3().upload(&path, &to.bucket, &key).await?;
            }
        }
        Ok(())
    }
}

fn mark(state: &mut TrainingState, phase: Phase) {
    state.phase = phase;
    state
        .phase_times_ms
        .entry(format!("{phase:?}"))
        .or_insert_with(now_ms);
}

fn save(job: &ActiveJob, state: &TrainingState) -> Result<(), Halt> {
    let text = serde_json::to_string(state).map_err(|e| Halt::Failed(e.to_string()))?;
    let progress = JobProgress {
        done: state.checkpoint_step as u64,
        total: (state.total_steps > 0).then_some(state.total_steps as u64),
    };
    if job.save_progress(progress, Some(&text))? {
        Ok(())
    } else {
        Err(Halt::Released)
    }
}

fn check_stop(job: &ActiveJob) -> Result<(), Halt> {
    if job.lease_lost() {
        Err(Halt::Released)
    } else if job.stop_requested() {
        Err(Halt::Stopped)
    } else {
        Ok(())
    }
}

/// Tokens of every record, with the loss on what the model must learn to write.
fn tokenize_all(
    engine: &ChatEngine,
    records: &[TrainingRecord],
    max_len: usize,
    what: &str,
) -> Result<Vec<Example>, Halt> {
    records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let example = tokenize(engine, record)?;
            let mut example = example;
            example.tokens.truncate(max_len);
            example.loss_mask.truncate(max_len);
            if example.targets() == 0 {
                return Err(Halt::Failed(format!(
                    "{what} record {}: nothing to learn within maxSequenceLength {max_len} tokens (the prompt fills it)",
                    i + 1
                )));
            }
            Ok(example)
        })
        .collect()
}

fn to_u32(tokens: &[i32]) -> Vec<u32> {
    tokens.iter().map(|&t| t.max(0) as u32).collect()
}

/// One record as the served model sees it: prompts and conversations through the
/// chat template (the loss on each assistant answer and its end-of-turn token),
/// continued-pre-training text as is (the loss on every token).
fn tokenize(engine: &ChatEngine, record: &TrainingRecord) -> Result<Example, Halt> {
    let eos = engine.eos_token().max(0) as u32;
    let template_error =
        |e: basalt_engine::EngineError| Halt::Failed(format!("chat template: {e}"));
    match record {
        TrainingRecord::Text { input } => {
            let mut tokens: Vec<u32> = engine
                .bos_token()
                .into_iter()
                .map(|t| t.max(0) as u32)
                .collect();
            tokens.extend(to_u32(&engine.tokenize_text(input)));
            tokens.push(eos);
            let loss_mask = vec![true; tokens.len()];
            Ok(Example { tokens, loss_mask })
        }
        TrainingRecord::PromptCompletion { prompt, completion } => {
            let turns = [
                (Role::User, prompt.clone()),
                (Role::Assistant, completion.clone()),
            ];
            conversation(engine, None, &turns, eos).map_err(template_error)
        }
        TrainingRecord::Conversation { system, messages } => {
            conversation(engine, system.as_deref(), messages, eos).map_err(template_error)
        }
    }
}

fn conversation(
    engine: &ChatEngine,
    system: Option<&str>,
    turns: &[(Role, String)],
    eos: u32,
) -> Result<Example, basalt_engine::EngineError> {
    let mut messages: Vec<ChatMessage> = system
        .map(|s| ChatMessage {
            role: "system".into(),
            content: s.to_owned(),
        })
        .into_iter()
        .collect();
    let mut tokens: Vec<u32> = Vec::new();
    let mut loss_mask: Vec<bool> = Vec::new();
    for (role, text) in turns {
        if *role == Role::Assistant {
            // The prompt up to this answer, as the server renders it for generation.
            let prompt = to_u32(&engine.tokenize_chat(&messages)?);
            let shared = prompt
                .iter()
                .zip(&tokens)
                .take_while(|(a, b)| a == b)
                .count();
            if shared < tokens.len() {
                // The template rendered the earlier turns differently once more
                // followed: keep the prompt as rendered now.
                tokens.truncate(shared);
                loss_mask.truncate(shared);
            }
            loss_mask.extend(std::iter::repeat_n(false, prompt.len() - shared));
            tokens.extend_from_slice(&prompt[shared..]);
            let answer = to_u32(&engine.tokenize_text(text));
            loss_mask.extend(std::iter::repeat_n(true, answer.len() + 1));
            tokens.extend(answer);
            tokens.push(eos);
        }
        messages.push(ChatMessage {
            role: match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            }
            .into(),
            content: text.clone(),
        });
    }
    Ok(Example { tokens, loss_mask })
}
