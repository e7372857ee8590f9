//! The console's one way to act: the API route a client would call, called as the
//! signed-in key (`basalt_edge::call_as`). What a page may do is what its key may do
//! through the API, and every error it shows is the API's own message.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::{Console, Signed};

/// An API call the API refused (or that failed), with the API's message.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// The error's type (`x-amzn-ErrorType`, e.g. `ValidationException`).
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

/// The largest answer the console reads from one API call.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Percent-encodes one path segment.
pub fn segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Console {
    /// Sends a request to an API route as the signed-in key; the response as is.
    pub async fn send(
        &self,
        signed: &Signed,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<axum::response::Response, ApiFailure> {
        let body = match body {
            Some(v) => Body::from(serde_json::to_vec(v).unwrap_or_default()),
            None => Body::empty(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| ApiFailure {
                status: StatusCode::BAD_REQUEST,
                code: "ValidationException".into(),
                message: format!("cannot build the request: {e}"),
            })?;
        Ok(basalt_edge::call_as(&self.0.app, &self.0.api, signed.principal.clone(), request).await)
    }

    /// Calls an API route as the signed-in key and reads its JSON answer (`Null` for
    /// an empty one).
    pub async fn call(
        &self,
        signed: &Signed,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiFailure> {
        let response = self.send(signed, method, path_and_query, body).await?;
        Self::read(response).await
    }

    /// One page of a paged API list: its `member` items, the next page's token, and
    /// the API's error (the items are then null, and the page says why).
    pub async fn list_page(
        &self,
        signed: &Signed,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        member: &str,
    ) -> (Value, Value, Option<String>) {
        match self.call(signed, method, path_and_query, body).await {
            Ok(v) => (v[member].clone(), v["nextToken"].clone(), None),
            Err(e) => (Value::Null, Value::Null, Some(e.to_string())),
        }
    }

    /// A form's action: the API call, then the page `then` (303, so a reload does not
    /// resubmit), or the API's error on a page of the `nav` area.
    pub async fn act(
        &self,
        signed: &Signed,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        then: &str,
        nav: &str,
    ) -> axum::response::Response {
        match self.call(signed, method, path_and_query, body).await {
            Ok(_) => crate::pages::see_other(then),
            Err(e) => self.error_page(signed, nav, &e),
        }
    }

    /// An API answer's JSON, or its error.
    pub async fn read(response: axum::response::Response) -> Result<Value, ApiFailure> {
        let status = response.status();
        let code = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_string())
            .unwrap_or_default();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| ApiFailure {
                status: StatusCode::BAD_GATEWAY,
                code: String::new(),
                message: format!("cannot read the API's answer: {e}"),
            })?;
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(json);
        }
        let message = ["message", "Message"]
            .iter()
            .find_map(|k| json.get(k).and_then(Value::as_str))
            .or_else(|| json.pointer("/error/message").and_then(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| match &json {
                Value::String(s) if !s.is_empty() => s.clone(),
                _ => status.to_string(),
            });
        Err(ApiFailure {
            status,
            code,
            message,
        })
    }
}
