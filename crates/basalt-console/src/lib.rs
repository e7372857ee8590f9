//! The Basalt console: server-rendered pages at `/console`, served by `basalt serve`.
//!
//! - Every page acts through the API: [`Console::call`] runs the same route a client
//!   would call, as the signed-in key, so the console can do nothing the API cannot,
//!   with the same permissions and error messages.
//! - Sign-in takes a bearer token or an access key and its secret; the session is a
//!   cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS) with idle expiry
//!   ([`session`]). Every state-changing request carries the session's CSRF token.
//! - Pages are minijinja templates (auto-escaped), embedded in the binary with their
//!   assets (pico.css, htmx, uPlot, and the console's own script): no CDN, no build
//!   step ([`assets`]).

mod api;
mod assets;
mod frames;
mod gate;
mod pages;
mod render;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use basalt_core::keys::Principal;
use basalt_edge::AppState;

pub use api::ApiFailure;

/// The caller of a console request, resolved from its session.
#[derive(Debug, Clone)]
pub struct Signed {
    pub principal: Principal,
    pub session_id: String,
    pub csrf: String,
    /// The request arrived over TLS (cookies are set `Secure`).
    pub secure: bool,
}

/// Settings of the console.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub idle: Duration,
    pub max_sessions: usize,
}

impl ConsoleOptions {
    pub fn from_config(config: &basalt_core::config::ConsoleConfig) -> Self {
        Self {
            idle: Duration::from_secs(config.idle_minutes.max(1) * 60),
            max_sessions: config.max_sessions,
        }
    }
}

pub(crate) struct Inner {
    pub app: AppState,
    /// The API routes with their state, called by [`Console::call`].
    pub api: Router,
    pub sessions: session::Sessions,
    pub templates: render::Templates,
}

/// What every console handler can reach.
#[derive(Clone)]
pub struct Console(pub(crate) Arc<Inner>);

impl Console {
    pub fn app(&self) -> &AppState {
        &self.0.app
    }
}

/// The console's routes, all under `/console`.
pub fn router(app: AppState, options: ConsoleOptions) -> Router {
    let api = basalt_edge::api_routes().with_state(app.clone());
    let console = Console(Arc::new(Inner {
        app,
        api,
        sessions: session::Sessions::new(options.idle, options.max_sessions),
        templates: render::Templates::new(),
    }));
    let signed_in = pages::routes().layer(axum::middleware::from_fn_with_state(
        console.clone(),
        gate::gate,
    ));
    Router::new()
        .route(
            "/console/sign-in",
            get(pages::sign_in::form).post(pages::sign_in::submit),
        )
        .route("/console/assets/{name}", get(assets::serve))
        .merge(signed_in)
        .route(
            "/console/",
            get(|| async { axum::response::Redirect::to("/console") }),
        )
        .layer(axum::middleware::map_response(gate::security_headers))
        // Forms and playground requests; API bodies have their own limits.
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(console)
}
