//! The provider-independent core of Basalt.
//!
//! Requests arrive here already translated from their wire dialect into the types of
//! [`types`]; [`Basalt`] resolves the model in the [`catalog`], checks its lifecycle,
//! runs it on its provider ([`provider`]), and meters the invocation ([`metering`]).
//! Nothing in this crate knows HTTP or a wire format.

pub mod agents;
pub mod audit;
pub(crate) mod background;
pub mod batch;
pub mod catalog;
pub mod common;
pub mod config;
pub mod custom_models;
pub mod customization;
pub mod documents;
mod error;
pub mod guardrails;
pub mod jobs;
pub mod keys;
pub mod knowledge;
pub mod local_paths;
pub mod metering;
pub mod model_artifacts;
pub mod model_fetch;
pub mod policy;
pub mod profiles;
pub mod provider;
pub mod provisioned;
pub mod quotas;
pub mod responses;
pub mod s3;
mod service;
pub mod services;
pub mod tool_calls;
pub mod usage;

/// Provider-independent types (the `basalt-types` crate).
pub mod types {
    pub use basalt_types::*;
}

/// Guardrail policies and their evaluation (the `basalt-guardrails` crate).
pub mod guardrail_policy {
    pub use basalt_guardrails::*;
}

pub use error::CoreError;

/// The local engine's counters, for `/metrics`.
pub mod engine_counters {
    pub use basalt_engine::chat::EngineCounters;
    pub use basalt_engine::cpu::{budget as cpu_budget, CpuSnapshot};
}
pub use service::{Basalt, CallContext, MeteredStream, BATCH_PRICE_FACTOR, MAX_RERANK_DOCUMENTS};
pub use services::Services;
