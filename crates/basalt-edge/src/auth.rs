//! Authentication, body limits and request IDs for every API route, as one middleware.
//!
//! Bedrock routes take SigV4 (`AWS4-HMAC-SHA256`, signing name `bedrock`) or a Bedrock
//! API key (`Authorization: Bearer`); OpenAI routes take a bearer key. The body is read
//! once, up to the configured limit, because SigV4 signs its hash; handlers get it back
//! as bytes. Failures say only "access denied" (the reason is logged).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use basalt_core::keys::Principal;
use time::OffsetDateTime;

use crate::error::{BedrockError, BedrockErrorCode, OpenAiError};
use crate::sigv4;
use crate::AppState;

/// The request's ID, echoed in `x-amzn-RequestId`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Which error shape a path answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Bedrock,
    OpenAi,
}

impl Dialect {
    pub fn of(path: &str) -> Self {
        if path.starts_with("/v1/") || path == "/v1" {
            Dialect::OpenAi
        } else {
            Dialect::Bedrock
        }
    }
}

fn deny(dialect: Dialect, reason: &str) -> Response {
    tracing::info!(reason, "request refused");
    match dialect {
        Dialect::Bedrock => BedrockError::access_denied().into_response(),
        Dialect::OpenAi => OpenAiError::unauthorized().into_response(),
    }
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// Resolves the caller from the Authorization header (the error is the finished
/// response, built once here rather than boxed and unboxed).
#[allow(clippy::result_large_err)]
fn authenticate_parts(
    state: &AppState,
    dialect: Dialect,
    request: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Principal, Response> {
    let keys = state.core.keys();
    let Some(value) = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(deny(dialect, "no Authorization header"));
    };
    if let Some(token) = value.strip_prefix("Bearer ").map(str::trim) {
        return match keys.bearer(token) {
            Ok(Some(principal)) => Ok(principal),
            Ok(None) => Err(deny(dialect, "unknown or revoked bearer token")),
            Err(e) => Err(internal(dialect, e)),
        };
    }
    if dialect == Dialect::OpenAi {
        return Err(deny(dialect, "OpenAI routes take a bearer key"));
    }
    let auth = match sigv4::parse_authorization(value) {
        Some(Ok(auth)) => auth,
        Some(Err(e)) => return Err(deny(dialect, &e.to_string())),
        None => return Err(deny(dialect, "unsupported Authorization scheme")),
    };
    let signing = match keys.signing_key(&auth.access_key_id) {
        Ok(Some(k)) => k,
        Ok(None) => return Err(deny(dialect, "unknown or revoked access key")),
        Err(e) => return Err(internal(dialect, e)),
    };
    let lookup = |name: &str| header_values(&request.headers, name);
    let parts = sigv4::RequestParts {
        method: request.method.as_str(),
        raw_path: request.uri.path(),
        raw_query: request.uri.query().unwrap_or(""),
        headers: &lookup,
        body,
    };
    match sigv4::verify(
        &auth,
        &parts,
        &signing.secret_access_key,
        "bedrock",
        OffsetDateTime::now_utc(),
    ) {
        Ok(()) => Ok(signing.principal),
        Err(e) => Err(deny(dialect, &e.to_string())),
    }
}

fn internal(dialect: Dialect, e: basalt_core::CoreError) -> Response {
    match dialect {
        Dialect::Bedrock => BedrockError::from(e).into_response(),
        Dialect::OpenAi => OpenAiError::from(e).into_response(),
    }
}

fn too_large(dialect: Dialect, limit: usize) -> Response {
    let message = format!("the request body exceeds the limit of {limit} bytes");
    match dialect {
        Dialect::Bedrock => BedrockError {
            code: BedrockErrorCode::Validation,
            message,
        }
        .into_response(),
        Dialect::OpenAi => OpenAiError::invalid_request(message).into_response(),
    }
}

/// Bodies over the limit are still read (and dropped) up to this many bytes, so a
/// client that is still sending gets the error response instead of a broken pipe.
const DRAIN_CAP: usize = 64 * 1024 * 1024;

/// Reads the body if it fits in `limit`; `None` when it does not.
async fn read_limited(body: Body, limit: usize) -> Option<Bytes> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return None };
        seen += chunk.len();
        if seen > limit {
            if seen > DRAIN_CAP {
                return None;
            }
            buffer = Vec::new();
            continue;
        }
        buffer.extend_from_slice(&chunk);
    }
    (seen <= limit).then(|| Bytes::from(buffer))
}

/// The middleware: request ID, body limit, authentication.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let dialect = Dialect::of(request.uri().path());
    let limit = state.core.limits().max_body_bytes;
    let (mut parts, body) = request.into_parts();
    let mut response = match read_limited(body, limit).await {
        None => too_large(dialect, limit),
        Some(bytes) => match authenticate_parts(&state, dialect, &parts, &bytes) {
            Err(denied) => denied,
            Ok(principal) => {
                parts.extensions.insert(principal);
                parts.extensions.insert(RequestId(request_id.clone()));
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
        },
    };
    // Every API response by dialect and status, including those refused before a model
    // is known (malformed bodies, bad credentials), which invocation metrics cannot see.
    count_response(dialect, response.status().as_u16());
    if dialect == Dialect::Bedrock {
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-amzn-requestid", v);
        }
    }
    response
}

thread_local! {
    /// This thread's handles of `basalt_http_responses_total`, by dialect and status:
    /// looked up in the registry once each instead of at every response (building the
    /// labelled key and finding it was a measurable share of the proxy path's CPU).
    static RESPONSE_COUNTERS: std::cell::RefCell<Vec<(Dialect, u16, metrics::Counter)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Counts one API response in `basalt_http_responses_total`.
fn count_response(dialect: Dialect, status: u16) {
    let lookup = || {
        let dialect_label = match dialect {
            Dialect::Bedrock => "bedrock",
            Dialect::OpenAi => "openai",
        };
        metrics::counter!("basalt_http_responses_total", "dialect" => dialect_label, "status" => status.to_string())
    };
    let cached = RESPONSE_COUNTERS.try_with(|counters| {
        let mut counters = counters.borrow_mut();
        if let Some((_, _, c)) = counters
            .iter()
            .find(|(d, s, _)| *d == dialect && *s == status)
        {
            c.increment(1);
        } else {
            let counter = lookup();
            counter.increment(1);
            counters.push((dialect, status, counter));
        }
    });
    if cached.is_err() {
        lookup().increment(1);
    }
}

/// Unknown routes, in the dialect's shape.
pub async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_string();
    match Dialect::of(&path) {
        Dialect::Bedrock => BedrockError {
            code: BedrockErrorCode::ResourceNotFound,
            message: format!("no operation at {} {path}", request.method()),
        }
        .into_response(),
        Dialect::OpenAi => OpenAiError {
            retry_after_secs: 1,
            status: axum::http::StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("unknown_url"),
            param: None,
            message: format!("Unknown request URL: {} {path}", request.method()),
        }
        .into_response(),
    }
}
