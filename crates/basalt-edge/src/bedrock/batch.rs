//! Batch inference on the Bedrock wire: CreateModelInvocationJob,
//! GetModelInvocationJob, ListModelInvocationJobs, StopModelInvocationJob, and the
//! runner that works through the jobs.
//!
//! Durability: the output files are the record of progress. Every output line names
//! its record; a runner that starts on a job (first time, after a restart, after
//! `kill -9`) first cuts a half-written last line off each output file, reads which
//! records are there, and runs only the others — so every record is written exactly
//! once. Counts and the manifest are recomputed from the output files when the job
//! ends. Records run `concurrency` at a time (`[batch]`), as batch calls: metered as
//! `BATCH` at half the on-demand price, outside on-demand quotas; a record refused
//! because the engine is busy is retried with back-off rather than failed.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::batch::{status, BatchCounts, BatchJobRecord, BatchJobSpec};
use basalt_core::keys::{KeyLimits, Principal};
use basalt_core::{Basalt, CallContext};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::runtime::{converse_native, invoke_native};
use super::wire::parse_json;
use crate::error::{BedrockError, BedrockErrorCode};
use crate::AppState;

// ---- control plane ---------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct S3Location {
    s3_uri: Option<String>,
    s3_input_format: Option<String>,
    /// Accepted; local files are not encrypted by this server.
    #[allow(dead_code)]
    s3_encryption_key_id: Option<String>,
    #[allow(dead_code)]
    s3_bucket_owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InputConfig {
    s3_input_data_config: Option<S3Location>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutputConfig {
    s3_output_data_config: Option<S3Location>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    job_name: Option<String>,
    role_arn: Option<String>,
    model_id: Option<String>,
    input_data_config: Option<InputConfig>,
    output_data_config: Option<OutputConfig>,
    timeout_duration_in_hours: Option<i64>,
    model_invocation_type: Option<String>,
    client_request_token: Option<String>,
    /// Accepted; one server has no VPC to place the job in.
    #[allow(dead_code)]
    vpc_config: Option<Value>,
    #[allow(dead_code)]
    tags: Option<Value>,
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, BedrockError> {
    value.ok_or_else(|| BedrockError::validation(format!("{name} is required")))
}

pub async fn create_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: CreateBody = parse_json(&body)?;
    let input = required(
        required(body.input_data_config, "inputDataConfig")?.s3_input_data_config,
        "inputDataConfig.s3InputDataConfig",
    )?;
    if input
        .s3_input_format
        .as_deref()
        .is_some_and(|f| f != "JSONL")
    {
        return Err(BedrockError::validation("s3InputFormat must be JSONL"));
    }
    let output = required(
        required(body.output_data_config, "outputDataConfig")?.s3_output_data_config,
        "outputDataConfig.s3OutputDataConfig",
    )?;
    let job = state.core.create_batch_job(
        &principal,
        BatchJobSpec {
            name: required(body.job_name, "jobName")?,
            role_arn: required(body.role_arn, "roleArn")?,
            model_id: required(body.model_id, "modelId")?,
            invocation_type: body
                .model_invocation_type
                .unwrap_or_else(|| "InvokeModel".into()),
            input_uri: required(input.s3_uri, "inputDataConfig.s3InputDataConfig.s3Uri")?,
            output_uri: required(output.s3_uri, "outputDataConfig.s3OutputDataConfig.s3Uri")?,
            timeout_hours: body.timeout_duration_in_hours,
            client_token: body.client_request_token,
        },
    )?;
    Ok(Json(json!({ "jobArn": state.core.batch_job_arn(&job.id) })).into_response())
}

fn timestamp(ms: i64) -> Value {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn job_json(core: &Basalt, job: &BatchJobRecord) -> Value {
    let mut out = json!({
        "jobArn": core.batch_job_arn(&job.id),
        "jobName": job.name,
        "modelId": job.model_id,
        "roleArn": job.role_arn,
        "status": job.status,
        "submitTime": timestamp(job.submit_time_ms),
        "lastModifiedTime": timestamp(job.last_modified_ms),
        "inputDataConfig": { "s3InputDataConfig": { "s3InputFormat": "JSONL", "s3Uri": job.input_uri } },
        "outputDataConfig": { "s3OutputDataConfig": { "s3Uri": job.output_uri } },
        "timeoutDurationInHours": job.timeout_hours,
        "jobExpirationTime": timestamp(job.submit_time_ms + job.timeout_hours * 3_600_000),
        "modelInvocationType": job.invocation_type,
        "processedRecordCount": job.counts.processed,
        "successRecordCount": job.counts.success,
        "errorRecordCount": job.counts.error,
    });
    if let Some(total) = job.counts.total {
        out["totalRecordCount"] = json!(total);
    }
    if let Some(m) = &job.message {
        out["message"] = json!(m);
    }
    if let Some(end) = job.end_time_ms {
        out["endTime"] = timestamp(end);
    }
    if let Some(t) = &job.client_token {
        out["clientRequestToken"] = json!(t);
    }
    out
}

/// A job as `principal` may see it: a tenant key sees only its own jobs (another's
/// is answered as missing, so its existence is not revealed).
fn visible_job(
    state: &AppState,
    principal: &Principal,
    identifier: &str,
) -> Result<BatchJobRecord, BedrockError> {
    let job = state.core.batch_job(identifier)?;
    if !principal.may_act_on(job.key_id.as_deref()) {
        return Err(BedrockError {
            code: BedrockErrorCode::ResourceNotFound,
            message: format!("batch job {identifier} does not exist"),
        });
    }
    Ok(job)
}

pub async fn get_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(identifier): Path<String>,
) -> Result<Response, BedrockError> {
    let job = visible_job(&state, &principal, &identifier)?;
    Ok(Json(job_json(&state.core, &job)).into_response())
}

pub async fn stop_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(identifier): Path<String>,
) -> Result<Response, BedrockError> {
    visible_job(&state, &principal, &identifier)?;
    state.core.stop_batch_job(&identifier)?;
    Ok(Json(json!({})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    submit_time_after: Option<String>,
    submit_time_before: Option<String>,
    status_equals: Option<String>,
    name_contains: Option<String>,
    max_results: Option<String>,
    next_token: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

fn parse_time(name: &str, value: &str) -> Result<i64, BedrockError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .or_else(|_| value.parse::<f64>().map(|secs| (secs * 1000.0) as i64))
        .map_err(|_| BedrockError::validation(format!("{name} {value:?} is not a timestamp")))
}

pub async fn list_jobs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    if let Some(s) = &q.status_equals {
        if !status::ALL.contains(&s.as_str()) {
            return Err(BedrockError::validation(format!(
                "statusEquals {s:?} is not one of {}",
                status::ALL.join(", ")
            )));
        }
    }
    if q.sort_by.as_deref().is_some_and(|s| s != "CreationTime") {
        return Err(BedrockError::validation("sortBy must be CreationTime"));
    }
    let descending = match q.sort_order.as_deref() {
        None | Some("Descending") => true,
        Some("Ascending") => false,
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "sortOrder {other:?} is not one of Ascending, Descending"
            )))
        }
    };
    let after = q
        .submit_time_after
        .as_deref()
        .map(|v| parse_time("submitTimeAfter", v))
        .transpose()?;
    let before = q
        .submit_time_before
        .as_deref()
        .map(|v| parse_time("submitTimeBefore", v))
        .transpose()?;
    let max = match &q.max_results {
        None => 1000,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                BedrockError::validation("maxResults must be a number from 1 to 1000")
            })?,
    };
    let start = match &q.next_token {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| BedrockError::validation("nextToken is not one this server issued"))?,
    };
    let mut jobs: Vec<BatchJobRecord> = state
        .core
        .list_batch_jobs()?
        .into_iter()
        .filter(|j| principal.may_act_on(j.key_id.as_deref()))
        .filter(|j| q.status_equals.as_ref().is_none_or(|s| &j.status == s))
        .filter(|j| {
            q.name_contains
                .as_ref()
                .is_none_or(|n| j.name.contains(n.as_str()))
        })
        .filter(|j| after.is_none_or(|a| j.submit_time_ms > a))
        .filter(|j| before.is_none_or(|b| j.submit_time_ms < b))
        .collect();
    if descending {
        jobs.reverse();
    }
    let page: Vec<Value> = jobs
        .iter()
        .skip(start)
        .take(max)
        .map(|j| job_json(&state.core, j))
        .collect();
    let mut body = json!({ "invocationJobSummaries": page });
    if start + max < jobs.len() {
        body["nextToken"] = json!((start + max).to_string());
    }
    Ok(Json(body).into_response())
}

// ---- the runner --------------------------------------------------------------------

/// Works through batch jobs, oldest first, one at a time, for as long as the server
/// runs; resumes unfinished jobs after a restart.
pub fn spawn_runner(core: Arc<Basalt>) {
    tokio::spawn(async move {
        loop {
            let next = core.list_batch_jobs().map(|jobs| {
                jobs.into_iter()
                    .find(|j| !status::FINAL.contains(&j.status.as_str()))
            });
            match next {
                Ok(Some(job)) => {
                    if let Err(e) = run_job(&core, job.clone()).await {
                        let message = format!("the job failed: {}", e.message);
                        tracing::error!(job = %job.id, error = %e.message, "batch job failed");
                        let _ = core.set_batch_status(&job.id, status::FAILED, Some(&message), &[]);
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = core.batch_wakeup().notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read batch jobs");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });
}

fn internal(e: impl std::fmt::Display) -> BedrockError {
    BedrockError {
        code: BedrockErrorCode::InternalServer,
        message: e.to_string(),
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
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
async fn input_files(core: &Basalt, job: &BatchJobRecord) -> Result<Vec<InputFile>, String> {
    if job.input_uri.starts_with("s3://") {
        let location = core.s3().check(&job.input_uri).map_err(|e| e.to_string())?;
        let objects = core
            .s3()
            .objects(&location, ".jsonl")
            .await
            .map_err(|e| e.to_string())?;
        let dir = staging_dir(core, job).join("input");
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

/// A job's own directory for staged `s3://` input and output.
fn staging_dir(core: &Basalt, job: &BatchJobRecord) -> PathBuf {
    core.batch_staging_dir().join(&job.id)
}

/// The local directory a job's output lines are written to: `<output>/<job id>/`
/// for `file://` output, the staging directory for `s3://` output (uploaded to
/// `<output>/<job id>/` when the job ends).
fn output_dir(core: &Basalt, job: &BatchJobRecord) -> Result<PathBuf, BedrockError> {
    if job.output_uri.starts_with("s3://") {
        core.s3().check(&job.output_uri)?;
        return Ok(staging_dir(core, job).join("output"));
    }
    Ok(core
        .allowed_paths()
        .writable_dir(&job.output_uri)
        .map_err(BedrockError::from)?
        .join(&job.id))
}

/// Uploads the output files of an `s3://`-output job to `<output>/<job id>/`.
async fn upload_output(
    core: &Basalt,
    job: &BatchJobRecord,
    out_dir: &FsPath,
) -> Result<(), BedrockError> {
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

async fn run_job(core: &Arc<Basalt>, job: BatchJobRecord) -> Result<(), BedrockError> {
    if job.status == status::STOPPING {
        return finish(core, &job, Some(status::STOPPED)).await;
    }
    if now_ms() > job.submit_time_ms + job.timeout_hours * 3_600_000 {
        core.set_batch_status(
            &job.id,
            status::EXPIRED,
            Some("the job ran past its timeoutDurationInHours"),
            &[],
        )?;
        return Ok(());
    }
    core.set_batch_status(&job.id, status::VALIDATING, None, &[status::STOPPING])?;
    let config = core.batch_config().clone();
    let validated = input_files(core, &job).await.and_then(|files| {
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
        Err(message) => {
            core.set_batch_status(&job.id, status::FAILED, Some(&message), &[])?;
            return Ok(());
        }
    };
    core.set_batch_counts(
        &job.id,
        &BatchCounts {
            total: Some(total),
            ..job.counts
        },
    )?;
    core.set_batch_status(&job.id, status::SCHEDULED, None, &[status::STOPPING])?;
    core.set_batch_status(&job.id, status::IN_PROGRESS, None, &[status::STOPPING])?;
    let out_dir = output_dir(core, &job)?;
    std::fs::create_dir_all(&out_dir).map_err(internal)?;
    let progress = Arc::new(Progress::default());
    for (file_index, file) in files.iter().enumerate() {
        let stopped = run_file(core, &job, file_index, file, &out_dir, &progress, total).await?;
        if stopped {
            return finish(core, &job, Some(status::STOPPED)).await;
        }
    }
    finish(core, &job, None).await
}

#[derive(Default)]
struct Progress {
    processed: AtomicU64,
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
    job: Arc<BatchJobRecord>,
    record_id: String,
    input: Value,
) -> Value {
    let principal = job.key_id.clone().map(|key_id| Principal {
        key_id,
        key_name: job.key_name.clone().unwrap_or_default(),
        is_admin: false,
        limits: KeyLimits::default(),
        retrieval_filter: None,
    });
    let body = input.to_string().into_bytes();
    let mut delay = Duration::from_millis(200);
    for attempt in 0.. {
        let ctx = CallContext::batch(principal.clone(), format!("{}-{record_id}", job.id));
        let result = if job.invocation_type == "Converse" {
            converse_native(&core, ctx, &job.model_id, &body)
                .await
                .map(|(out, _)| out)
        } else {
            invoke_native(&core, ctx, &job.model_id, &body)
                .await
                .map(|(out, _, _)| out)
        };
        match result {
            Ok(output) => {
                return json!({ "recordId": record_id, "modelInput": input, "modelOutput": output })
            }
            Err(e)
                if attempt < 20
                    && matches!(
                        e.code,
                        BedrockErrorCode::Throttling
                            | BedrockErrorCode::ModelNotReady
                            | BedrockErrorCode::ServiceUnavailable
                    ) =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return error_line(&record_id, &input, e.code.status().as_u16(), &e.message),
        }
    }
    error_line(&record_id, &input, 503, "the model stayed busy")
}

/// Runs a file's records that are not in its output yet; true when the job was
/// stopped meanwhile.
async fn run_file(
    core: &Arc<Basalt>,
    job: &BatchJobRecord,
    file_index: usize,
    input: &InputFile,
    out_dir: &FsPath,
    progress: &Arc<Progress>,
    total: u64,
) -> Result<bool, BedrockError> {
    let out_path = output_path(out_dir, input);
    let done = recover(&out_path).map_err(internal)?;
    let mut journal =
        CrashJournal::open(&staging_dir(core, job), file_index, &done).map_err(internal)?;
    progress
        .processed
        .fetch_add(done.len() as u64, Ordering::Relaxed);
    let writer = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(internal)?,
    ));
    let write_line = |writer: &Arc<Mutex<std::fs::File>>, line: &Value| -> std::io::Result<()> {
        let mut text = line.to_string();
        text.push('\n');
        let mut file = writer
            .lock()
            .map_err(|_| std::io::Error::other("output lock poisoned"))?;
        // One write per line: a process killed mid-way leaves at most a partial last
        // line, which `recover` cuts off.
        file.write_all(text.as_bytes())
    };
    let concurrency = core.batch_config().concurrency.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks: tokio::task::JoinSet<std::io::Result<()>> = tokio::task::JoinSet::new();
    let job_arc = Arc::new(job.clone());
    let mut seen: HashSet<String> = HashSet::new();
    let reader = std::io::BufReader::new(std::fs::File::open(&input.path).map_err(internal)?);
    let mut stopped = false;
    let mut since_check = 0u32;
    let mut last_count_update = std::time::Instant::now();
    for (line_index, line) in reader.lines().enumerate() {
        let line = line.map_err(internal)?;
        if line.trim().is_empty() {
            continue;
        }
        since_check += 1;
        if since_check >= 8 {
            since_check = 0;
            if core
                .batch_job(&job.id)
                .map(|j| j.status == status::STOPPING)
                .unwrap_or(false)
            {
                stopped = true;
                break;
            }
        }
        if last_count_update.elapsed() > Duration::from_millis(500) {
            last_count_update = std::time::Instant::now();
            let processed = progress.processed.load(Ordering::Relaxed);
            let _ = core.set_batch_counts(
                &job.id,
                &BatchCounts {
                    total: Some(total),
                    processed,
                    ..BatchCounts::default()
                },
            );
        }
        let (record_id, parsed) = parse_record(&line, format!("{file_index:02}{line_index:09}"));
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
            progress.processed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let model_input = match parsed {
            Ok(v) => v,
            Err((raw, message)) => {
                write_line(&writer, &error_line(&record_id, &raw, 400, &message))
                    .map_err(internal)?;
                progress.processed.fetch_add(1, Ordering::Relaxed);
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
            progress.processed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let alone = crashes > 0;
        if alone {
            // In flight when the server stopped: run it with nothing else in flight,
            // so that if it stops the server again, the blame is its own.
            while let Some(done_task) = tasks.join_next().await {
                done_task.map_err(internal)?.map_err(internal)?;
            }
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(internal)?;
        journal.started(&record_id).map_err(internal)?;
        let core = Arc::clone(core);
        let job = Arc::clone(&job_arc);
        let writer = Arc::clone(&writer);
        let progress = Arc::clone(progress);
        tasks.spawn(async move {
            let line = run_record(core, job, record_id, model_input).await;
            let written = write_line(&writer, &line);
            progress.processed.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            written
        });
        if alone {
            while let Some(done_task) = tasks.join_next().await {
                done_task.map_err(internal)?.map_err(internal)?;
            }
        }
        while let Some(done_task) = tasks.try_join_next() {
            done_task.map_err(internal)?.map_err(internal)?;
        }
    }
    while let Some(done_task) = tasks.join_next().await {
        done_task.map_err(internal)?.map_err(internal)?;
    }
    journal.finished().map_err(internal)?;
    Ok(stopped)
}

/// Which records were in flight when the server last stopped, so that a record that
/// crashes the process is failed instead of crashing it at every start.
///
/// Before a record runs its ID is appended to `<staging>/<file>.inflight`. At the
/// next start, every ID there without an output line was in flight when the process
/// died: its count in `<file>.crashes` goes up by one. A record with a count runs
/// alone; at [`Self::GIVE_UP_AFTER`] it is written as failed without running. (A
/// record in flight during two `kill -9`s — the second while it ran alone — is
/// failed too: the price of never looping.)
struct CrashJournal {
    inflight: std::fs::File,
    inflight_path: PathBuf,
    crashes_path: PathBuf,
    counts: std::collections::HashMap<String, u32>,
}

impl CrashJournal {
    const GIVE_UP_AFTER: u32 = 2;

    fn open(dir: &FsPath, file_index: usize, done: &HashSet<String>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let inflight_path = dir.join(format!("{file_index:02}.inflight"));
        let crashes_path = dir.join(format!("{file_index:02}.crashes"));
        let mut counts: std::collections::HashMap<String, u32> = std::fs::read(&crashes_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let interrupted: HashSet<String> = std::fs::read_to_string(&inflight_path)
            .unwrap_or_default()
            .lines()
            .filter(|id| !id.is_empty() && !done.contains(*id))
            .map(str::to_string)
            .collect();
        if !interrupted.is_empty() {
            for id in interrupted {
                *counts.entry(id).or_insert(0) += 1;
            }
            std::fs::write(&crashes_path, serde_json::to_vec(&counts)?)?;
            tracing::warn!(
                file = %crashes_path.display(),
                "batch records were in flight when the server stopped; they run alone now"
            );
        }
        let inflight = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&inflight_path)?;
        Ok(Self {
            inflight,
            inflight_path,
            crashes_path,
            counts,
        })
    }

    fn crashes(&self, record_id: &str) -> u32 {
        self.counts.get(record_id).copied().unwrap_or(0)
    }

    /// Notes a record as in flight (on disk before it runs).
    fn started(&mut self, record_id: &str) -> std::io::Result<()> {
        self.inflight
            .write_all(format!("{record_id}\n").as_bytes())?;
        self.inflight.sync_data()
    }

    /// The file is done: nothing is in flight.
    fn finished(self) -> std::io::Result<()> {
        drop(self.inflight);
        let _ = std::fs::remove_file(&self.crashes_path);
        std::fs::remove_file(&self.inflight_path)
    }
}

/// Recomputes the counts from the output files, writes `manifest.json.out` and sets
/// the final status (`forced`, or from the counts).
async fn finish(
    core: &Arc<Basalt>,
    job: &BatchJobRecord,
    forced: Option<&str>,
) -> Result<(), BedrockError> {
    let current = core.batch_job(&job.id)?;
    let out_dir = output_dir(core, job)?;
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
                        let (i, o) = token_counts(output);
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
        upload_output(core, job, &out_dir).await?;
    }
    core.set_batch_counts(&job.id, &counts)?;
    let status = forced.unwrap_or(if counts.error == 0 {
        status::COMPLETED
    } else if counts.success > 0 {
        status::PARTIALLY_COMPLETED
    } else {
        status::FAILED
    });
    let message = (status == status::FAILED && forced.is_none())
        .then_some("every record failed; see the error lines in the output");
    core.set_batch_status(&job.id, status, message, &[])?;
    let staging = staging_dir(core, job);
    if staging.exists() {
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(job = %job.id, error = %e, "cannot remove the job's staging directory");
        }
    }
    Ok(())
}

/// Input and output tokens of one record's model output (InvokeModel bodies of
/// either native family, or a Converse response).
fn token_counts(output: &Value) -> (u64, u64) {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    if let Some(usage) = output.get("usage") {
        return (n(usage.get("inputTokens")), n(usage.get("outputTokens")));
    }
    if output.get("embedding").is_some() {
        return (n(output.get("inputTextTokenCount")), 0);
    }
    (
        n(output.get("prompt_token_count")),
        n(output.get("generation_token_count")),
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_record_in_flight_at_two_deaths_is_given_up_and_others_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let none = HashSet::new();
        // First run: a and b in flight when the process dies (no `finished`).
        let mut journal = CrashJournal::open(dir.path(), 0, &none).expect("open");
        journal.started("a").expect("note");
        journal.started("b").expect("note");
        drop(journal);
        // Restart: a's output line was written before the death, b's was not.
        let done: HashSet<String> = ["a".to_string()].into();
        let mut journal = CrashJournal::open(dir.path(), 0, &done).expect("reopen");
        assert_eq!(journal.crashes("a"), 0);
        assert_eq!(journal.crashes("b"), 1, "b was in flight at the death");
        // b runs alone and the process dies again.
        journal.started("b").expect("note");
        drop(journal);
        let journal = CrashJournal::open(dir.path(), 0, &done).expect("reopen");
        assert_eq!(journal.crashes("b"), CrashJournal::GIVE_UP_AFTER);
        // A finished file leaves nothing behind for the next job on it.
        journal.finished().expect("finish");
        let journal = CrashJournal::open(dir.path(), 0, &none).expect("reopen");
        assert_eq!(journal.crashes("b"), 0);
    }
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

    #[test]
    fn tokens_are_read_from_each_output_family() {
        assert_eq!(
            token_counts(&json!({"prompt_token_count": 5, "generation_token_count": 7})),
            (5, 7)
        );
        assert_eq!(
            token_counts(&json!({"embedding": [0.1], "inputTextTokenCount": 3})),
            (3, 0)
        );
        assert_eq!(
            token_counts(&json!({"usage": {"inputTokens": 2, "outputTokens": 4}})),
            (2, 4)
        );
    }
}
