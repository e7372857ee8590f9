//! Basalt's own control-plane routes (no AWS counterpart), for administrator keys:
//! `GET` / `PUT /basalt/v1/keys/{key}/limits` — a key's quota overrides, as
//! `basalt keys update` sets them; `GET /basalt/v1/usage` — the usage report with
//! latency percentiles and recommendations. Errors use the Bedrock error shape.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use basalt_core::keys::{KeyLimits, Principal};
use basalt_core::usage::Bucket;
use serde::Deserialize;
use serde_json::json;

use crate::bedrock::wire::parse_json;
use crate::error::{BedrockError, BedrockErrorCode};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/basalt/v1/keys/{key_id}/limits",
            get(get_limits).put(put_limits),
        )
        .route("/basalt/v1/usage", get(usage))
}

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
}

/// A time as unix milliseconds or RFC 3339.
fn instant(name: &str, value: &str) -> Result<i64, BedrockError> {
    value.parse::<i64>().or_else(|_| {
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
            .map(crate::common::unix_ms)
            .map_err(|_| {
                BedrockError::validation(format!(
                    "{name} {value:?} is neither unix milliseconds nor an RFC 3339 time"
                ))
            })
    })
}

/// `GET /basalt/v1/usage?since=&until=&by=hour|day`: the usage report (default: the
/// last 24 hours, whole period), for administrator keys.
async fn usage(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    axum::extract::Query(q): axum::extract::Query<UsageQuery>,
) -> Result<Response, BedrockError> {
    if !principal.is_admin {
        return Err(BedrockError {
            code: BedrockErrorCode::AccessDenied,
            message: "only an administrator key may read the usage report".into(),
        });
    }
    let now = crate::common::now_ms();
    let since = q
        .since
        .as_deref()
        .map(|v| instant("since", v))
        .transpose()?
        .unwrap_or(now - 86_400_000);
    let until = q
        .until
        .as_deref()
        .map(|v| instant("until", v))
        .transpose()?
        .unwrap_or(now + 1);
    if until <= since {
        return Err(BedrockError::validation("until must be after since"));
    }
    let bucket = match q.by.as_deref() {
        None | Some("none") => Bucket::Whole,
        Some("hour") => Bucket::Hour,
        Some("day") => Bucket::Day,
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "by {other:?} is not one of hour, day, none"
            )))
        }
    };
    let report = state.core.usage_report(since, until, bucket)?;
    Ok(Json(json!({ "sinceMs": since, "untilMs": until, "groups": report.groups, "recommendations": report.recommendations })).into_response())
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
        retrieval_filter: record.retrieval_filter.clone(),
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
