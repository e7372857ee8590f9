//! The core speaks [`CoreError`] (defined in `basalt-types`); engine failures map onto it here.

pub use basalt_types::CoreError;

/// What an engine failure means to a caller.
pub(crate) fn engine_error(e: basalt_engine::EngineError) -> CoreError {
    use basalt_engine::EngineError as E;
    match e {
        E::InvalidRequest(m) => CoreError::Validation(m),
        E::Overloaded { .. } => CoreError::Throttled(e.to_string()),
        E::Stopped => CoreError::ServiceUnavailable(e.to_string()),
        E::Template(m) => CoreError::Validation(format!(
            "the conversation cannot be rendered with this model's chat template: {m}"
        )),
        E::Load { .. } | E::Compute(_) => CoreError::ModelError(e.to_string()),
    }
}
