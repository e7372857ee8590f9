//! Model customization on the Bedrock control plane: CreateModelCustomizationJob
//! (201), GetModelCustomizationJob, ListModelCustomizationJobs,
//! StopModelCustomizationJob, and the custom models the jobs make (GetCustomModel,
//! ListCustomModels, DeleteCustomModel). The jobs run in the core
//! (`basalt_core::customization`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::customization::{
    CustomModel, CustomizationJob, CustomizationKind, CustomizationService, CustomizationSpec,
    Phase,
};
use basalt_core::customization::{DeploymentRecord, ImportDetails, ImportJob, ImportSpec};
use basalt_core::jobs::JobState;
use basalt_core::keys::Principal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::batch::parse_time;
use super::paging::Paging;
use super::wire::{parse_json, required};
use crate::common::timestamp;
use crate::error::BedrockError;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Location {
    s3_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TrainingDataConfig {
    s3_uri: Option<String>,
    invocation_logs_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ValidationDataConfig {
    validators: Vec<Location>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    job_name: Option<String>,
    custom_model_name: Option<String>,
    role_arn: Option<String>,
    client_request_token: Option<String>,
    base_model_identifier: Option<String>,
    customization_type: Option<String>,
    training_data_config: Option<TrainingDataConfig>,
    validation_data_config: Option<ValidationDataConfig>,
    output_data_config: Option<Location>,
    #[serde(default)]
    hyper_parameters: BTreeMap<String, String>,
    customization_config: Option<Value>,
    /// Accepted; adapters on the local disk are not encrypted by this server.
    #[allow(dead_code)]
    custom_model_kms_key_id: Option<String>,
    #[allow(dead_code)]
    job_tags: Option<Value>,
    #[allow(dead_code)]
    custom_model_tags: Option<Value>,
    /// Accepted; one server has no VPC to place the job in.
    #[allow(dead_code)]
    vpc_config: Option<Value>,
}

pub async fn create_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: CreateBody = parse_json(&body)?;
    if body.customization_config.is_some() {
        return Err(BedrockError::validation(
            "customizationConfig (distillation, reinforcement fine-tuning) is not supported by this server",
        ));
    }
    let training = required(body.training_data_config, "trainingDataConfig")?;
    if training.invocation_logs_config.is_some() {
        return Err(BedrockError::validation(
            "trainingDataConfig.invocationLogsConfig is not supported by this server; give s3Uri",
        ));
    }
    let validation_uris = body
        .validation_data_config
        .map(|v| {
            v.validators
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    required(
                        l.s3_uri,
                        &format!("validationDataConfig.validators[{i}].s3Uri"),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let spec = CustomizationSpec {
        job_name: required(body.job_name, "jobName")?,
        custom_model_name: required(body.custom_model_name, "customModelName")?,
        role_arn: required(body.role_arn, "roleArn")?,
        base_model_id: required(body.base_model_identifier, "baseModelIdentifier")?,
        customization_type: CustomizationKind::parse(
            body.customization_type.as_deref().unwrap_or("FINE_TUNING"),
        )?,
        training_uri: required(training.s3_uri, "trainingDataConfig.s3Uri")?,
        validation_uris,
        output_uri: required(
            required(body.output_data_config, "outputDataConfig")?.s3_uri,
            "outputDataConfig.s3Uri",
        )?,
        hyper_parameters: body.hyper_parameters,
        client_token: body.client_request_token,
        key_id: None,
    };
    let job = state.customization.create_job(&principal, spec)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "jobArn": state.customization.job_arn(&job) })),
    )
        .into_response())
}

/// Bedrock's status of a job.
fn status(state: JobState) -> &'static str {
    match state {
        JobState::Completed | JobState::PartiallyCompleted => "Completed",
        JobState::Failed | JobState::Expired => "Failed",
        JobState::Stopping => "Stopping",
        JobState::Stopped => "Stopped",
        _ => "InProgress",
    }
}

/// `statusDetails`: each stage's status, from where the job got to and how it ended.
fn status_details(job: &CustomizationJob) -> Value {
    let stages = [
        ("validationDetails", Phase::Validation),
        ("dataProcessingDetails", Phase::DataProcessing),
        ("trainingDetails", Phase::Training),
    ];
    let reached = job.training.phase;
    let mut out = serde_json::Map::new();
    for (field, phase) in stages {
        let started = job
            .training
            .phase_times_ms
            .get(&format!("{phase:?}"))
            .copied();
        let stage_status = if reached == Phase::Done || (phase as u8) < (reached as u8) {
            "Completed"
        } else if phase == reached && started.is_some() {
            match job.state {
                JobState::Failed | JobState::Expired => "Failed",
                JobState::Stopping => "Stopping",
                JobState::Stopped => "Stopped",
                JobState::Completed | JobState::PartiallyCompleted => "Completed",
                _ => "InProgress",
            }
        } else if phase == Phase::Validation && !job.state.is_final() {
            "InProgress"
        } else {
            "NotStarted"
        };
        let mut detail = json!({ "status": stage_status });
        if let Some(at) = started {
            detail["creationTime"] = timestamp(at);
            detail["lastModifiedTime"] = timestamp(job.updated_ms);
        }
        out.insert(field.into(), detail);
    }
    Value::Object(out)
}

fn data_configs(spec: &CustomizationSpec) -> (Value, Value, Value) {
    (
        json!({ "s3Uri": spec.training_uri }),
        json!({ "validators": spec.validation_uris.iter().map(|u| json!({"s3Uri": u})).collect::<Vec<_>>() }),
        json!({ "s3Uri": spec.output_uri }),
    )
}

fn custom_model_arn_of(state: &AppState, job: &CustomizationJob) -> Option<String> {
    let id = job.training.custom_model_id.as_deref()?;
    let record = state.core.custom_models().record(id).ok().flatten()?;
    Some(state.customization.custom_model_arn(&record))
}

fn job_json(state: &AppState, job: &CustomizationJob) -> Value {
    let service: &CustomizationService = &state.customization;
    let (training, validation, output) = data_configs(&job.spec);
    let mut out = json!({
        "jobArn": service.job_arn(job),
        "jobName": job.spec.job_name,
        "outputModelName": job.spec.custom_model_name,
        "roleArn": job.spec.role_arn,
        "baseModelArn": service.base_model_arn(&job.spec.base_model_id),
        "status": status(job.state),
        "statusDetails": status_details(job),
        "creationTime": timestamp(job.created_ms),
        "lastModifiedTime": timestamp(job.updated_ms),
        "hyperParameters": job.spec.hyper_parameters,
        "trainingDataConfig": training,
        "validationDataConfig": validation,
        "outputDataConfig": output,
        "customizationType": job.spec.customization_type.as_type().as_str(),
    });
    if let Some(token) = &job.spec.client_token {
        out["clientRequestToken"] = json!(token);
    }
    if let Some(message) = &job.message {
        if job.state == JobState::Failed {
            out["failureMessage"] = json!(message);
        }
    }
    if let Some(end) = job.end_ms {
        out["endTime"] = timestamp(end);
    }
    if job.state == JobState::Completed {
        if let Some(arn) = custom_model_arn_of(state, job) {
            out["outputModelArn"] = json!(arn);
        }
        if let Some(last) = &job.training.last_step {
            out["trainingMetrics"] = json!({ "trainingLoss": last.loss });
        }
        if let Some(last) = job.training.validation.last() {
            out["validationMetrics"] = json!([{ "validationLoss": last.loss }]);
        }
    }
    out
}

pub async fn get_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let job = state.customization.job(&principal, &id)?;
    Ok(Json(job_json(&state, &job)).into_response())
}

pub async fn stop_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    state.customization.stop_job(&principal, &id)?;
    Ok(Json(json!({})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    creation_time_after: Option<String>,
    creation_time_before: Option<String>,
    status_equals: Option<String>,
    name_contains: Option<String>,
    base_model_arn_equals: Option<String>,
    foundation_model_arn_equals: Option<String>,
    model_status: Option<String>,
    is_owned: Option<String>,
    max_results: Option<String>,
    next_token: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

/// The filters and order every list here shares: `statusEquals` (one of the
/// operation's statuses), `nameContains`, the creation-time window and `sortOrder`.
struct ListFilter {
    status: Option<String>,
    name: Option<String>,
    after: Option<i64>,
    before: Option<i64>,
    descending: bool,
}

impl ListFilter {
    fn from_query(q: &ListQuery, statuses: &[&str]) -> Result<Self, BedrockError> {
        if let Some(s) = &q.status_equals {
            if !statuses.contains(&s.as_str()) {
                return Err(BedrockError::validation(format!(
                    "statusEquals {s:?} is not one of {}",
                    statuses.join(", ")
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
        Ok(Self {
            status: q.status_equals.clone(),
            name: q.name_contains.clone(),
            after: q
                .creation_time_after
                .as_deref()
                .map(|v| parse_time("creationTimeAfter", v))
                .transpose()?,
            before: q
                .creation_time_before
                .as_deref()
                .map(|v| parse_time("creationTimeBefore", v))
                .transpose()?,
            descending,
        })
    }

    /// The rows that pass, in the order asked for (`rows` come oldest first).
    fn select<T>(
        &self,
        rows: Vec<T>,
        created_ms: impl Fn(&T) -> i64,
        name: impl Fn(&T) -> &str,
        status: impl Fn(&T) -> &'static str,
    ) -> Vec<T> {
        let mut out: Vec<T> = rows
            .into_iter()
            .filter(|r| self.status.as_deref().is_none_or(|s| status(r) == s))
            .filter(|r| self.name.as_deref().is_none_or(|n| name(r).contains(n)))
            .filter(|r| {
                let at = created_ms(r);
                self.after.is_none_or(|a| at > a) && self.before.is_none_or(|b| at < b)
            })
            .collect();
        if self.descending {
            out.reverse();
        }
        out
    }
}

pub async fn list_jobs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    const STATUSES: [&str; 5] = ["InProgress", "Completed", "Failed", "Stopping", "Stopped"];
    let filter = ListFilter::from_query(&q, &STATUSES)?;
    let paging = Paging::from_query(
        "ListModelCustomizationJobs",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let jobs = filter.select(
        state.customization.list_jobs(&principal)?,
        |j| j.created_ms,
        |j| &j.spec.job_name,
        |j| status(j.state),
    );
    let body = paging
        .page(jobs)
        .into_json("modelCustomizationJobSummaries", |job| {
            let mut out = json!({
                "jobArn": state.customization.job_arn(job),
                "baseModelArn": state.customization.base_model_arn(&job.spec.base_model_id),
                "jobName": job.spec.job_name,
                "status": status(job.state),
                "creationTime": timestamp(job.created_ms),
                "lastModifiedTime": timestamp(job.updated_ms),
                "customModelName": job.spec.custom_model_name,
                "customizationType": job.spec.customization_type.as_type().as_str(),
            });
            if let Some(end) = job.end_ms {
                out["endTime"] = timestamp(end);
            }
            if job.state == JobState::Completed {
                if let Some(arn) = custom_model_arn_of(&state, job) {
                    out["customModelArn"] = json!(arn);
                }
            }
            out
        });
    Ok(Json(body).into_response())
}

fn model_summary(state: &AppState, model: &CustomModel) -> Value {
    let base = &model.record.base_model_id;
    json!({
        "modelArn": state.customization.custom_model_arn(&model.record),
        "modelName": model.record.name,
        "creationTime": timestamp(model.record.created_ms),
        "baseModelArn": state.customization.base_model_arn(base),
        "baseModelName": state.core.catalog().lookup(base).map_or(base.as_str(), |e| e.name.as_str()),
        "customizationType": model.record.customization_type,
        "ownerAccountId": state.core.account_id(),
        "modelStatus": "Active",
    })
}

pub async fn get_custom_model(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let model = state.customization.custom_model(&principal, &id)?;
    let (training, validation, output) = data_configs(&model.spec);
    let mut out = model_summary(&state, &model);
    let job_arn = format!(
        "arn:aws:bedrock:{}:{}:model-customization-job/{}/{}",
        state.core.region(),
        state.core.account_id(),
        model.record.base_model_id,
        model.record.job_id
    );
    out["jobName"] = json!(model.spec.job_name);
    out["jobArn"] = json!(job_arn);
    out["hyperParameters"] = json!(model.spec.hyper_parameters);
    out["trainingDataConfig"] = training;
    out["validationDataConfig"] = validation;
    out["outputDataConfig"] = output;
    if let Some(loss) = model.training_loss {
        out["trainingMetrics"] = json!({ "trainingLoss": loss });
    }
    if let Some(loss) = model.validation_loss {
        out["validationMetrics"] = json!([{ "validationLoss": loss }]);
    }
    Ok(Json(out).into_response())
}

pub async fn list_custom_models(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    if let Some(s) = q.model_status.as_deref() {
        if !["Active", "Creating", "Failed"].contains(&s) {
            return Err(BedrockError::validation(format!(
                "modelStatus {s:?} is not one of Active, Creating, Failed"
            )));
        }
    }
    let filter = ListFilter::from_query(&q, &[])?;
    let paging = Paging::from_query(
        "ListCustomModels",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let base_filter = q
        .base_model_arn_equals
        .as_deref()
        .or(q.foundation_model_arn_equals.as_deref())
        .map(|arn| {
            arn.rsplit_once(":foundation-model/")
                .map_or(arn, |(_, id)| id)
                .to_owned()
        });
    // None of this server's models are shared from another account (isOwned=false).
    let owned_only = q.is_owned.as_deref() == Some("false");
    let listed: Vec<CustomModel> = state
        .customization
        .list_custom_models(&principal)?
        .into_iter()
        .filter(|_| !owned_only)
        .filter(|_| q.model_status.as_deref().is_none_or(|s| s == "Active"))
        .filter(|m| {
            base_filter
                .as_deref()
                .is_none_or(|b| m.record.base_model_id == b)
        })
        .collect();
    let models = filter.select(
        listed,
        |m| m.record.created_ms,
        |m| &m.record.name,
        |_| "Active",
    );
    let body = paging
        .page(models)
        .into_json("modelSummaries", |m| model_summary(&state, m));
    Ok(Json(body).into_response())
}

pub async fn delete_custom_model(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let in_use: Vec<String> = state
        .provisioned
        .list_provisioned()?
        .into_iter()
        .flat_map(|p| [p.model_id, p.desired_model_id])
        .collect();
    state
        .customization
        .delete_custom_model(&principal, &id, &in_use)
        .await?;
    Ok(Json(json!({})).into_response())
}

// ---- custom-model deployments (on-demand use of a custom model) ----------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateDeploymentBody {
    model_deployment_name: Option<String>,
    model_arn: Option<String>,
    description: Option<String>,
    client_request_token: Option<String>,
    #[allow(dead_code)]
    tags: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateDeploymentBody {
    model_arn: Option<String>,
}

fn deployment_json(state: &AppState, d: &DeploymentRecord, summary: bool) -> Value {
    let model_arn = state
        .customization
        .deployment_model(d)
        .map(|m| state.customization.custom_model_arn(&m));
    let name_field = if summary {
        "customModelDeploymentName"
    } else {
        "modelDeploymentName"
    };
    let mut out = json!({
        "customModelDeploymentArn": state.customization.deployment_arn(&d.id),
        name_field: d.name,
        "createdAt": timestamp(d.created_ms),
        "lastUpdatedAt": timestamp(d.updated_ms),
    });
    match model_arn {
        Some(arn) => {
            out["modelArn"] = json!(arn);
            out["status"] = json!("Active");
        }
        None => {
            out["status"] = json!("Failed");
            out["failureMessage"] = json!("its custom model no longer exists");
        }
    }
    if !summary {
        if let Some(description) = &d.description {
            out["description"] = json!(description);
        }
    }
    out
}

pub async fn create_deployment(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: CreateDeploymentBody = parse_json(&body)?;
    let name = required(body.model_deployment_name, "modelDeploymentName")?;
    let model = required(body.model_arn, "modelArn")?;
    let record = state.customization.create_deployment(
        &principal,
        &name,
        &model,
        body.description,
        body.client_request_token,
    )?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "customModelDeploymentArn": state.customization.deployment_arn(&record.id) })),
    )
        .into_response())
}

pub async fn get_deployment(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let record = state.customization.deployment(&principal, &id)?;
    Ok(Json(deployment_json(&state, &record, false)).into_response())
}

pub async fn update_deployment(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: UpdateDeploymentBody = parse_json(&body)?;
    let model = required(body.model_arn, "modelArn")?;
    let record = state
        .customization
        .update_deployment(&principal, &id, &model)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "customModelDeploymentArn": state.customization.deployment_arn(&record.id) })),
    )
        .into_response())
}

pub async fn delete_deployment(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    state.customization.delete_deployment(&principal, &id)?;
    Ok(Json(json!({})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentListQuery {
    created_before: Option<String>,
    created_after: Option<String>,
    name_contains: Option<String>,
    max_results: Option<String>,
    next_token: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    status_equals: Option<String>,
    model_arn_equals: Option<String>,
}

pub async fn list_deployments(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<DeploymentListQuery>,
) -> Result<Response, BedrockError> {
    let filter = ListFilter::from_query(
        &ListQuery {
            creation_time_after: q.created_after,
            creation_time_before: q.created_before,
            status_equals: q.status_equals,
            name_contains: q.name_contains,
            base_model_arn_equals: None,
            foundation_model_arn_equals: None,
            model_status: None,
            is_owned: None,
            max_results: None,
            next_token: None,
            sort_by: q.sort_by,
            sort_order: q.sort_order,
        },
        &["Creating", "Active", "Failed"],
    )?;
    let paging = Paging::from_query(
        "ListCustomModelDeployments",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let listed: Vec<(DeploymentRecord, Value)> = state
        .customization
        .list_deployments(&principal)?
        .into_iter()
        .map(|d| {
            let json = deployment_json(&state, &d, true);
            (d, json)
        })
        .filter(|(_, v)| {
            q.model_arn_equals
                .as_deref()
                .is_none_or(|m| v["modelArn"].as_str() == Some(m))
        })
        .collect();
    let rows: Vec<Value> = filter
        .select(
            listed,
            |(d, _)| d.created_ms,
            |(d, _)| &d.name,
            |(_, v)| {
                if v["status"] == "Active" {
                    "Active"
                } else {
                    "Failed"
                }
            },
        )
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let body = paging
        .page(rows)
        .into_json("modelDeploymentSummaries", Value::clone);
    Ok(Json(body).into_response())
}

// ---- model import --------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct S3DataSource {
    s3_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelDataSource {
    s3_data_source: Option<S3DataSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateImportBody {
    job_name: Option<String>,
    imported_model_name: Option<String>,
    role_arn: Option<String>,
    model_data_source: Option<ModelDataSource>,
    client_request_token: Option<String>,
    #[allow(dead_code)]
    job_tags: Option<Value>,
    #[allow(dead_code)]
    imported_model_tags: Option<Value>,
    #[allow(dead_code)]
    vpc_config: Option<Value>,
    #[allow(dead_code)]
    imported_model_kms_key_id: Option<String>,
}

pub async fn create_import_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: CreateImportBody = parse_json(&body)?;
    let source = required(
        required(
            required(body.model_data_source, "modelDataSource")?.s3_data_source,
            "modelDataSource.s3DataSource",
        )?
        .s3_uri,
        "modelDataSource.s3DataSource.s3Uri",
    )?;
    let job = state.customization.create_import_job(
        &principal,
        ImportSpec {
            job_name: required(body.job_name, "jobName")?,
            imported_model_name: required(body.imported_model_name, "importedModelName")?,
            role_arn: required(body.role_arn, "roleArn")?,
            source_uri: source,
            client_token: body.client_request_token,
            key_id: None,
        },
    )?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "jobArn": state.customization.import_job_arn(&job.id) })),
    )
        .into_response())
}

fn import_status(state: JobState) -> &'static str {
    match state {
        JobState::Completed | JobState::PartiallyCompleted => "Completed",
        JobState::Failed | JobState::Expired | JobState::Stopped => "Failed",
        _ => "InProgress",
    }
}

fn import_job_json(state: &AppState, job: &ImportJob, summary: bool) -> Value {
    let mut out = json!({
        "jobArn": state.customization.import_job_arn(&job.id),
        "jobName": job.spec.job_name,
        "importedModelName": job.spec.imported_model_name,
        "status": import_status(job.state),
        "creationTime": timestamp(job.created_ms),
        "lastModifiedTime": timestamp(job.updated_ms),
    });
    if let Some(end) = job.end_ms {
        out["endTime"] = timestamp(end);
    }
    if job.state == JobState::Completed {
        if let Some(id) = &job.result.imported_model_id {
            out["importedModelArn"] = json!(state.core.custom_models().imported_arn(id));
        }
    }
    if !summary {
        out["roleArn"] = json!(job.spec.role_arn);
        out["modelDataSource"] = json!({ "s3DataSource": { "s3Uri": job.spec.source_uri } });
        if job.state == JobState::Failed {
            if let Some(m) = &job.message {
                out["failureMessage"] = json!(m);
            }
        }
    }
    out
}

pub async fn get_import_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let job = state.customization.import_job(&principal, &id)?;
    Ok(Json(import_job_json(&state, &job, false)).into_response())
}

pub async fn list_import_jobs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    const STATUSES: [&str; 3] = ["InProgress", "Completed", "Failed"];
    let filter = ListFilter::from_query(&q, &STATUSES)?;
    let paging = Paging::from_query(
        "ListModelImportJobs",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let jobs = filter.select(
        state.customization.list_import_jobs(&principal)?,
        |j| j.created_ms,
        |j| &j.spec.job_name,
        |j| import_status(j.state),
    );
    let body = paging.page(jobs).into_json("modelImportJobSummaries", |j| {
        import_job_json(&state, j, true)
    });
    Ok(Json(body).into_response())
}

fn imported_model_json(
    state: &AppState,
    record: &basalt_core::customization::CustomModelRecord,
    details: &ImportDetails,
    summary: bool,
) -> Value {
    let mut out = json!({
        "modelArn": state.core.custom_models().imported_arn(&record.id),
        "modelName": record.name,
        "creationTime": timestamp(record.created_ms),
        "instructSupported": details.instruct_supported,
        "modelArchitecture": details.architecture,
    });
    if !summary {
        out["jobName"] = json!(details.spec.job_name);
        out["jobArn"] = json!(state.customization.import_job_arn(&record.job_id));
        out["modelDataSource"] = json!({ "s3DataSource": { "s3Uri": details.spec.source_uri } });
    }
    out
}

pub async fn get_imported_model(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let (record, details) = state.customization.imported_model(&principal, &id)?;
    Ok(Json(imported_model_json(&state, &record, &details, false)).into_response())
}

pub async fn list_imported_models(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    let filter = ListFilter::from_query(&q, &[])?;
    let paging = Paging::from_query(
        "ListImportedModels",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let models = filter.select(
        state.customization.list_imported_models(&principal)?,
        |(r, _)| r.created_ms,
        |(r, _)| &r.name,
        |_| "Active",
    );
    let body = paging.page(models).into_json("modelSummaries", |(r, d)| {
        imported_model_json(&state, r, d, true)
    });
    Ok(Json(body).into_response())
}

pub async fn delete_imported_model(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    state
        .customization
        .delete_imported_model(&principal, &id)
        .await?;
    Ok(Json(json!({})).into_response())
}
