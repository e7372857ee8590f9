//! Model customization: the jobs, and each job's live loss curve (training loss per
//! step, validation loss per evaluation), refreshed while it trains.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::Extension;
use minijinja::context;
use serde_json::{json, Value};

use super::{paged, PageQuery};
use crate::api::segment;
use crate::{Console, Signed};

pub async fn list(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<PageQuery>,
) -> Response {
    let (jobs, next_token, error) = console
        .list_page(
            &signed,
            Method::GET,
            &paged("/model-customization-jobs", q.next.as_deref()),
            None,
            "modelCustomizationJobSummaries",
        )
        .await;
    let models = console
        .call(&signed, Method::GET, "/custom-models?maxResults=100", None)
        .await
        .map(|v| v["modelSummaries"].clone())
        .unwrap_or(Value::Null);
    console.page(
        &signed,
        "customization.html",
        "customization",
        context! { jobs, models, next_token, error },
    )
}

/// The loss curve as a chart (x: step).
fn chart(curve: &Value) -> Value {
    let training = curve["training"].as_array().cloned().unwrap_or_default();
    if training.is_empty() {
        return Value::Null;
    }
    let validation = curve["validation"].as_array().cloned().unwrap_or_default();
    let x: Vec<u64> = training.iter().filter_map(|p| p["step"].as_u64()).collect();
    let train: Vec<Value> = training.iter().map(|p| p["loss"].clone()).collect();
    // Validation points sit at the steps they were measured; other steps have none.
    let valid: Vec<Value> = x
        .iter()
        .map(|step| {
            validation
                .iter()
                .find(|p| p["step"].as_u64() == Some(*step))
                .map(|p| p["loss"].clone())
                .unwrap_or(Value::Null)
        })
        .collect();
    json!({ "x": x, "time": false, "series": [
        {"label": "training loss", "values": train},
        {"label": "validation loss", "values": valid},
    ]})
}

pub async fn detail(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    let job = match console
        .call(
            &signed,
            Method::GET,
            &format!("/model-customization-jobs/{}", segment(&id)),
            None,
        )
        .await
    {
        Ok(j) => j,
        Err(e) => return console.error_page(&signed, "customization", &e),
    };
    let curve = console
        .call(
            &signed,
            Method::GET,
            &format!(
                "/basalt/v1/model-customization-jobs/{}/loss-curve",
                segment(&id)
            ),
            None,
        )
        .await
        .unwrap_or(Value::Null);
    let running = matches!(job["status"].as_str(), Some("InProgress" | "Stopping"));
    console.page(
        &signed,
        "customization_job.html",
        "customization",
        context! { job, running, id, chart => chart(&curve), points => curve["training"].as_array().map_or(0, Vec::len) },
    )
}
