//! Basalt's own control-plane routes (no AWS counterpart), for administrator keys:
//! `GET` / `PUT /basalt/v1/keys/{key}/limits` — a key's quota overrides, as
//! `basalt keys update` sets them. Errors use the Bedrock error shape.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use basalt_core::keys::{KeyLimits, Principal};
use serde::Deserialize;
use serde_json::json;

use crate::bedrock::wire::parse_json;
use crate::error::{BedrockError, BedrockErrorCode};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/basalt/v1/keys/{key_id}/limits",
        get(get_limits).put(put_limits),
    )
}

fn admin_only(principal: &Principal) -> Result<(), BedrockError> {
    if principal.is_admin {
        Ok(())
    } else {
        Err(BedrockError {
            code: BedrockErrorCode::AccessDenied,
            message: "only an administrator key may read or change key limits".into(),
        })
    }
}

fn body(state: &AppState, key_id: &str) -> Result<Response, BedrockError> {
    let record = state.core.keys().get(key_id)?;
    let principal = Principal {
        key_id: record.id.clone(),
        key_name: record.name.clone(),
        is_admin: record.is_admin,
        limits: record.limits,
    };
    let (spent, budget) = state.core.quotas().budget_status(&principal);
    Ok(Json(json!({
        "keyId": record.id,
        "name": record.name,
        "requestsPerMinute": record.limits.requests_per_minute,
        "tokensPerMinute": record.limits.tokens_per_minute,
        "monthlyBudgetUsd": record.limits.monthly_budget_usd,
        "effectiveMonthlyBudgetUsd": budget,
        "spentThisMonthUsd": spent,
    }))
    .into_response())
}

async fn get_limits(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, BedrockError> {
    admin_only(&principal)?;
    body(&state, &key_id)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LimitsBody {
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    monthly_budget_usd: Option<f64>,
}

/// Replaces the overrides: an absent or null member removes that override.
async fn put_limits(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Extension(principal): Extension<Principal>,
    raw: Bytes,
) -> Result<Response, BedrockError> {
    admin_only(&principal)?;
    let limits: LimitsBody = parse_json(&raw)?;
    state.core.keys().set_limits(
        &key_id,
        KeyLimits {
            requests_per_minute: limits.requests_per_minute,
            tokens_per_minute: limits.tokens_per_minute,
            monthly_budget_usd: limits.monthly_budget_usd,
        },
    )?;
    body(&state, &key_id)
}
