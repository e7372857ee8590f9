//! Basalt's own control-plane routes (no AWS counterpart), for administrator keys:
//! `GET` / `POST /basalt/v1/keys` — list keys (no secrets) / create one (its secrets
//! are in this answer only); `DELETE /basalt/v1/keys/{key}` — revoke;
//! `GET` / `PUT /basalt/v1/keys/{key}/limits` — a key's quota overrides, as
//! `basalt keys update` sets them; `PUT /basalt/v1/keys/{key}/retrieval-filter` — its
//! mandatory retrieval filter; `GET /basalt/v1/usage` — the usage report with
//! latency percentiles and recommendations; and, for any key that may see the job,
//! `GET /basalt/v1/model-customization-jobs/{job}/loss-curve`. Errors use the
//! Bedrock error shape.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
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
        .route("/basalt/v1/keys", get(list_keys).post(create_key))
        .route("/basalt/v1/keys/{key_id}", delete(revoke_key))
        .route(
            "/basalt/v1/keys/{key_id}/limits",
            get(get_limits).put(put_limits),
        )
        .route(
            "/basalt/v1/keys/{key_id}/retrieval-filter",
            put(put_retrieval_filter),
        )
        .route("/basalt/v1/keys/{key_id}/policy", put(put_policy))
        .route("/basalt/v1/audit", get(audit_log))
        .route("/basalt/v1/usage", get(usage))
        .route(
            "/basalt/v1/model-customization-jobs/{job_id}/loss-curve",
            get(loss_curve),
        )
}

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    /// `true`: each group split by the node that served it (a fleet on one store).
    #[serde(rename = "perNode")]
    per_node: Option<bool>,
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

/// `GET /basalt/v1/usage?since=&until=&by=minute|hour|day&perNode=true`: the usage
/// report (default: the last 24 hours, whole period, not split per node), for
/// administrator keys.
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
        Some("minute") => {
            // A minute per row: at most a day of them.
            if until - since > 86_400_000 {
                return Err(BedrockError::validation(
                    "by minute covers at most 24 hours (since to until)",
                ));
            }
            Bucket::Minute
        }
        Some("hour") => Bucket::Hour,
        Some("day") => Bucket::Day,
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "by {other:?} is not one of minute, hour, day, none"
            )))
        }
    };
    let report = state
        .core
        .usage_report(since, until, bucket, q.per_node.unwrap_or(false))?;
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
        policy: None,
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

/// `GET /basalt/v1/model-customization-jobs/{job}/loss-curve`: training loss per
/// step and validation loss per evaluation so far (any key that may see the job).
async fn loss_curve(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, BedrockError> {
    let curve = state.customization.loss_curve(&principal, &job_id)?;
    Ok(Json(json!({ "training": curve.training, "validation": curve.validation })).into_response())
}

/// A key as the list shows it: no secret, nor the bearer token's hash.
fn key_json(record: &basalt_core::keys::KeyRecord) -> serde_json::Value {
    json!({
        "keyId": record.id,
        "name": record.name,
        "accessKeyId": record.access_key_id,
        "isAdmin": record.is_admin,
        "createdAt": record.created_at,
        "revokedAt": record.revoked_at,
        "requestsPerMinute": record.limits.requests_per_minute,
        "tokensPerMinute": record.limits.tokens_per_minute,
        "monthlyBudgetUsd": record.limits.monthly_budget_usd,
        "retrievalFilter": record
            .retrieval_filter
            .as_deref()
            .and_then(|f| serde_json::from_str::<serde_json::Value>(f).ok()),
        "policy": record
            .policy
            .as_deref()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()),
    })
}

/// `GET /basalt/v1/keys`: every key, newest first, revoked ones included.
async fn list_keys(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, BedrockError> {
    admin_only(&principal)?;
    let mut keys = state.core.keys().list()?;
    keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let keys: Vec<_> = keys.iter().map(key_json).collect();
    Ok(Json(json!({ "keys": keys })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKeyBody {
    name: String,
    #[serde(default)]
    is_admin: bool,
}

/// `POST /basalt/v1/keys` `{"name", "isAdmin"}`: a new key; its secret access key and
/// bearer token are in this answer and nowhere else.
async fn create_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    raw: Bytes,
) -> Result<Response, BedrockError> {
    admin_only(&principal)?;
    let body: CreateKeyBody = parse_json(&raw)?;
    let now = crate::common::now_ms() / 1000;
    let issued = state.core.keys().create(&body.name, body.is_admin, now)?;
    tracing::info!(key = %issued.id, name = %issued.name, by = %principal.key_id, "key created");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({
            "keyId": issued.id,
            "name": issued.name,
            "isAdmin": body.is_admin,
            "accessKeyId": issued.access_key_id,
            "secretAccessKey": issued.secret_access_key,
            "bearerToken": issued.bearer_token,
        })),
    )
        .into_response())
}

/// `DELETE /basalt/v1/keys/{key}`: revokes the key (by key ID or access key ID).
async fn revoke_key(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, BedrockError> {
    admin_only(&principal)?;
    state
        .core
        .keys()
        .revoke(&key_id, crate::common::now_ms() / 1000)?;
    tracing::info!(key = %key_id, by = %principal.key_id, "key revoked");
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrievalFilterBody {
    /// A Bedrock `RetrievalFilter`; null or absent clears it.
    filter: Option<serde_json::Value>,
}

/// `PUT /basalt/v1/keys/{key}/retrieval-filter` `{"filter": {...} | null}`.
async fn put_retrieval_filter(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Extension(principal): Extension<Principal>,
    raw: Bytes,
) -> Result<Response, BedrockError> {
    admin_only(&principal)?;
    let body: RetrievalFilterBody = parse_json(&raw)?;
    let text = body.filter.filter(|f| !f.is_null()).map(|f| f.to_string());
    state
        .core
        .keys()
        .set_retrieval_filter(&key_id, text.as_deref())?;
    let record = state.core.keys().get(&key_id)?;
    Ok(Json(key_json(&record)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyBody {
    /// An IAM-style policy document; null or absent removes the key's policy.
    policy: Option<serde_json::Value>,
}

/// `PUT /basalt/v1/keys/{key}/policy` `{"policy": {...} | null}`: the key's
/// permissions (see `basalt_core::policy`); the answer is the key as listed.
async fn put_policy(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Extension(principal): Extension<Principal>,
    raw: Bytes,
) -> Result<Response, BedrockError> {
    admin_only(&principal)?;
    let body: PolicyBody = parse_json(&raw)?;
    let text = body.policy.filter(|p| !p.is_null()).map(|p| p.to_string());
    state.core.keys().set_policy(&key_id, text.as_deref())?;
    let record = state.core.keys().get(&key_id)?;
    Ok(Json(key_json(&record)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditParams {
    since: Option<String>,
    until: Option<String>,
    /// Only this key's entries (key ID or name).
    key: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

/// `GET /basalt/v1/audit?since=&until=&key=&maxResults=&nextToken=`: control-plane
/// changes, oldest first (default: the last 24 hours, 100 a page), for administrators.
async fn audit_log(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    axum::extract::Query(q): axum::extract::Query<AuditParams>,
) -> Result<Response, BedrockError> {
    if !principal.is_admin {
        return Err(BedrockError {
            code: BedrockErrorCode::AccessDenied,
            message: "only an administrator key may read the audit log".into(),
        });
    }
    let now = crate::common::now_ms();
    let until = q
        .until
        .as_deref()
        .map(|u| instant("until", u))
        .transpose()?
        .unwrap_or(now + 1);
    let since = q
        .since
        .as_deref()
        .map(|s| instant("since", s))
        .transpose()?
        .unwrap_or(now - 86_400_000);
    let after = q
        .next_token
        .as_deref()
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| BedrockError::validation("nextToken is not one this server gave"))
        })
        .transpose()?;
    let page = state.services.audit.page(
        since,
        until,
        q.key.as_deref(),
        after,
        q.max_results.unwrap_or(100),
    )?;
    let entries: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            json!({
                "atMs": e.at_ms, "requestId": e.request_id, "keyId": e.key_id, "keyName": e.key_name,
                "action": e.action, "resource": e.resource, "status": e.status, "source": e.source,
            })
        })
        .collect();
    Ok(
        Json(json!({ "entries": entries, "nextToken": page.next_after.map(|a| a.to_string()) }))
            .into_response(),
    )
}
