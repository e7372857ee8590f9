//! Batch inference jobs: list, submit, progress, stop, where the output goes.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::{Extension, Form};
use minijinja::context;
use serde::Deserialize;
use serde_json::json;

use super::{filled, paged, see_other, PageQuery};
use crate::api::segment;
use crate::{ApiFailure, Console, Signed};

async fn render_list(
    console: &Console,
    signed: &Signed,
    next: Option<&str>,
    error: Option<ApiFailure>,
) -> Response {
    let status = super::status_of(error.as_ref());
    let (jobs, next_token, list_error) = console
        .list_page(
            signed,
            Method::GET,
            &paged("/model-invocation-jobs", next),
            None,
            "invocationJobSummaries",
        )
        .await;
    let models: Vec<String> = super::overview::invocable_chat_models(
        console,
        basalt_core::types::InferenceType::OnDemand,
    )
    .into_iter()
    .map(|m| m.id.clone())
    .collect();
    console.page_with_status(
        status,
        signed,
        "batch.html",
        "batch",
        context! { jobs, next_token, models, error => error.map(|e| e.to_string()).or(list_error) },
    )
}

pub async fn list(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<PageQuery>,
) -> Response {
    render_list(&console, &signed, q.next.as_deref(), None).await
}

#[derive(Debug, Deserialize)]
pub struct SubmitForm {
    name: Option<String>,
    model: Option<String>,
    input: Option<String>,
    output: Option<String>,
    invocation_type: Option<String>,
}

pub async fn submit(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Form(form): Form<SubmitForm>,
) -> Response {
    let mut body = json!({
        "jobName": filled(&form.name).unwrap_or_default(),
        "roleArn": format!("arn:aws:iam::{}:role/basalt-console", console.app().core.account_id()),
        "modelId": filled(&form.model).unwrap_or_default(),
        "inputDataConfig": {"s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": filled(&form.input).unwrap_or_default()}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": filled(&form.output).unwrap_or_default()}},
    });
    if let Some(t) = filled(&form.invocation_type).filter(|t| *t != "InvokeModel") {
        body["modelInvocationType"] = t.into();
    }
    match console
        .call(&signed, Method::POST, "/model-invocation-job", Some(&body))
        .await
    {
        Ok(v) => see_other(&format!(
            "/console/batch/{}",
            segment(v["jobArn"].as_str().unwrap_or_default())
        )),
        Err(e) => render_list(&console, &signed, None, Some(e)).await,
    }
}

pub async fn detail(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    match console
        .call(
            &signed,
            Method::GET,
            &format!("/model-invocation-job/{}", segment(&id)),
            None,
        )
        .await
    {
        Ok(job) => {
            let running = matches!(
                job["status"].as_str(),
                Some("Submitted" | "Validating" | "Scheduled" | "InProgress" | "Stopping")
            );
            let job_id = job["jobArn"]
                .as_str()
                .and_then(|a| a.rsplit('/').next())
                .unwrap_or_default()
                .to_string();
            console.page(
                &signed,
                "batch_job.html",
                "batch",
                context! { job, running, id, job_id },
            )
        }
        Err(e) => console.error_page(&signed, "batch", &e),
    }
}

pub async fn stop(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/model-invocation-job/{}/stop", segment(&id));
    let then = format!("/console/batch/{}", segment(&id));
    console
        .act(&signed, Method::POST, &path, None, &then, "batch")
        .await
}
