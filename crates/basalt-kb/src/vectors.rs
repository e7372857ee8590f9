//! The vectors of a store, in memory: a row-major f32 matrix with an int8 copy, the
//! chunk ID and group of each row, and the metadata as columns (one per attribute,
//! indexed by row) so that a filter is evaluated with one array lookup per leaf. The
//! scan that searches them is described in the [`crate::index`] module comment.

use std::collections::{BinaryHeap, HashMap};

use serde_json::Value;

use crate::filter::{Filter, Metadata};

/// One stored vector's identity.
pub(crate) struct Slot {
    pub(crate) id: i64,
    /// Chunks with the same group are one result (children of one parent).
    pub(crate) group: u64,
}

/// The vectors of one store.
#[derive(Default)]
pub struct VectorSet {
    dimensions: usize,
    /// Row-major, one row per slot.
    matrix: Vec<f32>,
    /// The same rows quantised to int8 (symmetric, one scale per row).
    quantized: Vec<i8>,
    scales: Vec<f32>,
    pub(crate) slots: Vec<Option<Slot>>,
    pub(crate) slot_of: HashMap<i64, usize>,
    /// Attribute → value by slot (shorter than `slots` where later rows lack it).
    columns: HashMap<String, Vec<Option<Value>>>,
    dead: usize,
    max_id: i64,
}

/// A filter resolved against the columns once per query.
enum Compiled<'a> {
    Leaf(&'a Filter, Option<&'a [Option<Value>]>),
    All(Vec<Compiled<'a>>),
    Any(Vec<Compiled<'a>>),
}

impl Compiled<'_> {
    fn matches(&self, slot: usize) -> bool {
        match self {
            Self::Leaf(filter, column) => {
                filter.leaf_matches(column.and_then(|c| c.get(slot)).and_then(Option::as_ref))
            }
            Self::All(parts) => parts.iter().all(|p| p.matches(slot)),
            Self::Any(parts) => parts.iter().any(|p| p.matches(slot)),
        }
    }
}

/// Chunk IDs that pass a filter, as a bitset.
#[derive(Debug, Clone, Default)]
pub struct IdSet {
    bits: Vec<u64>,
}

impl IdSet {
    pub fn contains(&self, id: u64) -> bool {
        let word = (id / 64) as usize;
        self.bits
            .get(word)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn insert(&mut self, id: u64) {
        let word = (id / 64) as usize;
        if let Some(w) = self.bits.get_mut(word) {
            *w |= 1 << (id % 64);
        }
    }
}

impl VectorSet {
    /// An empty set of `dimensions`-long vectors.
    pub fn new(dimensions: usize) -> Self {
        Self {
            dimensions,
            ..Self::default()
        }
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The chunk ID in a slot (as [`Self::top`] answers).
    pub fn id_of(&self, slot: usize) -> Option<i64> {
        self.slots.get(slot)?.as_ref().map(|s| s.id)
    }

    fn compile<'a>(&'a self, filter: &'a Filter) -> Compiled<'a> {
        match filter {
            Filter::AndAll(parts) => Compiled::All(parts.iter().map(|p| self.compile(p)).collect()),
            Filter::OrAll(parts) => Compiled::Any(parts.iter().map(|p| self.compile(p)).collect()),
            leaf => Compiled::Leaf(
                leaf,
                leaf.key()
                    .and_then(|k| self.columns.get(k))
                    .map(Vec::as_slice),
            ),
        }
    }

    /// Adds a vector (normalised, `dimensions` long) for chunk `id`.
    pub fn push(&mut self, id: i64, vector: &[f32], metadata: &Metadata, group: u64) {
        let slot = self.slots.len();
        self.slot_of.insert(id, slot);
        self.slots.push(Some(Slot { id, group }));
        self.max_id = self.max_id.max(id);
        for (key, value) in metadata {
            let column = self.columns.entry(key.clone()).or_default();
            column.resize(slot, None);
            column.push(Some(value.clone()));
        }
        self.matrix.extend_from_slice(vector);
        let (row, scale) = quantize(vector);
        self.quantized.extend_from_slice(&row);
        self.scales.push(scale);
    }

    /// Removes chunk `id`'s vector.
    pub fn remove(&mut self, id: i64) {
        if let Some(slot) = self.slot_of.remove(&id) {
            self.slots[slot] = None;
            for column in self.columns.values_mut() {
                if let Some(v) = column.get_mut(slot) {
                    *v = None;
                }
            }
            self.dead += 1;
        }
        if self.dead > 1024 && self.dead * 2 > self.slots.len() {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let d = self.dimensions;
        let mut matrix = Vec::with_capacity(self.matrix.len());
        let mut quantized = Vec::with_capacity(self.quantized.len());
        let mut scales = Vec::with_capacity(self.scales.len());
        let mut slots = Vec::new();
        let mut kept = Vec::new();
        self.slot_of.clear();
        for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if let Some(slot) = slot {
                self.slot_of.insert(slot.id, slots.len());
                matrix.extend_from_slice(&self.matrix[i * d..(i + 1) * d]);
                quantized.extend_from_slice(&self.quantized[i * d..(i + 1) * d]);
                scales.push(self.scales[i]);
                slots.push(Some(slot));
                kept.push(i);
            }
        }
        for column in self.columns.values_mut() {
            *column = kept
                .iter()
                .map(|i| column.get(*i).cloned().flatten())
                .collect();
        }
        self.columns.retain(|_, c| c.iter().any(Option::is_some));
        self.matrix = matrix;
        self.quantized = quantized;
        self.scales = scales;
        self.slots = slots;
        self.dead = 0;
    }

    /// Vectors stored.
    pub fn live(&self) -> usize {
        self.slots.len() - self.dead
    }

    /// The chunk IDs that pass `filter`.
    pub fn passing(&self, filter: &Filter) -> IdSet {
        let compiled = self.compile(filter);
        let mut set = IdSet {
            bits: vec![0; (self.max_id.max(0) as usize) / 64 + 1],
        };
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(slot) = slot {
                if compiled.matches(i) {
                    set.insert(slot.id as u64);
                }
            }
        }
        set
    }

    /// Slots and scores of the best `k` by dot product among those passing `filter`.
    pub fn top(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Vec<(usize, f32)> {
        let d = self.dimensions;
        if k == 0 || d == 0 || query.len() != d {
            return Vec::new();
        }
        if self.slots.len() < QUANTIZED_FROM {
            return self.exact_top(query, k, filter);
        }
        let compiled = filter.map(|f| self.compile(f));
        let (q, _) = quantize(query);
        let pool = k * RESCORE_FACTOR;
        let mut heap: BinaryHeap<std::cmp::Reverse<(Score, usize)>> =
            BinaryHeap::with_capacity(pool + 1);
        for (slot, row) in self.quantized.chunks_exact(d).enumerate() {
            if self.slots[slot].is_none() {
                continue;
            }
            let score = dot_i8(&q, row) as f32 * self.scales[slot];
            if heap.len() == pool && heap.peek().is_some_and(|m| score <= m.0 .0 .0) {
                continue;
            }
            if compiled.as_ref().is_some_and(|f| !f.matches(slot)) {
                continue;
            }
            heap.push(std::cmp::Reverse((Score(score), slot)));
            if heap.len() > pool {
                heap.pop();
            }
        }
        let mut out: Vec<(usize, f32)> = heap
            .into_iter()
            .map(|r| {
                let slot = r.0 .1;
                (slot, dot(query, &self.matrix[slot * d..(slot + 1) * d]))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(k);
        out
    }

    /// Exact top `k` (f32 scan of every vector).
    pub fn exact_top(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Vec<(usize, f32)> {
        let d = self.dimensions;
        if k == 0 || d == 0 || query.len() != d {
            return Vec::new();
        }
        let compiled = filter.map(|f| self.compile(f));
        let mut heap: BinaryHeap<std::cmp::Reverse<(Score, usize)>> =
            BinaryHeap::with_capacity(k + 1);
        for (slot, row) in self.matrix.chunks_exact(d).enumerate() {
            if self.slots[slot].is_none() {
                continue;
            }
            let score = dot(query, row);
            if heap.len() == k && heap.peek().is_some_and(|m| score <= m.0 .0 .0) {
                continue;
            }
            if compiled.as_ref().is_some_and(|f| !f.matches(slot)) {
                continue;
            }
            heap.push(std::cmp::Reverse((Score(score), slot)));
            if heap.len() > k {
                heap.pop();
            }
        }
        let mut out: Vec<(usize, f32)> = heap.into_iter().map(|r| (r.0 .1, r.0 .0 .0)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f32);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Chunk count from which vector search scans the int8 copy.
pub const QUANTIZED_FROM: usize = 8192;

/// Candidates per requested result taken from the int8 scan for exact rescoring.
pub const RESCORE_FACTOR: usize = 8;

/// Symmetric int8 quantisation of a row: `x ≈ q · scale`.
fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return (vec![0; v.len()], 0.0);
    }
    let scale = max / 127.0;
    (
        v.iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect(),
        scale,
    )
}

/// Integer dot product in 16 lanes of i32 (vectorised by the compiler).
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut lanes = [0i32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            lanes[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    lanes.iter().sum::<i32>() + tail
}

/// Dot product in eight independent lanes (vectorised by the compiler).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
