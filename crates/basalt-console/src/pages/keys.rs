//! Keys (administrator keys only, as the API's key routes): create (the secrets are
//! shown on the answer page once and kept nowhere), revoke, quotas and budget,
//! mandatory retrieval filter.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::{Extension, Form};
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin_only, filled, json_field, see_other};
use crate::api::segment;
use crate::{ApiFailure, Console, Signed};

async fn render(
    console: &Console,
    signed: &Signed,
    issued: Value,
    error: Option<ApiFailure>,
) -> Response {
    let status = super::status_of(error.as_ref());
    let keys = console
        .call(signed, Method::GET, "/basalt/v1/keys", None)
        .await;
    let (keys, list_error) = match keys {
        Ok(v) => (v["keys"].clone(), None),
        Err(e) => (Value::Null, Some(e.to_string())),
    };
    console.page_with_status(
        status,
        signed,
        "keys.html",
        "keys",
        context! { keys, issued, error => error.map(|e| e.to_string()).or(list_error) },
    )
}

pub async fn page(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
) -> Response {
    if let Err(r) = admin_only(&console, &signed, "keys") {
        return r;
    }
    render(&console, &signed, Value::Null, None).await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    name: Option<String>,
    admin: Option<String>,
}

pub async fn create(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Form(form): Form<CreateForm>,
) -> Response {
    if let Err(r) = admin_only(&console, &signed, "keys") {
        return r;
    }
    let body =
        json!({ "name": filled(&form.name).unwrap_or_default(), "isAdmin": form.admin.is_some() });
    match console
        .call(&signed, Method::POST, "/basalt/v1/keys", Some(&body))
        .await
    {
        Ok(issued) => render(&console, &signed, issued, None).await,
        Err(e) => render(&console, &signed, Value::Null, Some(e)).await,
    }
}

pub async fn revoke(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_only(&console, &signed, "keys") {
        return r;
    }
    let path = format!("/basalt/v1/keys/{}", segment(&id));
    match console.call(&signed, Method::DELETE, &path, None).await {
        Ok(_) => {
            console.0.sessions.close_key(&id);
            see_other("/console/keys")
        }
        Err(e) => render(&console, &signed, Value::Null, Some(e)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct LimitsForm {
    requests_per_minute: Option<String>,
    tokens_per_minute: Option<String>,
    monthly_budget_usd: Option<String>,
}

fn number(name: &str, value: &Option<String>) -> Result<Value, ApiFailure> {
    match filled(value) {
        None => Ok(Value::Null),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(|n| {
                if n.fract() == 0.0 && n >= 0.0 && name != "monthlyBudgetUsd" {
                    json!(n as u64)
                } else {
                    json!(n)
                }
            })
            .ok_or_else(|| ApiFailure {
                status: axum::http::StatusCode::BAD_REQUEST,
                code: "ValidationException".into(),
                message: format!("{name} must be a number"),
            }),
    }
}

pub async fn limits(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<LimitsForm>,
) -> Response {
    if let Err(r) = admin_only(&console, &signed, "keys") {
        return r;
    }
    let body = (|| -> Result<Value, ApiFailure> {
        Ok(json!({
            "requestsPerMinute": number("requestsPerMinute", &form.requests_per_minute)?,
            "tokensPerMinute": number("tokensPerMinute", &form.tokens_per_minute)?,
            "monthlyBudgetUsd": number("monthlyBudgetUsd", &form.monthly_budget_usd)?,
        }))
    })();
    let body = match body {
        Ok(b) => b,
        Err(e) => return render(&console, &signed, Value::Null, Some(e)).await,
    };
    let path = format!("/basalt/v1/keys/{}/limits", segment(&id));
    match console.call(&signed, Method::PUT, &path, Some(&body)).await {
        Ok(_) => see_other("/console/keys"),
        Err(e) => render(&console, &signed, Value::Null, Some(e)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct FilterForm {
    filter: Option<String>,
}

pub async fn filter(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<FilterForm>,
) -> Response {
    if let Err(r) = admin_only(&console, &signed, "keys") {
        return r;
    }
    let filter = match filled(&form.filter) {
        None => Value::Null,
        Some(text) => match json_field("the retrieval filter", text) {
            Ok(v) => v,
            Err(e) => return render(&console, &signed, Value::Null, Some(e)).await,
        },
    };
    let path = format!("/basalt/v1/keys/{}/retrieval-filter", segment(&id));
    match console
        .call(
            &signed,
            Method::PUT,
            &path,
            Some(&json!({ "filter": filter })),
        )
        .await
    {
        Ok(_) => see_other("/console/keys"),
        Err(e) => render(&console, &signed, Value::Null, Some(e)).await,
    }
}
