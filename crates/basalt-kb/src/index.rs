//! The embedded store (`BASALT_EMBEDDED`): one directory per knowledge base holding
//! `chunks.sqlite` (documents with their content hash, chunks with text, metadata and
//! vector — the record) and `bm25/` (the tantivy keyword index derived from it). The
//! vectors and metadata of every chunk are also held in memory for search.
//!
//! Consistency: a document's chunks are replaced in one SQLite transaction (old ones
//! deleted, new ones inserted, the document's hash updated, the generation bumped),
//! so a crash leaves either the old document or the new one, never a mix or a
//! duplicate. The keyword index follows; its commits record the generation they
//! reflect and an index that lags SQLite on open is rebuilt from it.
//!
//! Vector search applies a filter inside the scan, so a filtered query still fills `k`
//! whenever `k` chunks match (the filter is evaluated only for a chunk that would
//! enter the candidates). Below [`QUANTIZED_FROM`] chunks the scan is exact (f32,
//! 8-lane dot products the compiler vectorises); above, it reads per-vector int8 codes
//! (a quarter of the memory traffic) for the best [`RESCORE_FACTOR`]·k candidates and
//! ranks those by their exact f32 scores. From [`AnnParams::build_from`] chunks a
//! background thread builds an inverted-file index ([`crate::ann`]), saved in the
//! `ann` table; from then on a query reads only the cells nearest to it.
//!
//! [`QUANTIZED_FROM`]: crate::vectors::QUANTIZED_FROM
//! [`RESCORE_FACTOR`]: crate::vectors::RESCORE_FACTOR
//! `benches/kb_latency.sh` measures recall@10 of this against exact search.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{params, Connection, OptionalExtension};

use crate::ann::{AnnBuild, AnnParams};
use crate::bm25::{doc_key, Bm25};
use crate::filter::{Filter, Metadata};
use crate::vectors::{Allowed, SlotBits, VectorSet};
use crate::KbError;

fn db_error(e: rusqlite::Error) -> KbError {
    KbError::Index(format!("chunk store: {e}"))
}

/// A chunk to store.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub text: String,
    /// Returned by retrieval instead of `text` (a hierarchical chunk's parent).
    pub context: Option<String>,
    pub metadata: Metadata,
    /// Normalised, `dimensions` long.
    pub vector: Vec<f32>,
}

/// How retrieval ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchType {
    /// Vectors alone.
    Semantic,
    /// Vectors and BM25, fused by their scaled scores (`store::fuse_scores`).
    Hybrid,
    /// BM25 alone (not a Bedrock search type; for benchmarks and diagnostics).
    Keyword,
}

/// A search.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub vector: &'a [f32],
    pub text: &'a str,
    pub k: usize,
    pub filter: Option<&'a Filter>,
    pub search: SearchType,
}

/// A retrieved chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub chunk_id: i64,
    pub data_source_id: String,
    pub uri: String,
    /// The chunk's context (parent) when it has one, else its text.
    pub text: String,
    pub metadata: Metadata,
    pub score: f64,
}

fn group_of(uri: &str, context: Option<&str>, id: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match context {
        Some(c) => (uri, c).hash(&mut h),
        None => id.hash(&mut h),
    }
    h.finish()
}

fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn vector_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// One knowledge base's embedded store.
pub struct EmbeddedIndex {
    dir: PathBuf,
    db: Mutex<Connection>,
    vectors: Arc<RwLock<VectorSet>>,
    bm25: Bm25,
    /// Set while a thread builds the approximate index.
    ann_building: Arc<AtomicBool>,
}

impl std::fmt::Debug for EmbeddedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How many more than `limit / share` a filtered keyword search reads first.
const KEYWORD_OVERFETCH_MARGIN: f64 = 2.0;
/// The most a filtered keyword search reads before scoring every match instead.
const KEYWORD_MAX_OVERFETCH: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents(
    data_source_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    indexed_at INTEGER NOT NULL,
    PRIMARY KEY (data_source_id, uri));
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    data_source_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    context TEXT,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(data_source_id, uri);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ann(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    dimensions INTEGER NOT NULL,
    trained_on INTEGER NOT NULL,
    centroids BLOB NOT NULL,
    assigned BLOB NOT NULL);
INSERT OR IGNORE INTO state(key, value) VALUES ('generation', 0), ('dimensions', 0);
";

impl EmbeddedIndex {
    /// Opens (or creates) the store in `dir` for vectors of `dimensions`; loads every
    /// chunk's vector and metadata, and rebuilds the keyword index if it lags.
    pub fn open(dir: &Path, dimensions: usize) -> Result<Self, KbError> {
        Self::open_with(dir, dimensions, AnnParams::default())
    }

    /// [`Self::open`] with the approximate index's parameters chosen.
    pub fn open_with(dir: &Path, dimensions: usize, params: AnnParams) -> Result<Self, KbError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| KbError::Index(format!("create {}: {e}", dir.display())))?;
        let db = Connection::open(dir.join("chunks.sqlite")).map_err(db_error)?;
        db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(db_error)?;
        // The approximate-index thread writes its build through a connection of its
        // own; a write meeting it waits instead of failing (write transactions begin
        // IMMEDIATE, so the wait happens at BEGIN, where SQLite can wait).
        db.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db_error)?;
        db.execute_batch(SCHEMA).map_err(db_error)?;
        let stored: i64 = db
            .query_row("SELECT value FROM state WHERE key='dimensions'", [], |r| {
                r.get(0)
            })
            .map_err(db_error)?;
        if stored == 0 {
            db.execute(
                "UPDATE state SET value=?1 WHERE key='dimensions'",
                params![dimensions as i64],
            )
            .map_err(db_error)?;
        } else if stored as usize != dimensions {
            return Err(KbError::InvalidConfiguration(format!(
                "the index at {} holds {stored}-dimensional vectors, the embedding model makes {dimensions}",
                dir.display()
            )));
        }
        let bm25 = Bm25::open(&dir.join("bm25"))?;
        let index = Self {
            dir: dir.to_owned(),
            db: Mutex::new(db),
            vectors: Arc::new(RwLock::new(VectorSet::with_params(dimensions, params))),
            bm25,
            ann_building: Arc::new(AtomicBool::new(false)),
        };
        index.load()?;
        index.maintain_ann();
        Ok(index)
    }

    /// Starts a thread that builds the approximate index when the set has grown to
    /// need one (searches and writes go on meanwhile; see [`crate::ann`]). The build is
    /// saved in the chunk store, so a restart reuses it.
    fn maintain_ann(&self) {
        let due = self.vectors.read().is_ok_and(|v| v.ann_due());
        if !due || self.ann_building.swap(true, Ordering::SeqCst) {
            return;
        }
        let vectors = Arc::clone(&self.vectors);
        let building = Arc::clone(&self.ann_building);
        let db_path = self.dir.join("chunks.sqlite");
        let spawned = std::thread::Builder::new()
            .name("kb-ann-build".into())
            .spawn(move || {
                struct Done(Arc<AtomicBool>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::SeqCst);
                    }
                }
                let _done = Done(building);
                let started = std::time::Instant::now();
                let Some(params) = vectors.read().ok().map(|v| v.params()) else {
                    return;
                };
                let Some(build) = AnnBuild::compute(&*vectors, &params) else {
                    return;
                };
                if let Err(e) = save_ann(&db_path, &build) {
                    tracing::warn!(error = %e, "could not save the approximate index; it will be rebuilt on restart");
                }
                if let Ok(mut set) = vectors.write() {
                    set.install_ann(&build);
                }
                tracing::info!(
                    cells = build.centroids.len() / build.dimensions.max(1),
                    vectors = build.trained_on,
                    seconds = started.elapsed().as_secs_f64(),
                    "built the approximate vector index"
                );
            });
        if spawned.is_err() {
            self.ann_building.store(false, Ordering::SeqCst);
        }
    }

    /// Whether a thread is building the approximate index now.
    pub fn ann_building(&self) -> bool {
        self.ann_building.load(Ordering::SeqCst)
    }

    /// Cells of the approximate index in use (0: every query scans all vectors).
    pub fn ann_cells(&self) -> usize {
        self.vectors.read().map(|v| v.ann_lists()).unwrap_or(0)
    }

    fn db(&self) -> Result<std::sync::MutexGuard<'_, Connection>, KbError> {
        self.db
            .lock()
            .map_err(|_| KbError::Index("chunk store lock poisoned".into()))
    }

    /// Loads every chunk's vector and metadata in one pass over the chunk table,
    /// re-adding its text to the keyword index in the same pass when that index lags.
    fn load(&self) -> Result<(), KbError> {
        let db = self.db()?;
        let generation = generation(&db)?;
        let committed = self.bm25.committed_generation()?;
        let mut rebuild = None;
        if committed != Some(generation) {
            if committed.is_some() || generation > 0 {
                tracing::info!(dir = %self.dir.display(), generation, "rebuilding the keyword index from the chunk store");
            }
            let writer = self.bm25.writer()?;
            self.bm25.delete_all(&writer)?;
            rebuild = Some(writer);
        }
        let mut vectors = self
            .vectors
            .write()
            .map_err(|_| KbError::Index("vector lock poisoned".into()))?;
        let d = vectors.dimensions();
        let mut statement = db
            .prepare(
                "SELECT id, data_source_id, uri, context, metadata, vector, text FROM chunks ORDER BY id",
            )
            .map_err(db_error)?;
        let mut rows = statement.query([]).map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            let id: i64 = row.get(0).map_err(db_error)?;
            let uri: String = row.get(2).map_err(db_error)?;
            let context: Option<String> = row.get(3).map_err(db_error)?;
            let metadata: String = row.get(4).map_err(db_error)?;
            let blob: Vec<u8> = row.get(5).map_err(db_error)?;
            let vector = vector_of(&blob);
            if vector.len() != d {
                return Err(KbError::Index(format!(
                    "chunk {id} has a {}-dimensional vector",
                    vector.len()
                )));
            }
            let metadata: Metadata = serde_json::from_str(&metadata).unwrap_or_default();
            vectors.push(
                id,
                &vector,
                &metadata,
                group_of(&uri, context.as_deref(), id),
            );
            if let Some(writer) = &rebuild {
                let ds: String = row.get(1).map_err(db_error)?;
                let text: String = row.get(6).map_err(db_error)?;
                self.bm25
                    .add_chunk(writer, &doc_key(&ds, &uri), id, &text)?;
            }
        }
        if let Some(writer) = rebuild.as_mut() {
            self.bm25.commit(writer, generation)?;
        }
        if let Some(build) = load_ann(&db, d)? {
            vectors.install_ann(&build);
        }
        Ok(())
    }

    /// Live chunks.
    pub fn chunk_count(&self) -> usize {
        self.vectors.read().map(|v| v.live()).unwrap_or(0)
    }

    /// The vector length this store holds.
    pub fn dimensions(&self) -> usize {
        self.vectors.read().map(|v| v.dimensions()).unwrap_or(0)
    }

    /// Every stored document of a data source: uri → content hash.
    pub fn documents(&self, data_source_id: &str) -> Result<HashMap<String, String>, KbError> {
        let db = self.db()?;
        let mut statement = db
            .prepare("SELECT uri, content_sha256 FROM documents WHERE data_source_id=?1")
            .map_err(db_error)?;
        let rows = statement
            .query_map(params![data_source_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// The metadata of a document's first chunk (see [`ChunkStore::document_metadata`]).
    pub fn document_metadata(
        &self,
        data_source_id: &str,
        uri: &str,
    ) -> Result<Option<Metadata>, KbError> {
        let db = self.db()?;
        let text: Option<String> = db
            .query_row(
                "SELECT metadata FROM chunks WHERE data_source_id=?1 AND uri=?2 ORDER BY seq LIMIT 1",
                params![data_source_id, uri],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| KbError::Index(format!("stored metadata: {e}")))
        })
        .transpose()
    }

    /// Chunks stored for one document.
    pub fn document_chunks(&self, data_source_id: &str, uri: &str) -> Result<usize, KbError> {
        let db = self.db()?;
        db.query_row(
            "SELECT COUNT(*) FROM chunks WHERE data_source_id=?1 AND uri=?2",
            params![data_source_id, uri],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as usize)
        .map_err(db_error)
    }

    /// Replaces a document's chunks (all or nothing). Returns how many were stored.
    pub fn put_document(
        &self,
        data_source_id: &str,
        uri: &str,
        content_sha256: &str,
        chunks: Vec<NewChunk>,
    ) -> Result<usize, KbError> {
        crate::store::check_dimensions(&chunks, self.dimensions())?;
        let writer = self.bm25.writer()?;
        let mut db = self.db()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let old = delete_chunk_rows(&tx, data_source_id, uri)?;
        let mut stored = Vec::with_capacity(chunks.len());
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO chunks(data_source_id, uri, seq, text, context, metadata, vector)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(db_error)?;
            for (seq, chunk) in chunks.into_iter().enumerate() {
                let metadata = serde_json::to_string(&chunk.metadata)
                    .map_err(|e| KbError::Index(format!("metadata: {e}")))?;
                insert
                    .execute(params![
                        data_source_id,
                        uri,
                        seq as i64,
                        chunk.text,
                        chunk.context,
                        metadata,
                        vector_bytes(&chunk.vector)
                    ])
                    .map_err(db_error)?;
                stored.push((tx.last_insert_rowid(), chunk));
            }
        }
        tx.execute(
            "INSERT INTO documents(data_source_id, uri, content_sha256, indexed_at)
             VALUES (?1, ?2, ?3, strftime('%s','now'))
             ON CONFLICT(data_source_id, uri) DO UPDATE SET
               content_sha256=excluded.content_sha256, indexed_at=excluded.indexed_at",
            params![data_source_id, uri, content_sha256],
        )
        .map_err(db_error)?;
        bump_generation(&tx)?;
        tx.commit().map_err(db_error)?;
        drop(db);
        let key = doc_key(data_source_id, uri);
        self.bm25.delete_document(&writer, &key);
        let count = stored.len();
        let mut vectors = self
            .vectors
            .write()
            .map_err(|_| KbError::Index("vector lock poisoned".into()))?;
        for id in old {
            vectors.remove(id);
        }
        for (id, chunk) in stored {
            self.bm25.add_chunk(&writer, &key, id, &chunk.text)?;
            let group = group_of(uri, chunk.context.as_deref(), id);
            vectors.push(id, &chunk.vector, &chunk.metadata, group);
        }
        drop(vectors);
        self.maintain_ann();
        Ok(count)
    }

    /// Removes a document and its chunks; false when it was not stored.
    pub fn delete_document(&self, data_source_id: &str, uri: &str) -> Result<bool, KbError> {
        let writer = self.bm25.writer()?;
        let mut db = self.db()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let old = delete_chunk_rows(&tx, data_source_id, uri)?;
        let removed = tx
            .execute(
                "DELETE FROM documents WHERE data_source_id=?1 AND uri=?2",
                params![data_source_id, uri],
            )
            .map_err(db_error)?;
        bump_generation(&tx)?;
        tx.commit().map_err(db_error)?;
        drop(db);
        self.bm25
            .delete_document(&writer, &doc_key(data_source_id, uri));
        let mut vectors = self
            .vectors
            .write()
            .map_err(|_| KbError::Index("vector lock poisoned".into()))?;
        for id in old {
            vectors.remove(id);
        }
        Ok(removed > 0)
    }

    /// Makes every write visible to keyword search (a tantivy commit).
    pub fn flush(&self) -> Result<(), KbError> {
        let mut writer = self.bm25.writer()?;
        let generation = generation(&*self.db()?)?;
        if self.bm25.committed_generation()? == Some(generation) {
            return Ok(());
        }
        self.bm25.commit(&mut writer, generation)
    }

    /// The best `k` chunks (children of one parent count once).
    pub fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>, KbError> {
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let vectors = self
            .vectors
            .read()
            .map_err(|_| KbError::Index("vector lock poisoned".into()))?;
        // Over-fetch so that merging children of one parent still leaves k.
        let pool = (query.k * 4).max(50);
        // The keyword half needs the passing chunks as a set; the vector half then
        // tests membership in it instead of evaluating the filter again.
        let slots = match query.search {
            SearchType::Semantic => None,
            _ => query.filter.map(|f| vectors.passing_slots(f)),
        };
        let semantic = match (query.search, &slots) {
            (SearchType::Keyword, _) => Vec::new(),
            (_, Some(slots)) => vectors.top_allowed(query.vector, pool, Allowed::Slots(slots)),
            _ => vectors.top(query.vector, pool, query.filter),
        };
        let keyword = match query.search {
            SearchType::Semantic => Vec::new(),
            _ => {
                // Chunks deleted since the last commit may still be in the keyword
                // index; they have no slot and drop out here.
                let hits = match &slots {
                    None => self.bm25.top(query.text, pool)?,
                    Some(slots) => self.keyword_in(&vectors, query.text, pool, slots)?,
                };
                hits.into_iter()
                    .filter_map(|(id, score)| vectors.slot_of.get(&id).map(|s| (*s, score)))
                    .collect()
            }
        };
        let ranked: Vec<(usize, f64)> = match query.search {
            SearchType::Semantic => semantic.into_iter().map(|(s, v)| (s, v as f64)).collect(),
            SearchType::Keyword => keyword.into_iter().map(|(s, v)| (s, v as f64)).collect(),
            SearchType::Hybrid => {
                let semantic: Vec<(usize, f64)> =
                    semantic.into_iter().map(|(s, v)| (s, v as f64)).collect();
                let keyword: Vec<(usize, f64)> =
                    keyword.into_iter().map(|(s, v)| (s, v as f64)).collect();
                crate::store::fuse_scores(&semantic, &keyword, crate::store::HYBRID_VECTOR_WEIGHT)
            }
        };
        let mut seen = HashSet::new();
        let mut picked = Vec::new();
        for (slot, score) in ranked {
            let Some(entry) = &vectors.slots[slot] else {
                continue;
            };
            if seen.insert(entry.group) {
                picked.push((entry.id, score));
            }
            if picked.len() == query.k {
                break;
            }
        }
        drop(vectors);
        self.hits(picked)
    }

    /// The best `limit` keyword hits among the chunks in `slots`. The unfiltered best
    /// `limit / share` (times a margin) are read first — tantivy skips blocks of
    /// postings that cannot enter them — and the first `limit` of them in `slots` are
    /// the answer whenever there are that many: they are exactly the filter's best,
    /// the ranking being the same. Only when fewer pass is every matching posting
    /// scored and tested.
    fn keyword_in(
        &self,
        vectors: &VectorSet,
        text: &str,
        limit: usize,
        slots: &SlotBits,
    ) -> Result<Vec<(i64, f32)>, KbError> {
        let share = slots.count() as f64 / vectors.live().max(1) as f64;
        let wide = ((limit as f64 / share.max(1e-6)) * KEYWORD_OVERFETCH_MARGIN) as usize;
        if wide <= KEYWORD_MAX_OVERFETCH {
            let top = self.bm25.top(text, wide)?;
            let read = top.len();
            let passing: Vec<(i64, f32)> = top
                .into_iter()
                .filter(|(id, _)| {
                    vectors
                        .slot_of
                        .get(id)
                        .is_some_and(|slot| slots.contains(*slot))
                })
                .take(limit)
                .collect();
            // Fewer read than asked means every match was read: the answer is whole.
            if passing.len() >= limit || read < wide {
                return Ok(passing);
            }
        }
        self.bm25
            .top_in(text, limit, Arc::new(vectors.ids_of(slots)))
    }

    /// Chunk IDs of the exact top `k` by vector alone (for measuring recall).
    pub fn exact_vector_search(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<i64>, KbError> {
        let vectors = self
            .vectors
            .read()
            .map_err(|_| KbError::Index("vector lock poisoned".into()))?;
        Ok(vectors
            .exact_top(vector, k, filter)
            .into_iter()
            .filter_map(|(slot, _)| vectors.id_of(slot))
            .collect())
    }

    fn hits(&self, picked: Vec<(i64, f64)>) -> Result<Vec<Hit>, KbError> {
        let db = self.db()?;
        let mut statement = db
            .prepare_cached(
                "SELECT data_source_id, uri, text, context, metadata FROM chunks WHERE id=?1",
            )
            .map_err(db_error)?;
        let mut out = Vec::with_capacity(picked.len());
        for (id, score) in picked {
            let row = statement
                .query_row(params![id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .optional()
                .map_err(db_error)?;
            if let Some((data_source_id, uri, text, context, metadata)) = row {
                out.push(Hit {
                    chunk_id: id,
                    data_source_id,
                    uri,
                    text: context.unwrap_or(text),
                    metadata: serde_json::from_str(&metadata).unwrap_or_default(),
                    score,
                });
            }
        }
        Ok(out)
    }
}

impl crate::store::ChunkStore for EmbeddedIndex {
    fn documents(&self, data_source_id: &str) -> Result<HashMap<String, String>, KbError> {
        EmbeddedIndex::documents(self, data_source_id)
    }

    fn document_metadata(
        &self,
        data_source_id: &str,
        uri: &str,
    ) -> Result<Option<Metadata>, KbError> {
        EmbeddedIndex::document_metadata(self, data_source_id, uri)
    }

    fn put_document(
        &self,
        data_source_id: &str,
        uri: &str,
        content_sha256: &str,
        chunks: Vec<NewChunk>,
    ) -> Result<usize, KbError> {
        EmbeddedIndex::put_document(self, data_source_id, uri, content_sha256, chunks)
    }

    fn delete_document(&self, data_source_id: &str, uri: &str) -> Result<bool, KbError> {
        EmbeddedIndex::delete_document(self, data_source_id, uri)
    }

    fn flush(&self) -> Result<(), KbError> {
        EmbeddedIndex::flush(self)
    }

    fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>, KbError> {
        EmbeddedIndex::search(self, query)
    }

    /// The files go with the knowledge base's directory; nothing lives elsewhere.
    fn destroy(&self) -> Result<(), KbError> {
        Ok(())
    }
}

/// Writes a build of the approximate index (centroids as f32, then the cell of each
/// chunk as `(id i64, cell u32)` little-endian pairs) over the previous one.
fn save_ann(db_path: &Path, build: &AnnBuild) -> Result<(), KbError> {
    // Never creates the file: a knowledge base deleted during the build stays gone.
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = Connection::open_with_flags(db_path, flags).map_err(db_error)?;
    db.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(db_error)?;
    let mut assigned = Vec::with_capacity(build.assigned.len() * 12);
    for (id, cell) in &build.assigned {
        assigned.extend_from_slice(&id.to_le_bytes());
        assigned.extend_from_slice(&cell.to_le_bytes());
    }
    db.execute(
        "INSERT INTO ann(id, dimensions, trained_on, centroids, assigned) VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET dimensions=excluded.dimensions,
           trained_on=excluded.trained_on, centroids=excluded.centroids, assigned=excluded.assigned",
        params![
            build.dimensions as i64,
            build.trained_on as i64,
            vector_bytes(&build.centroids),
            assigned
        ],
    )
    .map(|_| ())
    .map_err(db_error)
}

/// The saved build, if there is one for vectors of `dimensions`.
fn load_ann(db: &Connection, dimensions: usize) -> Result<Option<AnnBuild>, KbError> {
    let row = db
        .query_row(
            "SELECT dimensions, trained_on, centroids, assigned FROM ann WHERE id=1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(db_error)?;
    let Some((d, trained_on, centroids, assigned)) = row else {
        return Ok(None);
    };
    if d as usize != dimensions || centroids.len() % (4 * dimensions.max(1)) != 0 {
        return Ok(None);
    }
    let assigned = assigned
        .chunks_exact(12)
        .map(|b| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&b[..8]);
            (
                i64::from_le_bytes(id),
                u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            )
        })
        .collect();
    Ok(Some(AnnBuild {
        dimensions,
        centroids: vector_of(&centroids),
        assigned,
        trained_on: trained_on.max(0) as usize,
    }))
}

fn generation(db: &Connection) -> Result<i64, KbError> {
    db.query_row("SELECT value FROM state WHERE key='generation'", [], |r| {
        r.get(0)
    })
    .map_err(db_error)
}

fn bump_generation(tx: &rusqlite::Transaction<'_>) -> Result<(), KbError> {
    tx.execute("UPDATE state SET value=value+1 WHERE key='generation'", [])
        .map(|_| ())
        .map_err(db_error)
}

/// Deletes a document's chunk rows; returns their IDs (to drop from memory).
fn delete_chunk_rows(
    tx: &rusqlite::Transaction<'_>,
    ds: &str,
    uri: &str,
) -> Result<Vec<i64>, KbError> {
    let old = old_chunk_ids(tx, ds, uri)?;
    tx.execute(
        "DELETE FROM chunks WHERE data_source_id=?1 AND uri=?2",
        params![ds, uri],
    )
    .map_err(db_error)?;
    Ok(old)
}

fn old_chunk_ids(tx: &rusqlite::Transaction<'_>, ds: &str, uri: &str) -> Result<Vec<i64>, KbError> {
    let mut statement = tx
        .prepare("SELECT id FROM chunks WHERE data_source_id=?1 AND uri=?2")
        .map_err(db_error)?;
    let ids = statement
        .query_map(params![ds, uri], |r| r.get(0))
        .map_err(db_error)?
        .collect::<Result<Vec<i64>, _>>()
        .map_err(db_error);
    ids
}
