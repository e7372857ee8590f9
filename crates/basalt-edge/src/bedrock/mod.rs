//! The Bedrock dialect: runtime (`bedrock-runtime`) and control plane (`bedrock`).

mod control;
mod runtime;
pub(crate) use runtime::answered_by;
pub mod wire;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

/// Routes of both Bedrock services (they share one listener; none collide).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/model/{model_id}/converse", post(runtime::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(runtime::converse_stream),
        )
        .route("/model/{model_id}/invoke", post(runtime::invoke_model))
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(runtime::invoke_model_stream),
        )
        .route(
            "/model/{model_id}/count-tokens",
            post(runtime::count_tokens),
        )
        .route("/foundation-models", get(control::list_foundation_models))
        .route(
            "/foundation-models/{model_id}",
            get(control::get_foundation_model),
        )
}
