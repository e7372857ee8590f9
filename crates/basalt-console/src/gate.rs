//! The gate in front of every signed-in page: the session from its cookie, the key
//! looked up again (revoked: signed out), and for every state-changing request the
//! session's CSRF token, from the `x-csrf-token` header or the form's `csrf` field.
//! Plus the security headers of every console response.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::session::{cookie, same_secret, COOKIE};
use crate::{Console, Signed};

/// The largest form the gate reads to find its CSRF field.
const MAX_FORM_BYTES: usize = 4 << 20;

fn is_htmx(request: &Request) -> bool {
    request.headers().contains_key("hx-request")
}

/// Where an unauthenticated request goes: the sign-in page (for htmx, by its
/// `HX-Redirect`), or a 401 for requests that are not page loads.
fn to_sign_in(request: &Request) -> Response {
    let next = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with("/console") && !p.starts_with("//"))
        .unwrap_or("/console");
    let target = format!(
        "/console/sign-in?next={}",
        percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
    );
    if is_htmx(request) {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            r.headers_mut().insert("hx-redirect", v);
        }
        return r;
    }
    if request.method() == Method::GET || request.method() == Method::HEAD {
        Redirect::to(&target).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "sign in first").into_response()
    }
}

fn form_field<'a>(body: &'a [u8], name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
                .into()
        })
    })
}

pub async fn gate(State(console): State<Console>, request: Request, next: Next) -> Response {
    let Some(session_id) = cookie(request.headers(), COOKIE).map(str::to_string) else {
        return to_sign_in(&request);
    };
    let Some(session) = console.0.sessions.touch(&session_id) else {
        return to_sign_in(&request);
    };
    let keys = console.0.app.core.keys();
    let record = match keys.get(&session.key_id) {
        Ok(r) if r.revoked_at.is_none() => r,
        _ => {
            console.0.sessions.close_key(&session.key_id);
            return to_sign_in(&request);
        }
    };
    let secure = request
        .extensions()
        .get::<basalt_edge::auth::OverTls>()
        .is_some();
    let signed = Signed {
        principal: basalt_core::keys::principal(&record),
        session_id,
        csrf: session.csrf.clone(),
        secure,
    };
    let (mut parts, body) = request.into_parts();
    let safe = matches!(parts.method, Method::GET | Method::HEAD);
    let body = if safe {
        body
    } else {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
        };
        let header = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(|v| std::borrow::Cow::Owned(v.to_string()));
        let form = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let given = header.or_else(|| form.then(|| form_field(&bytes, "csrf")).flatten());
        if !given.is_some_and(|g| same_secret(&g, &signed.csrf)) {
            tracing::info!(key = %signed.principal.key_id, path = %parts.uri.path(), "console request refused: CSRF token missing or wrong");
            return (
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong: reload the page and try again",
            )
                .into_response();
        }
        Body::from(bytes)
    };
    parts.extensions.insert(signed);
    next.run(Request::from_parts(parts, body)).await
}

/// Headers on every console response: no framing, no sniffing, no referrer, scripts
/// and styles only from the console itself, and pages never cached.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if !h.contains_key("cache-control") {
        h.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&csrf=ab%2Fc&b=2", "csrf").as_deref(),
            Some("ab/c")
        );
        assert_eq!(form_field(b"a=1", "csrf"), None);
    }
}
