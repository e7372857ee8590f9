//! The engine's error type.

/// What can go wrong in a local engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Load { path: String, reason: String },
    /// The model's chat template is missing or cannot be rendered for these messages.
    #[error("chat template: {0}")]
    Template(String),
    /// The request does not fit the model (context window, empty prompt, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// The engine's queue is full; the caller should retry later.
    #[error("the model's request queue is full ({capacity} waiting); retry later")]
    Overloaded { capacity: usize },
    /// The engine thread has stopped.
    #[error("the engine for this model is not running")]
    Stopped,
    /// llama.cpp failed while computing.
    #[error("inference failed: {0}")]
    Compute(String),
}
