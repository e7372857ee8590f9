//! Local inference engines.
//!
//! - [`chat::ChatEngine`]: a GGUF chat model on llama.cpp (through `llama-cpp-2`), one
//!   scheduler thread per model that decodes every in-flight request in one batch
//!   (continuous batching) and reuses each slot's KV cache for a shared prompt prefix.
//! - [`embed::EmbeddingEngine`]: a BERT sentence-embedding model (sentence-transformers
//!   layout: safetensors + tokenizer.json) on ONNX Runtime, its graph built at load
//!   with int8 linear layers; inputs from every call share one queue, and vectors are
//!   mean-pooled and L2-normalised inside the graph.
//!
//! - [`convert`]: Hugging Face model folders (safetensors) to GGUF, quantized by
//!   llama.cpp's own quantizer (model import).
//!
//! This crate knows nothing about HTTP, Bedrock or OpenAI: it takes token-level
//! requests and returns text, tokens and counts.

pub mod chat;
pub mod convert;
pub mod cpu;
pub mod embed;
mod error;

pub use error::EngineError;

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// llama.cpp's process-wide backend, initialised on first use.
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Compute(format!("llama.cpp backend: {e}")))
}
