//! The pages, one module per area. Each handler acts through [`Console::call`] as
//! the signed-in key and renders the API's answer (or its error).

pub mod agents;
pub mod batch;
pub mod customization;
pub mod guardrails;
pub mod keys;
pub mod knowledge;
pub mod models;
pub mod overview;
pub mod playground;
pub mod sign_in;
pub mod usage;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::{Console, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console", get(overview::page))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/playground", get(playground::page))
        .route("/console/playground/stream", post(playground::stream))
        .route("/console/models", get(models::page))
        .route(
            "/console/models/provisioned",
            post(models::create_provisioned),
        )
        .route(
            "/console/models/provisioned/{id}/update",
            post(models::update_provisioned),
        )
        .route(
            "/console/models/provisioned/{id}/delete",
            post(models::delete_provisioned),
        )
        .route("/console/keys", get(keys::page).post(keys::create))
        .route("/console/keys/{id}/revoke", post(keys::revoke))
        .route("/console/keys/{id}/limits", post(keys::limits))
        .route("/console/keys/{id}/filter", post(keys::filter))
        .route("/console/usage", get(usage::page))
        .route("/console/usage.csv", get(usage::csv))
        .route(
            "/console/guardrails",
            get(guardrails::list).post(guardrails::create),
        )
        .route(
            "/console/guardrails/{id}",
            get(guardrails::detail).post(guardrails::update),
        )
        .route(
            "/console/guardrails/{id}/versions",
            post(guardrails::publish),
        )
        .route("/console/guardrails/{id}/delete", post(guardrails::delete))
        .route("/console/guardrails/{id}/test", post(guardrails::test))
        .route(
            "/console/knowledge-bases",
            get(knowledge::list).post(knowledge::create),
        )
        .route("/console/knowledge-bases/{kb}", get(knowledge::detail))
        .route(
            "/console/knowledge-bases/{kb}/delete",
            post(knowledge::delete),
        )
        .route(
            "/console/knowledge-bases/{kb}/data-sources",
            post(knowledge::create_data_source),
        )
        .route(
            "/console/knowledge-bases/{kb}/data-sources/{ds}/sync",
            post(knowledge::sync),
        )
        .route(
            "/console/knowledge-bases/{kb}/data-sources/{ds}/jobs/{job}",
            get(knowledge::job),
        )
        .route(
            "/console/knowledge-bases/{kb}/retrieve",
            post(knowledge::retrieve),
        )
        .route(
            "/console/knowledge-bases/{kb}/generate",
            post(knowledge::generate),
        )
        .route("/console/batch", get(batch::list).post(batch::submit))
        .route("/console/batch/{id}", get(batch::detail))
        .route("/console/batch/{id}/stop", post(batch::stop))
        .route("/console/agents", get(agents::list).post(agents::create))
        .route("/console/agents/{id}/prepare", post(agents::prepare))
        .route(
            "/console/agents/{id}/action-groups",
            post(agents::create_action_group),
        )
        .route(
            "/console/agents/{id}/knowledge-bases",
            post(agents::associate_knowledge_base),
        )
        .route("/console/agents/{id}/delete", post(agents::delete))
        .route("/console/agents/{id}", get(agents::detail))
        .route("/console/agents/{id}/test", post(agents::test))
        .route("/console/customization", get(customization::list))
        .route("/console/customization/{id}", get(customization::detail))
}

/// A list page's query: the page token.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub next: Option<String>,
}

/// How many rows a list page shows.
pub const PAGE_SIZE: u32 = 20;

/// A `?maxResults=&nextToken=` query for a paged GET list.
pub fn paged(path: &str, next: Option<&str>) -> String {
    let mut q = format!("{path}?maxResults={PAGE_SIZE}");
    if let Some(t) = next.filter(|t| !t.is_empty()) {
        q.push_str("&nextToken=");
        q.push_str(&crate::api::segment(t));
    }
    q
}

/// A `{"maxResults", "nextToken"}` body for a paged POST list.
pub fn paged_body(next: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({ "maxResults": PAGE_SIZE });
    if let Some(t) = next.filter(|t| !t.is_empty()) {
        body["nextToken"] = t.into();
    }
    body
}

/// After a successful form: back to a page (303, so a reload does not resubmit).
pub fn see_other(to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}

/// Refused unless the key is an administrator's (as the admin API routes are).
#[allow(clippy::result_large_err)]
pub fn admin_only(console: &Console, signed: &Signed, nav: &str) -> Result<(), Response> {
    if signed.principal.is_admin {
        return Ok(());
    }
    Err(console.error_page(
        signed,
        nav,
        &crate::ApiFailure {
            status: StatusCode::FORBIDDEN,
            code: "AccessDeniedException".into(),
            message: "this page needs an administrator key".into(),
        },
    ))
}

/// A form value: trimmed, None when empty.
pub fn filled(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Parses a JSON text area, with the field's name in the error.
pub fn json_field(name: &str, text: &str) -> Result<serde_json::Value, crate::ApiFailure> {
    serde_json::from_str(text).map_err(|e| crate::ApiFailure {
        status: StatusCode::BAD_REQUEST,
        code: "ValidationException".into(),
        message: format!("{name} is not valid JSON: {e}"),
    })
}

/// The status of a page re-rendered after a failed form: the API's own.
pub fn status_of(error: Option<&crate::ApiFailure>) -> StatusCode {
    error.map_or(StatusCode::OK, |e| e.status)
}
