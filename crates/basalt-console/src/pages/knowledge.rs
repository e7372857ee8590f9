//! Knowledge bases: list, create (embedded index, any catalog embedding model), data
//! sources over a folder, S3 or the web, ingestion with live progress, and test
//! panes for Retrieve and RetrieveAndGenerate (citations linked to their chunks).

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{filled, json_field, paged_body, see_other, PageQuery};
use crate::api::segment;
use crate::{ApiFailure, Console, Signed};

fn embedding_models(console: &Console) -> Vec<String> {
    console
        .app()
        .core
        .catalog()
        .models()
        .filter(|m| m.is_embedding())
        .map(|m| m.id.clone())
        .collect()
}

fn chat_models(console: &Console) -> Vec<String> {
    super::overview::invocable_chat_models(console, basalt_core::types::InferenceType::OnDemand)
        .into_iter()
        .map(|m| m.id.clone())
        .collect()
}

fn invalid(message: impl Into<String>) -> ApiFailure {
    ApiFailure {
        status: StatusCode::BAD_REQUEST,
        code: "ValidationException".into(),
        message: message.into(),
    }
}

async fn render_list(
    console: &Console,
    signed: &Signed,
    next: Option<&str>,
    error: Option<ApiFailure>,
) -> Response {
    let status = super::status_of(error.as_ref());
    let (kbs, next_token, list_error) = console
        .list_page(
            signed,
            Method::POST,
            "/knowledgebases/",
            Some(&paged_body(next)),
            "knowledgeBaseSummaries",
        )
        .await;
    console.page_with_status(
        status,
        signed,
        "knowledge_bases.html",
        "knowledge",
        context! {
            kbs, next_token, embedding_models => embedding_models(console),
            error => error.map(|e| e.to_string()).or(list_error),
        },
    )
}

pub async fn list(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<PageQuery>,
) -> Response {
    render_list(&console, &signed, q.next.as_deref(), None).await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    name: Option<String>,
    description: Option<String>,
    embedding_model: Option<String>,
}

pub async fn create(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Form(form): Form<CreateForm>,
) -> Response {
    let model = filled(&form.embedding_model).unwrap_or_default();
    let region = console.app().core.region().to_string();
    let mut body = json!({
        "name": filled(&form.name).unwrap_or_default(),
        "roleArn": format!("arn:aws:iam::{}:role/basalt-console", console.app().core.account_id()),
        "knowledgeBaseConfiguration": {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": format!("arn:aws:bedrock:{region}::foundation-model/{model}")}},
        "storageConfiguration": {"type": "BASALT_EMBEDDED"},
    });
    if let Some(d) = filled(&form.description) {
        body["description"] = d.into();
    }
    match console
        .call(&signed, Method::PUT, "/knowledgebases/", Some(&body))
        .await
    {
        Ok(v) => see_other(&format!(
            "/console/knowledge-bases/{}",
            segment(
                v["knowledgeBase"]["knowledgeBaseId"]
                    .as_str()
                    .unwrap_or_default()
            )
        )),
        Err(e) => render_list(&console, &signed, None, Some(e)).await,
    }
}

async fn render_detail(
    console: &Console,
    signed: &Signed,
    kb: &str,
    error: Option<ApiFailure>,
    status: StatusCode,
) -> Response {
    let base = format!("/knowledgebases/{}", segment(kb));
    let knowledge_base = match console.call(signed, Method::GET, &base, None).await {
        Ok(v) => v["knowledgeBase"].clone(),
        Err(e) => return console.error_page(signed, "knowledge", &e),
    };
    let sources = console
        .call(
            signed,
            Method::POST,
            &format!("{base}/datasources/"),
            Some(&json!({"maxResults": 100})),
        )
        .await;
    let mut data_sources = Vec::new();
    let mut list_error = None;
    match sources {
        Ok(v) => {
            for ds in v["dataSourceSummaries"].as_array().into_iter().flatten() {
                let id = ds["dataSourceId"].as_str().unwrap_or_default();
                let jobs = console
                    .call(
                        signed,
                        Method::POST,
                        &format!("{base}/datasources/{}/ingestionjobs/", segment(id)),
                        Some(&json!({"maxResults": 5, "sortBy": {"attribute": "STARTED_AT", "order": "DESCENDING"}})),
                    )
                    .await
                    .map(|j| j["ingestionJobSummaries"].clone())
                    .unwrap_or(Value::Null);
                let detail = console
                    .call(
                        signed,
                        Method::GET,
                        &format!("{base}/datasources/{}", segment(id)),
                        None,
                    )
                    .await
                    .map(|d| d["dataSource"].clone())
                    .unwrap_or(Value::Null);
                data_sources.push(json!({ "summary": ds, "detail": detail, "jobs": jobs }));
            }
        }
        Err(e) => list_error = Some(e.to_string()),
    }
    console.page_with_status(
        status,
        signed,
        "knowledge_base.html",
        "knowledge",
        context! {
            kb => knowledge_base, data_sources, chat_models => chat_models(console),
            error => error.map(|e| e.to_string()).or(list_error),
        },
    )
}

pub async fn detail(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(kb): Path<String>,
) -> Response {
    render_detail(&console, &signed, &kb, None, StatusCode::OK).await
}

pub async fn delete(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(kb): Path<String>,
) -> Response {
    match console
        .call(
            &signed,
            Method::DELETE,
            &format!("/knowledgebases/{}", segment(&kb)),
            None,
        )
        .await
    {
        Ok(_) => see_other("/console/knowledge-bases"),
        Err(e) => render_detail(&console, &signed, &kb, Some(e.clone()), e.status).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct DataSourceForm {
    name: Option<String>,
    kind: Option<String>,
    location: Option<String>,
}

fn data_source_config(form: &DataSourceForm) -> Result<Value, ApiFailure> {
    let location =
        filled(&form.location).ok_or_else(|| invalid("give the data source's location"))?;
    match form.kind.as_deref() {
        Some("WEB") => Ok(
            json!({"type": "WEB", "webConfiguration": {"sourceConfiguration": {
            "urlConfiguration": {"seedUrls": [{"url": location}]}}}}),
        ),
        Some("S3") => {
            let bucket = location.trim_start_matches("s3://");
            let (bucket, prefix) = bucket.split_once('/').unwrap_or((bucket, ""));
            let mut s3 = json!({"bucketArn": format!("arn:aws:s3:::{bucket}")});
            if !prefix.is_empty() {
                s3["inclusionPrefixes"] = json!([prefix]);
            }
            Ok(json!({"type": "S3", "s3Configuration": s3}))
        }
        _ => {
            // A folder on this server: a file:// URI (within the allowed paths).
            let uri = if location.starts_with("file://") {
                location.to_string()
            } else if location.starts_with('/') {
                format!("file://{}", location)
            } else {
                return Err(invalid(
                    "a folder is an absolute path (/…) or a file:// URI",
                ));
            };
            let uri = if uri.ends_with('/') {
                uri
            } else {
                format!("{uri}/")
            };
            Ok(json!({"type": "S3", "s3Configuration": {"bucketArn": uri}}))
        }
    }
}

pub async fn create_data_source(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(kb): Path<String>,
    Form(form): Form<DataSourceForm>,
) -> Response {
    let config = match data_source_config(&form) {
        Ok(c) => c,
        Err(e) => return render_detail(&console, &signed, &kb, Some(e.clone()), e.status).await,
    };
    let body = json!({ "name": filled(&form.name).unwrap_or_default(), "dataSourceConfiguration": config });
    let path = format!("/knowledgebases/{}/datasources/", segment(&kb));
    match console.call(&signed, Method::PUT, &path, Some(&body)).await {
        Ok(_) => see_other(&format!("/console/knowledge-bases/{}", segment(&kb))),
        Err(e) => render_detail(&console, &signed, &kb, Some(e.clone()), e.status).await,
    }
}

pub async fn sync(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path((kb, ds)): Path<(String, String)>,
) -> Response {
    let path = format!(
        "/knowledgebases/{}/datasources/{}/ingestionjobs/",
        segment(&kb),
        segment(&ds)
    );
    match console
        .call(&signed, Method::PUT, &path, Some(&json!({})))
        .await
    {
        Ok(_) => see_other(&format!("/console/knowledge-bases/{}", segment(&kb))),
        Err(e) => render_detail(&console, &signed, &kb, Some(e.clone()), e.status).await,
    }
}

/// `GET …/jobs/{job}` (htmx, polled while the job runs): one ingestion job's progress.
pub async fn job(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path((kb, ds, job)): Path<(String, String, String)>,
) -> Response {
    let path = format!(
        "/knowledgebases/{}/datasources/{}/ingestionjobs/{}",
        segment(&kb),
        segment(&ds),
        segment(&job)
    );
    match console.call(&signed, Method::GET, &path, None).await {
        Ok(v) => console.html(
            StatusCode::OK,
            "ingestion_job.html",
            context! { job => v["ingestionJob"], kb, ds },
        ),
        Err(e) => console.error_fragment(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct RetrieveForm {
    query: Option<String>,
    results: Option<String>,
    search_type: Option<String>,
    filter: Option<String>,
    model: Option<String>,
}

fn vector_search(form: &RetrieveForm) -> Result<Value, ApiFailure> {
    let mut search = json!({});
    if let Some(n) = filled(&form.results) {
        let n: u64 = n
            .parse()
            .map_err(|_| invalid("the number of results must be a whole number"))?;
        search["numberOfResults"] = n.into();
    }
    if let Some(t) = filled(&form.search_type).filter(|t| *t != "DEFAULT") {
        search["overrideSearchType"] = t.into();
    }
    if let Some(f) = filled(&form.filter) {
        search["filter"] = json_field("the filter", f)?;
    }
    Ok(search)
}

pub async fn retrieve(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(kb): Path<String>,
    Form(form): Form<RetrieveForm>,
) -> Response {
    let search = match vector_search(&form) {
        Ok(s) => s,
        Err(e) => return console.error_fragment(&e),
    };
    let body = json!({
        "retrievalQuery": {"text": filled(&form.query).unwrap_or_default()},
        "retrievalConfiguration": {"vectorSearchConfiguration": search},
    });
    let path = format!("/knowledgebases/{}/retrieve", segment(&kb));
    match console
        .call(&signed, Method::POST, &path, Some(&body))
        .await
    {
        Ok(v) => console.html(
            StatusCode::OK,
            "retrieve_results.html",
            context! { results => v["retrievalResults"], generated => Value::Null },
        ),
        Err(e) => console.error_fragment(&e),
    }
}

/// The generated text cut at its citations' spans: `[{text, citation: n|None}]`.
fn cited_parts(output: &str, citations: &Value) -> Vec<Value> {
    let mut parts = Vec::new();
    let mut at = 0usize;
    let chars: Vec<char> = output.chars().collect();
    for (i, c) in citations.as_array().into_iter().flatten().enumerate() {
        let span = &c["generatedResponsePart"]["textResponsePart"]["span"];
        let (Some(start), Some(end)) = (span["start"].as_u64(), span["end"].as_u64()) else {
            continue;
        };
        // The span's end is exclusive (as `text[start:end]`).
        let (start, end) = (start as usize, (end as usize).min(chars.len()));
        if start < at || start >= end {
            continue;
        }
        if start > at {
            parts.push(json!({"text": chars[at..start].iter().collect::<String>()}));
        }
        parts
            .push(json!({"text": chars[start..end].iter().collect::<String>(), "citation": i + 1}));
        at = end;
    }
    if at < chars.len() {
        parts.push(json!({"text": chars[at..].iter().collect::<String>()}));
    }
    parts
}

pub async fn generate(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(kb): Path<String>,
    Form(form): Form<RetrieveForm>,
) -> Response {
    let search = match vector_search(&form) {
        Ok(s) => s,
        Err(e) => return console.error_fragment(&e),
    };
    let model = filled(&form.model).unwrap_or_default();
    let body = json!({
        "input": {"text": filled(&form.query).unwrap_or_default()},
        "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
            "knowledgeBaseId": kb,
            "modelArn": format!("arn:aws:bedrock:{}::foundation-model/{model}", console.app().core.region()),
            "retrievalConfiguration": {"vectorSearchConfiguration": search},
        }},
    });
    match console
        .call(&signed, Method::POST, "/retrieveAndGenerate", Some(&body))
        .await
    {
        Ok(v) => {
            let output = v["output"]["text"].as_str().unwrap_or_default();
            let parts = cited_parts(output, &v["citations"]);
            console.html(
                StatusCode::OK,
                "retrieve_results.html",
                context! { generated => true, parts, citations => v["citations"], session => v["sessionId"] },
            )
        }
        Err(e) => console.error_fragment(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_become_file_uris_and_buckets_arns() {
        let f = |kind: &str, location: &str| {
            data_source_config(&DataSourceForm {
                name: None,
                kind: Some(kind.into()),
                location: Some(location.into()),
            })
        };
        assert_eq!(
            f("FOLDER", "/data/docs")
                .ok()
                .map(|v| v["s3Configuration"]["bucketArn"].clone()),
            Some(json!("file:///data/docs/"))
        );
        assert_eq!(
            f("S3", "s3://b/p/")
                .ok()
                .map(|v| v["s3Configuration"].clone()),
            Some(json!({"bucketArn": "arn:aws:s3:::b", "inclusionPrefixes": ["p/"]}))
        );
        assert!(f("FOLDER", "relative/path").is_err());
    }

    #[test]
    fn citations_cut_the_answer() {
        let citations = json!([{"generatedResponsePart": {"textResponsePart": {"span": {"start": 0, "end": 6}}}}]);
        let parts = cited_parts("Basalt is rock.", &citations);
        assert_eq!(
            parts,
            vec![
                json!({"text": "Basalt", "citation": 1}),
                json!({"text": " is rock."})
            ]
        );
    }
}
