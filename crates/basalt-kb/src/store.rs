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

/// Fuses two ranked lists of keys by reciprocal rank, best first (the PostgreSQL
/// store's hybrid search, whose keyword half is `ts_rank_cd`, not BM25).
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

/// The vector half's weight in [`fuse_scores`]: chosen on SciFact's train queries
/// only (`benches/kb_fusion.py`; 0.55 was best of 0, 0.05, ..., 1).
pub const HYBRID_VECTOR_WEIGHT: f64 = 0.55;

/// Each score divided by the list's best, so both halves run to 1 at their top
/// whatever their scale (cosine, BM25); a list whose best is not positive is
/// min-max scaled instead.
fn scaled<K: Copy>(list: &[(K, f64)]) -> Vec<(K, f64)> {
    let best = list
        .iter()
        .map(|(_, s)| *s)
        .fold(f64::NEG_INFINITY, f64::max);
    let worst = list.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
    list.iter()
        .map(|(k, s)| {
            let v = if best > 0.0 {
                s / best
            } else if best > worst {
                (s - worst) / (best - worst)
            } else {
                1.0
            };
            (*k, v)
        })
        .collect()
}

/// Score-aware fusion of the vector and keyword halves, best first:
/// `weight × vector + (1 − weight) × keyword`, each half's scores scaled by its best
/// ([`scaled`]); a key missing from one half counts that half's lowest scaled score
/// (it ranked below everything the half returned). Unlike reciprocal ranks, a weak
/// half's near-ties cannot outvote a strong half's clear winner.
pub fn fuse_scores<K: std::hash::Hash + Eq + Copy + Ord>(
    vector: &[(K, f64)],
    keyword: &[(K, f64)],
    weight: f64,
) -> Vec<(K, f64)> {
    let (v, k) = (scaled(vector), scaled(keyword));
    let floor = |l: &[(K, f64)]| l.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
    let (v_floor, k_floor) = (floor(&v), floor(&k));
    let v_floor = if v_floor.is_finite() { v_floor } else { 0.0 };
    let k_floor = if k_floor.is_finite() { k_floor } else { 0.0 };
    let mut halves: HashMap<K, (Option<f64>, Option<f64>)> = HashMap::new();
    for (key, s) in &v {
        halves.entry(*key).or_default().0 = Some(*s);
    }
    for (key, s) in &k {
        halves.entry(*key).or_default().1 = Some(*s);
    }
    let mut all: Vec<(K, f64)> = halves
        .into_iter()
        .map(|(key, (vs, ks))| {
            let score = weight * vs.unwrap_or(v_floor) + (1.0 - weight) * ks.unwrap_or(k_floor);
            (key, score)
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

#[cfg(test)]
mod fusion_tests {
    use super::*;

    #[test]
    fn score_fusion_weighs_scaled_scores_and_floors_missing_keys() {
        // Vector: 1 clearly best; keyword: 2 barely ahead of 1, 3 only there.
        let vector = [(1u32, 0.9), (2, 0.45)];
        let keyword = [(2u32, 10.0), (1, 9.9), (3, 5.0)];
        let fused = fuse_scores(&vector, &keyword, 0.55);
        let order: Vec<u32> = fused.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, vec![1, 2, 3], "{fused:?}");
        // 1: 0.55 * 1 + 0.45 * 0.99; 3: vector floor 0.5, keyword 0.5.
        assert!((fused[0].1 - (0.55 + 0.45 * 0.99)).abs() < 1e-9);
        assert!((fused[2].1 - (0.55 * 0.5 + 0.45 * 0.5)).abs() < 1e-9);
        // Reciprocal ranks would tie 1 and 2 (first and second in one list each).
        let rrf = fuse([&[1u32, 2][..], &[2u32, 1, 3][..]]);
        assert_eq!(rrf[0].1, rrf[1].1);
    }

    #[test]
    fn weights_at_the_ends_are_one_half_alone_and_empty_halves_are_fine() {
        let vector = [(1u32, 0.2), (2, 0.8)];
        let keyword = [(1u32, 3.0), (2, 1.0)];
        assert_eq!(fuse_scores(&vector, &keyword, 1.0)[0].0, 2);
        assert_eq!(fuse_scores(&vector, &keyword, 0.0)[0].0, 1);
        assert_eq!(fuse_scores(&vector, &[], 0.5)[0].0, 2);
        assert!(fuse_scores::<u32>(&[], &[], 0.5).is_empty());
        // Non-positive scores are min-max scaled.
        let negative = [(1u32, -0.1), (2, -0.5)];
        assert_eq!(fuse_scores(&negative, &[], 0.5)[0].0, 1);
    }
}
