//! Batch jobs on the job runner ([`crate::jobs`]): [`BatchRunner`] is the handler of
//! [`JobKind::Batch`].
//!
//! Durability: the output files are the record of progress. Every output line names
//! its record; a run that starts on a job (first time, after a restart, after
//! `kill -9`, on another node after a takeover) first cuts a half-written last line
//! off each output file, reads which records are there, and runs only the others — so
//! every record is written exactly once. Counts and the manifest are recomputed from
//! the output files when the job ends. Records run `concurrency` at a time
//! (`[batch]`), as batch calls: metered as `BATCH` at half the on-demand price, outside
//! on-demand quotas; a record refused because the engine is busy is retried with
//! back-off rather than failed. A record that was in flight when the process died runs
//! alone next time, and is failed rather than run again after a second death
//! ([`super::journal::CrashJournal`]).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::journal::CrashJournal;
use super::{BatchCounts, BatchJob, BatchService, InvocationType};
use crate::jobs::{now_ms, ActiveJob, JobEnd, JobHandler, JobKind, JobProgress, JobState};
use crate::keys::{KeyLimits, Principal};
use crate::{Basalt, CallContext, CoreError};

/// Why a record failed, as its error line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The HTTP status the same request would have had (`errorCode`).
    pub status: u16,
    pub message: String,
    /// The model was busy (throttled, not ready, unavailable): try again later.
    pub retry: bool,
}

/// Runs one record's model input: the dialect's part of a batch job.
#[async_trait]
pub trait RecordInvoker: Send + Sync {
    /// The model output for `input`, read as `invocation_type` says.
    async fn invoke(
        &self,
        core: &Arc<Basalt>,
        ctx: CallContext,
        model_id: &str,
        invocation_type: InvocationType,
        input: &Value,
    ) -> Result<Value, RecordError>;

    /// Input and output tokens of one record's model output.
    fn token_counts(&self, output: &Value) -> (u64, u64);
}

/// The handler of batch jobs.
pub struct BatchRunner {
    batch: Arc<BatchService>,
    invoker: Arc<dyn RecordInvoker>,
}

impl BatchRunner {
    pub fn new(batch: Arc<BatchService>, invoker: Arc<dyn RecordInvoker>) -> Self {
        Self { batch, invoker }
    }
}

#[async_trait]
impl JobHandler for BatchRunner {
    fn kind(&self) -> JobKind {
        JobKind::Batch
    }

    /// Jobs run one at a time, oldest first, each with `[batch] concurrency` records
    /// in flight.
    fn max_running(&self) -> usize {
        1
    }

    async fn run(&self, active: ActiveJob) -> JobEnd {
        match run_job(&self.batch, &self.invoker, &active).await {
            Ok(end) => end,
            Err(e) => {
                tracing::error!(job = %active.id(), error = %e, "batch job failed");
                JobEnd::ended(JobState::Failed, Some(format!("the job failed: {e}")))
            }
        }
    }
}

fn internal(e: impl std::fmt::Display) -> CoreError {
    CoreError::Internal(e.to_string())
}

/// One input file of a job: where its records are read from here, the name its
/// output file takes (`<name>.out`), and the location the caller gave.
struct InputFile {
    name: String,
    path: PathBuf,
    uri: String,
}

/// The local input files of a job: the file itself, or every `.jsonl` file of a
/// directory; for `s3://` input, the object (or every `.jsonl` object directly under
/// the prefix) copied into the job's staging directory first.
async fn input_files(batch: &BatchService, job: &BatchJob) -> Result<Vec<InputFile>, String> {
    let core = batch.core();
    if job.input_uri.starts_with("s3://") {
        let location = core.s3().check(&job.input_uri).map_err(|e| e.to_string())?;
        let objects = core
            .s3()
            .objects(&location, ".jsonl")
            .await
            .map_err(|e| e.to_string())?;
        let dir = staging_dir(batch, job).join("input");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the staging directory: {e}"))?;
        let mut files = Vec::with_capacity(objects.len());
        for object in objects {
            let path = dir.join(&object.name);
            core.s3()
                .download(&location.bucket, &object, &path)
                .await
                .map_err(|e| e.to_string())?;
            files.push(InputFile {
                name: object.name,
                path,
                uri: location.uri_of(&object.key),
            });
        }
        return Ok(files);
    }
    let path = core
        .allowed_paths()
        .existing(&job.input_uri)
        .map_err(|e| e.to_string())?;
    let file_name = |p: &FsPath| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    if path.is_file() {
        return Ok(vec![InputFile {
            name: file_name(&path),
            uri: job.input_uri.clone(),
            path,
        }]);
    }
    let listed: Vec<PathBuf> = std::fs::read_dir(&path)
        .map_err(|e| format!("{} cannot be listed: {e}", job.input_uri))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    // A file in the folder may be a symlink to anywhere: each is resolved and checked
    // like the folder was, and read by its resolved path.
    let mut files = Vec::with_capacity(listed.len());
    for listed_path in listed {
        let resolved = core
            .allowed_paths()
            .resolve(&listed_path)
            .map_err(|e| e.to_string())?;
        files.push((listed_path, resolved));
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("{} has no .jsonl files", job.input_uri));
    }
    Ok(files
        .into_iter()
        .map(|(listed, resolved)| InputFile {
            name: file_name(&listed),
            uri: format!("file://{}", listed.display()),
            path: resolved,
        })
        .collect())
}

/// A job's own directory for staged `s3://` input and output and its crash journal.
fn staging_dir(batch: &BatchService, job: &BatchJob) -> PathBuf {
    batch.staging_dir().join(&job.id)
}

/// The local directory a job's output lines are written to: `<output>/<job id>/`
/// for `file://` output, the staging directory for `s3://` output (uploaded to
/// `<output>/<job id>/` when the job ends).
fn output_dir(batch: &BatchService, job: &BatchJob) -> Result<PathBuf, CoreError> {
    if job.output_uri.starts_with("s3://") {
        batch.core().s3().check(&job.output_uri)?;
        return Ok(staging_dir(batch, job).join("output"));
    }
    Ok(batch
        .core()
        .allowed_paths()
        .writable_dir(&job.output_uri)?
        .join(&job.id))
}

/// Uploads the output files of an `s3://`-output job to `<output>/<job id>/`.
async fn upload_output(core: &Basalt, job: &BatchJob, out_dir: &FsPath) -> Result<(), CoreError> {
    let location = core.s3().check(&job.output_uri)?;
    let prefix = format!("{}{}/", location.dir_prefix(), job.id);
    let mut files: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .map_err(internal)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "out"))
        .collect();
    files.sort();
    // The manifest last: its presence says the output is whole.
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n == "manifest.json.out"));
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        core.s3()
            .upload(&file, &location.bucket, &format!("{prefix}{name}"))
            .await?;
    }
    Ok(())
}

/// Counts a file's records and checks it is JSONL (its first record parses as a
/// JSON object; later bad lines become error records).
fn validate_file(input: &InputFile, max_line: usize) -> Result<u64, String> {
    let shown = &input.uri;
    let file =
        std::fs::File::open(&input.path).map_err(|e| format!("{shown} cannot be read: {e}"))?;
    let mut records = 0;
    let mut checked = false;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| format!("{} is not UTF-8 text (line {}): {e}", shown, i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > max_line {
            return Err(format!(
                "{} line {} is longer than {max_line} bytes",
                shown,
                i + 1
            ));
        }
        if !checked {
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(_)) => checked = true,
                Ok(_) => {
                    return Err(format!(
                        "{} is not JSONL: line {} is not a JSON object",
                        shown,
                        i + 1
                    ))
                }
                Err(e) => return Err(format!("{} is not JSONL: line {}: {e}", shown, i + 1)),
            }
        }
        records += 1;
    }
    if records == 0 {
        return Err(format!("{} has no records", shown));
    }
    Ok(records)
}

async fn run_job(
    batch: &BatchService,
    invoker: &Arc<dyn RecordInvoker>,
    active: &ActiveJob,
) -> Result<JobEnd, CoreError> {
    let job = batch.batch_job(active.id())?;
    if active.stop_requested() {
        return finish(batch, invoker, &job, Some(JobState::Stopped)).await;
    }
    if now_ms() > job.submit_time_ms + job.timeout_hours * 3_600_000 {
        return Ok(JobEnd::ended(
            JobState::Expired,
            Some("the job ran past its timeoutDurationInHours".into()),
        ));
    }
    let invocation_type = job.invocation_type;
    active.set_state(JobState::Validating, &[JobState::Stopping])?;
    let config = batch.config().clone();
    let validated = input_files(batch, &job).await.and_then(|files| {
        let mut total = 0;
        for f in &files {
            total += validate_file(f, config.max_record_bytes)?;
        }
        if total > config.max_records {
            return Err(format!(
                "the input has {total} records; this server takes at most {} per job",
                config.max_records
            ));
        }
        Ok((files, total))
    });
    let (files, total) = match validated {
        Ok(v) => v,
        Err(message) => return Ok(JobEnd::ended(JobState::Failed, Some(message))),
    };
    batch.set_batch_counts(
        &job.id,
        &BatchCounts {
            total: Some(total),
            ..job.counts
        },
    )?;
    active.set_state(JobState::Scheduled, &[JobState::Stopping])?;
    active.set_state(JobState::InProgress, &[JobState::Stopping])?;
    let out_dir = output_dir(batch, &job)?;
    std::fs::create_dir_all(&out_dir).map_err(internal)?;
    let run = FileRun {
        batch,
        invoker,
        active,
        job: Arc::new(job.clone()),
        invocation_type,
        out_dir: &out_dir,
        processed: Arc::new(AtomicU64::new(0)),
        total,
    };
    for (file_index, file) in files.iter().enumerate() {
        match run.file(file_index, file).await? {
            FileEnd::Done => {}
            FileEnd::Stopped => return finish(batch, invoker, &job, Some(JobState::Stopped)).await,
            FileEnd::LeaseLost => return Ok(JobEnd::Released),
        }
    }
    finish(batch, invoker, &job, None).await
}

fn output_path(out_dir: &FsPath, input: &InputFile) -> PathBuf {
    out_dir.join(format!("{}.out", input.name))
}

/// Cuts a half-written last line off an output file and returns the record IDs in it.
fn recover(path: &FsPath) -> std::io::Result<HashSet<String>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(HashSet::new());
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(complete as u64)?;
    }
    Ok(bytes[..complete]
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|v| {
            v.get("recordId")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect())
}

/// A record's ID and model input, or why the line is not a record.
fn parse_record(line: &str, generated_id: String) -> (String, Result<Value, (Value, String)>) {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return (
                generated_id,
                Err((Value::Null, format!("the line is not valid JSON: {e}"))),
            )
        }
    };
    let Value::Object(map) = value else {
        return (
            generated_id,
            Err((Value::Null, "the line is not a JSON object".into())),
        );
    };
    let id = match map.get("recordId") {
        None => generated_id,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => s.clone(),
        Some(other) => {
            return (
                generated_id,
                Err((
                    other.clone(),
                    "recordId must be a non-empty string of at most 128 characters".into(),
                )),
            )
        }
    };
    match map.get("modelInput") {
        Some(input @ Value::Object(_)) => (id, Ok(input.clone())),
        Some(other) => (
            id,
            Err((other.clone(), "modelInput must be a JSON object".into())),
        ),
        None => (
            id,
            Err((Value::Null, "the record has no modelInput".into())),
        ),
    }
}

fn error_line(record_id: &str, model_input: &Value, code: u16, message: &str) -> Value {
    json!({
        "recordId": record_id,
        "modelInput": model_input,
        "error": { "errorCode": code, "errorMessage": message },
    })
}

/// Runs one record: retries while the model is busy, then the output line.
async fn run_record(
    core: Arc<Basalt>,
    invoker: Arc<dyn RecordInvoker>,
    job: Arc<BatchJob>,
    invocation_type: InvocationType,
    record_id: String,
    input: Value,
) -> Value {
    let principal = job.key_id.clone().map(|key_id| Principal {
        key_id,
        key_name: job.key_name.clone().unwrap_or_default(),
        is_admin: false,
        limits: KeyLimits::default(),
        retrieval_filter: None,
        policy: None,
    });
    let mut delay = Duration::from_millis(200);
    for attempt in 0.. {
        let ctx = CallContext::batch(principal.clone(), format!("{}-{record_id}", job.id));
        match invoker
            .invoke(&core, ctx, &job.model_id, invocation_type, &input)
            .await
        {
            Ok(output) => {
                return json!({ "recordId": record_id, "modelInput": input, "modelOutput": output })
            }
            Err(e) if attempt < 20 && e.retry => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return error_line(&record_id, &input, e.status, &e.message),
        }
    }
    error_line(&record_id, &input, 503, "the model stayed busy")
}

/// How one input file's run ended.
enum FileEnd {
    Done,
    Stopped,
    LeaseLost,
}

/// What every file of one run shares.
struct FileRun<'a> {
    batch: &'a BatchService,
    invoker: &'a Arc<dyn RecordInvoker>,
    active: &'a ActiveJob,
    job: Arc<BatchJob>,
    invocation_type: InvocationType,
    out_dir: &'a FsPath,
    processed: Arc<AtomicU64>,
    total: u64,
}

type Output = Arc<Mutex<std::fs::File>>;

/// Appends one line; one write per line, so a process killed mid-way leaves at most
/// a partial last line, which [`recover`] cuts off.
fn write_line(writer: &Output, line: &Value) -> std::io::Result<()> {
    let mut text = line.to_string();
    text.push('\n');
    let mut file = writer
        .lock()
        .map_err(|_| std::io::Error::other("output lock poisoned"))?;
    file.write_all(text.as_bytes())
}

impl FileRun<'_> {
    /// Runs a file's records that are not in its output yet.
    async fn file(&self, file_index: usize, input: &InputFile) -> Result<FileEnd, CoreError> {
        let job = &self.job;
        let out_path = output_path(self.out_dir, input);
        let done = recover(&out_path).map_err(internal)?;
        let mut journal = CrashJournal::open(&staging_dir(self.batch, job), file_index, &done)
            .map_err(internal)?;
        self.processed
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        let writer: Output = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out_path)
                .map_err(internal)?,
        ));
        let concurrency = self.batch.config().concurrency.max(1);
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks: tokio::task::JoinSet<std::io::Result<()>> = tokio::task::JoinSet::new();
        let mut seen: HashSet<String> = HashSet::new();
        let reader = std::io::BufReader::new(std::fs::File::open(&input.path).map_err(internal)?);
        let mut end = FileEnd::Done;
        let mut last_progress = std::time::Instant::now();
        for (line_index, line) in reader.lines().enumerate() {
            let line = line.map_err(internal)?;
            if line.trim().is_empty() {
                continue;
            }
            if self.active.stop_requested() {
                end = FileEnd::Stopped;
                break;
            }
            if self.active.lease_lost() {
                end = FileEnd::LeaseLost;
                break;
            }
            if last_progress.elapsed() > Duration::from_millis(500) {
                last_progress = std::time::Instant::now();
                self.save_progress();
            }
            let (record_id, parsed) =
                parse_record(&line, format!("{file_index:02}{line_index:09}"));
            if done.contains(&record_id) {
                continue;
            }
            if !seen.insert(record_id.clone()) {
                let input = parsed.map_or_else(|(v, _)| v, |v| v);
                write_line(
                    &writer,
                    &error_line(&record_id, &input, 400, "duplicate recordId in this file"),
                )
                .map_err(internal)?;
                self.processed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let model_input = match parsed {
                Ok(v) => v,
                Err((raw, message)) => {
                    write_line(&writer, &error_line(&record_id, &raw, 400, &message))
                        .map_err(internal)?;
                    self.processed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let crashes = journal.crashes(&record_id);
            if crashes >= CrashJournal::GIVE_UP_AFTER {
                let message = format!(
                    "the server stopped {crashes} times while this record was being processed; it is not tried again"
                );
                write_line(
                    &writer,
                    &error_line(&record_id, &model_input, 500, &message),
                )
                .map_err(internal)?;
                self.processed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let alone = crashes > 0;
            if alone {
                // In flight when the server stopped: run it with nothing else in flight,
                // so that if it stops the server again, the blame is its own.
                drain(&mut tasks).await?;
            }
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .map_err(internal)?;
            journal.started(&record_id).map_err(internal)?;
            let core = Arc::clone(self.batch.core());
            let invoker = Arc::clone(self.invoker);
            let job = Arc::clone(job);
            let writer = Arc::clone(&writer);
            let processed = Arc::clone(&self.processed);
            let invocation_type = self.invocation_type;
            tasks.spawn(async move {
                let line =
                    run_record(core, invoker, job, invocation_type, record_id, model_input).await;
                let written = write_line(&writer, &line);
                processed.fetch_add(1, Ordering::Relaxed);
                drop(permit);
                written
            });
            if alone {
                drain(&mut tasks).await?;
            }
            while let Some(done_task) = tasks.try_join_next() {
                done_task.map_err(internal)?.map_err(internal)?;
            }
        }
        drain(&mut tasks).await?;
        journal.finished().map_err(internal)?;
        Ok(end)
    }

    /// Publishes the records done so far (the API's counts and the job row's progress).
    fn save_progress(&self) {
        let processed = self.processed.load(Ordering::Relaxed);
        let _ = self.batch.set_batch_counts(
            &self.job.id,
            &BatchCounts {
                total: Some(self.total),
                processed,
                ..BatchCounts::default()
            },
        );
        let _ = self.active.save_progress(
            JobProgress {
                done: processed,
                total: Some(self.total),
            },
            None,
        );
    }
}

async fn drain(tasks: &mut tokio::task::JoinSet<std::io::Result<()>>) -> Result<(), CoreError> {
    while let Some(done_task) = tasks.join_next().await {
        done_task.map_err(internal)?.map_err(internal)?;
    }
    Ok(())
}

/// Recomputes the counts from the output files, writes `manifest.json.out`, uploads
/// `s3://` output, and says how the job ends (`forced`, or from the counts).
async fn finish(
    batch: &BatchService,
    invoker: &Arc<dyn RecordInvoker>,
    job: &BatchJob,
    forced: Option<JobState>,
) -> Result<JobEnd, CoreError> {
    let current = batch.batch_job(&job.id)?;
    let out_dir = output_dir(batch, job)?;
    let mut counts = BatchCounts {
        total: current.counts.total,
        ..BatchCounts::default()
    };
    if let Ok(entries) = std::fs::read_dir(&out_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "out")
                || path.file_name().is_some_and(|n| n == "manifest.json.out")
            {
                continue;
            }
            recover(&path).map_err(internal)?;
            let text = std::fs::read_to_string(&path).map_err(internal)?;
            for line in text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            {
                counts.processed += 1;
                match line.get("modelOutput") {
                    Some(output) => {
                        counts.success += 1;
                        let (i, o) = invoker.token_counts(output);
                        counts.input_tokens += i;
                        counts.output_tokens += o;
                    }
                    None => counts.error += 1,
                }
            }
        }
    }
    std::fs::create_dir_all(&out_dir).map_err(internal)?;
    let mut manifest = Map::new();
    manifest.insert(
        "totalRecordCount".into(),
        json!(counts.total.unwrap_or(counts.processed)),
    );
    manifest.insert("processedRecordCount".into(), json!(counts.processed));
    manifest.insert("successRecordCount".into(), json!(counts.success));
    manifest.insert("errorRecordCount".into(), json!(counts.error));
    manifest.insert("inputTokenCount".into(), json!(counts.input_tokens));
    manifest.insert("outputTokenCount".into(), json!(counts.output_tokens));
    std::fs::write(
        out_dir.join("manifest.json.out"),
        format!("{}\n", Value::Object(manifest)),
    )
    .map_err(internal)?;
    if job.output_uri.starts_with("s3://") {
        // Idempotent: a runner restarted after a partial upload uploads it all again.
        upload_output(batch.core(), job, &out_dir).await?;
    }
    batch.set_batch_counts(&job.id, &counts)?;
    let state = forced.unwrap_or(if counts.error == 0 {
        JobState::Completed
    } else if counts.success > 0 {
        JobState::PartiallyCompleted
    } else {
        JobState::Failed
    });
    let message = (state == JobState::Failed && forced.is_none())
        .then(|| "every record failed; see the error lines in the output".to_owned());
    let staging = staging_dir(batch, job);
    if staging.exists() {
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(job = %job.id, error = %e, "cannot remove the job's staging directory");
        }
    }
    Ok(JobEnd::ended(state, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_cuts_a_partial_line_and_reads_the_ids() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("in.jsonl.out");
        std::fs::write(
            &path,
            "{\"recordId\":\"a\"}\n{\"recordId\":\"b\"}\n{\"recordId\":\"c\",\"mod",
        )
        .expect("write");
        let ids = recover(&path).expect("recover");
        assert_eq!(ids, ["a", "b"].iter().map(|s| s.to_string()).collect());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"recordId\":\"a\"}\n{\"recordId\":\"b\"}\n"
        );
        assert!(recover(&dir.path().join("missing"))
            .expect("none")
            .is_empty());
    }

    #[test]
    fn records_parse_or_say_why_not() {
        let (id, r) = parse_record(
            r#"{"recordId":"r1","modelInput":{"prompt":"x"}}"#,
            "gen".into(),
        );
        assert_eq!(id, "r1");
        assert!(r.is_ok());
        let (id, r) = parse_record(r#"{"modelInput":{"prompt":"x"}}"#, "00000000007".into());
        assert_eq!(id, "00000000007");
        assert!(r.is_ok());
        assert!(parse_record("not json", "g".into()).1.is_err());
        assert!(
            parse_record(r#"{"recordId":"r","modelInput":"text"}"#, "g".into())
                .1
                .is_err()
        );
        assert!(parse_record(r#"{"recordId":"r"}"#, "g".into()).1.is_err());
    }
}
