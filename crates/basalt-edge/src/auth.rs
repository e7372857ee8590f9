//! Authentication, limits and request IDs for every API route, as one middleware.
//!
//! Bedrock routes take SigV4 (`AWS4-HMAC-SHA256`, signing name `bedrock`, the server's
//! region) or a Bedrock API key (`Authorization: Bearer`); OpenAI routes take a bearer
//! key. In order: the header count; the credentials, from the headers alone (a
//! request without valid ones is refused before any of its body is read); the body,
//! up to the size limit, within the body time limit, and with at most
//! `max_uploads_per_ip` requests of one address sending at once; the SigV4
//! signature over it; and only then a permit from `max_concurrent_requests`, held
//! while the handler works. Handlers get the body back as bytes. Failures of
//! credentials say only "access denied" (the reason is logged).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use basalt_core::keys::Principal;
use time::OffsetDateTime;

use crate::error::{BedrockError, BedrockErrorCode, OpenAiError};
use crate::sigv4;
use crate::AppState;

/// Marks a request that arrived over TLS (set by the server per connection).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// The request's ID, echoed in `x-amzn-RequestId`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Which error shape a path answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Bedrock,
    OpenAi,
    /// Anthropic's Messages API (`/v1/messages`).
    Anthropic,
}

impl Dialect {
    pub fn of(path: &str) -> Self {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else if path.starts_with("/v1/") || path == "/v1" {
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
        Dialect::Anthropic => crate::AnthropicError::unauthorized().into_response(),
    }
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// What the headers alone say about the caller: a bearer key is resolved; a SigV4
/// signature is checked as far as it can be without the body (key, scope, region,
/// clock), and verified once the body is read.
enum Credentials {
    Known(Principal),
    SigV4 {
        auth: sigv4::Authorization,
        signing: basalt_core::keys::SigningKey,
    },
}

/// The scheme of an `Authorization` value (case-insensitive, RFC 7235) and the rest.
fn split_scheme(value: &str) -> (&str, &str) {
    match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, rest.trim()),
        None => (value, ""),
    }
}

/// Resolves the caller from the headers, before any of the body is read (the error
/// is the finished response, built once here rather than boxed and unboxed).
#[allow(clippy::result_large_err)]
fn credentials(
    state: &AppState,
    dialect: Dialect,
    request: &axum::http::request::Parts,
) -> Result<Credentials, Response> {
    let keys = state.core.keys();
    // Anthropic's clients send the key as `x-api-key` (or `Authorization: Bearer`), on
    // `/v1/messages` and on `/v1/models` (which answers in their shape).
    let anthropic_client = dialect == Dialect::Anthropic
        || (dialect == Dialect::OpenAi && request.headers.contains_key("anthropic-version"));
    if anthropic_client && !request.headers.contains_key("authorization") {
        let Some(token) = request
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
        else {
            return Err(deny(dialect, "no x-api-key or Authorization header"));
        };
        return match keys.bearer(token.trim()) {
            Ok(Some(principal)) => Ok(Credentials::Known(principal)),
            Ok(None) => Err(deny(dialect, "unknown or revoked API key")),
            Err(e) => Err(internal(dialect, e)),
        };
    }
    let Some(value) = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(deny(dialect, "no Authorization header"));
    };
    let (scheme, rest) = split_scheme(value);
    if scheme.eq_ignore_ascii_case("bearer") {
        return match keys.bearer(rest) {
            Ok(Some(principal)) => Ok(Credentials::Known(principal)),
            Ok(None) => Err(deny(dialect, "unknown or revoked bearer token")),
            Err(e) => Err(internal(dialect, e)),
        };
    }
    if dialect != Dialect::Bedrock {
        return Err(deny(
            dialect,
            "OpenAI and Anthropic routes take a bearer key",
        ));
    }
    let auth = match sigv4::parse_authorization(value) {
        Some(Ok(auth)) => auth,
        Some(Err(e)) => return Err(deny(dialect, &e.to_string())),
        None => return Err(deny(dialect, "unsupported Authorization scheme")),
    };
    let region = state.core.region();
    if auth.region != region {
        return Err(deny(
            dialect,
            &format!(
                "credential scope region {:?} is not this server's region {region:?}",
                auth.region
            ),
        ));
    }
    let signing = match keys.signing_key(&auth.access_key_id) {
        Ok(Some(k)) => k,
        Ok(None) => return Err(deny(dialect, "unknown or revoked access key")),
        Err(e) => return Err(internal(dialect, e)),
    };
    let lookup = |name: &str| request_header(request, name);
    if let Err(e) = sigv4::check_headers(&auth, &lookup, "bedrock", OffsetDateTime::now_utc()) {
        return Err(deny(dialect, &e.to_string()));
    }
    Ok(Credentials::SigV4 { auth, signing })
}

/// A header's values as SigV4 signs them. Over HTTP/2 there is no `host` header: the
/// authority is the `:authority` pseudo-header, which the AWS SDKs sign under that
/// name (and older ones as `host`); both are read from the request URI.
fn request_header(request: &axum::http::request::Parts, name: &str) -> Vec<String> {
    match name {
        ":authority" => request
            .uri
            .authority()
            .map(|a| vec![a.to_string()])
            .unwrap_or_default(),
        "host" => {
            let values = header_values(&request.headers, name);
            if values.is_empty() {
                request
                    .uri
                    .authority()
                    .map(|a| vec![a.to_string()])
                    .unwrap_or_default()
            } else {
                values
            }
        }
        _ => header_values(&request.headers, name),
    }
}

/// Verifies a SigV4 signature over the body that was read.
#[allow(clippy::result_large_err)]
fn verify_signature(
    dialect: Dialect,
    request: &axum::http::request::Parts,
    auth: &sigv4::Authorization,
    signing: basalt_core::keys::SigningKey,
    body: &[u8],
) -> Result<Principal, Response> {
    let lookup = |name: &str| request_header(request, name);
    let unsigned_payload = lookup("x-amz-content-sha256")
        .first()
        .is_some_and(|v| v == "UNSIGNED-PAYLOAD");
    let over_tls = request.extensions.get::<OverTls>().is_some();
    if unsigned_payload && !body.is_empty() && !over_tls {
        // Over plain HTTP an unsigned body could be replaced in transit and the
        // signature would still hold.
        tracing::info!(reason = "UNSIGNED-PAYLOAD with a body", "request refused");
        return Err(match dialect {
            Dialect::Bedrock => BedrockError {
                code: BedrockErrorCode::AccessDenied,
                message: "x-amz-content-sha256: UNSIGNED-PAYLOAD is refused for a request with a body over plain HTTP; sign the payload".into(),
            }
            .into_response(),
            Dialect::OpenAi => OpenAiError::unauthorized().into_response(),
            Dialect::Anthropic => crate::AnthropicError::unauthorized().into_response(),
        });
    }
    let parts = sigv4::RequestParts {
        method: request.method.as_str(),
        raw_path: request.uri.path(),
        raw_query: request.uri.query().unwrap_or(""),
        headers: &lookup,
        body,
    };
    match sigv4::verify(
        auth,
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
        Dialect::Anthropic => crate::AnthropicError::from(e).into_response(),
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
        Dialect::Anthropic => {
            let mut e = crate::AnthropicError::invalid_request(message);
            e.status = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
            e.kind = "request_too_large";
            e.into_response()
        }
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

/// Headers hyper itself takes on a request; past [`MAX_HEADERS`] the middleware
/// answers in the dialect's shape, past this the HTTP layer closes with a bare 431.
pub const HTTP_MAX_HEADERS: usize = 1024;
/// Headers a request may have.
pub const MAX_HEADERS: usize = 128;

/// The middleware: request ID, limits, authentication, then a permit to work.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let dialect = Dialect::of(request.uri().path());
    let (mut parts, body) = request.into_parts();
    let mut response = match admit(&state, dialect, &mut parts, body).await {
        Err(refused) => refused,
        Ok((principal, bytes)) => {
            let path = parts.uri.path().to_owned();
            match crate::permissions::authorize(
                &state,
                &principal,
                &parts.method,
                &path,
                &parts.headers,
                &bytes,
            ) {
                Err(refused) => {
                    let attempt = crate::permissions::attempted(
                        &state,
                        &parts.method,
                        &path,
                        &parts.headers,
                        &bytes,
                    );
                    if let Some(attempt) = attempt {
                        let status = refused.status().as_u16();
                        crate::permissions::audit(
                            &state,
                            &principal,
                            &request_id,
                            "api",
                            attempt,
                            status,
                        )
                        .await;
                    }
                    refused
                }
                Ok(authorized) => {
                    parts.extensions.insert(principal.clone());
                    parts.extensions.insert(RequestId(request_id.clone()));
                    // A permit only for authenticated requests whose body is in: neither a
                    // client without credentials nor a slow sender holds one.
                    let _permit = state.admission.work().await;
                    let response = next
                        .run(Request::from_parts(parts, Body::from(bytes)))
                        .await;
                    if let Some(done) = authorized.filter(|a| a.mutates) {
                        crate::permissions::audit(
                            &state,
                            &principal,
                            &request_id,
                            "api",
                            (done.action, done.resources),
                            response.status().as_u16(),
                        )
                        .await;
                    }
                    response
                }
            }
        }
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

/// A response in the dialect's error shape with its own status.
fn refusal(dialect: Dialect, status: StatusCode, e: basalt_core::CoreError) -> Response {
    let mut response = internal(dialect, e);
    *response.status_mut() = status;
    response
}

/// Headers, credentials, then the body (within the per-address budget, the size limit
/// and the time limit), then the signature over it.
async fn admit(
    state: &AppState,
    dialect: Dialect,
    parts: &mut axum::http::request::Parts,
    body: Body,
) -> Result<(Principal, Bytes), Response> {
    use basalt_core::CoreError;
    if parts.headers.len() > MAX_HEADERS {
        return Err(refusal(
            dialect,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            CoreError::Validation(format!(
                "the request has {} headers; at most {MAX_HEADERS} are accepted",
                parts.headers.len()
            )),
        ));
    }
    let credentials = credentials(state, dialect, parts)?;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // Only a request whose signature cannot be checked yet counts against its
    // address's budget: a bearer key was resolved from the headers already.
    let peer = match credentials {
        Credentials::Known(_) => None,
        Credentials::SigV4 { .. } => peer,
    };
    let Some(reading) = state.admission.start_reading(peer) else {
        return Err(internal(
            dialect,
            CoreError::Throttled(
                "too many requests from this address are still sending their body; retry later"
                    .into(),
            ),
        ));
    };
    let limits = state.core.limits();
    let (limit, timeout) = (
        limits.max_body_bytes,
        Duration::from_secs(limits.body_timeout_secs.max(1)),
    );
    let bytes = match tokio::time::timeout(timeout, read_limited(body, limit)).await {
        Err(_) => {
            return Err(refusal(
                dialect,
                StatusCode::REQUEST_TIMEOUT,
                CoreError::Validation(format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                )),
            ))
        }
        Ok(None) => return Err(too_large(dialect, limit)),
        Ok(Some(bytes)) => bytes,
    };
    drop(reading);
    let principal = match credentials {
        Credentials::Known(principal) => principal,
        Credentials::SigV4 { auth, signing } => {
            verify_signature(dialect, parts, &auth, signing, &bytes)?
        }
    };
    Ok((principal, bytes))
}

/// How many requests may work at once, and how many from one address may be sending
/// their body (before a signature over it can be checked) at once.
#[derive(Debug)]
pub struct Admission {
    work: tokio::sync::Semaphore,
    reading: std::sync::Mutex<HashMap<IpAddr, usize>>,
    max_reading_per_address: usize,
}

impl Admission {
    pub fn new(max_working: usize, max_reading_per_address: usize) -> Self {
        Self {
            work: tokio::sync::Semaphore::new(max_working.max(1)),
            reading: std::sync::Mutex::new(HashMap::new()),
            max_reading_per_address: max_reading_per_address.max(1),
        }
    }

    /// Waits for a permit to work (held until the handler returns its response).
    pub(crate) async fn work(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.work.acquire().await.ok()
    }

    /// Counts a request that is sending its body; `None` when its address is over
    /// budget. `None` for the address: not counted (a bearer-authenticated request,
    /// or one with no known address, as in-process tests send).
    fn start_reading(&self, peer: Option<IpAddr>) -> Option<ReadingGuard<'_>> {
        let Some(ip) = peer else {
            return Some(ReadingGuard {
                admission: self,
                ip: None,
            });
        };
        let mut reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        let count = reading.entry(ip).or_insert(0);
        if *count >= self.max_reading_per_address {
            return None;
        }
        *count += 1;
        Some(ReadingGuard {
            admission: self,
            ip: Some(ip),
        })
    }
}

/// A request counted as sending its body, until dropped.
struct ReadingGuard<'a> {
    admission: &'a Admission,
    ip: Option<IpAddr>,
}

impl Drop for ReadingGuard<'_> {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut reading = self
            .admission
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = reading.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                reading.remove(&ip);
            }
        }
    }
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
            Dialect::Anthropic => "anthropic",
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
        Dialect::Anthropic => crate::AnthropicError {
            status: axum::http::StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: format!("no operation at {} {path}", request.method()),
            retry_after_secs: 1,
        }
        .into_response(),
    }
}
