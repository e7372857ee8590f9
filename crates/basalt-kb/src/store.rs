//! What a knowledge base's chunk store does, whichever it is: the embedded store
//! ([`crate::index::EmbeddedIndex`]) or PostgreSQL with pgvector
//! ([`crate::postgres::PgStore`]). The core holds a `dyn ChunkStore` per knowledge
//! base and never knows which.

use std::collections::HashMap;

use crate::index::{Hit, NewChunk, Query};
use crate::KbError;

/// A knowledge base's chunks.
pub trait ChunkStore: Send + Sync {
    /// Every stored document of a data source: uri → content hash.
    fn documents(&self, data_source_id: &str) -> Result<HashMap<String, String>, KbError>;
    /// Replaces a document's chunks, all or nothing; returns how many were stored.
    fn put_document(
        &self,
        data_source_id: &str,
        uri: &str,
        content_sha256: &str,
        chunks: Vec<NewChunk>,
    ) -> Result<usize, KbError>;
    /// The metadata a document's chunks carry (its first chunk's: every chunk of a
    /// document has the document's metadata), or `None` when it has no chunks. What a
    /// tenant key's filter is tested against before it may see or delete a document.
    fn document_metadata(
        &self,
        data_source_id: &str,
        uri: &str,
    ) -> Result<Option<crate::filter::Metadata>, KbError>;
    /// Removes a document and its chunks; false when it was not stored.
    fn delete_document(&self, data_source_id: &str, uri: &str) -> Result<bool, KbError>;
    /// Removes every document of a data source; returns how many.
    fn delete_data_source(&self, data_source_id: &str) -> Result<usize, KbError> {
        let uris: Vec<String> = self.documents(data_source_id)?.into_keys().collect();
        for uri in &uris {
            self.delete_document(data_source_id, uri)?;
        }
        self.flush()?;
        Ok(uris.len())
    }
    /// Makes every write visible to search.
    fn flush(&self) -> Result<(), KbError>;
    /// The best `k` chunks (children of one parent count once).
    fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>, KbError>;
    /// Removes what the store keeps outside the knowledge base's directory (tables).
    fn destroy(&self) -> Result<(), KbError>;
}

/// Refuses chunks whose vectors are not `dimensions` long (before anything is written).
pub fn check_dimensions(chunks: &[NewChunk], dimensions: usize) -> Result<(), KbError> {
    match chunks.iter().find(|c| c.vector.len() != dimensions) {
        Some(bad) => Err(KbError::Index(format!(
            "a {}-dimensional vector cannot go into a {dimensions}-dimensional index",
            bad.vector.len()
        ))),
        None => Ok(()),
    }
}

/// Reciprocal-rank fusion constant (Cormack et al.).
pub const RRF_K: f64 = 60.0;

/// Fuses two ranked lists of keys by reciprocal rank, best first.
pub fn fuse<K: std::hash::Hash + Eq + Copy + Ord>(lists: [&[K]; 2]) -> Vec<(K, f64)> {
    let mut fused: HashMap<K, f64> = HashMap::new();
    for list in lists {
        for (rank, key) in list.iter().enumerate() {
            *fused.entry(*key).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut all: Vec<(K, f64)> = fused.into_iter().collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}
