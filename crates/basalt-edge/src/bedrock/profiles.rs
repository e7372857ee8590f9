//! Application inference profiles on the Bedrock control plane:
//! CreateInferenceProfile (201), GetInferenceProfile, ListInferenceProfiles (`type`
//! filter; this server has no system-defined profiles), DeleteInferenceProfile.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::keys::Principal;
use basalt_core::profiles::{InferenceProfile, InferenceProfileSpec};
use serde::Deserialize;
use serde_json::{json, Value};

use super::paging::Paging;
use super::wire::parse_json;
use crate::common::timestamp;
use crate::error::BedrockError;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelSource {
    copy_from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Tag {
    key: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    inference_profile_name: Option<String>,
    description: Option<String>,
    client_request_token: Option<String>,
    model_source: Option<ModelSource>,
    #[serde(default)]
    tags: Vec<Tag>,
}

fn summary(state: &AppState, r: &InferenceProfile) -> Value {
    let mut out = json!({
        "inferenceProfileName": r.name,
        "inferenceProfileArn": state.profiles.arn(&r.id),
        "inferenceProfileId": r.id,
        "models": [{
            "modelArn": format!("arn:aws:bedrock:{}::foundation-model/{}", state.core.region(), r.model_id),
        }],
        "status": "ACTIVE",
        "type": "APPLICATION",
        "createdAt": timestamp(r.created_ms),
        "updatedAt": timestamp(r.updated_ms),
    });
    if let Some(d) = &r.description {
        out["description"] = json!(d);
    }
    out
}

pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, BedrockError> {
    let body: CreateBody = parse_json(&body)?;
    let name = body
        .inference_profile_name
        .ok_or_else(|| BedrockError::validation("inferenceProfileName is required"))?;
    let copy_from = body
        .model_source
        .and_then(|s| s.copy_from)
        .ok_or_else(|| BedrockError::validation("modelSource.copyFrom is required"))?;
    let record = state.profiles.create(InferenceProfileSpec {
        name,
        description: body.description,
        copy_from,
        tags: body.tags.into_iter().map(|t| (t.key, t.value)).collect(),
        client_token: body.client_request_token,
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "inferenceProfileArn": state.profiles.arn(&record.id), "status": "ACTIVE" })),
    )
        .into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    let record = state.profiles.get(&id)?;
    Ok(Json(summary(&state, &record)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(rename = "type")]
    profile_type: Option<String>,
    max_results: Option<String>,
    next_token: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    let application = match q.profile_type.as_deref() {
        None | Some("APPLICATION") => true,
        Some("SYSTEM_DEFINED") => false,
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "type {other:?} is not one of SYSTEM_DEFINED, APPLICATION"
            )))
        }
    };
    let paging = Paging::from_query(
        "ListInferenceProfiles",
        &principal.key_id,
        q.max_results.as_deref(),
        q.next_token.as_deref(),
    )?;
    let records = if application {
        state.profiles.list()?
    } else {
        Vec::new()
    };
    let body = paging
        .page(records)
        .into_json("inferenceProfileSummaries", |r| summary(&state, r));
    Ok(Json(body).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, BedrockError> {
    state.profiles.delete(&id)?;
    Ok(Json(json!({})).into_response())
}
