//! Provisioned throughput on the Bedrock control plane: Create (201), Get, List,
//! Update (PATCH: name or model), Delete.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::keys::Principal;
use basalt_core::provisioned::{ProvisionedModel, ProvisionedSpec, ProvisionedStatus};
use basalt_core::Basalt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::paging::Paging;
use super::wire::parse_json;
use crate::common::timestamp;
use crate::error::BedrockError;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    client_request_token: Option<String>,
    model_units: Option<i64>,
    provisioned_model_name: Option<String>,
    model_id: Option<String>,
    commitment_duration: Option<String>,
    #[allow(dead_code)]
    tags: Option<Value>,
}

fn model_arn(core: &Basalt, id: &str) -> String {
    format!("arn:aws:bedrock:{}::foundation-model/{id}", core.region())
}

fn summary(state: &AppState, r: &ProvisionedModel) -> Value {
    let mut out = json!({
        "provisionedModelName": r.name,
        "provisionedModelArn": state.provisioned.provisioned_arn(&r.id),
        "modelArn": model_arn(&state.core, &r.model_id),
        "desiredModelArn": model_arn(&state.core, &r.desired_model_id),
        "foundationModelArn": model_arn(&state.core, &r.model_id),
        "modelUnits": r.model_units,
        "desiredModelUnits": r.model_units,
        "status": r.status.as_str(),
        "creationTime": timestamp(r.created_ms),
        "lastModifiedTime": timestamp(r.updated_ms),
    });
    if let Some(c) = &r.commitment {
        out["commitmentDuration"] = json!(c);
    }
    if let Some(t) = r.commitment_expires_ms {
        out["commitmentExpirationTime"] = timestamp(t);
    }
    if let Some(m) = &r.failure_message {
        out["failureMessage"] = json!(m);
    }
    out
}

pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, BedrockError> {
    let body: CreateBody = parse_json(&body)?;
    let units = body
        .model_units
        .ok_or_else(|| BedrockError::validation("modelUnits is required"))?;
    let units = u32::try_from(units)
        .ok()
        .filter(|u| *u >= 1)
        .ok_or_else(|| {
            BedrockError::validation("modelUnits must be a whole number of at least 1")
        })?;
    let record = state.provisioned.create_provisioned(ProvisionedSpec {
        name: body
            .provisioned_model_name
            .ok_or_else(|| BedrockError::validation("provisionedModelName is required"))?,
        model_id: body
            .model_id
            .ok_or_else(|| BedrockError::validation("modelId is required"))?,
        model_units: units,
        commitment: body.commitment_duration,
        client_token: body.client_request_token,
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "provisionedModelArn": state.provisioned.provisioned_arn(&record.id) })),
    )
        .into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let record = state.provisioned.provisioned_model(&id)?;
    Ok(Json(summary(&state, &record)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    status_equals: Option<String>,
    name_contains: Option<String>,
    model_arn_equals: Option<String>,
    max_results: Option<String>,
    next_token: Option<String>,
    sort_order: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    if let Some(s) = &q.status_equals {
        if ProvisionedStatus::parse(s).is_none() {
            return Err(BedrockError::validation(format!(
                "statusEquals {s:?} is not one of {}",
                ProvisionedStatus::spellings()
            )));
        }
    }
    let paging = Paging::from_query(
        "ListProvisionedModelThroughputs",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let mut records: Vec<ProvisionedModel> = state
        .provisioned
        .list_provisioned()?
        .into_iter()
        .filter(|r| {
            q.status_equals
                .as_ref()
                .is_none_or(|s| r.status.as_str() == s)
        })
        .filter(|r| {
            q.name_contains
                .as_ref()
                .is_none_or(|n| r.name.contains(n.as_str()))
        })
        .filter(|r| {
            q.model_arn_equals
                .as_ref()
                .is_none_or(|a| model_arn(&state.core, &r.model_id) == *a)
        })
        .collect();
    if q.sort_order.as_deref() != Some("Ascending") {
        records.reverse();
    }
    let body = paging
        .page(records)
        .into_json("provisionedModelSummaries", |r| summary(&state, r));
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateBody {
    desired_provisioned_model_name: Option<String>,
    desired_model_id: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: UpdateBody = if body.is_empty() {
        UpdateBody {
            desired_provisioned_model_name: None,
            desired_model_id: None,
        }
    } else {
        parse_json(&body)?
    };
    state.provisioned.update_provisioned(
        &id,
        body.desired_provisioned_model_name,
        body.desired_model_id,
    )?;
    Ok(Json(json!({})).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    state.provisioned.delete_provisioned(&id)?;
    Ok(Json(json!({})).into_response())
}
