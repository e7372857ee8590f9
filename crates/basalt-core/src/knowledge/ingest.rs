//! Ingestion: a job lists its data source, reads each document with its metadata
//! sidecar, skips those whose content and metadata hashes are unchanged, parses,
//! chunks and embeds the rest, and replaces their chunks (one transaction each);
//! documents gone from the source are deleted. A crash leaves every document either
//! fully indexed or as it was, and the next job, comparing hashes, completes the rest.
//! Direct ingestion (IngestKnowledgeBaseDocuments) runs the same per-document path.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_kb::chunking::{self, Chunking};
use basalt_kb::filter::Metadata;
use basalt_kb::index::NewChunk;
use basalt_kb::metadata::{parse_sidecar, SIDECAR_SUFFIX};
use basalt_kb::parse::{extract_text, Format};
use basalt_kb::store::ChunkStore;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::KnowledgeService;
use super::{
    kb_error, now_ms, DataSource, IngestionJob, IngestionStatus, KnowledgeBase, Location,
    ResumePoint,
};
use crate::keys::Principal;
use crate::service::CallContext;
use crate::CoreError;

/// Most failure reasons kept on one job.
const MAX_FAILURE_REASONS: usize = 50;

/// Metadata attribute names Bedrock sets on every chunk.
pub const SOURCE_URI_KEY: &str = "x-amz-bedrock-kb-source-uri";
pub const DATA_SOURCE_KEY: &str = "x-amz-bedrock-kb-data-source-id";
pub const CHUNK_ID_KEY: &str = "x-amz-bedrock-kb-chunk-id";

/// Where one document's bytes are.
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    Object(String, crate::s3::S3Object),
    /// A crawled page, already fetched.
    Fetched(Vec<u8>),
    /// A page the crawler could not fetch, with the reason.
    Unreachable(String),
}

#[derive(Debug, Clone)]
struct SourceDocument {
    uri: String,
    origin: Origin,
    sidecar: Option<Origin>,
    /// The format when the name does not tell it (crawled pages).
    format: Option<Format>,
}

/// A document ready to index.
pub struct DocumentInput {
    pub uri: String,
    pub format: Format,
    pub bytes: Vec<u8>,
    pub metadata: Metadata,
    /// Content and metadata hashes, `content:metadata`.
    pub hash: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `content:metadata` hash of a document.
pub fn document_hash(content: &[u8], metadata: &[u8]) -> String {
    format!("{}:{}", sha256_hex(content), sha256_hex(metadata))
}

/// What happened to one document of a job.
enum Outcome {
    New,
    Modified,
    MetadataModified,
    Unchanged,
    Skipped,
    Failed(String),
}

/// Runs an ingestion job to its end and records it; returns the final status.
pub(crate) async fn run_job(
    service: Arc<KnowledgeService>,
    principal: Option<Principal>,
    kb: KnowledgeBase,
    ds: DataSource,
    job: IngestionJob,
    stop: Arc<AtomicBool>,
) -> IngestionStatus {
    let job_id = job.ingestion_job_id.clone();
    let shared = Arc::new(Mutex::new(job));
    let result = run(&service, principal, &kb, &ds, &shared, &stop).await;
    let mut job = match shared.lock() {
        Ok(j) => j.clone(),
        Err(p) => p.into_inner().clone(),
    };
    match result {
        Ok(()) if stop.load(Ordering::SeqCst) => job.status = IngestionStatus::Stopped,
        Ok(()) => job.status = IngestionStatus::Complete,
        Err(e) => {
            tracing::warn!(job = %job_id, error = %e, "ingestion job failed");
            job.status = IngestionStatus::Failed;
            job.failure_reasons.push(e.to_string());
        }
    }
    job.updated_ms = now_ms();
    job.resume = None;
    if let Err(e) = service.save_job(&job) {
        tracing::error!(job = %job_id, error = %e, "cannot record the end of an ingestion job");
    }
    job.status
}

async fn run(
    service: &Arc<KnowledgeService>,
    principal: Option<Principal>,
    kb: &KnowledgeBase,
    ds: &DataSource,
    shared: &Arc<Mutex<IngestionJob>>,
    stop: &Arc<AtomicBool>,
) -> Result<(), CoreError> {
    let update = |f: &dyn Fn(&mut IngestionJob)| -> Result<(), CoreError> {
        let job = {
            let mut job = shared
                .lock()
                .map_err(|_| CoreError::Internal("job state poisoned".into()))?;
            f(&mut job);
            job.updated_ms = now_ms();
            job.clone()
        };
        service.save_job(&job)
    };
    // A job resumed after its server stopped carries on from its resume point; one
    // stopped before it had one starts again (it had counted nothing yet).
    let resume = shared
        .lock()
        .map_err(|_| CoreError::Internal("job state poisoned".into()))?
        .resume
        .clone();
    update(&|j| {
        j.status = IngestionStatus::InProgress;
        if resume.is_none() {
            j.statistics = Default::default();
            j.failure_reasons.clear();
        }
    })?;
    let index = service.index(kb)?;
    let chunking = ds.chunking();
    let location = ds.location.clone();
    let (mut documents, sidecars_scanned, notes) = list(service, &location, stop).await?;
    // One order for every run of a job, so a resume point names a prefix.
    documents.sort_by(|a, b| a.uri.cmp(&b.uri));
    if resume.is_none() {
        update(&|j| {
            j.statistics.number_of_metadata_documents_scanned = sidecars_scanned;
            j.failure_reasons.extend(notes.iter().cloned());
        })?;
    }
    let stored = {
        let index = Arc::clone(&index);
        let ds_id = ds.data_source_id.clone();
        tokio::task::spawn_blocking(move || index.documents(&ds_id))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?
            .map_err(kb_error)?
    };
    let seen: HashSet<String> = documents.iter().map(|d| d.uri.clone()).collect();
    let resume = resume.unwrap_or_default();
    if let Some(done) = &resume.done_through {
        documents.retain(|d| d.uri > *done);
    }
    // The store's hash of each document before this job touched it: what a resumed
    // run compares with to count documents the stopped run indexed.
    let earlier: Arc<HashMap<String, Option<String>>> =
        Arc::new(resume.started.into_iter().collect());
    let order: Vec<String> = documents.iter().map(|d| d.uri.clone()).collect();
    let stored = Arc::new(stored);
    let limit = service.config().max_document_bytes;
    let concurrency = service.config().ingestion_concurrency.max(1);
    let job_id = shared
        .lock()
        .map(|j| j.ingestion_job_id.clone())
        .unwrap_or_default();
    // The documents that may start before the next record of progress: the next
    // `concurrency` after the last one counted (the stream below yields in order and
    // holds at most `concurrency` documents).
    let window = |next: usize| -> Vec<(String, Option<String>)> {
        order
            .iter()
            .skip(next)
            .take(concurrency)
            .map(|uri| {
                let before = match earlier.get(uri) {
                    Some(hash) => hash.clone(),
                    None => stored.get(uri).cloned(),
                };
                (uri.clone(), before)
            })
            .collect()
    };
    let done_before = resume.done_through.clone();
    update(&|j| {
        j.resume = Some(ResumePoint {
            done_through: done_before.clone(),
            started: window(0),
        })
    })?;
    let mut position = 0;
    let mut outcomes = futures::stream::iter(documents)
        .map(|doc| {
            let service = Arc::clone(service);
            let index = Arc::clone(&index);
            let stored = Arc::clone(&stored);
            let chunking = chunking.clone();
            let principal = principal.clone();
            let kb = kb.clone();
            let ds_id = ds.data_source_id.clone();
            let stop = Arc::clone(stop);
            let job_id = job_id.clone();
            let earlier = Arc::clone(&earlier);
            async move {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                let uri = doc.uri.clone();
                let mut outcome = ingest_source_document(
                    &service, principal, &kb, &index, &ds_id, &chunking, &stored, doc, limit,
                    &job_id,
                )
                .await;
                if let (Outcome::Unchanged, Some(before)) = (&outcome, earlier.get(&uri)) {
                    outcome = indexed_by_the_stopped_run(before.as_deref(), stored.get(&uri));
                }
                Some((uri, outcome))
            }
        })
        .buffered(concurrency);
    while let Some(next) = outcomes.next().await {
        position += 1;
        let Some((uri, outcome)) = next else { continue };
        let started = window(position);
        update(&|j| {
            j.resume = Some(ResumePoint {
                done_through: Some(uri.clone()),
                started: started.clone(),
            });
            let s = &mut j.statistics;
            s.number_of_documents_scanned += 1;
            match &outcome {
                Outcome::New => s.number_of_new_documents_indexed += 1,
                Outcome::Modified => s.number_of_modified_documents_indexed += 1,
                Outcome::MetadataModified => s.number_of_metadata_documents_modified += 1,
                Outcome::Unchanged => {}
                Outcome::Skipped => s.number_of_documents_skipped += 1,
                Outcome::Failed(reason) => {
                    s.number_of_documents_failed += 1;
                    if j.failure_reasons.len() < MAX_FAILURE_REASONS {
                        j.failure_reasons.push(format!("{uri}: {reason}"));
                    }
                }
            }
        })?;
    }
    drop(outcomes);
    if stop.load(Ordering::SeqCst) {
        flush(&index).await?;
        return Ok(());
    }
    let gone: Vec<String> = stored
        .keys()
        .filter(|u| !seen.contains(*u))
        .cloned()
        .collect();
    for uri in gone {
        let index = Arc::clone(&index);
        let ds_id = ds.data_source_id.clone();
        let removed = tokio::task::spawn_blocking(move || index.delete_document(&ds_id, &uri))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?
            .map_err(kb_error)?;
        if removed {
            update(&|j| j.statistics.number_of_documents_deleted += 1)?;
        }
    }
    flush(&index).await
}

async fn flush(index: &Arc<dyn ChunkStore>) -> Result<(), CoreError> {
    let index = Arc::clone(index);
    tokio::task::spawn_blocking(move || index.flush())
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
        .map_err(kb_error)
}

fn matches_prefixes(relative: &str, prefixes: &[String]) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| relative.starts_with(p.as_str()))
}

/// The documents of a location (sidecars attached to their documents), how many
/// sidecars were found, and notes for the job's failure reasons.
async fn list(
    service: &Arc<KnowledgeService>,
    location: &Location,
    stop: &AtomicBool,
) -> Result<(Vec<SourceDocument>, u64, Vec<String>), CoreError> {
    if let Location::Web(source) = location {
        let settings = &service.config().web;
        let spec = super::web::crawl_spec(source, settings.max_depth)?;
        let crawl = super::web::crawl(
            &spec,
            &settings.allowed_hosts,
            service.config().max_document_bytes,
            stop,
        )
        .await?;
        let mut notes = Vec::new();
        if crawl.truncated {
            notes.push(format!(
                "crawlerLimits.maxPages ({}) was reached; pages beyond it were not crawled",
                spec.max_pages
            ));
        }
        let mut docs: Vec<SourceDocument> = crawl
            .pages
            .into_iter()
            .map(|p| SourceDocument {
                uri: p.url,
                origin: Origin::Fetched(p.body),
                sidecar: None,
                format: Some(p.format),
            })
            .collect();
        docs.extend(
            crawl
                .failed
                .into_iter()
                .map(|(url, reason)| SourceDocument {
                    uri: url,
                    origin: Origin::Unreachable(reason),
                    sidecar: None,
                    format: Some(Format::Html),
                }),
        );
        return Ok((docs, 0, notes));
    }
    let (documents, sidecars) = list_stored(service, location).await?;
    Ok((documents, sidecars, Vec::new()))
}

async fn list_stored(
    service: &Arc<KnowledgeService>,
    location: &Location,
) -> Result<(Vec<SourceDocument>, u64), CoreError> {
    match location {
        Location::Folder { uri, prefixes } => {
            let root = service.core.allowed_paths().existing(uri)?;
            if !root.is_dir() {
                return Err(CoreError::Validation(format!("{uri} is not a directory")));
            }
            let prefixes = prefixes.clone();
            tokio::task::spawn_blocking(move || list_folder(&root, &prefixes))
                .await
                .map_err(|e| CoreError::Internal(e.to_string()))?
        }
        Location::Bucket { uri, prefixes, .. } => {
            let location = service.core.s3().check(uri)?;
            let objects = service.core.s3().objects_under(&location).await?;
            let keys: HashMap<String, crate::s3::S3Object> =
                objects.iter().map(|o| (o.key.clone(), o.clone())).collect();
            let mut docs = Vec::new();
            let mut sidecars = 0;
            for object in objects {
                let relative = object
                    .key
                    .strip_prefix(location.key.as_str())
                    .unwrap_or(&object.key);
                if !matches_prefixes(&object.key, prefixes) && !matches_prefixes(relative, prefixes)
                {
                    continue;
                }
                if object.key.ends_with(SIDECAR_SUFFIX) {
                    sidecars += 1;
                    continue;
                }
                let sidecar = keys
                    .get(&format!("{}{SIDECAR_SUFFIX}", object.key))
                    .map(|s| Origin::Object(location.bucket.clone(), s.clone()));
                docs.push(SourceDocument {
                    uri: location.uri_of(&object.key),
                    origin: Origin::Object(location.bucket.clone(), object),
                    sidecar,
                    format: None,
                });
            }
            Ok((docs, sidecars))
        }
        Location::Custom | Location::Web { .. } => Ok((Vec::new(), 0)),
    }
}

fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn list_folder(root: &Path, prefixes: &[String]) -> Result<(Vec<SourceDocument>, u64), CoreError> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            CoreError::Validation(format!("{} cannot be read: {e}", file_uri(&dir)))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            // Symlinks are followed only when they stay inside the folder (which is
            // inside a permitted directory; the reader resolves each again).
            let Ok(resolved) = std::fs::canonicalize(&path) else {
                continue;
            };
            if !resolved.starts_with(root) {
                tracing::warn!(path = %path.display(), "a symlink leaving the data source folder is ignored");
                continue;
            }
            if resolved.is_dir() {
                if entry.file_type().is_ok_and(|t| !t.is_symlink()) {
                    stack.push(path);
                }
            } else if resolved.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    let names: HashSet<PathBuf> = files.iter().cloned().collect();
    let mut docs = Vec::new();
    let mut sidecars = 0;
    for path in files {
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if !matches_prefixes(&relative, prefixes) {
            continue;
        }
        if relative.ends_with(SIDECAR_SUFFIX) {
            sidecars += 1;
            continue;
        }
        let sidecar_path = PathBuf::from(format!("{}{SIDECAR_SUFFIX}", path.display()));
        let sidecar = names
            .contains(&sidecar_path)
            .then(|| Origin::File(sidecar_path));
        docs.push(SourceDocument {
            uri: file_uri(&path),
            origin: Origin::File(path),
            sidecar,
            format: None,
        });
    }
    Ok((docs, sidecars))
}

async fn read(service: &KnowledgeService, origin: &Origin, limit: u64) -> Result<Vec<u8>, String> {
    match origin {
        Origin::File(listed) => {
            // Resolved again at reading time: a link swapped in since the listing is
            // followed and checked here, through the one shared check.
            let path = &service
                .core
                .allowed_paths()
                .resolve(listed)
                .map_err(|e| e.to_string())?;
            let size = tokio::fs::metadata(path)
                .await
                .map_err(|e| e.to_string())?
                .len();
            if size > limit {
                return Err(format!(
                    "the document is {size} bytes; the limit is {limit}"
                ));
            }
            tokio::fs::read(path).await.map_err(|e| e.to_string())
        }
        Origin::Object(bucket, object) => service
            .core
            .s3()
            .read(bucket, object, limit)
            .await
            .map_err(|e| e.to_string()),
        Origin::Fetched(body) => Ok(body.clone()),
        Origin::Unreachable(reason) => Err(reason.clone()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn ingest_source_document(
    service: &Arc<KnowledgeService>,
    principal: Option<Principal>,
    kb: &KnowledgeBase,
    index: &Arc<dyn ChunkStore>,
    ds_id: &str,
    chunking: &Chunking,
    stored: &HashMap<String, String>,
    doc: SourceDocument,
    limit: u64,
    job_id: &str,
) -> Outcome {
    let Some(format) = doc.format.or_else(|| Format::of_name(&doc.uri)) else {
        return Outcome::Skipped;
    };
    let bytes = match read(service, &doc.origin, limit).await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(e),
    };
    let sidecar = match &doc.sidecar {
        Some(origin) => {
            match read(
                service,
                origin,
                basalt_kb::metadata::MAX_SIDECAR_BYTES as u64,
            )
            .await
            {
                Ok(b) => b,
                Err(e) => return Outcome::Failed(format!("metadata file: {e}")),
            }
        }
        None => Vec::new(),
    };
    let hash = document_hash(&bytes, &sidecar);
    let previous = stored.get(&doc.uri);
    if previous == Some(&hash) {
        return Outcome::Unchanged;
    }
    let metadata = if sidecar.is_empty() {
        Metadata::new()
    } else {
        match parse_sidecar(&sidecar) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    };
    let input = DocumentInput {
        uri: doc.uri.clone(),
        format,
        bytes,
        metadata,
        hash: hash.clone(),
    };
    let ctx = || {
        CallContext::new(
            principal.clone(),
            job_id.to_owned(),
            "KnowledgeBaseIngestion",
        )
    };
    match index_document(service, &ctx, kb, index, ds_id, chunking, input).await {
        Ok(_) => match previous {
            None => Outcome::New,
            Some(old) if old.split(':').next() == hash.split(':').next() => {
                Outcome::MetadataModified
            }
            Some(_) => Outcome::Modified,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// What a document a stopped run of this job may have indexed counts as, when the
/// resumed run finds it unchanged: `before` is the store's hash before the job, `now`
/// its hash now. Equal hashes mean the document was unchanged all along.
fn indexed_by_the_stopped_run(before: Option<&str>, now: Option<&String>) -> Outcome {
    let Some(now) = now else {
        return Outcome::Unchanged;
    };
    match before {
        Some(b) if b == now => Outcome::Unchanged,
        None => Outcome::New,
        Some(b) if b.split(':').next() == now.split(':').next() => Outcome::MetadataModified,
        Some(_) => Outcome::Modified,
    }
}

/// Parses, chunks, embeds and stores one document; returns its chunk count.
pub(crate) async fn index_document(
    service: &Arc<KnowledgeService>,
    ctx: &(dyn Fn() -> CallContext + Send + Sync),
    kb: &KnowledgeBase,
    index: &Arc<dyn ChunkStore>,
    ds_id: &str,
    chunking: &Chunking,
    input: DocumentInput,
) -> Result<usize, CoreError> {
    let DocumentInput {
        uri,
        format,
        bytes,
        mut metadata,
        hash,
    } = input;
    let text = tokio::task::spawn_blocking(move || extract_text(format, &bytes))
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
        .map_err(kb_error)?;
    let text = Arc::new(text);
    // NONE keeps the text whole: no tokens to count.
    let spans = if *chunking == Chunking::None {
        Vec::new()
    } else {
        let core = Arc::clone(&service.core);
        let model = kb.embedding_model_id.clone();
        let text = Arc::clone(&text);
        tokio::task::spawn_blocking(move || core.embedding_token_spans(&model, &text))
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))??
    };
    let chunks = match chunking {
        Chunking::Semantic {
            max_tokens,
            buffer_size,
            breakpoint_percentile,
        } => {
            let sentences = chunking::sentences(&text);
            let windows = chunking::semantic_windows(&text, &sentences, *buffer_size);
            let vectors = embed_all(service, ctx, &kb.embedding_model_id, windows).await?;
            chunking::semantic_chunks(
                &text,
                &sentences,
                &vectors,
                &spans,
                *max_tokens,
                *breakpoint_percentile,
            )
        }
        other => other.chunk(&text, &spans),
    };
    if chunks.is_empty() {
        return Err(CoreError::Validation("the document has no text".into()));
    }
    metadata.insert(SOURCE_URI_KEY.into(), Value::String(uri.clone()));
    metadata.insert(DATA_SOURCE_KEY.into(), Value::String(ds_id.to_owned()));
    let vectors = embed_all(
        service,
        ctx,
        &kb.embedding_model_id,
        chunks.iter().map(|c| c.text.clone()).collect(),
    )
    .await?;
    let new_chunks: Vec<NewChunk> = chunks
        .into_iter()
        .zip(vectors)
        .map(|(c, vector)| NewChunk {
            text: c.text,
            context: c.context,
            metadata: metadata.clone(),
            vector,
        })
        .collect();
    let index = Arc::clone(index);
    let ds_id = ds_id.to_owned();
    tokio::task::spawn_blocking(move || index.put_document(&ds_id, &uri, &hash, new_chunks))
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
        .map_err(kb_error)
}

/// Embeds texts in batches, waiting out throttling (ingestion is background work).
pub(crate) async fn embed_all(
    service: &Arc<KnowledgeService>,
    ctx: &(dyn Fn() -> CallContext + Send + Sync),
    model: &str,
    texts: Vec<String>,
) -> Result<Vec<Vec<f32>>, CoreError> {
    let batch = service.config().embedding_batch.max(1);
    let mut out = Vec::with_capacity(texts.len());
    for part in texts.chunks(batch) {
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            match service.core.embed(ctx(), model, part.to_vec()).await {
                Ok(e) => {
                    out.extend(e.vectors);
                    break;
                }
                Err(CoreError::Throttled(_)) if attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_counts_what_the_stopped_run_indexed() {
        let now = "c2:m1".to_string();
        let counted = |before: Option<&str>, now: Option<&String>| match indexed_by_the_stopped_run(
            before, now,
        ) {
            Outcome::New => "new",
            Outcome::Modified => "modified",
            Outcome::MetadataModified => "metadata",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped | Outcome::Failed(_) => "other",
        };
        assert_eq!(counted(None, Some(&now)), "new");
        assert_eq!(counted(Some("c1:m1"), Some(&now)), "modified");
        assert_eq!(counted(Some("c2:m0"), Some(&now)), "metadata");
        assert_eq!(counted(Some("c2:m1"), Some(&now)), "unchanged");
        assert_eq!(counted(None, None), "unchanged");
    }
}
