//! Knowledge bases on the `bedrock-agent` wire: knowledge bases, data sources,
//! ingestion jobs and direct document ingestion. Trailing slashes are part of the
//! routes (`PUT /knowledgebases/` creates, `GET /knowledgebases/{id}` reads).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::keys::Principal;
use basalt_core::knowledge::retrieve::{DirectDocument, DocumentStatus};
use basalt_core::knowledge::{
    DataSource, DataSourceSpec, DocumentFormat, IngestionJob, KnowledgeBase, KnowledgeBaseSpec,
    Statistics,
};
use basalt_core::CoreError;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::knowledge_wire::{
    chunking_json, chunking_of, deletion_policy_of, embedding_json, embedding_of, location_json,
    location_of, storage_json, storage_of,
};
use super::paging::Paging;
use super::wire::{parse_json, required};
use crate::auth::RequestId;
use crate::common::{now_ms, timestamp};
use crate::error::BedrockError;
use crate::AppState;

type Answer = Result<Response, BedrockError>;

pub(super) fn agent<T>(r: Result<T, CoreError>) -> Result<T, BedrockError> {
    r.map_err(BedrockError::agent)
}

pub(super) fn accepted(body: Value) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListBody {
    max_results: Option<i64>,
    next_token: Option<String>,
    #[allow(dead_code)]
    filters: Option<Value>,
    #[allow(dead_code)]
    sort_by: Option<Value>,
}

pub(super) fn list_body(body: &Bytes) -> Result<ListBody, BedrockError> {
    if body.is_empty() {
        Ok(ListBody::default())
    } else {
        parse_json(body)
    }
}

impl ListBody {
    /// The page this body asks for, of `operation`, for the caller `key_id`.
    pub(super) fn paging<'a>(
        &self,
        operation: &'static str,
        key_id: &'a str,
    ) -> Result<Paging<'a>, BedrockError> {
        Paging::from_body(
            operation,
            key_id,
            self.max_results,
            self.next_token.as_deref(),
        )
    }
}

// ---- knowledge bases -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KnowledgeBaseBody {
    name: Option<String>,
    description: Option<String>,
    role_arn: Option<String>,
    knowledge_base_configuration: Option<Value>,
    storage_configuration: Option<Value>,
    #[allow(dead_code)]
    client_token: Option<String>,
    #[allow(dead_code)]
    tags: Option<Value>,
    #[allow(dead_code)]
    metadata_configurations: Option<Value>,
}

impl KnowledgeBaseBody {
    /// The spec; an update may leave the store out (it cannot change anyway).
    fn spec(self, creating: bool) -> Result<KnowledgeBaseSpec, BedrockError> {
        let name = required(self.name, "name")?;
        let role_arn = required(self.role_arn, "roleArn")?;
        let embedding = embedding_of(&required(
            self.knowledge_base_configuration,
            "knowledgeBaseConfiguration",
        )?)?;
        let storage = match self.storage_configuration {
            Some(storage) => Some(storage_of(&storage)?),
            None if creating => {
                return Err(BedrockError::validation(format!(
                    "storageConfiguration is required; supported types: {} (e.g. {{\"type\": \"BASALT_EMBEDDED\"}})",
                    basalt_core::knowledge::STORAGE_TYPES
                )))
            }
            None => None,
        };
        Ok(KnowledgeBaseSpec {
            name,
            description: self.description,
            role_arn,
            embedding,
            storage,
        })
    }
}

fn kb_json(state: &AppState, kb: &KnowledgeBase) -> Value {
    let mut out = json!({
        "knowledgeBaseId": kb.knowledge_base_id,
        "name": kb.name,
        "knowledgeBaseArn": state.knowledge.knowledge_base_arn(&kb.knowledge_base_id),
        "roleArn": kb.role_arn,
        "knowledgeBaseConfiguration": embedding_json(&kb.embedding),
        "storageConfiguration": storage_json(&kb.storage),
        "status": kb.status,
        "createdAt": timestamp(kb.created_ms),
        "updatedAt": timestamp(kb.updated_ms),
    });
    if let Some(d) = &kb.description {
        out["description"] = json!(d);
    }
    if !kb.failure_reasons.is_empty() {
        out["failureReasons"] = json!(kb.failure_reasons);
    }
    out
}

/// Runs a control-plane call that may wait on a knowledge base's store (a PostgreSQL
/// round trip, up to its connect timeout; files) on the blocking pool, so the other
/// connections of this serving thread are not held up meanwhile.
async fn on_blocking_pool<T, F>(state: &AppState, work: F) -> Result<T, CoreError>
where
    T: Send + 'static,
    F: FnOnce(&basalt_core::knowledge::KnowledgeService) -> Result<T, CoreError> + Send + 'static,
{
    let knowledge = std::sync::Arc::clone(&state.knowledge);
    tokio::task::spawn_blocking(move || work(&knowledge))
        .await
        .map_err(|e| CoreError::Internal(format!("a knowledge-base call failed: {e}")))?
}

pub async fn create_knowledge_base(State(state): State<AppState>, body: Bytes) -> Answer {
    let spec = parse_json::<KnowledgeBaseBody>(&body)?.spec(true)?;
    let kb = agent(on_blocking_pool(&state, move |core| core.create_knowledge_base(spec)).await)?;
    Ok(accepted(json!({ "knowledgeBase": kb_json(&state, &kb) })))
}

pub async fn get_knowledge_base(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    let kb = agent(state.knowledge.knowledge_base(&id))?;
    Ok(Json(json!({ "knowledgeBase": kb_json(&state, &kb) })).into_response())
}

pub async fn update_knowledge_base(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<KnowledgeBaseBody>(&body)?.spec(false)?;
    let kb = agent(state.knowledge.update_knowledge_base(&id, spec))?;
    Ok(accepted(json!({ "knowledgeBase": kb_json(&state, &kb) })))
}

pub async fn delete_knowledge_base(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Answer {
    let kb = agent(on_blocking_pool(&state, move |core| core.delete_knowledge_base(&id)).await)?;
    Ok(accepted(
        json!({ "knowledgeBaseId": kb.knowledge_base_id, "status": kb.status }),
    ))
}

pub async fn list_knowledge_bases(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.knowledge.list_knowledge_bases())?;
    let paging = list.paging("ListKnowledgeBases", &principal.key_id)?;
    let out = paging.page(all).into_json("knowledgeBaseSummaries", |kb| {
        let mut s = json!({
            "knowledgeBaseId": kb.knowledge_base_id,
            "name": kb.name,
            "status": kb.status,
            "updatedAt": timestamp(kb.updated_ms),
        });
        if let Some(d) = &kb.description {
            s["description"] = json!(d);
        }
        s
    });
    Ok(Json(out).into_response())
}

// ---- data sources ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DataSourceBody {
    name: Option<String>,
    description: Option<String>,
    data_source_configuration: Option<Value>,
    vector_ingestion_configuration: Option<Value>,
    data_deletion_policy: Option<String>,
    #[allow(dead_code)]
    server_side_encryption_configuration: Option<Value>,
    #[allow(dead_code)]
    client_token: Option<String>,
}

impl DataSourceBody {
    fn spec(self) -> Result<DataSourceSpec, BedrockError> {
        let name = required(self.name, "name")?;
        let location = location_of(&required(
            self.data_source_configuration,
            "dataSourceConfiguration",
        )?)?;
        Ok(DataSourceSpec {
            name,
            description: self.description,
            location,
            chunking: chunking_of(self.vector_ingestion_configuration.as_ref())?,
            deletion_policy: deletion_policy_of(self.data_deletion_policy.as_deref())?,
        })
    }
}

fn ds_json(ds: &DataSource) -> Value {
    let mut out = json!({
        "knowledgeBaseId": ds.knowledge_base_id,
        "dataSourceId": ds.data_source_id,
        "name": ds.name,
        "status": ds.status,
        "dataSourceConfiguration": location_json(&ds.location),
        "dataDeletionPolicy": ds.deletion_policy.as_str(),
        "createdAt": timestamp(ds.created_ms),
        "updatedAt": timestamp(ds.updated_ms),
    });
    if let Some(d) = &ds.description {
        out["description"] = json!(d);
    }
    if let Some(chunking) = &ds.chunking {
        out["vectorIngestionConfiguration"] = chunking_json(chunking);
    }
    if !ds.failure_reasons.is_empty() {
        out["failureReasons"] = json!(ds.failure_reasons);
    }
    out
}

pub async fn create_data_source(
    State(state): State<AppState>,
    Path(kb): Path<String>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<DataSourceBody>(&body)?.spec()?;
    let ds = agent(state.knowledge.create_data_source(&kb, spec))?;
    Ok(Json(json!({ "dataSource": ds_json(&ds) })).into_response())
}

pub async fn get_data_source(
    State(state): State<AppState>,
    Path((kb, ds)): Path<(String, String)>,
) -> Answer {
    let ds = agent(state.knowledge.data_source(&kb, &ds))?;
    Ok(Json(json!({ "dataSource": ds_json(&ds) })).into_response())
}

pub async fn update_data_source(
    State(state): State<AppState>,
    Path((kb, ds)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let spec = parse_json::<DataSourceBody>(&body)?.spec()?;
    let ds = agent(state.knowledge.update_data_source(&kb, &ds, spec))?;
    Ok(Json(json!({ "dataSource": ds_json(&ds) })).into_response())
}

pub async fn delete_data_source(
    State(state): State<AppState>,
    Path((kb, ds)): Path<(String, String)>,
) -> Answer {
    let ds = agent(on_blocking_pool(&state, move |core| core.delete_data_source(&kb, &ds)).await)?;
    Ok(accepted(json!({
        "knowledgeBaseId": ds.knowledge_base_id,
        "dataSourceId": ds.data_source_id,
        "status": ds.status,
    })))
}

pub async fn list_data_sources(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(kb): Path<String>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let all = agent(state.knowledge.list_data_sources(&kb))?;
    let paging = list.paging("ListDataSources", &principal.key_id)?;
    let out = paging.page(all).into_json("dataSourceSummaries", |ds| {
        let mut s = json!({
            "knowledgeBaseId": ds.knowledge_base_id,
            "dataSourceId": ds.data_source_id,
            "name": ds.name,
            "status": ds.status,
            "updatedAt": timestamp(ds.updated_ms),
        });
        if let Some(d) = &ds.description {
            s["description"] = json!(d);
        }
        s
    });
    Ok(Json(out).into_response())
}

// ---- ingestion jobs --------------------------------------------------------------

fn statistics_json(s: &Statistics) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

fn job_json(job: &IngestionJob, summary: bool) -> Value {
    let mut out = json!({
        "knowledgeBaseId": job.knowledge_base_id,
        "dataSourceId": job.data_source_id,
        "ingestionJobId": job.ingestion_job_id,
        "status": job.status,
        "statistics": statistics_json(&job.statistics),
        "startedAt": timestamp(job.started_ms),
        "updatedAt": timestamp(job.updated_ms),
    });
    if let Some(d) = &job.description {
        out["description"] = json!(d);
    }
    if !summary && !job.failure_reasons.is_empty() {
        out["failureReasons"] = json!(job.failure_reasons);
    }
    out
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartJobBody {
    description: Option<String>,
    #[allow(dead_code)]
    client_token: Option<String>,
}

pub async fn start_ingestion_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((kb, ds)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let body: StartJobBody = if body.is_empty() {
        StartJobBody::default()
    } else {
        parse_json(&body)?
    };
    let job = agent(state.knowledge.start_ingestion_job(
        Some(principal),
        &kb,
        &ds,
        body.description,
    ))?;
    Ok(accepted(json!({ "ingestionJob": job_json(&job, false) })))
}

pub async fn get_ingestion_job(
    State(state): State<AppState>,
    Path((kb, ds, job)): Path<(String, String, String)>,
) -> Answer {
    let job = agent(state.knowledge.ingestion_job(&kb, &ds, &job))?;
    Ok(Json(json!({ "ingestionJob": job_json(&job, false) })).into_response())
}

pub async fn stop_ingestion_job(
    State(state): State<AppState>,
    Path((kb, ds, job)): Path<(String, String, String)>,
) -> Answer {
    let job = agent(state.knowledge.stop_ingestion_job(&kb, &ds, &job))?;
    Ok(accepted(json!({ "ingestionJob": job_json(&job, false) })))
}

pub async fn list_ingestion_jobs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((kb, ds)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let mut all = agent(state.knowledge.list_ingestion_jobs(&kb, &ds))?;
    if let Some(filters) = list.filters.as_ref().and_then(Value::as_array) {
        for f in filters {
            let attribute = f.get("attribute").and_then(Value::as_str);
            let values: Vec<&str> = f
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if attribute != Some("STATUS") {
                return Err(BedrockError::validation(
                    "filters[].attribute must be STATUS",
                ));
            }
            all.retain(|j| values.contains(&j.status.as_str()));
        }
    }
    let descending = list
        .sort_by
        .as_ref()
        .and_then(|s| s.get("order"))
        .and_then(Value::as_str)
        == Some("DESCENDING");
    if descending {
        all.reverse();
    }
    let out = list
        .paging("ListIngestionJobs", &principal.key_id)?
        .page(all)
        .into_json("ingestionJobSummaries", |j| job_json(j, true));
    Ok(Json(out).into_response())
}

// ---- direct ingestion ------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IngestDocumentsBody {
    documents: Option<Vec<Value>>,
    #[allow(dead_code)]
    client_token: Option<String>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn direct_document(i: usize, doc: &Value) -> Result<DirectDocument, BedrockError> {
    let at = |field: &str| format!("documents[{i}].{field}");
    let content = doc
        .get("content")
        .ok_or_else(|| BedrockError::validation(format!("{} is required", at("content"))))?;
    match str_at(content, "/dataSourceType") {
        Some("CUSTOM") => {}
        other => {
            return Err(BedrockError::validation(format!(
                "{} must be CUSTOM (got {other:?}); S3 documents are ingested by an ingestion job",
                at("content.dataSourceType")
            )))
        }
    }
    let id = str_at(content, "/custom/customDocumentIdentifier/id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            BedrockError::validation(format!(
                "{} is required",
                at("content.custom.customDocumentIdentifier.id")
            ))
        })?;
    if str_at(content, "/custom/sourceType") != Some("IN_LINE") {
        return Err(BedrockError::validation(format!(
            "{} must be IN_LINE (S3_LOCATION is not supported by this server)",
            at("content.custom.sourceType")
        )));
    }
    let (format, bytes) = match str_at(content, "/custom/inlineContent/type") {
        Some("TEXT") => {
            let data =
                str_at(content, "/custom/inlineContent/textContent/data").ok_or_else(|| {
                    BedrockError::validation(format!(
                        "{} is required",
                        at("content.custom.inlineContent.textContent.data")
                    ))
                })?;
            (DocumentFormat::Text, data.as_bytes().to_vec())
        }
        Some("BYTE") => {
            let mime =
                str_at(content, "/custom/inlineContent/byteContent/mimeType").unwrap_or_default();
            let format = DocumentFormat::of_mime(mime).ok_or_else(|| {
                BedrockError::validation(format!(
                    "{} {mime:?} is not a type this server parses (text/plain, text/markdown, text/html, text/csv, application/pdf, DOCX)",
                    at("content.custom.inlineContent.byteContent.mimeType")
                ))
            })?;
            let data =
                str_at(content, "/custom/inlineContent/byteContent/data").unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| {
                    BedrockError::validation(format!(
                        "{}: {e}",
                        at("content.custom.inlineContent.byteContent.data")
                    ))
                })?;
            (format, bytes)
        }
        other => {
            return Err(BedrockError::validation(format!(
                "{} must be TEXT or BYTE, got {other:?}",
                at("content.custom.inlineContent.type")
            )))
        }
    };
    let mut metadata = Map::new();
    if let Some(m) = doc.get("metadata") {
        if str_at(m, "/type") != Some("IN_LINE_ATTRIBUTE") {
            return Err(BedrockError::validation(format!(
                "{} must be IN_LINE_ATTRIBUTE",
                at("metadata.type")
            )));
        }
        for (j, attribute) in m
            .get("inlineAttributes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let key = str_at(attribute, "/key").ok_or_else(|| {
                BedrockError::validation(format!(
                    "{} is required",
                    at(&format!("metadata.inlineAttributes[{j}].key"))
                ))
            })?;
            let value = attribute.get("value").ok_or_else(|| {
                BedrockError::validation(format!(
                    "{} is required",
                    at(&format!("metadata.inlineAttributes[{j}].value"))
                ))
            })?;
            let value = basalt_core::knowledge::typed_metadata_value(value).map_err(|m| {
                BedrockError::validation(format!(
                    "{}: {m}",
                    at(&format!("metadata.inlineAttributes[{j}].value"))
                ))
            })?;
            metadata.insert(key.to_owned(), value);
        }
    }
    Ok(DirectDocument {
        id: id.to_owned(),
        format,
        bytes,
        metadata,
    })
}

fn document_detail(kb: &str, ds: &str, status: &DocumentStatus) -> Value {
    let identifier = if status.id.starts_with("s3://") || status.id.starts_with("file://") {
        json!({ "dataSourceType": "S3", "s3": { "uri": status.id } })
    } else if status.id.starts_with("http://") || status.id.starts_with("https://") {
        // The model's DocumentIdentifier has no web member; a page is named by its URL.
        json!({ "dataSourceType": "WEB", "s3": { "uri": status.id } })
    } else {
        json!({ "dataSourceType": "CUSTOM", "custom": { "id": status.id } })
    };
    let mut out = json!({
        "knowledgeBaseId": kb,
        "dataSourceId": ds,
        "status": status.status,
        "identifier": identifier,
        "updatedAt": timestamp(now_ms()),
    });
    if let Some(r) = &status.reason {
        out["statusReason"] = json!(r);
    }
    out
}

pub async fn ingest_documents(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path((kb, ds)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let body: IngestDocumentsBody = parse_json(&body)?;
    let documents = required(body.documents, "documents")?
        .iter()
        .enumerate()
        .map(|(i, d)| direct_document(i, d))
        .collect::<Result<Vec<_>, _>>()?;
    let statuses = agent(
        state
            .knowledge
            .ingest_documents(Some(&principal), &request_id.0, &kb, &ds, documents)
            .await,
    )?;
    Ok(accepted(json!({
        "documentDetails": statuses.iter().map(|s| document_detail(&kb, &ds, s)).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DocumentIdsBody {
    document_identifiers: Option<Vec<Value>>,
    #[allow(dead_code)]
    data_source_id: Option<String>,
    #[allow(dead_code)]
    client_token: Option<String>,
}

fn identifiers(body: &Bytes) -> Result<Vec<String>, BedrockError> {
    let body: DocumentIdsBody = parse_json(body)?;
    required(body.document_identifiers, "documentIdentifiers")?
        .iter()
        .enumerate()
        .map(|(i, d)| {
            str_at(d, "/custom/id")
                .or_else(|| str_at(d, "/s3/uri"))
                .map(str::to_owned)
                .ok_or_else(|| {
                    BedrockError::validation(format!(
                        "documentIdentifiers[{i}] needs custom.id or s3.uri"
                    ))
                })
        })
        .collect()
}

pub async fn delete_documents(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((kb, ds)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let ids = identifiers(&body)?;
    let statuses = {
        let (kb, ds) = (kb.clone(), ds.clone());
        agent(
            on_blocking_pool(&state, move |core| {
                core.delete_documents(Some(&principal), &kb, &ds, &ids)
            })
            .await,
        )?
    };
    Ok(accepted(json!({
        "documentDetails": statuses.iter().map(|s| document_detail(&kb, &ds, s)).collect::<Vec<_>>(),
    })))
}

pub async fn get_documents(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((kb, ds)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let ids = identifiers(&body)?;
    let statuses = {
        let (kb, ds) = (kb.clone(), ds.clone());
        agent(
            on_blocking_pool(&state, move |core| {
                core.document_statuses(Some(&principal), &kb, &ds, Some(&ids))
            })
            .await,
        )?
    };
    Ok(Json(json!({
        "documentDetails": statuses.iter().map(|s| document_detail(&kb, &ds, s)).collect::<Vec<_>>(),
    }))
    .into_response())
}

pub async fn list_documents(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((kb, ds)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let list = list_body(&body)?;
    let key_id = principal.key_id.clone();
    let statuses = {
        let (kb, ds) = (kb.clone(), ds.clone());
        agent(
            on_blocking_pool(&state, move |core| {
                core.document_statuses(Some(&principal), &kb, &ds, None)
            })
            .await,
        )?
    };
    let out = list
        .paging("ListDocuments", &key_id)?
        .page(statuses)
        .into_json("documentDetails", |s| document_detail(&kb, &ds, s));
    Ok(Json(out).into_response())
}
