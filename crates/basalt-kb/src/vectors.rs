//! The vectors of a store, in memory: a row-major f32 matrix with an int8 copy, the
//! chunk ID and group of each row, and the metadata as dictionary-encoded columns
//! ([`crate::columns`]: one per attribute, a code per row) so that a filter leaf is
//! resolved once per query and tested with two array reads per row. The
//! scan that searches them is described in the [`crate::index`] module comment; above
//! [`AnnParams::build_from`] vectors it reads only the cells of the approximate index
//! ([`crate::ann`]) nearest to the query.

use std::collections::{BinaryHeap, HashMap};

use crate::ann::{AnnBuild, AnnParams, Cell, Ivf};
use crate::columns::{Column, ResolvedLeaf};
use crate::filter::{Filter, Metadata};
use crate::simd::QueryCodes;

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
    /// The same rows quantised to int8 (symmetric, one scale per row); empty while
    /// the approximate index holds the codes, cell by cell.
    quantized: Vec<i8>,
    scales: Vec<f32>,
    pub(crate) slots: Vec<Option<Slot>>,
    pub(crate) slot_of: HashMap<i64, usize>,
    /// Attribute → its values by slot.
    columns: HashMap<String, Column>,
    dead: usize,
    /// Which slots hold a vector, as a bitset (so a filter's slots need no lookup of
    /// `slots`, whose entries a cell's scan would read in scattered order).
    live_bits: Vec<u64>,
    max_id: i64,
    ann: Option<Ivf>,
    params: AnnParams,
}

/// A filter resolved against the columns once per query.
enum Compiled<'a> {
    Leaf(ResolvedLeaf<'a>),
    All(Vec<Compiled<'a>>),
    Any(Vec<Compiled<'a>>),
}

impl Compiled<'_> {
    fn matches(&self, slot: usize) -> bool {
        match self {
            Self::Leaf(leaf) => leaf.matches(slot),
            Self::All(parts) => parts.iter().all(|p| p.matches(slot)),
            Self::Any(parts) => parts.iter().any(|p| p.matches(slot)),
        }
    }

    /// The slots `0..n` that pass, as a bitset: each leaf in one pass over its
    /// column, combined word by word.
    fn bits(&self, n: usize) -> Vec<u64> {
        let words = n.div_ceil(64);
        let combine = |parts: &[Compiled<'_>], start: u64, op: fn(u64, u64) -> u64| {
            let mut out = vec![start; words];
            for part in parts {
                for (o, b) in out.iter_mut().zip(part.bits(n)) {
                    *o = op(*o, b);
                }
            }
            out
        };
        match self {
            Self::Leaf(leaf) => leaf.bits(n),
            Self::All(parts) => combine(parts, u64::MAX, |a, b| a & b),
            Self::Any(parts) => combine(parts, 0, |a, b| a | b),
        }
    }
}

/// Slots a filter lets through, computed before a scan that would otherwise look
/// them up one by one in scattered order (the cells of the approximate index).
#[derive(Debug, Clone, Default)]
pub struct SlotBits(Vec<u64>);

impl SlotBits {
    #[inline]
    pub fn contains(&self, slot: usize) -> bool {
        self.0
            .get(slot / 64)
            .is_some_and(|w| w >> (slot % 64) & 1 == 1)
    }

    /// How many slots are in the set.
    pub fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The slots in the set, in order.
    fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut word = word;
            std::iter::from_fn(move || {
                (word != 0).then(|| {
                    let slot = w * 64 + word.trailing_zeros() as usize;
                    word &= word - 1;
                    slot
                })
            })
        })
    }
}

/// How many rows ahead a scan of scattered rows prefetches.
const PREFETCH_AHEAD: usize = 8;

/// Which chunks a search may return.
#[derive(Debug, Clone, Copy)]
pub enum Allowed<'a> {
    All,
    /// Those a filter matches (evaluated only for a chunk that would be a candidate).
    Matching(&'a Filter),
    /// Those in a set of slots computed before ([`VectorSet::passing_slots`]; the
    /// vector half of a hybrid query reuses the keyword half's).
    Slots(&'a SlotBits),
}

/// [`Allowed`] resolved against the set once per query.
enum Admit<'a> {
    All,
    Compiled(Compiled<'a>),
    Slots(&'a SlotBits),
}

impl Admit<'_> {
    /// Whether a live `slot` may be returned.
    fn admits(&self, slot: usize) -> bool {
        match self {
            Self::All => true,
            Self::Compiled(filter) => filter.matches(slot),
            Self::Slots(bits) => bits.contains(slot),
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
        Self::with_params(dimensions, AnnParams::default())
    }

    /// An empty set whose approximate index follows `params`.
    pub fn with_params(dimensions: usize, params: AnnParams) -> Self {
        Self {
            dimensions,
            params,
            ..Self::default()
        }
    }

    pub fn params(&self) -> AnnParams {
        self.params
    }

    /// Whether the approximate index should be (re)built: the set has reached
    /// `build_from` vectors and has none, or has grown `regrow_factor` times since.
    pub fn ann_due(&self) -> bool {
        let live = self.live();
        live >= self.params.build_from
            && self.ann.as_ref().is_none_or(|ivf| {
                live >= ivf
                    .trained_on
                    .saturating_mul(self.params.regrow_factor.max(2))
            })
    }

    /// Cells of the approximate index (0 when there is none).
    pub fn ann_lists(&self) -> usize {
        self.ann.as_ref().map_or(0, Ivf::nlist)
    }

    /// About `count` live rows taken at an even stride over the set.
    pub fn sample_rows(&self, count: usize) -> Vec<f32> {
        let d = self.dimensions;
        let step = (self.slots.len() / count.max(1)).max(1);
        (0..self.slots.len())
            .step_by(step)
            .filter(|s| self.slots[*s].is_some())
            .take(count)
            .flat_map(|s| self.matrix[s * d..(s + 1) * d].iter().copied())
            .collect()
    }

    /// IDs and rows of up to `count` live slots from slot `from`, and the slot to go on
    /// from.
    pub fn rows_from(&self, from: usize, count: usize) -> (Vec<i64>, Vec<f32>, usize) {
        let d = self.dimensions;
        let (mut ids, mut rows) = (Vec::with_capacity(count), Vec::with_capacity(count * d));
        let mut slot = from;
        while slot < self.slots.len() && ids.len() < count {
            if let Some(s) = &self.slots[slot] {
                ids.push(s.id);
                rows.extend_from_slice(&self.matrix[slot * d..(slot + 1) * d]);
            }
            slot += 1;
        }
        (ids, rows, slot)
    }

    /// Builds the approximate index now, on this thread.
    pub fn build_ann(&mut self) {
        if let Some(build) = AnnBuild::compute(self, &self.params) {
            self.install_ann(&build);
        }
    }

    /// Puts a build in place: every live vector goes to the cell the build recorded
    /// for it, or (written since the build read it) to its nearest one.
    pub fn install_ann(&mut self, build: &AnnBuild) {
        let d = self.dimensions;
        if build.dimensions != d
            || build.centroids.is_empty()
            || !build.centroids.len().is_multiple_of(d)
        {
            return;
        }
        let nlist = build.centroids.len() / d;
        let mut cell_of_slot = vec![u32::MAX; self.slots.len()];
        let mut unassigned = Vec::new();
        for (slot, entry) in self.slots.iter().enumerate() {
            let Some(entry) = entry else { continue };
            match build.cell_of(entry.id) {
                Some(cell) if (cell as usize) < nlist => cell_of_slot[slot] = cell,
                _ => unassigned.push(slot),
            }
        }
        let rows: Vec<f32> = unassigned
            .iter()
            .flat_map(|s| self.matrix[s * d..(s + 1) * d].iter().copied())
            .collect();
        for (slot, (cell, _)) in
            unassigned
                .iter()
                .zip(crate::ann::nearest_cells(&rows, &build.centroids, d))
        {
            cell_of_slot[*slot] = cell;
        }
        let mut ivf = Ivf {
            dimensions: d,
            centroids: build.centroids.clone(),
            lists: vec![Cell::default(); nlist],
            trained_on: build.trained_on,
        };
        for (slot, cell) in cell_of_slot.into_iter().enumerate() {
            if let Some(list) = ivf.lists.get_mut(cell as usize) {
                let (codes, scale) = quantize(&self.matrix[slot * d..(slot + 1) * d]);
                list.push(slot as u32, &codes, scale);
            }
        }
        self.ann = Some(ivf);
        self.quantized = Vec::new();
        self.scales = Vec::new();
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The chunk ID in a slot (as [`Self::top`] answers).
    pub fn id_of(&self, slot: usize) -> Option<i64> {
        self.slots.get(slot)?.as_ref().map(|s| s.id)
    }

    fn admit<'a>(&'a self, allowed: Allowed<'a>) -> Admit<'a> {
        match allowed {
            Allowed::All => Admit::All,
            Allowed::Matching(filter) => Admit::Compiled(self.compile(filter)),
            Allowed::Slots(bits) => Admit::Slots(bits),
        }
    }

    fn compile<'a>(&'a self, filter: &'a Filter) -> Compiled<'a> {
        match filter {
            Filter::AndAll(parts) => Compiled::All(parts.iter().map(|p| self.compile(p)).collect()),
            Filter::OrAll(parts) => Compiled::Any(parts.iter().map(|p| self.compile(p)).collect()),
            leaf => Compiled::Leaf(match leaf.key().and_then(|k| self.columns.get(k)) {
                Some(column) => column.resolve(leaf),
                None => ResolvedLeaf::absent(leaf),
            }),
        }
    }

    /// Adds a vector (normalised, `dimensions` long) for chunk `id`.
    pub fn push(&mut self, id: i64, vector: &[f32], metadata: &Metadata, group: u64) {
        let slot = self.slots.len();
        self.slot_of.insert(id, slot);
        self.slots.push(Some(Slot { id, group }));
        if slot % 64 == 0 {
            self.live_bits.push(0);
        }
        if let Some(w) = self.live_bits.get_mut(slot / 64) {
            *w |= 1 << (slot % 64);
        }
        self.max_id = self.max_id.max(id);
        for (key, value) in metadata {
            self.columns
                .entry(key.clone())
                .or_default()
                .set(slot, value);
        }
        self.matrix.extend_from_slice(vector);
        let (codes, scale) = quantize(vector);
        match &mut self.ann {
            Some(ivf) => {
                let cell = ivf.nearest(vector) as usize;
                if let Some(list) = ivf.lists.get_mut(cell) {
                    list.push(slot as u32, &codes, scale);
                }
            }
            None => {
                self.quantized.extend_from_slice(&codes);
                self.scales.push(scale);
            }
        }
    }

    /// Removes chunk `id`'s vector.
    pub fn remove(&mut self, id: i64) {
        if let Some(slot) = self.slot_of.remove(&id) {
            self.slots[slot] = None;
            for column in self.columns.values_mut() {
                column.clear(slot);
            }
            self.dead += 1;
            if let Some(w) = self.live_bits.get_mut(slot / 64) {
                *w &= !(1 << (slot % 64));
            }
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
        let mut new_slot = vec![u32::MAX; self.slots.len()];
        self.slot_of.clear();
        for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if let Some(slot) = slot {
                new_slot[i] = slots.len() as u32;
                self.slot_of.insert(slot.id, slots.len());
                matrix.extend_from_slice(&self.matrix[i * d..(i + 1) * d]);
                if self.ann.is_none() {
                    quantized.extend_from_slice(&self.quantized[i * d..(i + 1) * d]);
                    scales.push(self.scales[i]);
                }
                slots.push(Some(slot));
                kept.push(i);
            }
        }
        self.columns = std::mem::take(&mut self.columns)
            .into_iter()
            .filter_map(|(key, column)| Some((key, column.kept(&kept)?)))
            .collect();
        self.matrix = matrix;
        self.quantized = quantized;
        self.scales = scales;
        self.slots = slots;
        self.dead = 0;
        self.live_bits = vec![0; self.slots.len().div_ceil(64)];
        for slot in 0..self.slots.len() {
            self.live_bits[slot / 64] |= 1 << (slot % 64);
        }
        if let Some(ivf) = &mut self.ann {
            ivf.renumber(&new_slot);
        }
    }

    /// Vectors stored.
    pub fn live(&self) -> usize {
        self.slots.len() - self.dead
    }

    /// The live slots that pass `filter`.
    pub fn passing_slots(&self, filter: &Filter) -> SlotBits {
        let mut bits = self.compile(filter).bits(self.slots.len());
        for (b, live) in bits.iter_mut().zip(&self.live_bits) {
            *b &= live;
        }
        bits.truncate(self.live_bits.len());
        SlotBits(bits)
    }

    /// The chunk IDs of the live slots in `bits`.
    pub fn ids_of(&self, bits: &SlotBits) -> IdSet {
        let mut set = IdSet {
            bits: vec![0; (self.max_id.max(0) as usize) / 64 + 1],
        };
        for (w, mut word) in bits.0.iter().copied().enumerate() {
            while word != 0 {
                let slot = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                if let Some(Some(s)) = self.slots.get(slot) {
                    set.insert(s.id as u64);
                }
            }
        }
        set
    }

    /// The live slots `admit` lets through, as a bitset.
    fn slot_bits(&self, admit: &Admit<'_>) -> SlotBits {
        let n = self.slots.len();
        let mut bits = match admit {
            Admit::All => vec![u64::MAX; n.div_ceil(64)],
            Admit::Slots(bits) => bits.0.clone(),
            Admit::Compiled(compiled) => compiled.bits(n),
        };
        for (b, live) in bits.iter_mut().zip(&self.live_bits) {
            *b &= live;
        }
        bits.truncate(self.live_bits.len());
        SlotBits(bits)
    }

    /// Slots and scores of the best `k` by dot product among those passing `filter`:
    /// exact f32 below [`QUANTIZED_FROM`] vectors; above, the int8 scan of every
    /// vector — or, once the approximate index is built, of the cells nearest to the
    /// query — with the best [`RESCORE_FACTOR`]·k rescored exactly.
    pub fn top(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Vec<(usize, f32)> {
        self.top_allowed(query, k, filter.map_or(Allowed::All, Allowed::Matching))
    }

    /// [`Self::top`] among the chunks `allowed`.
    pub fn top_allowed(&self, query: &[f32], k: usize, allowed: Allowed<'_>) -> Vec<(usize, f32)> {
        let d = self.dimensions;
        if k == 0 || d == 0 || query.len() != d {
            return Vec::new();
        }
        if self.slots.len() < QUANTIZED_FROM {
            return self.exact_top_allowed(query, k, allowed);
        }
        let mut scan = Int8Scan::new(self, query, k * RESCORE_FACTOR, self.admit(allowed));
        let share = self.share_admitted(&scan.admit);
        // A selective filter is tested before the dot product: most rows then cost a
        // filter test (two array reads per leaf) instead of a dot product.
        let prefilter = share < PREFILTER_BELOW;
        match &self.ann {
            None if prefilter => {
                // A selective filter: its slots first (each leaf one pass over its
                // column), then the codes of those slots only.
                let admitted = self.slot_bits(&scan.admit);
                let slots: Vec<usize> = admitted.slots().collect();
                for (j, &slot) in slots.iter().enumerate() {
                    if let Some(ahead) = slots
                        .get(j + PREFETCH_AHEAD)
                        .and_then(|&a| self.quantized.get(a * d..(a + 1) * d))
                    {
                        crate::simd::prefetch(ahead);
                    }
                    if let (Some(codes), Some(scale)) = (
                        self.quantized.get(slot * d..(slot + 1) * d),
                        self.scales.get(slot),
                    ) {
                        scan.offer_admitted(slot, codes, *scale);
                    }
                }
            }
            None => {
                let rows = self.quantized.chunks_exact(d).zip(&self.scales);
                for (slot, (codes, scale)) in rows.enumerate() {
                    scan.offer(slot, codes, *scale);
                }
            }
            Some(ivf) => {
                let budget = self.scan_budget(&scan.admit, share);
                let admitted = prefilter.then(|| self.slot_bits(&scan.admit));
                let mut picked: Vec<u32> = Vec::new();
                let mut read = 0;
                for cell in ivf.probe_order(query) {
                    if read >= budget && scan.full() {
                        break;
                    }
                    let list = &ivf.lists[cell as usize];
                    let rows = list.codes.chunks_exact(d).zip(&list.scales);
                    if let Some(admitted) = &admitted {
                        // The cell's admitted rows first (no branch per row), then
                        // their dot products with each row prefetched a few ahead.
                        picked.clear();
                        picked.resize(list.slots.len(), 0);
                        let mut n = 0;
                        for (i, slot) in list.slots.iter().enumerate() {
                            picked[n] = i as u32;
                            n += usize::from(admitted.contains(*slot as usize));
                        }
                        picked.truncate(n);
                        let row = |i: u32| {
                            let i = i as usize;
                            (
                                &list.codes[i * d..(i + 1) * d],
                                list.scales[i],
                                list.slots[i],
                            )
                        };
                        for (j, &i) in picked.iter().enumerate() {
                            if let Some(&ahead) = picked.get(j + PREFETCH_AHEAD) {
                                crate::simd::prefetch(row(ahead).0);
                            }
                            let (codes, scale, slot) = row(i);
                            scan.offer_admitted(slot as usize, codes, scale);
                        }
                    } else {
                        for (slot, (codes, scale)) in list.slots.iter().zip(rows) {
                            scan.offer(*slot as usize, codes, *scale);
                        }
                    }
                    read += list.len();
                }
            }
        }
        let mut out: Vec<(usize, f32)> = scan
            .heap
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

    /// Vectors an approximate query reads: `scan_fraction` of the live ones (at least
    /// `scan_min`), divided by the square root of the share a filter lets through
    /// (estimated on a sample of the slots): a filter's k best sit deeper in the
    /// ranking, so more cells hold them.
    fn scan_budget(&self, admit: &Admit<'_>, share: f64) -> usize {
        let live = self.live();
        let base = ((live as f64 * self.params.scan_fraction) as usize).max(self.params.scan_min);
        if matches!(admit, Admit::All) {
            return base;
        }
        ((base as f64 / share.sqrt()) as usize).min(live)
    }

    /// The share of the live chunks `admit` lets through, estimated on a sample of
    /// [`FILTER_SAMPLE`] slots (at least one in the sample counts, so never 0).
    fn share_admitted(&self, admit: &Admit<'_>) -> f64 {
        if matches!(admit, Admit::All) || self.slots.is_empty() {
            return 1.0;
        }
        let (mut seen, mut passed) = (0usize, 0usize);
        // Spread by a multiplicative hash, not a stride (which can alias with a
        // metadata value repeating every few chunks).
        let n = self.slots.len() as u64;
        for i in 0..FILTER_SAMPLE as u64 {
            let slot = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % n) as usize;
            if self.slots[slot].is_some() {
                seen += 1;
                passed += usize::from(admit.admits(slot));
            }
        }
        (passed.max(1) as f64 / seen.max(1) as f64).min(1.0)
    }

    /// Replaces the approximate index's parameters (the scan takes them at once; the
    /// cells change at the next build).
    pub fn set_params(&mut self, params: AnnParams) {
        self.params = params;
    }

    /// Exact top `k` (f32 scan of every vector).
    pub fn exact_top(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Vec<(usize, f32)> {
        self.exact_top_allowed(query, k, filter.map_or(Allowed::All, Allowed::Matching))
    }

    fn exact_top_allowed(
        &self,
        query: &[f32],
        k: usize,
        allowed: Allowed<'_>,
    ) -> Vec<(usize, f32)> {
        let d = self.dimensions;
        if k == 0 || d == 0 || query.len() != d {
            return Vec::new();
        }
        let admit = self.admit(allowed);
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
            if !admit.admits(slot) {
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

/// The best `pool` slots by int8 score among those offered that pass the filter.
struct Int8Scan<'a> {
    set: &'a VectorSet,
    query: QueryCodes,
    pool: usize,
    admit: Admit<'a>,
    heap: BinaryHeap<std::cmp::Reverse<(Score, usize)>>,
}

impl<'a> Int8Scan<'a> {
    fn new(set: &'a VectorSet, query: &[f32], pool: usize, admit: Admit<'a>) -> Self {
        Self {
            set,
            query: QueryCodes::new(quantize(query).0),
            pool,
            admit,
            heap: BinaryHeap::with_capacity(pool + 1),
        }
    }

    fn full(&self) -> bool {
        self.heap.len() >= self.pool
    }

    /// Whether a candidate scoring `score` would enter the pool.
    fn enters(&self, score: f32) -> bool {
        !(self.full() && self.heap.peek().is_some_and(|m| score <= m.0 .0 .0))
    }

    /// Scores a slot already known to be live and admitted.
    fn offer_admitted(&mut self, slot: usize, codes: &[i8], scale: f32) {
        let score = self.query.dot(codes) as f32 * scale;
        if self.enters(score) {
            self.push(slot, score);
        }
    }

    fn push(&mut self, slot: usize, score: f32) {
        self.heap.push(std::cmp::Reverse((Score(score), slot)));
        if self.heap.len() > self.pool {
            self.heap.pop();
        }
    }

    /// Scores one slot from its codes; whether it is live and passes the filter is
    /// looked up only for a slot that would enter (a cell's slots are scattered over
    /// the set, and most never do).
    fn offer(&mut self, slot: usize, codes: &[i8], scale: f32) {
        let score = self.query.dot(codes) as f32 * scale;
        if !self.enters(score) {
            return;
        }
        if !matches!(self.set.slots.get(slot), Some(Some(_))) {
            return;
        }
        if !self.admit.admits(slot) {
            return;
        }
        self.push(slot, score);
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

/// Slots sampled to estimate how much of the set a filter lets through.
const FILTER_SAMPLE: usize = 512;

/// A filter letting through less than this share is tested before the dot product
/// in the full scan (reading the codes of the few it admits); a wider one after it,
/// for the few chunks that would become candidates.
const PREFILTER_BELOW: f64 = 0.5;

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
