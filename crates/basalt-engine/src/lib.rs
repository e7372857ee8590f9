//! Local inference engines.
//!
//! - [`chat::ChatEngine`]: a GGUF chat model on llama.cpp (through `llama-cpp-2`), one
//!   scheduler thread per model that decodes every in-flight request in one batch
//!   (continuous batching) and reuses each slot's KV cache for a shared prompt prefix.
//! - [`embed::EmbeddingEngine`]: a BERT sentence-embedding model (sentence-transformers
//!   layout: safetensors + tokenizer.json) on candle, mean-pooled and L2-normalised.
//!
//! This crate knows nothing about HTTP, Bedrock or OpenAI: it takes token-level
//! requests and returns text, tokens and counts.

pub mod chat;
pub mod embed;
mod error;

pub use error::EngineError;
