//! The knowledge-base storage engine, independent of HTTP and of the core: reading
//! documents ([`parse`], [`metadata`]), cutting them ([`chunking`]), Bedrock's
//! retrieval filters ([`filter`]), and the embedded store ([`index`]: SQLite chunks,
//! exact vector search, tantivy BM25, hybrid by score-aware fusion) and the
//! PostgreSQL/pgvector store ([`postgres`]), both behind [`store::ChunkStore`].
//!
//! Embedding happens in the core (it is metered and may be remote); this crate takes
//! vectors and token spans as inputs.

pub mod ann;
mod bm25;
pub mod chunking;
mod columns;
pub mod filter;
pub mod index;
pub mod metadata;
pub mod parse;
pub mod postgres;
mod simd;
pub mod store;
pub mod vectors;

/// What can go wrong in a knowledge base's storage or a document's reading.
#[derive(Debug, thiserror::Error)]
pub enum KbError {
    /// A malformed `RetrievalFilter` (the request's fault).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// A chunking or store configuration outside its bounds (the request's fault).
    #[error("{0}")]
    InvalidConfiguration(String),
    /// A document that cannot be read (counted as failed; the job goes on).
    #[error("{0}")]
    Parse(String),
    /// The store on disk failed (the server's fault).
    #[error("{0}")]
    Index(String),
}

#[cfg(test)]
mod index_tests;

#[cfg(test)]
mod ann_tests;
