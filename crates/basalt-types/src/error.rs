//! The error type of the core, the providers and the edge: each variant says what the
//! caller did wrong or what failed, and the edge maps each one, exhaustively, to its
//! dialect's error shape.

/// Errors of the core, by cause.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CoreError {
    /// The request is malformed or not allowed (HTTP 400).
    #[error("{0}")]
    Validation(String),
    /// The named resource does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (HTTP 403).
    #[error("{0}")]
    AccessDenied(String),
    /// The request conflicts with a resource's current state, e.g. a name in use
    /// (Bedrock's ConflictException, HTTP 400).
    #[error("{0}")]
    Conflict(String),
    /// A resource quota of this server would be exceeded (HTTP 400).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Too many requests or tokens; retry later (HTTP 429).
    #[error("{0}")]
    Throttled(String),
    /// The caller's own per-minute quota is used up (HTTP 429, with when to retry).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// The caller's key has spent its budget (Bedrock: ServiceQuotaExceededException;
    /// OpenAI: 429 `insufficient_quota`).
    #[error("{0}")]
    BudgetExhausted(String),
    /// The model is not ready to serve (HTTP 429 on the runtime).
    #[error("{0}")]
    ModelNotReady(String),
    /// The model took too long (HTTP 408).
    #[error("{0}")]
    ModelTimeout(String),
    /// The model failed while answering (HTTP 424).
    #[error("{0}")]
    ModelError(String),
    /// The service cannot take requests now (HTTP 503).
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A fault of ours (HTTP 500). The message is safe to show.
    #[error("{0}")]
    Internal(String),
}

impl CoreError {
    /// Whether the model's upstream failed (not the caller): such a failure is worth
    /// another deployment, a retry or a fallback model; the caller's mistakes are not.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            CoreError::Throttled(_)
                | CoreError::ServiceUnavailable(_)
                | CoreError::ModelTimeout(_)
                | CoreError::ModelError(_)
                | CoreError::ModelNotReady(_)
        )
    }

    /// The metering outcome this error counts as.
    pub fn outcome(&self) -> crate::Outcome {
        match self {
            CoreError::Validation(_)
            | CoreError::NotFound(_)
            | CoreError::AccessDenied(_)
            | CoreError::Conflict(_)
            | CoreError::QuotaExceeded(_) => crate::Outcome::ClientError,
            CoreError::Throttled(_)
            | CoreError::RateLimited { .. }
            | CoreError::BudgetExhausted(_) => crate::Outcome::Throttled,
            CoreError::ModelNotReady(_)
            | CoreError::ModelTimeout(_)
            | CoreError::ModelError(_)
            | CoreError::ServiceUnavailable(_)
            | CoreError::Internal(_) => crate::Outcome::ServerError,
        }
    }
}
