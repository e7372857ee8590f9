//! Batch inference on the Bedrock wire: CreateModelInvocationJob,
//! GetModelInvocationJob, ListModelInvocationJobs, StopModelInvocationJob, and
//! [`BedrockRecords`], what a record means on this wire. The jobs run on the core's
//! job runner (`basalt_core::batch::runner`: staging, S3, recovery, retries).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::batch::runner::{RecordError, RecordInvoker};
use basalt_core::batch::{BatchJob, BatchJobSpec, BatchService, InvocationType, JobState};
use basalt_core::keys::Principal;
use basalt_core::{Basalt, CallContext};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::runtime::{converse_native, invoke_native};
use super::wire::{parse_json, required};
use crate::common::timestamp;
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
    let job = state.batch.create_batch_job(
        &principal,
        BatchJobSpec {
            name: required(body.job_name, "jobName")?,
            role_arn: required(body.role_arn, "roleArn")?,
            model_id: required(body.model_id, "modelId")?,
            invocation_type: InvocationType::parse(
                body.model_invocation_type
                    .as_deref()
                    .unwrap_or("InvokeModel"),
            )?,
            input_uri: required(input.s3_uri, "inputDataConfig.s3InputDataConfig.s3Uri")?,
            output_uri: required(output.s3_uri, "outputDataConfig.s3OutputDataConfig.s3Uri")?,
            timeout_hours: body.timeout_duration_in_hours,
            client_token: body.client_request_token,
        },
    )?;
    Ok(Json(json!({ "jobArn": state.batch.batch_job_arn(&job.id) })).into_response())
}

fn job_json(batch: &BatchService, job: &BatchJob) -> Value {
    let mut out = json!({
        "jobArn": batch.batch_job_arn(&job.id),
        "jobName": job.name,
        "modelId": job.model_id,
        "roleArn": job.role_arn,
        "status": job.status.as_str(),
        "submitTime": timestamp(job.submit_time_ms),
        "lastModifiedTime": timestamp(job.last_modified_ms),
        "inputDataConfig": { "s3InputDataConfig": { "s3InputFormat": "JSONL", "s3Uri": job.input_uri } },
        "outputDataConfig": { "s3OutputDataConfig": { "s3Uri": job.output_uri } },
        "timeoutDurationInHours": job.timeout_hours,
        "jobExpirationTime": timestamp(job.submit_time_ms + job.timeout_hours * 3_600_000),
        "modelInvocationType": job.invocation_type.as_str(),
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
) -> Result<BatchJob, BedrockError> {
    let job = state.batch.batch_job(identifier)?;
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
    Ok(Json(job_json(&state.batch, &job)).into_response())
}

pub async fn stop_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(identifier): Path<String>,
) -> Result<Response, BedrockError> {
    visible_job(&state, &principal, &identifier)?;
    state.batch.stop_batch_job(&identifier)?;
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

pub(crate) fn parse_time(name: &str, value: &str) -> Result<i64, BedrockError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(crate::common::unix_ms)
        .or_else(|_| value.parse::<f64>().map(|secs| (secs * 1000.0) as i64))
        .map_err(|_| BedrockError::validation(format!("{name} {value:?} is not a timestamp")))
}

pub async fn list_jobs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    if let Some(s) = &q.status_equals {
        if s.parse::<JobState>().is_err() {
            let all: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            return Err(BedrockError::validation(format!(
                "statusEquals {s:?} is not one of {}",
                all.join(", ")
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
    let paging = super::paging::Paging::from_query(
        "ListModelInvocationJobs",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let mut jobs: Vec<BatchJob> = state
        .batch
        .list_batch_jobs()?
        .into_iter()
        .filter(|j| principal.may_act_on(j.key_id.as_deref()))
        .filter(|j| {
            q.status_equals
                .as_ref()
                .is_none_or(|s| j.status.as_str() == s)
        })
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
    let body = paging
        .page(jobs)
        .into_json("invocationJobSummaries", |j| job_json(&state.batch, j));
    Ok(Json(body).into_response())
}

// ---- records ----------------------------------------------------------------------

/// The Bedrock part of a batch job's run (the job runner itself is the core's,
/// `basalt_core::batch::runner`): a record's `modelInput` is a native InvokeModel body
/// or a Converse request, answered as the runtime API would answer it.
pub struct BedrockRecords;

#[async_trait::async_trait]
impl RecordInvoker for BedrockRecords {
    async fn invoke(
        &self,
        core: &Arc<Basalt>,
        ctx: CallContext,
        model_id: &str,
        invocation_type: InvocationType,
        input: &Value,
    ) -> Result<Value, RecordError> {
        let body = input.to_string().into_bytes();
        let result = match invocation_type {
            InvocationType::Converse => converse_native(core, ctx, model_id, &body)
                .await
                .map(|(out, _)| out),
            InvocationType::InvokeModel => invoke_native(core, ctx, model_id, &body)
                .await
                .map(|(out, _, _)| out),
        };
        result.map_err(|e| RecordError {
            status: e.code.status().as_u16(),
            retry: matches!(
                e.code,
                BedrockErrorCode::Throttling
                    | BedrockErrorCode::ModelNotReady
                    | BedrockErrorCode::ServiceUnavailable
            ),
            message: e.message,
        })
    }

    /// Input and output tokens of one record's model output (InvokeModel bodies of
    /// either native family, or a Converse response).
    fn token_counts(&self, output: &Value) -> (u64, u64) {
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        if let Some(usage) = output.get("usage") {
            let input = n(usage.get("inputTokens"))
                + n(usage.get("cacheReadInputTokens"))
                + n(usage.get("cacheWriteInputTokens"));
            return (input, n(usage.get("outputTokens")));
        }
        if output.get("embedding").is_some() {
            return (n(output.get("inputTextTokenCount")), 0);
        }
        (
            n(output.get("prompt_token_count")),
            n(output.get("generation_token_count")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_each_output_family() {
        let records = BedrockRecords;
        assert_eq!(
            records.token_counts(&json!({"prompt_token_count": 5, "generation_token_count": 7})),
            (5, 7)
        );
        assert_eq!(
            records.token_counts(&json!({"embedding": [0.1], "inputTextTokenCount": 3})),
            (3, 0)
        );
        assert_eq!(
            records.token_counts(&json!({"usage": {"inputTokens": 2, "outputTokens": 4}})),
            (2, 4)
        );
    }
}
