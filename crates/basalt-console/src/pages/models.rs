//! Models: the catalog (lifecycle, modalities, prices, weights) and provisioned
//! throughput (buy, change, delete units).

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::{Extension, Form};
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{filled, paged, see_other, PageQuery};
use crate::api::segment;
use crate::{ApiFailure, Console, Signed};

async fn render(
    console: &Console,
    signed: &Signed,
    next: Option<&str>,
    error: Option<ApiFailure>,
) -> Response {
    let status = super::status_of(error.as_ref());
    let core = &console.app().core;
    let now = time::OffsetDateTime::now_utc();
    let models: Vec<Value> = core
        .catalog()
        .models()
        .map(|m| {
            json!({
                "id": m.id, "name": m.name, "provider": m.provider,
                "lifecycle": format!("{:?}", m.lifecycle.status_at(now)).to_uppercase(),
                "input": m.input_modalities.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "output": m.output_modalities.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "inferenceTypes": m.inference_types.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "customizations": m.customizations.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "streaming": m.streaming, "tools": m.tools,
                "inputPrice": m.input_price_per_1k, "outputPrice": m.output_price_per_1k,
                "unitHourPrice": m.provisioned_unit_hour_price,
                "state": super::overview::model_state(console, m),
                "unitsFree": core.capacity().units_left(m),
            })
        })
        .collect();
    let (provisioned, next_token, list_error) = console
        .list_page(
            signed,
            Method::GET,
            &paged("/provisioned-model-throughputs", next),
            None,
            "provisionedModelSummaries",
        )
        .await;
    console.page_with_status(
        status,
        signed,
        "models.html",
        "models",
        context! {
            models, provisioned, next_token,
            error => error.map(|e| e.to_string()).or(list_error),
        },
    )
}

pub async fn page(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<PageQuery>,
) -> Response {
    render(&console, &signed, q.next.as_deref(), None).await
}

#[derive(Debug, Deserialize)]
pub struct ProvisionForm {
    name: Option<String>,
    model: Option<String>,
    units: Option<String>,
}

fn units(value: &Option<String>) -> Result<u64, ApiFailure> {
    filled(value)
        .and_then(|u| u.parse::<u64>().ok())
        .ok_or_else(|| ApiFailure {
            status: axum::http::StatusCode::BAD_REQUEST,
            code: "ValidationException".into(),
            message: "model units must be a whole number".into(),
        })
}

pub async fn create_provisioned(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Form(form): Form<ProvisionForm>,
) -> Response {
    let units = match units(&form.units) {
        Ok(u) => u,
        Err(e) => return render(&console, &signed, None, Some(e)).await,
    };
    let body = json!({
        "provisionedModelName": filled(&form.name).unwrap_or_default(),
        "modelId": filled(&form.model).unwrap_or_default(),
        "modelUnits": units,
    });
    match console
        .call(
            &signed,
            Method::POST,
            "/provisioned-model-throughput",
            Some(&body),
        )
        .await
    {
        Ok(_) => see_other("/console/models"),
        Err(e) => render(&console, &signed, None, Some(e)).await,
    }
}

pub async fn update_provisioned(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<ProvisionForm>,
) -> Response {
    let units = match units(&form.units) {
        Ok(u) => u,
        Err(e) => return render(&console, &signed, None, Some(e)).await,
    };
    let path = format!("/provisioned-model-throughput/{}", segment(&id));
    match console
        .call(
            &signed,
            Method::PATCH,
            &path,
            Some(&json!({ "desiredModelUnits": units })),
        )
        .await
    {
        Ok(_) => see_other("/console/models"),
        Err(e) => render(&console, &signed, None, Some(e)).await,
    }
}

pub async fn delete_provisioned(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/provisioned-model-throughput/{}", segment(&id));
    match console.call(&signed, Method::DELETE, &path, None).await {
        Ok(_) => see_other("/console/models"),
        Err(e) => render(&console, &signed, None, Some(e)).await,
    }
}
