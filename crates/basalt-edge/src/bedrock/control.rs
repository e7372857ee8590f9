//! bedrock control-plane operations on the catalog: ListFoundationModels and
//! GetFoundationModel.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use basalt_core::catalog::{LifecycleStatus, ModelEntry};
use basalt_core::types::{CustomizationType, InferenceType, Modality};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{BedrockError, BedrockErrorCode};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFilters {
    by_provider: Option<String>,
    by_customization_type: Option<String>,
    by_output_modality: Option<String>,
    by_inference_type: Option<String>,
}

fn model_arn(region: &str, id: &str) -> String {
    format!("arn:aws:bedrock:{region}::foundation-model/{id}")
}

fn summary(region: &str, m: &ModelEntry, now: OffsetDateTime) -> Value {
    let time = |t: Option<OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
    let mut lifecycle = json!({ "status": m.lifecycle.status_at(now).as_str() });
    for (key, value) in [
        ("startOfLifeTime", time(m.lifecycle.start_of_life)),
        ("legacyTime", time(m.lifecycle.legacy_time)),
        ("endOfLifeTime", time(m.lifecycle.end_of_life)),
    ] {
        if let Some(v) = value {
            lifecycle[key] = json!(v);
        }
    }
    json!({
        "modelArn": model_arn(region, &m.id),
        "modelId": m.id,
        "modelName": m.name,
        "providerName": m.provider,
        "inputModalities": names(&m.input_modalities, |v| v.as_str()),
        "outputModalities": names(&m.output_modalities, |v| v.as_str()),
        "responseStreamingSupported": m.streaming,
        "customizationsSupported": names(&m.customizations, |v| v.as_str()),
        "inferenceTypesSupported": names(&m.inference_types, |v| v.as_str()),
        "modelLifecycle": lifecycle,
    })
}

fn names<T: Copy>(values: &[T], name: impl Fn(T) -> &'static str) -> Vec<&'static str> {
    values.iter().map(|v| name(*v)).collect()
}

/// A list filter's value parsed, or a ValidationException naming the allowed ones.
fn filter_value<T: Copy>(
    name: &str,
    value: &Option<String>,
    allowed: &[T],
    spell: impl Fn(T) -> &'static str,
) -> Result<Option<T>, BedrockError> {
    match value {
        None => Ok(None),
        Some(v) => allowed
            .iter()
            .copied()
            .find(|a| spell(*a) == v)
            .map(Some)
            .ok_or_else(|| {
                BedrockError::validation(format!(
                    "{name} {v:?} is not one of {}",
                    names(allowed, spell).join(", ")
                ))
            }),
    }
}

pub async fn list_foundation_models(
    State(state): State<AppState>,
    Query(filters): Query<ListFilters>,
) -> Result<Response, BedrockError> {
    let modality = filter_value(
        "byOutputModality",
        &filters.by_output_modality,
        Modality::ALL,
        Modality::as_str,
    )?;
    let inference = filter_value(
        "byInferenceType",
        &filters.by_inference_type,
        &[InferenceType::OnDemand, InferenceType::Provisioned],
        InferenceType::as_str,
    )?;
    let customization = filter_value(
        "byCustomizationType",
        &filters.by_customization_type,
        CustomizationType::ALL,
        CustomizationType::as_str,
    )?;
    let now = OffsetDateTime::now_utc();
    let region = state.core.region();
    let summaries: Vec<Value> = state
        .core
        .catalog()
        .models()
        .filter(|m| m.lifecycle.status_at(now) != LifecycleStatus::Eol)
        .filter(|m| {
            filters
                .by_provider
                .as_ref()
                .is_none_or(|p| m.provider.eq_ignore_ascii_case(p))
        })
        .filter(|m| modality.is_none_or(|o| m.output_modalities.contains(&o)))
        .filter(|m| inference.is_none_or(|t| m.inference_types.contains(&t)))
        .filter(|m| customization.is_none_or(|c| m.customizations.contains(&c)))
        .map(|m| summary(region, m, now))
        .collect();
    // Aliases are listed as the model they name, under their own ID, marked.
    let catalog = state.core.catalog();
    let listed: std::collections::HashSet<String> = summaries
        .iter()
        .filter_map(|s| s["modelId"].as_str().map(str::to_string))
        .collect();
    let mut summaries = summaries;
    // An alias is for on-demand calls (provisioned throughput names the model itself).
    let aliases_listed = inference.is_none_or(|t| t == InferenceType::OnDemand);
    for (alias, target) in catalog.aliases() {
        if !aliases_listed || !listed.contains(target) {
            continue;
        }
        if let Some(entry) = catalog.get(target) {
            summaries.push(alias_summary(region, alias, entry, now));
        }
    }
    Ok(Json(json!({ "modelSummaries": summaries })).into_response())
}

pub async fn get_foundation_model(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Response, BedrockError> {
    let id = identifier
        .rsplit_once(":foundation-model/")
        .map_or(identifier.as_str(), |(_, id)| id);
    let catalog = state.core.catalog();
    let entry = catalog.lookup(id).ok_or_else(|| BedrockError {
        code: BedrockErrorCode::ResourceNotFound,
        message: format!("foundation model {identifier} is not in this server's catalog"),
    })?;
    let now = OffsetDateTime::now_utc();
    let details = if entry.id == id {
        summary(state.core.region(), entry, now)
    } else {
        alias_summary(state.core.region(), id, entry, now)
    };
    Ok(Json(json!({ "modelDetails": details })).into_response())
}

/// An alias as ListFoundationModels shows it: the target's details under the alias's
/// ID and ARN, with `basaltAliasOf` naming the model that answers.
fn alias_summary(region: &str, alias: &str, entry: &ModelEntry, now: OffsetDateTime) -> Value {
    let mut s = summary(region, entry, now);
    s["modelId"] = json!(alias);
    s["modelArn"] = json!(format!(
        "arn:aws:bedrock:{region}::foundation-model/{alias}"
    ));
    s["basaltAliasOf"] = json!(entry.id);
    s["inferenceTypesSupported"] = json!(["ON_DEMAND"]);
    s
}
