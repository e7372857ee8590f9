//! The approximate index of a large vector set: an inverted file (IVF). Spherical
//! k-means cuts the unit vectors into `nlist` cells around unit centroids; each live
//! vector is listed under its nearest centroid, its int8 codes stored with the cell.
//! A query ranks the centroids (one dot product each) and scans the cells nearest to
//! it, best first, until it has read [`AnnParams::scan_fraction`] of the vectors (at
//! least [`AnnParams::scan_min`]) and holds enough candidates that pass the filter.
//! A filter that lets a share `s` of the chunks through makes the query read `1/√s`
//! times as much (its k best sit deeper in the ranking), and a rare one reads further
//! cells rather than come back short. The scan is the int8 scan with exact rescoring
//! of the flat search ([`crate::vectors`]).
//!
//! The defaults were chosen on real sentence embeddings (all-MiniLM-L6-v2, 100,000
//! sentences; `benches/kb_ann_real.sh`): reading 10 % gives recall@10 ≈ 0.96 there,
//! 4 % only 0.92; `benches/README.md` has the sweep.
//!
//! Why an IVF and not a graph (HNSW): it is trained in seconds where a graph of a
//! million vectors takes minutes on two cores (FAISS's HNSW: 293 s, in
//! `benches/README.md`), costs one `u32` per vector instead of a few hundred bytes of
//! links, takes inserts (nearest centroid) and deletes (the cell skips dead slots)
//! without rebuilding, and keeps filters inside the same scan. Training and bulk
//! assignment are matrix products (the `gemm` crate); they read the set in short
//! batches so that searches and writes go on while it is built
//! ([`AnnBuild::compute`]).

use crate::vectors::{dot, VectorSet};

/// When and how hard the approximate index works.
#[derive(Debug, Clone, Copy)]
pub struct AnnParams {
    /// Live vectors from which the index is built (below, the scan reads everything).
    pub build_from: usize,
    /// Rebuild when the live count has grown this many times since the last build.
    pub regrow_factor: usize,
    /// Fraction of the live vectors a query reads (at least `scan_min`).
    pub scan_fraction: f64,
    pub scan_min: usize,
    /// k-means sample points per centroid, and rounds.
    pub sample_per_list: usize,
    pub iterations: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        Self {
            build_from: 262_144,
            regrow_factor: 4,
            scan_fraction: 0.10,
            scan_min: 8_192,
            sample_per_list: 48,
            iterations: 8,
        }
    }
}

impl AnnParams {
    /// Cells for `n` vectors: about √n, a power of two between 64 and 4,096.
    pub fn lists_for(n: usize) -> usize {
        ((n as f64).sqrt() as usize)
            .next_power_of_two()
            .clamp(64, 4096)
    }
}

/// The cells of a built index.
#[derive(Debug, Clone)]
pub(crate) struct Ivf {
    pub(crate) dimensions: usize,
    /// `nlist` × `dimensions`, each row of unit length.
    pub(crate) centroids: Vec<f32>,
    /// The vectors listed under each centroid, slots ascending.
    pub(crate) lists: Vec<Cell>,
    /// Live vectors when it was trained.
    pub(crate) trained_on: usize,
}

/// One cell: its slots with their int8 codes stored contiguously, so that a query
/// reads a cell front to back instead of jumping around the whole set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cell {
    pub(crate) slots: Vec<u32>,
    pub(crate) codes: Vec<i8>,
    pub(crate) scales: Vec<f32>,
}

impl Cell {
    pub(crate) fn push(&mut self, slot: u32, codes: &[i8], scale: f32) {
        self.slots.push(slot);
        self.codes.extend_from_slice(codes);
        self.scales.push(scale);
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

impl Ivf {
    pub(crate) fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// The cell nearest to `vector`.
    pub(crate) fn nearest(&self, vector: &[f32]) -> u32 {
        let mut best = (f32::NEG_INFINITY, 0u32);
        for (i, c) in self.centroids.chunks_exact(self.dimensions).enumerate() {
            let s = dot(vector, c);
            if s > best.0 {
                best = (s, i as u32);
            }
        }
        best.1
    }

    /// Every cell, nearest to `query` first.
    pub(crate) fn probe_order(&self, query: &[f32]) -> Vec<u32> {
        let mut scored: Vec<(f32, u32)> = self
            .centroids
            .chunks_exact(self.dimensions)
            .enumerate()
            .map(|(i, c)| (dot(query, c), i as u32))
            .collect();
        scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// Renumbers the slots after the set dropped its dead rows (`new_slot[old]`,
    /// `u32::MAX` for a dropped one).
    pub(crate) fn renumber(&mut self, new_slot: &[u32]) {
        let d = self.dimensions;
        for cell in &mut self.lists {
            let old = std::mem::take(cell);
            for (i, slot) in old.slots.iter().enumerate() {
                if let Some(&n) = new_slot.get(*slot as usize).filter(|n| **n != u32::MAX) {
                    cell.push(n, &old.codes[i * d..(i + 1) * d], old.scales[i]);
                }
            }
        }
    }
}

/// Where a build reads the vectors from: the set itself, or the set behind the lock
/// searches share (read in short batches).
pub trait VectorSource {
    fn read<R>(&self, f: impl FnOnce(&VectorSet) -> R) -> Option<R>;
}

impl VectorSource for VectorSet {
    fn read<R>(&self, f: impl FnOnce(&VectorSet) -> R) -> Option<R> {
        Some(f(self))
    }
}

impl VectorSource for std::sync::RwLock<VectorSet> {
    fn read<R>(&self, f: impl FnOnce(&VectorSet) -> R) -> Option<R> {
        self.read().ok().map(|set| f(&set))
    }
}

/// A trained index not yet installed: the centroids and the cell of every vector the
/// build saw, by chunk ID (ascending).
#[derive(Debug, Clone)]
pub struct AnnBuild {
    pub dimensions: usize,
    pub centroids: Vec<f32>,
    pub assigned: Vec<(i64, u32)>,
    pub trained_on: usize,
}

/// Rows per batch read from the set and multiplied at once.
const BATCH: usize = 4096;

impl AnnBuild {
    /// Trains and assigns from `source`; `None` when the set is too small for
    /// `nlist` cells (or its lock is poisoned).
    pub fn compute<S: VectorSource>(source: &S, params: &AnnParams) -> Option<Self> {
        let (d, live) = source.read(|s| (s.dimensions(), s.live()))?;
        let nlist = AnnParams::lists_for(live);
        if d == 0 || live < nlist * 4 {
            return None;
        }
        let sample = source.read(|s| s.sample_rows(nlist * params.sample_per_list))?;
        let centroids = train(&sample, d, nlist, params.iterations);
        drop(sample);
        let mut assigned = Vec::with_capacity(live);
        let mut from = 0;
        loop {
            let (ids, rows, next) = source.read(|s| s.rows_from(from, BATCH))?;
            if ids.is_empty() {
                break;
            }
            let cells = nearest_cells(&rows, &centroids, d);
            assigned.extend(ids.into_iter().zip(cells.into_iter().map(|(c, _)| c)));
            from = next;
        }
        assigned.sort_unstable_by_key(|(id, _)| *id);
        assigned.dedup_by_key(|(id, _)| *id);
        Some(Self {
            dimensions: d,
            centroids,
            assigned,
            trained_on: live,
        })
    }

    /// The cell recorded for chunk `id`.
    pub(crate) fn cell_of(&self, id: i64) -> Option<u32> {
        self.assigned
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|at| self.assigned[at].1)
    }
}

/// Spherical k-means over `sample` (rows of `d`): unit centroids maximising the
/// summed cosine. Starts from evenly spread sample rows; an emptied cell is re-seeded
/// with the row its current centroid explains worst.
pub(crate) fn train(sample: &[f32], d: usize, nlist: usize, iterations: usize) -> Vec<f32> {
    let n = sample.len() / d;
    let mut centroids: Vec<f32> = (0..nlist)
        .flat_map(|i| {
            sample[(i * n / nlist) * d..(i * n / nlist + 1) * d]
                .iter()
                .copied()
        })
        .collect();
    for _ in 0..iterations {
        let cells = nearest_cells(sample, &centroids, d);
        let mut sums = vec![0.0f32; nlist * d];
        let mut counts = vec![0usize; nlist];
        for (row, (cell, _)) in sample.chunks_exact(d).zip(&cells) {
            let c = *cell as usize;
            counts[c] += 1;
            for (s, x) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                *s += x;
            }
        }
        let mut worst: Vec<usize> = (0..n).collect();
        worst.sort_unstable_by(|a, b| cells[*a].1.total_cmp(&cells[*b].1));
        let mut reseed = worst.into_iter();
        for c in 0..nlist {
            let centroid = &mut sums[c * d..(c + 1) * d];
            if counts[c] == 0 {
                if let Some(r) = reseed.next() {
                    centroid.copy_from_slice(&sample[r * d..(r + 1) * d]);
                }
            }
            let norm = centroid.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                centroid.iter_mut().for_each(|x| *x /= norm);
            }
        }
        centroids = sums;
    }
    centroids
}

/// For each row of `rows`, its best centroid and that dot product.
pub(crate) fn nearest_cells(rows: &[f32], centroids: &[f32], d: usize) -> Vec<(u32, f32)> {
    let nlist = centroids.len() / d;
    let mut out = Vec::with_capacity(rows.len() / d);
    let mut scores = vec![0.0f32; BATCH.min(rows.len() / d.max(1)).max(1) * nlist];
    for batch in rows.chunks(BATCH * d) {
        let m = batch.len() / d;
        let scores = &mut scores[..m * nlist];
        products(batch, centroids, d, scores);
        for row in scores.chunks_exact(nlist) {
            let mut best = (0u32, f32::NEG_INFINITY);
            for (i, s) in row.iter().enumerate() {
                if *s > best.1 {
                    best = (i as u32, *s);
                }
            }
            out.push(best);
        }
    }
    out
}

/// `out[i·n + j] = a_i · b_j` for the rows of `a` (m × d) and `b` (n × d).
#[allow(unsafe_code)]
fn products(a: &[f32], b: &[f32], d: usize, out: &mut [f32]) {
    let (m, n) = (a.len() / d, b.len() / d);
    if d == 0 || a.len() != m * d || b.len() != n * d || out.len() != m * n || m == 0 || n == 0 {
        return;
    }
    // SAFETY: the lengths were checked above: `a` holds m rows of d (row stride d,
    // column stride 1), `b` read as its transpose (d × n: row stride 1, column
    // stride d) holds n rows of d, and `out` holds m × n (row stride n). gemm reads
    // and writes only inside those extents, and the borrows keep them alive.
    unsafe {
        gemm::gemm(
            m,
            n,
            d,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            d as isize,
            b.as_ptr(),
            d as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_dot_products() {
        let a: Vec<f32> = (0..5 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..3 * 7).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![0.0; 15];
        products(&a, &b, 7, &mut out);
        for i in 0..5 {
            for j in 0..3 {
                let want = dot(&a[i * 7..(i + 1) * 7], &b[j * 7..(j + 1) * 7]);
                assert!((out[i * 3 + j] - want).abs() < 1e-5, "({i},{j})");
            }
        }
    }

    #[test]
    fn kmeans_separates_clear_clusters() {
        // Four tight clusters on the axes of 4-d space, 50 points each.
        let mut sample = Vec::new();
        for i in 0..200 {
            let axis = i % 4;
            let mut v = [0.02f32 * ((i * 7 % 5) as f32 - 2.0); 4];
            v[axis] = 1.0;
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            sample.extend(v.iter().map(|x| x / n));
        }
        let centroids = train(&sample, 4, 4, 6);
        let cells = nearest_cells(&sample, &centroids, 4);
        for axis in 0..4 {
            let first = cells[axis].0;
            for i in (axis..200).step_by(4) {
                assert_eq!(cells[i].0, first, "point {i} left its cluster");
            }
        }
        let distinct: std::collections::HashSet<u32> = cells.iter().map(|c| c.0).collect();
        assert_eq!(distinct.len(), 4, "clusters merged: {distinct:?}");
    }
}
