//! Error shapes of each dialect, mapped once from [`CoreError`].
//!
//! Bedrock: the modelled status, `x-amzn-ErrorType: <Code>`, `x-amzn-RequestId`, and
//! body `{"message": ...}` — exactly what botocore parses. OpenAI: its error object
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use basalt_core::CoreError;
use serde_json::json;

/// A Bedrock error code with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockErrorCode {
    Validation,
    Conflict,
    /// The agent services' ConflictException (409, where the runtime's is 400).
    ResourceConflict,
    ServiceQuotaExceeded,
    ResourceNotFound,
    AccessDenied,
    Throttling,
    ModelNotReady,
    ModelTimeout,
    ModelError,
    ServiceUnavailable,
    InternalServer,
}

impl BedrockErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::Conflict | Self::ResourceConflict => "ConflictException",
            Self::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::AccessDenied => "AccessDeniedException",
            Self::Throttling => "ThrottlingException",
            Self::ModelNotReady => "ModelNotReadyException",
            Self::ModelTimeout => "ModelTimeoutException",
            Self::ModelError => "ModelErrorException",
            Self::ServiceUnavailable => "ServiceUnavailableException",
            Self::InternalServer => "InternalServerException",
        }
    }

    /// The member name of this error inside an event stream (`throttlingException`).
    pub fn stream_member(self) -> &'static str {
        match self {
            Self::Validation => "validationException",
            Self::Conflict | Self::ResourceConflict => "conflictException",
            Self::ServiceQuotaExceeded => "serviceQuotaExceededException",
            Self::ResourceNotFound => "resourceNotFoundException",
            Self::AccessDenied => "accessDeniedException",
            Self::Throttling => "throttlingException",
            Self::ModelNotReady => "modelNotReadyException",
            Self::ModelTimeout => "modelTimeoutException",
            // Failures after the stream started are modelled as modelStreamErrorException.
            Self::ModelError => "modelStreamErrorException",
            Self::ServiceUnavailable => "serviceUnavailableException",
            Self::InternalServer => "internalServerException",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Validation | Self::Conflict | Self::ServiceQuotaExceeded => {
                StatusCode::BAD_REQUEST
            }
            Self::ResourceConflict => StatusCode::CONFLICT,
            Self::ResourceNotFound => StatusCode::NOT_FOUND,
            Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::Throttling | Self::ModelNotReady => StatusCode::TOO_MANY_REQUESTS,
            Self::ModelTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ModelError => StatusCode::FAILED_DEPENDENCY,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalServer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error in Bedrock's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockError {
    pub code: BedrockErrorCode,
    pub message: String,
}

impl BedrockError {
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            code: BedrockErrorCode::Validation,
            message: message.into(),
        }
    }

    /// The agent services' spelling of a core error (Conflict is 409 there).
    pub fn agent(e: CoreError) -> Self {
        let mut error = Self::from(e);
        if error.code == BedrockErrorCode::Conflict {
            error.code = BedrockErrorCode::ResourceConflict;
        }
        error
    }

    pub fn access_denied() -> Self {
        Self {
            code: BedrockErrorCode::AccessDenied,
            message: "The request signature or API key is not valid for this server.".into(),
        }
    }
}

impl From<CoreError> for BedrockError {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::Validation(_) => BedrockErrorCode::Validation,
            CoreError::NotFound(_) => BedrockErrorCode::ResourceNotFound,
            CoreError::Conflict(_) => BedrockErrorCode::Conflict,
            CoreError::QuotaExceeded(_) => BedrockErrorCode::ServiceQuotaExceeded,
            CoreError::AccessDenied(_) => BedrockErrorCode::AccessDenied,
            CoreError::Throttled(_) | CoreError::RateLimited { .. } => BedrockErrorCode::Throttling,
            CoreError::BudgetExhausted(_) => BedrockErrorCode::ServiceQuotaExceeded,
            CoreError::ModelNotReady(_) => BedrockErrorCode::ModelNotReady,
            CoreError::ModelTimeout(_) => BedrockErrorCode::ModelTimeout,
            CoreError::ModelError(_) => BedrockErrorCode::ModelError,
            CoreError::ServiceUnavailable(_) => BedrockErrorCode::ServiceUnavailable,
            CoreError::Internal(_) => BedrockErrorCode::InternalServer,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for BedrockError {
    fn into_response(self) -> Response {
        if self.code.status().is_server_error() {
            tracing::error!(code = self.code.name(), message = %self.message, "request failed");
        }
        let mut response = (
            self.code.status(),
            axum::Json(json!({ "message": self.message })),
        )
            .into_response();
        response.headers_mut().insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.code.name()),
        );
        response
    }
}

/// An error in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    /// Seconds in `retry-after` on a 429 (1 when unknown).
    pub retry_after_secs: u64,
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub message: String,
}

impl OpenAiError {
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self {
            retry_after_secs: 1,
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            retry_after_secs: 1,
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: Some("invalid_api_key"),
            param: None,
            message: "Incorrect API key provided.".into(),
        }
    }
}

impl From<CoreError> for OpenAiError {
    fn from(e: CoreError) -> Self {
        let (status, kind, code) = match &e {
            CoreError::Validation(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            CoreError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            CoreError::AccessDenied(_) => (StatusCode::FORBIDDEN, "permission_error", None),
            CoreError::Conflict(_) => (StatusCode::CONFLICT, "invalid_request_error", None),
            CoreError::QuotaExceeded(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("quota_exceeded"),
            ),
            CoreError::Throttled(_) | CoreError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            ),
            CoreError::BudgetExhausted(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            CoreError::ModelNotReady(_) | CoreError::ServiceUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error", None)
            }
            CoreError::ModelTimeout(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "server_error", Some("timeout"))
            }
            CoreError::ModelError(_) | CoreError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None)
            }
        };
        let retry_after_secs = match &e {
            CoreError::RateLimited {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => 1,
        };
        Self {
            retry_after_secs,
            status,
            kind,
            code,
            param: None,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(kind = self.kind, message = %self.message, "request failed");
        }
        let body = json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            if let Ok(value) = HeaderValue::from_str(&self.retry_after_secs.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        response
    }
}

/// An error in Anthropic's Messages API shape:
/// `{"type": "error", "error": {"type": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicError {
    pub status: StatusCode,
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `api_error`, `overloaded_error`, ...
    pub kind: &'static str,
    pub message: String,
    /// Seconds in `retry-after` on a 429 or 529.
    pub retry_after_secs: u64,
}

impl AnthropicError {
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            retry_after_secs: 1,
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: "invalid x-api-key".into(),
            retry_after_secs: 1,
        }
    }

    /// The `error` member as a stream's `error` event carries it.
    pub fn body(&self) -> serde_json::Value {
        json!({ "type": "error", "error": { "type": self.kind, "message": self.message } })
    }
}

impl From<CoreError> for AnthropicError {
    fn from(e: CoreError) -> Self {
        let (status, kind) = match &e {
            CoreError::Validation(_) | CoreError::Conflict(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            CoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found_error"),
            CoreError::AccessDenied(_) => (StatusCode::FORBIDDEN, "permission_error"),
            CoreError::QuotaExceeded(_)
            | CoreError::Throttled(_)
            | CoreError::RateLimited { .. }
            | CoreError::BudgetExhausted(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            CoreError::ModelNotReady(_) | CoreError::ServiceUnavailable(_) => (
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "overloaded_error",
            ),
            CoreError::ModelTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
            CoreError::ModelError(_) | CoreError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "api_error")
            }
        };
        let retry_after_secs = match &e {
            CoreError::RateLimited {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => 1,
        };
        Self {
            status,
            kind,
            message: e.to_string(),
            retry_after_secs,
        }
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(kind = self.kind, message = %self.message, "request failed");
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status.as_u16() == 529 {
            if let Ok(value) = HeaderValue::from_str(&self.retry_after_secs.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_maps_to_its_modelled_bedrock_status() {
        let cases = [
            (
                CoreError::Validation("x".into()),
                400,
                "ValidationException",
            ),
            (
                CoreError::NotFound("x".into()),
                404,
                "ResourceNotFoundException",
            ),
            (
                CoreError::AccessDenied("x".into()),
                403,
                "AccessDeniedException",
            ),
            (CoreError::Throttled("x".into()), 429, "ThrottlingException"),
            (CoreError::Conflict("x".into()), 400, "ConflictException"),
            (
                CoreError::QuotaExceeded("x".into()),
                400,
                "ServiceQuotaExceededException",
            ),
            (
                CoreError::ModelNotReady("x".into()),
                429,
                "ModelNotReadyException",
            ),
            (
                CoreError::ModelTimeout("x".into()),
                408,
                "ModelTimeoutException",
            ),
            (
                CoreError::ModelError("x".into()),
                424,
                "ModelErrorException",
            ),
            (
                CoreError::ServiceUnavailable("x".into()),
                503,
                "ServiceUnavailableException",
            ),
            (
                CoreError::Internal("x".into()),
                500,
                "InternalServerException",
            ),
        ];
        for (core, status, name) in cases {
            let response = BedrockError::from(core).into_response();
            assert_eq!(response.status().as_u16(), status, "{name}");
            assert_eq!(
                response
                    .headers()
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok()),
                Some(name)
            );
        }
    }

    #[test]
    fn openai_throttling_says_when_to_retry() {
        let response = OpenAiError::from(CoreError::Throttled("busy".into())).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
    }
}
