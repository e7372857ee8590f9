//! Sign-in (a bearer token, or an access key ID and its secret), sign-out.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use minijinja::context;
use serde::Deserialize;

use crate::session::{cookie, random_token, same_secret, set_cookie, COOKIE, SIGN_IN_COOKIE};
use crate::{Console, Signed};

#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a console path is a place to go after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console")
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/console".to_string(),
    }
}

fn over_tls(headers_ext: &axum::http::Extensions) -> bool {
    headers_ext.get::<basalt_edge::auth::OverTls>().is_some()
}

fn form_page(
    console: &Console,
    status: StatusCode,
    token: &str,
    next: &str,
    error: Option<&str>,
    secure: bool,
) -> Response {
    let mut response = console.html(
        status,
        "sign_in.html",
        context! { csrf => token, next, error },
    );
    if let Ok(v) = HeaderValue::from_str(&set_cookie(SIGN_IN_COOKIE, token, secure, Some(3600))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /console/sign-in`: the form, with a fresh double-submit token.
pub async fn form(
    State(console): State<Console>,
    Query(q): Query<Next>,
    request: axum::extract::Request,
) -> Response {
    let secure = over_tls(request.extensions());
    let token = random_token();
    form_page(
        &console,
        StatusCode::OK,
        &token,
        &safe_next(q.next.as_deref()),
        None,
        secure,
    )
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    next: Option<String>,
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: String,
}

/// `POST /console/sign-in`.
pub async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(form): Form<SignInForm>,
) -> Response {
    let secure = over_tls(&extensions);
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf, expected) {
        let token = random_token();
        return form_page(
            &console,
            StatusCode::FORBIDDEN,
            &token,
            &next,
            Some("the sign-in form expired or was not sent from this page: try again"),
            secure,
        );
    }
    let keys = console.app().core.keys();
    let token = form.token.trim();
    let found = if !token.is_empty() {
        keys.bearer(token).ok().flatten()
    } else if !form.access_key_id.trim().is_empty() {
        keys.signing_key(form.access_key_id.trim())
            .ok()
            .flatten()
            .filter(|k| same_secret(form.secret_access_key.trim(), &k.secret_access_key))
            .map(|k| k.principal)
    } else {
        None
    };
    let Some(principal) = found else {
        tracing::info!("console sign-in refused: unknown, revoked or wrong credentials");
        let token = random_token();
        return form_page(
            &console,
            StatusCode::UNAUTHORIZED,
            &token,
            &next,
            Some("those credentials are not valid (unknown, revoked or mistyped)"),
            secure,
        );
    };
    tracing::info!(key = %principal.key_id, "console sign-in");
    let session = console.0.sessions.open(&principal.key_id);
    let mut response = Redirect::to(&next).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    for c in [
        set_cookie(COOKIE, &session, secure, None),
        set_cookie(SIGN_IN_COOKIE, "", secure, Some(0)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `POST /console/sign-out`.
pub async fn sign_out(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
) -> Response {
    console.0.sessions.close(&signed.session_id);
    let mut response = Redirect::to("/console/sign-in").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&set_cookie(COOKIE, "", signed.secure, Some(0))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_console_paths_are_followed() {
        use super::safe_next;
        assert_eq!(safe_next(Some("/console/keys")), "/console/keys");
        assert_eq!(safe_next(Some("https://evil.example")), "/console");
        assert_eq!(safe_next(Some("//evil.example")), "/console");
        assert_eq!(safe_next(Some("/console\\@evil")), "/console");
        assert_eq!(safe_next(None), "/console");
    }
}
