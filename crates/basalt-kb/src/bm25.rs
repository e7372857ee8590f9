//! The keyword half of the embedded store: a tantivy index (BM25, English stemming)
//! over the same chunks as the vectors, one tantivy document per chunk, keyed by the
//! chunk's id. SQLite is the record; this index is derived from it. Every commit
//! carries the SQLite generation it reflects as its payload, so an index that missed
//! writes (a crash between the two) is found on open and rebuilt from SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::vectors::IdSet;
use crate::KbError;

fn bm25_error(e: tantivy::TantivyError) -> KbError {
    KbError::Index(format!("keyword index: {e}"))
}

pub(crate) struct Bm25 {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    chunk_id: Field,
    doc_key: Field,
    text: Field,
}

/// The tantivy term that names all chunks of one document.
pub(crate) fn doc_key(data_source_id: &str, uri: &str) -> String {
    format!("{data_source_id}\u{1f}{uri}")
}

impl Bm25 {
    pub(crate) fn open(dir: &Path) -> Result<Self, KbError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| KbError::Index(format!("create {}: {e}", dir.display())))?;
        let mut schema = Schema::builder();
        let chunk_id = schema.add_u64_field("chunk_id", INDEXED | FAST);
        let doc_key = schema.add_text_field("doc_key", STRING);
        let text = schema.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(tantivy::schema::IndexRecordOption::WithFreqsAndPositions),
            ),
        );
        let schema = schema.build();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| KbError::Index(format!("keyword index at {}: {e}", dir.display())))?;
        let index = Index::open_or_create(directory, schema).map_err(bm25_error)?;
        let writer = index
            .writer_with_num_threads(1, 40_000_000)
            .map_err(bm25_error)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(bm25_error)?;
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            chunk_id,
            doc_key,
            text,
        })
    }

    /// The SQLite generation the last commit reflects.
    pub(crate) fn committed_generation(&self) -> Result<Option<i64>, KbError> {
        let metas = self.index.load_metas().map_err(bm25_error)?;
        Ok(metas.payload.and_then(|p| p.parse().ok()))
    }

    pub(crate) fn writer(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, IndexWriter<TantivyDocument>>, KbError> {
        self.writer
            .lock()
            .map_err(|_| KbError::Index("keyword index writer poisoned".into()))
    }

    pub(crate) fn delete_document(&self, writer: &IndexWriter<TantivyDocument>, key: &str) {
        writer.delete_term(Term::from_field_text(self.doc_key, key));
    }

    pub(crate) fn add_chunk(
        &self,
        writer: &IndexWriter<TantivyDocument>,
        key: &str,
        id: i64,
        text: &str,
    ) -> Result<(), KbError> {
        writer
            .add_document(doc!(
                self.chunk_id => id as u64,
                self.doc_key => key,
                self.text => text,
            ))
            .map(|_| ())
            .map_err(bm25_error)
    }

    pub(crate) fn delete_all(&self, writer: &IndexWriter<TantivyDocument>) -> Result<(), KbError> {
        writer
            .delete_all_documents()
            .map(|_| ())
            .map_err(bm25_error)
    }

    /// Commits what the writer holds as reflecting `generation`, and shows it to searches.
    pub(crate) fn commit(
        &self,
        writer: &mut IndexWriter<TantivyDocument>,
        generation: i64,
    ) -> Result<(), KbError> {
        let mut prepared = writer.prepare_commit().map_err(bm25_error)?;
        prepared.set_payload(&generation.to_string());
        prepared.commit().map_err(bm25_error)?;
        self.reader.reload().map_err(bm25_error)
    }

    /// Chunk ids and BM25 scores of the best `limit` chunks (tantivy skips blocks of
    /// postings that cannot enter them).
    pub(crate) fn top(&self, query: &str, limit: usize) -> Result<Vec<(i64, f32)>, KbError> {
        let searcher = self.reader.searcher();
        let parsed = self.parse(query);
        let top = searcher
            .search(&parsed, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(bm25_error)?;
        self.chunk_ids(&searcher, top)
    }

    /// Chunk ids and BM25 scores of the best `limit` chunks of those in `keep`: every
    /// matching posting scored and tested.
    pub(crate) fn top_in(
        &self,
        query: &str,
        limit: usize,
        keep: Arc<IdSet>,
    ) -> Result<Vec<(i64, f32)>, KbError> {
        let searcher = self.reader.searcher();
        let parsed = self.parse(query);
        let collector = FilterCollector::new(
            "chunk_id".to_owned(),
            move |id: u64| keep.contains(id),
            TopDocs::with_limit(limit.max(1)).order_by_score(),
        );
        let top = searcher.search(&parsed, &collector).map_err(bm25_error)?;
        self.chunk_ids(&searcher, top)
    }

    fn parse(&self, query: &str) -> Box<dyn tantivy::query::Query> {
        let parser = QueryParser::for_index(&self.index, vec![self.text]);
        parser.parse_query_lenient(query).0
    }

    fn chunk_ids(
        &self,
        searcher: &tantivy::Searcher,
        top: Vec<(f32, tantivy::DocAddress)>,
    ) -> Result<Vec<(i64, f32)>, KbError> {
        let mut out = Vec::with_capacity(top.len());
        let mut columns = std::collections::HashMap::new();
        for (score, address) in top {
            let column = match columns.entry(address.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    searcher
                        .segment_reader(address.segment_ord)
                        .fast_fields()
                        .u64("chunk_id")
                        .map_err(bm25_error)?,
                ),
            };
            if let Some(id) = column.first(address.doc_id) {
                out.push((id as i64, score));
            }
        }
        Ok(out)
    }
}
