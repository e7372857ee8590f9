//! Knowledge bases (managed RAG): the control plane (knowledge bases, data sources,
//! ingestion jobs as Bedrock defines them), ingestion ([`ingest`]) and retrieval
//! ([`retrieve`]). The records are kept by a [`KnowledgeStore`]; the chunks by each
//! knowledge base's store ([`STORAGE_TYPES`]: `BASALT_EMBEDDED`, or PostgreSQL with
//! pgvector as `RDS`; both in the `basalt-kb` crate).
//!
//! The records are plain Rust types: a dialect parses its own request shapes into
//! the specs ([`KnowledgeBaseSpec`], [`DataSourceSpec`]) and renders the records in
//! its own shapes (the Bedrock edge does both for `bedrock-agent`). Their serde form
//! is the one the store keeps.

pub mod ingest;
pub mod retrieve;
pub mod web;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use basalt_kb::chunking::Chunking;
use basalt_kb::filter::Filter;
use basalt_kb::index::EmbeddedIndex;
pub use basalt_kb::postgres::FieldMapping;
use basalt_kb::postgres::PgStore;
use basalt_kb::store::ChunkStore;
use basalt_store::knowledge::{KnowledgeKind, KnowledgeRecord, KnowledgeStore};
use basalt_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::KnowledgeBasesConfig;
use crate::guardrails::GuardrailService;
use crate::jobs::{ActiveJob, JobEnd, JobHandler, JobKind, JobRunner, JobState};
use crate::keys::Principal;
use crate::service::Basalt;
use crate::CoreError;

pub use basalt_kb::index::SearchType;
pub use basalt_kb::parse::Format as DocumentFormat;

/// A typed metadata value (`{"type": "STRING", "stringValue": …}`) as plain JSON.
pub fn typed_metadata_value(value: &Value) -> Result<Value, String> {
    basalt_kb::metadata::typed_value(value)
}

use crate::common::now_ms;

/// A Bedrock resource ID: 10 characters of `[0-9A-Z]`.
pub fn new_id() -> String {
    crate::common::random_id(10, crate::common::UPPER_ALNUM)
}

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("knowledge base")(e)
}

/// Checks a name a PostgreSQL store writes unquoted (a table, a column); `label`
/// names it in the error.
pub fn check_identifier(name: &str, label: &str) -> Result<(), CoreError> {
    basalt_kb::postgres::check_identifier(name, label).map_err(kb_error)
}

pub(crate) fn kb_error(e: basalt_kb::KbError) -> CoreError {
    use basalt_kb::KbError as E;
    match e {
        E::InvalidFilter(m) => CoreError::Validation(format!("invalid filter: {m}")),
        E::InvalidConfiguration(m) | E::Parse(m) => CoreError::Validation(m),
        E::Index(m) => CoreError::Internal(m),
    }
}

/// The stores a knowledge base may use (`storageConfiguration.type`), as error
/// messages list them.
pub const STORAGE_TYPES: &str = "BASALT_EMBEDDED, RDS";

/// The embedding model a knowledge base's vectors come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Embedding {
    /// The model as the caller named it: a catalog ID or a model ARN.
    pub model: String,
    /// The dimensions the caller asked for, if it did (they must be the model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_dimensions: Option<usize>,
    /// Whether the caller named the vectors' data type (32-bit floats, the only one).
    #[serde(default)]
    pub asked_float32: bool,
}

/// A knowledge base.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KnowledgeBase {
    pub knowledge_base_id: String,
    pub name: String,
    pub description: Option<String>,
    pub role_arn: String,
    pub embedding: Embedding,
    pub storage: Storage,
    /// The catalog ID of the embedding model.
    pub embedding_model_id: String,
    pub dimensions: usize,
    pub status: String,
    pub failure_reasons: Vec<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What a knowledge base is created or updated with. An update without `storage`
/// keeps the knowledge base's.
#[derive(Debug, Clone)]
pub struct KnowledgeBaseSpec {
    pub name: String,
    pub description: Option<String>,
    pub role_arn: String,
    pub embedding: Embedding,
    pub storage: Option<Storage>,
}

/// What happens to a data source's chunks when it is deleted.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeletionPolicy {
    /// They are deleted with it.
    #[default]
    Delete,
    /// They stay searchable in the knowledge base.
    Retain,
}

impl DeletionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "DELETE",
            Self::Retain => "RETAIN",
        }
    }
}

/// A data source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataSource {
    pub data_source_id: String,
    pub knowledge_base_id: String,
    pub name: String,
    pub description: Option<String>,
    pub location: Location,
    /// The chunking the caller chose; `None`: the default ([`Chunking::default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking: Option<Chunking>,
    pub deletion_policy: DeletionPolicy,
    pub status: String,
    pub failure_reasons: Vec<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What a data source is created or updated with.
#[derive(Debug, Clone)]
pub struct DataSourceSpec {
    pub name: String,
    pub description: Option<String>,
    pub location: Location,
    pub chunking: Option<Chunking>,
    pub deletion_policy: DeletionPolicy,
}

/// Where a data source's documents come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// A `file:///` folder under the allowed local paths.
    Folder { uri: String, prefixes: Vec<String> },
    /// An `s3://` bucket (and prefixes); `bucket` is the bucket as the caller named
    /// it (`s3://…` or a bucket ARN).
    Bucket {
        uri: String,
        prefixes: Vec<String>,
        bucket: String,
    },
    /// Pages crawled from seed URLs.
    Web(web::WebSource),
    /// Documents arrive only through IngestKnowledgeBaseDocuments.
    Custom,
}

/// Bedrock's ingestion statistics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub number_of_documents_scanned: u64,
    pub number_of_metadata_documents_scanned: u64,
    pub number_of_new_documents_indexed: u64,
    pub number_of_modified_documents_indexed: u64,
    pub number_of_metadata_documents_modified: u64,
    pub number_of_documents_deleted: u64,
    pub number_of_documents_failed: u64,
    pub number_of_documents_skipped: u64,
}

/// Where an ingestion job is (Bedrock's names, as stored).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IngestionStatus {
    Starting,
    InProgress,
    Complete,
    Failed,
    Stopping,
    Stopped,
}

impl IngestionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "STARTING",
            Self::InProgress => "IN_PROGRESS",
            Self::Complete => "COMPLETE",
            Self::Failed => "FAILED",
            Self::Stopping => "STOPPING",
            Self::Stopped => "STOPPED",
        }
    }

    /// The job runner's final state for a final status.
    fn final_state(self) -> Option<JobState> {
        match self {
            Self::Complete => Some(JobState::Completed),
            Self::Failed => Some(JobState::Failed),
            Self::Stopped => Some(JobState::Stopped),
            Self::Starting | Self::InProgress | Self::Stopping => None,
        }
    }
}

impl std::fmt::Display for IngestionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ingestion job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestionJob {
    pub ingestion_job_id: String,
    pub knowledge_base_id: String,
    pub data_source_id: String,
    pub description: Option<String>,
    pub status: IngestionStatus,
    pub statistics: Statistics,
    pub failure_reasons: Vec<String>,
    pub started_ms: i64,
    pub updated_ms: i64,
    /// Where the job picks up if the server stops during it (written with its
    /// statistics, cleared when it ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumePoint>,
}

/// How far a running ingestion job has got, in the URI order it works in: every
/// document up to and including `done_through` is counted in the job's statistics;
/// the ones in `started` (the next `ingestion_concurrency` documents) may have been
/// indexed since, each listed with the hash the store held for it before this job
/// touched it (none: a new document), so a resumed job counts them as this job's work.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResumePoint {
    pub done_through: Option<String>,
    pub started: Vec<(String, Option<String>)>,
}

impl IngestionJob {
    pub fn is_running(&self) -> bool {
        self.status.final_state().is_none()
    }
}

/// Knowledge bases: their records (a [`KnowledgeStore`]), their chunk stores,
/// ingestion on the job runner ([`IngestionJobs`]) and retrieval, embedding and
/// generating through the calling path.
pub struct KnowledgeService {
    core: Arc<Basalt>,
    guardrails: Arc<GuardrailService>,
    jobs: Arc<JobRunner>,
    store: Arc<dyn KnowledgeStore>,
    config: KnowledgeBasesConfig,
    index_dir: PathBuf,
    indexes: Mutex<HashMap<String, Arc<dyn ChunkStore>>>,
    /// Who started each job of this process, by job ID, until its run takes it.
    starters: Mutex<HashMap<String, Option<Principal>>>,
}

impl std::fmt::Debug for KnowledgeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeService")
            .field("index_dir", &self.index_dir)
            .finish_non_exhaustive()
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(record: &KnowledgeRecord) -> Result<T, CoreError> {
    serde_json::from_str(&record.body).map_err(|e| {
        CoreError::Internal(format!(
            "stored {} {}: {e}",
            record.kind.as_str(),
            record.id
        ))
    })
}

fn body_of<T: Serialize>(value: &T) -> Result<String, CoreError> {
    serde_json::to_string(value).map_err(|e| CoreError::Internal(e.to_string()))
}

impl KnowledgeService {
    /// The service; ingestion jobs a previous process left without a runner row are
    /// failed.
    pub fn start(
        core: Arc<Basalt>,
        guardrails: Arc<GuardrailService>,
        jobs: Arc<JobRunner>,
        store: Arc<dyn KnowledgeStore>,
        config: KnowledgeBasesConfig,
    ) -> Result<Self, CoreError> {
        let service = Self::new(core, guardrails, jobs, store, config);
        service.fail_interrupted_jobs()?;
        Ok(service)
    }

    fn new(
        core: Arc<Basalt>,
        guardrails: Arc<GuardrailService>,
        jobs: Arc<JobRunner>,
        store: Arc<dyn KnowledgeStore>,
        config: KnowledgeBasesConfig,
    ) -> Self {
        warn_unset_credentials(&config);
        let index_dir = if config.index_dir.is_empty() {
            std::env::temp_dir().join("basalt-kb")
        } else {
            PathBuf::from(&config.index_dir)
        };
        Self {
            core,
            guardrails,
            jobs,
            store,
            config,
            index_dir,
            indexes: Mutex::new(HashMap::new()),
            starters: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &KnowledgeBasesConfig {
        &self.config
    }

    /// The embedded stores' approximate-index parameters from the configuration.
    fn ann_params(&self) -> basalt_kb::ann::AnnParams {
        basalt_kb::ann::AnnParams {
            build_from: self.config.approximate_index_from.max(1),
            scan_fraction: self.config.approximate_scan_fraction.clamp(0.001, 1.0),
            ..basalt_kb::ann::AnnParams::default()
        }
    }

    /// Jobs a previous process left running without a job-runner row (made before
    /// the runner existed) are failed; jobs with one resume from their resume point
    /// when the runner claims them again ([`IngestionJobs`]).
    fn fail_interrupted_jobs(&self) -> Result<(), CoreError> {
        for record in self
            .store
            .list_knowledge(KnowledgeKind::IngestionJob, None)
            .map_err(store_error)?
        {
            let mut job: IngestionJob = parse_body(&record)?;
            if job.is_running() && self.jobs.job(&job.ingestion_job_id)?.is_none() {
                fail_interrupted(&mut job);
                self.save_job(&job)?;
            }
        }
        Ok(())
    }

    /// The store of an existing knowledge base, opened once and kept.
    pub(crate) fn index(&self, kb: &KnowledgeBase) -> Result<Arc<dyn ChunkStore>, CoreError> {
        let mut indexes = self
            .indexes
            .lock()
            .map_err(|_| CoreError::Internal("index cache poisoned".into()))?;
        if let Some(i) = indexes.get(&kb.knowledge_base_id) {
            return Ok(Arc::clone(i));
        }
        let index = self.open_index(kb).map_err(|e| match e {
            CoreError::ServiceUnavailable(m) => CoreError::ServiceUnavailable(format!(
                "the PostgreSQL store of knowledge base {} is unavailable: {m}",
                kb.knowledge_base_id
            )),
            other => other,
        })?;
        indexes.insert(kb.knowledge_base_id.clone(), Arc::clone(&index));
        Ok(index)
    }

    /// Opens a knowledge base's store without keeping it. A PostgreSQL store that
    /// cannot be reached is `ServiceUnavailable` with PostgreSQL's words; the message
    /// names no knowledge base, since CreateKnowledgeBase opens the store before the
    /// knowledge base exists.
    fn open_index(&self, kb: &KnowledgeBase) -> Result<Arc<dyn ChunkStore>, CoreError> {
        let index: Arc<dyn ChunkStore> = match &kb.storage {
            Storage::Embedded => Arc::new(
                EmbeddedIndex::open_with(
                    &self.index_dir.join(&kb.knowledge_base_id),
                    kb.dimensions,
                    self.ann_params(),
                )
                .map_err(kb_error)?,
            ),
            Storage::Postgres(rds) => Arc::new(self.open_postgres(rds, kb.dimensions)?),
        };
        Ok(index)
    }

    /// Keeps the store a new knowledge base was created with (unless a request that
    /// found the new record first has opened one already).
    fn keep_index(&self, id: &str, index: Arc<dyn ChunkStore>) -> Result<(), CoreError> {
        self.indexes
            .lock()
            .map_err(|_| CoreError::Internal("index cache poisoned".into()))?
            .entry(id.to_owned())
            .or_insert(index);
        Ok(())
    }

    /// Removes what a knowledge base that was not created left under `index_dir`
    /// (an embedded store's directory; a PostgreSQL store has none).
    fn remove_index_dir(&self, id: &str) {
        let dir = self.index_dir.join(id);
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "cannot remove the directory of a knowledge base that was not created"
                );
            }
        }
    }

    pub fn knowledge_base(&self, id: &str) -> Result<KnowledgeBase, CoreError> {
        let record = self
            .store
            .knowledge(KnowledgeKind::KnowledgeBase, id)
            .map_err(store_error)?
            .ok_or_else(|| CoreError::NotFound(format!("knowledge base {id} does not exist")))?;
        parse_body(&record)
    }

    pub fn data_source(&self, kb_id: &str, id: &str) -> Result<DataSource, CoreError> {
        self.knowledge_base(kb_id)?;
        let record = self
            .store
            .knowledge(KnowledgeKind::DataSource, id)
            .map_err(store_error)?
            .filter(|r| r.parent == kb_id)
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "data source {id} does not exist in knowledge base {kb_id}"
                ))
            })?;
        parse_body(&record)
    }

    pub fn ingestion_job(
        &self,
        kb_id: &str,
        ds_id: &str,
        id: &str,
    ) -> Result<IngestionJob, CoreError> {
        self.data_source(kb_id, ds_id)?;
        let record = self
            .store
            .knowledge(KnowledgeKind::IngestionJob, id)
            .map_err(store_error)?
            .filter(|r| r.parent == format!("{kb_id}/{ds_id}"))
            .ok_or_else(|| CoreError::NotFound(format!("ingestion job {id} does not exist")))?;
        parse_body(&record)
    }

    pub fn list_knowledge_bases(&self) -> Result<Vec<KnowledgeBase>, CoreError> {
        self.store
            .list_knowledge(KnowledgeKind::KnowledgeBase, None)
            .map_err(store_error)?
            .iter()
            .map(parse_body)
            .collect()
    }

    pub fn list_data_sources(&self, kb_id: &str) -> Result<Vec<DataSource>, CoreError> {
        self.knowledge_base(kb_id)?;
        self.store
            .list_knowledge(KnowledgeKind::DataSource, Some(kb_id))
            .map_err(store_error)?
            .iter()
            .map(parse_body)
            .collect()
    }

    pub fn list_ingestion_jobs(
        &self,
        kb_id: &str,
        ds_id: &str,
    ) -> Result<Vec<IngestionJob>, CoreError> {
        self.data_source(kb_id, ds_id)?;
        self.store
            .list_knowledge(
                KnowledgeKind::IngestionJob,
                Some(&format!("{kb_id}/{ds_id}")),
            )
            .map_err(store_error)?
            .iter()
            .map(parse_body)
            .collect()
    }

    /// Inserts or replaces a record; a name taken in its parent is `taken`'s Conflict.
    fn save(&self, record: &KnowledgeRecord, insert: bool, taken: String) -> Result<(), CoreError> {
        let named = |e: StoreError| match e {
            StoreError::Duplicate(_) => CoreError::Conflict(taken.clone()),
            other => store_error(other),
        };
        if insert {
            self.store.insert_knowledge(record).map_err(named)
        } else {
            self.store
                .update_knowledge(record)
                .map(|_| ())
                .map_err(named)
        }
    }

    fn save_kb(&self, kb: &KnowledgeBase, insert: bool) -> Result<(), CoreError> {
        let record = KnowledgeRecord {
            kind: KnowledgeKind::KnowledgeBase,
            id: kb.knowledge_base_id.clone(),
            parent: String::new(),
            name: kb.name.clone(),
            body: body_of(kb)?,
            created_ms: kb.created_ms,
            updated_ms: kb.updated_ms,
        };
        let taken = format!("a knowledge base named {:?} already exists", kb.name);
        self.save(&record, insert, taken)
    }

    fn save_ds(&self, ds: &DataSource, insert: bool) -> Result<(), CoreError> {
        let record = KnowledgeRecord {
            kind: KnowledgeKind::DataSource,
            id: ds.data_source_id.clone(),
            parent: ds.knowledge_base_id.clone(),
            name: ds.name.clone(),
            body: body_of(ds)?,
            created_ms: ds.created_ms,
            updated_ms: ds.updated_ms,
        };
        let taken = format!(
            "knowledge base {} already has a data source named {:?}",
            ds.knowledge_base_id, ds.name
        );
        self.save(&record, insert, taken)
    }

    pub(crate) fn save_job(&self, job: &IngestionJob) -> Result<(), CoreError> {
        let record = KnowledgeRecord {
            kind: KnowledgeKind::IngestionJob,
            id: job.ingestion_job_id.clone(),
            parent: format!("{}/{}", job.knowledge_base_id, job.data_source_id),
            name: job.ingestion_job_id.clone(),
            body: body_of(job)?,
            created_ms: job.started_ms,
            updated_ms: job.updated_ms,
        };
        if self.store.update_knowledge(&record).map_err(store_error)? {
            Ok(())
        } else {
            self.store.insert_knowledge(&record).map_err(store_error)
        }
    }

    fn take_starter(&self, job_id: &str) -> Option<Principal> {
        self.starters
            .lock()
            .ok()
            .and_then(|mut s| s.remove(job_id))
            .flatten()
    }
}

/// A job left running by a server without a job-runner row cannot be resumed: it is
/// failed (its documents so far are indexed, and the next job, comparing hashes, does
/// the rest without redoing them).
fn fail_interrupted(job: &mut IngestionJob) {
    job.status = IngestionStatus::Failed;
    job.failure_reasons.push(
        "the server stopped during this job; documents indexed so far are kept, and a new ingestion job indexes the rest".into(),
    );
    job.updated_ms = now_ms();
}

/// What an ingestion job's runner row carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IngestionPayload {
    knowledge_base_id: String,
    data_source_id: String,
}

/// The handler of ingestion jobs on the job runner.
pub struct IngestionJobs {
    knowledge: Arc<KnowledgeService>,
}

impl IngestionJobs {
    pub fn new(knowledge: Arc<KnowledgeService>) -> Self {
        Self { knowledge }
    }

    async fn run_job(&self, active: &ActiveJob) -> Result<IngestionStatus, CoreError> {
        let payload: IngestionPayload = serde_json::from_str(&active.record().payload)
            .map_err(|e| CoreError::Internal(format!("ingestion job {}: {e}", active.id())))?;
        let knowledge = &self.knowledge;
        let mut job = knowledge.ingestion_job(
            &payload.knowledge_base_id,
            &payload.data_source_id,
            active.id(),
        )?;
        if !job.is_running() {
            // Ended before its runner row was: nothing to run.
            return Ok(job.status);
        }
        // A resumed job (its server stopped during it, or a node died) carries on from
        // its resume point; the key that started it is not known any more, so its
        // remaining embedding calls are metered without a key.
        let starter = knowledge.take_starter(active.id());
        if active.resumed() {
            tracing::info!(job = %active.id(), resume = ?job.resume.as_ref().map(|r| &r.done_through), "ingestion job resumed");
        }
        if active.stop_requested() {
            job.status = IngestionStatus::Stopped;
            job.updated_ms = now_ms();
            knowledge.save_job(&job)?;
            return Ok(job.status);
        }
        let kb = knowledge.knowledge_base(&payload.knowledge_base_id)?;
        let ds = knowledge.data_source(&payload.knowledge_base_id, &payload.data_source_id)?;
        Ok(ingest::run_job(
            Arc::clone(&self.knowledge),
            starter,
            kb,
            ds,
            job,
            active.stop_flag(),
        )
        .await)
    }
}

#[async_trait::async_trait]
impl JobHandler for IngestionJobs {
    fn kind(&self) -> JobKind {
        JobKind::Ingestion
    }

    /// Data sources ingested at once (one job at a time per data source).
    fn max_running(&self) -> usize {
        8
    }

    async fn run(&self, active: ActiveJob) -> JobEnd {
        match self.run_job(&active).await {
            Ok(status) => JobEnd::ended(status.final_state().unwrap_or(JobState::Failed), None),
            Err(e) => {
                tracing::warn!(job = %active.id(), error = %e, "ingestion job failed");
                JobEnd::ended(JobState::Failed, Some(e.to_string()))
            }
        }
    }
}

/// Says at start which `[knowledge_bases.postgres.*]` connections name a `user_env`
/// or `password_env` variable that is not set: their connections then use the URL's
/// user and password (the user defaults to the one running the server, and a server
/// that asks for a password gets none), which fails only when a knowledge base first
/// connects, far from the cause.
fn warn_unset_credentials(config: &KnowledgeBasesConfig) {
    for (name, connection) in &config.postgres {
        for (key, variable) in [
            ("user_env", &connection.user_env),
            ("password_env", &connection.password_env),
        ] {
            if !variable.is_empty() && std::env::var(variable).is_err() {
                tracing::warn!(
                    connection = %name,
                    variable = %variable,
                    "[knowledge_bases.postgres.{name}] {key} names {variable}, which is not set; the connection uses the URL's value instead"
                );
            }
        }
    }
}

/// The model ID inside a model ARN (`arn:aws:bedrock:…:foundation-model/ID`), or the
/// identifier itself.
pub fn model_id_of(identifier: &str) -> &str {
    if identifier.starts_with("arn:") {
        identifier.rsplit_once('/').map_or(identifier, |(_, id)| id)
    } else {
        identifier
    }
}

impl DataSource {
    /// The chunking its documents are cut with.
    pub fn chunking(&self) -> Chunking {
        self.chunking.clone().unwrap_or_default()
    }
}

/// Which store a knowledge base's chunks live in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Storage {
    /// The embedded index, in the server's data directory.
    Embedded,
    /// A pgvector table on one of the server's configured PostgreSQL connections.
    Postgres(RdsStore),
}

/// A pgvector table, on a connection the server's configuration names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RdsStore {
    /// The `[knowledge_bases.postgres]` connection: its name or its exact URL.
    pub connection: String,
    pub database: String,
    pub table: String,
    pub fields: FieldMapping,
    /// The credentials secret the caller named. Kept to be answered back: the
    /// credentials come from the server's configuration, never from a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

impl KnowledgeService {
    /// The configured connection an `rdsConfiguration.resourceArn` names: its name,
    /// or exactly its configured URL. Credentials never come from the request.
    fn connection(
        &self,
        resource: &str,
    ) -> Result<(&str, &crate::config::PostgresConnection), CoreError> {
        if resource.starts_with("postgres") && resource.contains('@') {
            return Err(CoreError::Validation(
                "a PostgreSQL store's connection must not carry credentials; they come from the server's [knowledge_bases.postgres] configuration".into(),
            ));
        }
        self.config
            .postgres
            .iter()
            .find(|(name, c)| name.as_str() == resource || c.url == resource)
            .map(|(name, c)| (name.as_str(), c))
            .ok_or_else(|| {
                let names: Vec<&str> = self.config.postgres.keys().map(String::as_str).collect();
                CoreError::Validation(format!(
                    "{resource:?} is not a PostgreSQL connection this server has; configured: {}",
                    if names.is_empty() {
                        "none ([knowledge_bases.postgres.<name>] in the configuration)".to_owned()
                    } else {
                        names.join(", ")
                    }
                ))
            })
    }

    /// Opens a PostgreSQL store. What PostgreSQL said goes into the error and the
    /// log (a refused CreateKnowledgeBase is otherwise not logged); a store that
    /// cannot be reached is `ServiceUnavailable`, a configuration PostgreSQL refuses
    /// (no pgvector, a table of other vectors) a `Validation`.
    fn open_postgres(&self, rds: &RdsStore, dimensions: usize) -> Result<PgStore, CoreError> {
        let (name, connection) = self.connection(&rds.connection)?;
        let mut connect = basalt_kb::postgres::PgConnect::parse(&connection.url).map_err(|e| {
            CoreError::Validation(format!("the configured PostgreSQL URL is not valid: {e}"))
        })?;
        let config = connect.config_mut();
        config.dbname(&rds.database);
        let env = |name: &str| {
            (!name.is_empty())
                .then(|| std::env::var(name).ok())
                .flatten()
        };
        if let Some(user) = env(&connection.user_env) {
            config.user(&user);
        }
        if let Some(password) = env(&connection.password_env) {
            config.password(password);
        }
        config.connect_timeout(std::time::Duration::from_secs(10));
        PgStore::open(connect, &rds.table, rds.fields.clone(), dimensions).map_err(|e| {
            tracing::warn!(
                connection = name,
                database = %rds.database,
                table = %rds.table,
                error = %e,
                "cannot open a knowledge base's PostgreSQL store"
            );
            match e {
                basalt_kb::KbError::Index(m) => CoreError::ServiceUnavailable(m),
                other => kb_error(other),
            }
        })
    }
}

impl KnowledgeService {
    /// The calling path.
    pub fn core(&self) -> &Arc<Basalt> {
        &self.core
    }

    fn kb_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:knowledge-base/{id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    /// The ARN of a knowledge base.
    pub fn knowledge_base_arn(&self, id: &str) -> String {
        self.kb_arn(id)
    }

    /// Checks a spec against the catalog and the configuration: the embedding
    /// model's catalog ID and dimensions, and the store.
    fn checked_kb(&self, spec: &KnowledgeBaseSpec) -> Result<(String, usize, Storage), CoreError> {
        if spec.name.trim().is_empty() || spec.name.len() > 100 {
            return Err(CoreError::Validation(
                "name must be 1..100 characters".into(),
            ));
        }
        let model_id = model_id_of(&spec.embedding.model);
        let entry = self.core.catalog().lookup(model_id).ok_or_else(|| {
            CoreError::Validation(format!(
                "embedding model {model_id} is not in this server's catalog"
            ))
        })?;
        if !entry.is_embedding() {
            return Err(CoreError::Validation(format!(
                "{model_id} is not an embedding model"
            )));
        }
        let dimensions = self.core.embedding_dimensions(model_id)?;
        if let Some(asked) = spec.embedding.asked_dimensions {
            if asked != dimensions {
                return Err(CoreError::Validation(format!(
                    "{model_id} makes {dimensions}-dimensional vectors, not {asked}"
                )));
            }
        }
        let storage = spec.storage.clone().ok_or_else(|| {
            CoreError::Validation(format!(
                "a knowledge base needs a store; supported: {STORAGE_TYPES}"
            ))
        })?;
        match &storage {
            Storage::Postgres(rds) => {
                self.connection(&rds.connection)?;
                check_identifier(&rds.table, "table")?;
            }
            Storage::Embedded
                if self.config.shared_store && !self.config.embedded_with_shared_store =>
            {
                return Err(CoreError::Validation(
                    "this server shares its records with a fleet (a PostgreSQL [store]): a BASALT_EMBEDDED index would live on one node's disk only; use storageConfiguration type RDS (pgvector), or set [knowledge_bases] embedded_with_shared_store = true for a single node".into(),
                ));
            }
            Storage::Embedded => {}
        }
        Ok((model_id.to_owned(), dimensions, storage))
    }

    pub fn create_knowledge_base(
        &self,
        spec: KnowledgeBaseSpec,
    ) -> Result<KnowledgeBase, CoreError> {
        let (embedding_model_id, dimensions, storage) = self.checked_kb(&spec)?;
        let now = now_ms();
        let kb = KnowledgeBase {
            knowledge_base_id: new_id(),
            name: spec.name,
            description: spec.description,
            role_arn: spec.role_arn,
            embedding: spec.embedding,
            storage,
            embedding_model_id,
            dimensions,
            status: "ACTIVE".into(),
            failure_reasons: Vec::new(),
            created_ms: now,
            updated_ms: now,
        };
        // Checked before the store is opened: opening creates tables.
        if self
            .list_knowledge_bases()?
            .iter()
            .any(|other| other.name == kb.name)
        {
            return Err(CoreError::Conflict(format!(
                "a knowledge base named {:?} already exists",
                kb.name
            )));
        }
        if let Storage::Postgres(rds) = &kb.storage {
            let (wanted, _) = self.connection(&rds.connection)?;
            for other in self.list_knowledge_bases()? {
                if let Storage::Postgres(o) = &other.storage {
                    let same_connection = self
                        .connection(&o.connection)
                        .is_ok_and(|(name, _)| name == wanted);
                    if same_connection && o.database == rds.database && o.table == rds.table {
                        return Err(CoreError::Conflict(format!(
                            "knowledge base {} already stores its chunks in table {} of database {}",
                            other.knowledge_base_id, rds.table, rds.database
                        )));
                    }
                }
            }
        }
        // The store opens before the record is written and is kept only after: a
        // knowledge base whose store cannot open leaves no record, no cached store
        // and no directory behind, and its error names no ID.
        let kbs = self;
        let index = match kbs.open_index(&kb) {
            Ok(index) => index,
            Err(e) => {
                kbs.remove_index_dir(&kb.knowledge_base_id);
                return Err(match e {
                    CoreError::ServiceUnavailable(m) => CoreError::Validation(format!(
                        "the knowledge base's PostgreSQL store cannot be opened: {m}"
                    )),
                    other => other,
                });
            }
        };
        if let Err(e) = kbs.save_kb(&kb, true) {
            // Closed before its directory goes (PostgreSQL tables stay: they may
            // have held chunks before this request named them).
            drop(index);
            kbs.remove_index_dir(&kb.knowledge_base_id);
            return Err(e);
        }
        kbs.keep_index(&kb.knowledge_base_id, index)?;
        Ok(kb)
    }

    /// Name, description and role may change; the embedding model and the store may
    /// not (the stored vectors depend on them).
    pub fn update_knowledge_base(
        &self,
        id: &str,
        spec: KnowledgeBaseSpec,
    ) -> Result<KnowledgeBase, CoreError> {
        let mut kb = self.knowledge_base(id)?;
        let (model, _, storage) = self.checked_kb(&KnowledgeBaseSpec {
            storage: spec.storage.clone().or_else(|| Some(kb.storage.clone())),
            ..spec.clone()
        })?;
        if model != kb.embedding_model_id || storage != kb.storage {
            return Err(CoreError::Validation(
                "the embedding model and the store of a knowledge base cannot change; create a new knowledge base".into(),
            ));
        }
        kb.name = spec.name;
        kb.description = spec.description;
        kb.role_arn = spec.role_arn;
        kb.embedding = spec.embedding;
        kb.updated_ms = now_ms();
        self.save_kb(&kb, false)?;
        Ok(kb)
    }

    /// Deletes a knowledge base with its data sources, jobs and stored chunks.
    pub fn delete_knowledge_base(&self, id: &str) -> Result<KnowledgeBase, CoreError> {
        let mut kb = self.knowledge_base(id)?;
        let kbs = self;
        for ds in kbs.list_data_sources(id)? {
            if kbs
                .list_ingestion_jobs(id, &ds.data_source_id)?
                .iter()
                .any(IngestionJob::is_running)
            {
                return Err(CoreError::Conflict(format!(
                    "data source {} has an ingestion job running; stop it first",
                    ds.data_source_id
                )));
            }
        }
        // Tables in PostgreSQL go first: if that fails, nothing is deleted.
        kbs.index(&kb)?.destroy().map_err(kb_error)?;
        for ds in kbs.list_data_sources(id)? {
            self.remove_data_source_records(&ds)?;
        }
        let index = kbs
            .indexes
            .lock()
            .map_err(|_| CoreError::Internal("index cache poisoned".into()))?
            .remove(id);
        kbs.store
            .delete_knowledge(KnowledgeKind::KnowledgeBase, id)
            .map_err(store_error)?;
        // Often the last reference to the store, dropped on the handler's async
        // thread: a PostgreSQL store hands its connection to a thread of its own to
        // close (`PgStore`'s `Drop`), as closing it here would panic.
        drop(index);
        let dir = kbs.index_dir.join(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| CoreError::Internal(format!("remove {}: {e}", dir.display())))?;
        }
        kb.status = "DELETING".into();
        Ok(kb)
    }

    fn checked_ds(&self, spec: &DataSourceSpec) -> Result<(), CoreError> {
        if spec.name.trim().is_empty() || spec.name.len() > 100 {
            return Err(CoreError::Validation(
                "name must be 1..100 characters".into(),
            ));
        }
        self.check_location(&spec.location)?;
        if let Some(chunking) = &spec.chunking {
            chunking.validate().map_err(kb_error)?;
        }
        Ok(())
    }

    fn check_location(&self, location: &Location) -> Result<(), CoreError> {
        match location {
            Location::Folder { uri, .. } => {
                let dir = self.core.allowed_paths().existing(uri)?;
                if !dir.is_dir() {
                    return Err(CoreError::Validation(format!("{uri} is not a directory")));
                }
                Ok(())
            }
            Location::Bucket { uri, .. } => self.core.s3().check(uri).map(|_| ()),
            Location::Web(source) => {
                let web = &self.config().web;
                let spec = web::crawl_spec(source, web.max_depth)?;
                for seed in &spec.seeds {
                    let host = seed.host_str().unwrap_or_default();
                    if !web::host_allowed(&web.allowed_hosts, host) {
                        return Err(CoreError::AccessDenied(format!(
                            "{seed}: host {host} is not one this server may crawl ([knowledge_bases.web] allowed_hosts)"
                        )));
                    }
                }
                Ok(())
            }
            Location::Custom => Ok(()),
        }
    }

    pub fn create_data_source(
        &self,
        kb_id: &str,
        spec: DataSourceSpec,
    ) -> Result<DataSource, CoreError> {
        self.knowledge_base(kb_id)?;
        self.checked_ds(&spec)?;
        let now = now_ms();
        let ds = DataSource {
            data_source_id: new_id(),
            knowledge_base_id: kb_id.to_owned(),
            name: spec.name,
            description: spec.description,
            location: spec.location,
            chunking: spec.chunking,
            deletion_policy: spec.deletion_policy,
            status: "AVAILABLE".into(),
            failure_reasons: Vec::new(),
            created_ms: now,
            updated_ms: now,
        };
        self.save_ds(&ds, true)?;
        Ok(ds)
    }

    /// A changed location or chunking applies from the next ingestion job (documents
    /// whose content did not change keep their chunks).
    pub fn update_data_source(
        &self,
        kb_id: &str,
        ds_id: &str,
        spec: DataSourceSpec,
    ) -> Result<DataSource, CoreError> {
        let mut ds = self.data_source(kb_id, ds_id)?;
        self.checked_ds(&spec)?;
        ds.name = spec.name;
        ds.description = spec.description;
        ds.location = spec.location;
        ds.chunking = spec.chunking;
        ds.deletion_policy = spec.deletion_policy;
        ds.updated_ms = now_ms();
        self.save_ds(&ds, false)?;
        Ok(ds)
    }

    fn remove_data_source_records(&self, ds: &DataSource) -> Result<(), CoreError> {
        let kbs = self;
        for job in kbs.list_ingestion_jobs(&ds.knowledge_base_id, &ds.data_source_id)? {
            kbs.store
                .delete_knowledge(KnowledgeKind::IngestionJob, &job.ingestion_job_id)
                .map_err(store_error)?;
        }
        kbs.store
            .delete_knowledge(KnowledgeKind::DataSource, &ds.data_source_id)
            .map_err(store_error)?;
        Ok(())
    }

    /// Deletes a data source; with `dataDeletionPolicy` DELETE its chunks go too,
    /// with RETAIN they stay searchable in the knowledge base.
    pub fn delete_data_source(&self, kb_id: &str, ds_id: &str) -> Result<DataSource, CoreError> {
        let mut ds = self.data_source(kb_id, ds_id)?;
        if self
            .list_ingestion_jobs(kb_id, ds_id)?
            .iter()
            .any(IngestionJob::is_running)
        {
            return Err(CoreError::Conflict(format!(
                "data source {ds_id} has an ingestion job running; stop it first"
            )));
        }
        if ds.deletion_policy == DeletionPolicy::Delete {
            let kb = self.knowledge_base(kb_id)?;
            self.index(&kb)?
                .delete_data_source(ds_id)
                .map_err(kb_error)?;
        }
        self.remove_data_source_records(&ds)?;
        ds.status = "DELETING".into();
        Ok(ds)
    }

    /// Starts an ingestion job (one at a time per data source).
    pub fn start_ingestion_job(
        self: &Arc<Self>,
        principal: Option<Principal>,
        kb_id: &str,
        ds_id: &str,
        description: Option<String>,
    ) -> Result<IngestionJob, CoreError> {
        let kb = self.knowledge_base(kb_id)?;
        let ds = self.data_source(kb_id, ds_id)?;
        if ds.location == Location::Custom {
            return Err(CoreError::Validation(format!(
                "data source {ds_id} is CUSTOM: its documents arrive through IngestKnowledgeBaseDocuments"
            )));
        }
        if self
            .list_ingestion_jobs(kb_id, ds_id)?
            .iter()
            .any(IngestionJob::is_running)
        {
            return Err(CoreError::Conflict(format!(
                "data source {ds_id} already has an ingestion job running"
            )));
        }
        let now = now_ms();
        let job = IngestionJob {
            ingestion_job_id: new_id(),
            knowledge_base_id: kb_id.to_owned(),
            data_source_id: ds_id.to_owned(),
            description,
            status: IngestionStatus::Starting,
            statistics: Statistics::default(),
            failure_reasons: Vec::new(),
            started_ms: now,
            updated_ms: now,
            resume: None,
        };
        self.save_job(&job)?;
        if let Ok(mut starters) = self.starters.lock() {
            starters.insert(job.ingestion_job_id.clone(), principal);
        }
        let payload = serde_json::to_string(&IngestionPayload {
            knowledge_base_id: kb.knowledge_base_id.clone(),
            data_source_id: ds.data_source_id.clone(),
        })
        .map_err(|e| CoreError::Internal(e.to_string()))?;
        self.jobs
            .submit(&job.ingestion_job_id, JobKind::Ingestion, &payload)?;
        Ok(job)
    }

    pub fn stop_ingestion_job(
        &self,
        kb_id: &str,
        ds_id: &str,
        job_id: &str,
    ) -> Result<IngestionJob, CoreError> {
        let mut job = self.ingestion_job(kb_id, ds_id, job_id)?;
        if !job.is_running() {
            return Err(CoreError::Conflict(format!(
                "ingestion job {job_id} is {}; only a running job can be stopped",
                job.status
            )));
        }
        self.jobs.request_stop(job_id)?;
        // A job no runner had claimed yet has ended already; a running one stops
        // after the documents in flight.
        let ended = self
            .jobs
            .job(job_id)?
            .is_some_and(|row| row.state.is_final());
        job.status = if ended {
            IngestionStatus::Stopped
        } else {
            IngestionStatus::Stopping
        };
        job.updated_ms = now_ms();
        self.save_job(&job)?;
        Ok(job)
    }
}

/// A key's mandatory retrieval filter joined to the request's own.
pub fn effective_filter(
    principal: Option<&Principal>,
    requested: Option<Filter>,
) -> Result<Option<Filter>, CoreError> {
    let mandatory = match principal.and_then(|p| p.retrieval_filter.as_deref()) {
        None => None,
        Some(text) => {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                CoreError::Internal(format!("the key's retrieval filter is not JSON: {e}"))
            })?;
            Some(Filter::parse(&value).map_err(|e| {
                CoreError::Internal(format!("the key's retrieval filter is invalid: {e}"))
            })?)
        }
    };
    Ok(match (mandatory, requested) {
        (Some(m), Some(r)) => Some(m.and(r)),
        (m, r) => m.or(r),
    })
}
