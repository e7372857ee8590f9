//! Knowledge-base retrieval on the `bedrock-agent-runtime` wire: Retrieve,
//! RetrieveAndGenerate and RetrieveAndGenerateStream (the answer generated whole,
//! then sent as `output` events followed by one `citation` event per cited span).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::keys::Principal;
use basalt_core::knowledge::retrieve::{
    AttributeType, Citation, FilterAttribute, GenerateSpec, Generated, ImplicitFilter,
    LocationKind, RetrieveSpec, Retrieved,
};
use basalt_core::knowledge::{model_id_of, SearchType};
use basalt_core::types::InferenceParams;
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::parse_json;
use crate::auth::RequestId;
use crate::error::BedrockError;
use crate::eventstream;
use crate::AppState;

/// Header carrying the session of a streamed RetrieveAndGenerate.
const SESSION_HEADER: &str = "x-amzn-bedrock-knowledge-base-session-id";

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VectorSearch {
    number_of_results: Option<i64>,
    override_search_type: Option<String>,
    filter: Option<Value>,
    implicit_filter_configuration: Option<Value>,
    reranking_configuration: Option<super::rerank::RetrievalReranking>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RetrievalConfiguration {
    vector_search_configuration: Option<VectorSearch>,
}

pub(super) fn retrieve_spec(
    kb: String,
    text: String,
    config: Option<RetrievalConfiguration>,
) -> Result<RetrieveSpec, BedrockError> {
    let search = config
        .and_then(|c| c.vector_search_configuration)
        .unwrap_or_default();
    let reranking = search
        .reranking_configuration
        .map(super::rerank::RetrievalReranking::into_spec)
        .transpose()?;
    let implicit_filter = match search.implicit_filter_configuration {
        None | Some(Value::Null) => None,
        Some(config) => Some(implicit_filter(&config)?),
    };
    let search_type = match search.override_search_type.as_deref() {
        None => None,
        Some("HYBRID") => Some(SearchType::Hybrid),
        Some("SEMANTIC") => Some(SearchType::Semantic),
        // A Basalt extension (botocore does not check enum values): BM25 alone.
        Some("KEYWORD") => Some(SearchType::Keyword),
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "overrideSearchType {other:?} is not one of HYBRID, SEMANTIC (or this server's KEYWORD)"
            )))
        }
    };
    let number_of_results = match search.number_of_results {
        None => None,
        Some(n) if (1..=100).contains(&n) => Some(n as usize),
        Some(n) => {
            return Err(BedrockError::validation(format!(
                "numberOfResults must be 1..100, got {n}"
            )))
        }
    };
    Ok(RetrieveSpec {
        knowledge_base_id: kb,
        text,
        number_of_results,
        search_type,
        filter: search.filter,
        implicit_filter,
        reranking,
    })
}

/// `implicitFilterConfiguration`: `modelArn` and 1..25 `metadataAttributes`
/// (`key`, `type` STRING / NUMBER / BOOLEAN / STRING_LIST, `description`).
fn implicit_filter(config: &Value) -> Result<ImplicitFilter, BedrockError> {
    let at = "vectorSearchConfiguration.implicitFilterConfiguration";
    let object = config
        .as_object()
        .ok_or_else(|| BedrockError::validation(format!("{at} must be an object")))?;
    if let Some(key) = object
        .keys()
        .find(|k| *k != "modelArn" && *k != "metadataAttributes")
    {
        return Err(BedrockError::validation(format!(
            "{at}.{key} is not a member"
        )));
    }
    let model = config["modelArn"]
        .as_str()
        .ok_or_else(|| BedrockError::validation(format!("{at}.modelArn is required")))?;
    let listed = config["metadataAttributes"]
        .as_array()
        .ok_or_else(|| BedrockError::validation(format!("{at}.metadataAttributes is required")))?;
    if !(1..=25).contains(&listed.len()) {
        return Err(BedrockError::validation(format!(
            "{at}.metadataAttributes must have 1 to 25 attributes"
        )));
    }
    let mut attributes = Vec::with_capacity(listed.len());
    for (i, a) in listed.iter().enumerate() {
        let key = a["key"]
            .as_str()
            .filter(|k| !k.is_empty() && k.len() <= 256);
        let kind = a["type"].as_str().and_then(AttributeType::parse);
        let (Some(key), Some(kind)) = (key, kind) else {
            return Err(BedrockError::validation(format!(
                "{at}.metadataAttributes[{i}] needs key (1..256 characters) and type (STRING, NUMBER, BOOLEAN or STRING_LIST)"
            )));
        };
        attributes.push(FilterAttribute {
            key: key.to_string(),
            kind,
            description: a["description"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(1000)
                .collect(),
        });
    }
    Ok(ImplicitFilter {
        model_id: model_id_of(model).to_owned(),
        attributes,
    })
}

fn location_json(r: &Retrieved) -> Value {
    match r.kind {
        LocationKind::Custom => {
            json!({ "type": "CUSTOM", "customDocumentLocation": { "id": r.uri } })
        }
        LocationKind::Web => json!({ "type": "WEB", "webLocation": { "url": r.uri } }),
        LocationKind::S3 => json!({ "type": "S3", "s3Location": { "uri": r.uri } }),
    }
}

pub(super) fn result_json(r: &Retrieved, with_score: bool) -> Value {
    let mut out = json!({
        "content": { "type": "TEXT", "text": r.text },
        "location": location_json(r),
        "metadata": r.metadata,
    });
    if with_score {
        out["score"] = json!(r.score);
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrievalQuery {
    text: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[allow(dead_code)]
    image: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrieveBody {
    retrieval_query: Option<RetrievalQuery>,
    retrieval_configuration: Option<RetrievalConfiguration>,
    guardrail_configuration: Option<Value>,
    next_token: Option<String>,
}

pub async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Path(kb): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: RetrieveBody = parse_json(&body)?;
    let query = body
        .retrieval_query
        .ok_or_else(|| BedrockError::validation("retrievalQuery is required"))?;
    if query.kind.as_deref().is_some_and(|k| k != "TEXT") {
        return Err(BedrockError::validation(
            "retrievalQuery.type must be TEXT on this server",
        ));
    }
    if body.guardrail_configuration.is_some() {
        return Err(BedrockError::validation(
            "guardrailConfiguration on Retrieve is not supported by this server; use RetrieveAndGenerate or ApplyGuardrail",
        ));
    }
    if body.next_token.is_some() {
        return Err(BedrockError::validation(
            "nextToken: every result fits one page; raise numberOfResults instead",
        ));
    }
    let text = query
        .text
        .ok_or_else(|| BedrockError::validation("retrievalQuery.text is required"))?;
    let spec = retrieve_spec(kb, text, body.retrieval_configuration)?;
    let results = state
        .knowledge
        .retrieve(Some(&principal), &request_id.0, &spec)
        .await
        .map_err(BedrockError::agent)?;
    Ok(Json(json!({
        "retrievalResults": results.iter().map(|r| result_json(r, true)).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenerateInput {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TextInferenceConfig {
    max_tokens: Option<u32>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f32>,
    top_p: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InferenceConfig {
    text_inference_config: Option<TextInferenceConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PromptTemplate {
    text_prompt_template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GuardrailConfiguration {
    guardrail_id: Option<String>,
    guardrail_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenerationConfiguration {
    prompt_template: Option<PromptTemplate>,
    inference_config: Option<InferenceConfig>,
    guardrail_configuration: Option<GuardrailConfiguration>,
    additional_model_request_fields: Option<Value>,
    #[allow(dead_code)]
    performance_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KnowledgeBaseConfiguration {
    knowledge_base_id: Option<String>,
    model_arn: Option<String>,
    retrieval_configuration: Option<RetrievalConfiguration>,
    generation_configuration: Option<GenerationConfiguration>,
    orchestration_configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RagConfiguration {
    #[serde(rename = "type")]
    kind: Option<String>,
    knowledge_base_configuration: Option<KnowledgeBaseConfiguration>,
    external_sources_configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenerateBody {
    input: Option<GenerateInput>,
    session_id: Option<String>,
    retrieve_and_generate_configuration: Option<RagConfiguration>,
    #[allow(dead_code)]
    session_configuration: Option<Value>,
}

fn generate_spec(body: GenerateBody) -> Result<GenerateSpec, BedrockError> {
    let text = body
        .input
        .and_then(|i| i.text)
        .ok_or_else(|| BedrockError::validation("input.text is required"))?;
    if let Some(id) = &body.session_id {
        let valid = (2..=100).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || c == ':');
        if !valid {
            return Err(BedrockError::validation(
                "sessionId must be 2..100 characters of [0-9a-zA-Z._:-]",
            ));
        }
    }
    let config = body
        .retrieve_and_generate_configuration
        .ok_or_else(|| BedrockError::validation("retrieveAndGenerateConfiguration is required"))?;
    match config.kind.as_deref() {
        Some("KNOWLEDGE_BASE") => {}
        Some("EXTERNAL_SOURCES") => {
            return Err(BedrockError::validation(
                "retrieveAndGenerateConfiguration.type EXTERNAL_SOURCES is not supported by this server; supported: KNOWLEDGE_BASE",
            ))
        }
        other => {
            return Err(BedrockError::validation(format!(
                "retrieveAndGenerateConfiguration.type must be KNOWLEDGE_BASE, got {other:?}"
            )))
        }
    }
    let _ = config.external_sources_configuration;
    let kb = config
        .knowledge_base_configuration
        .ok_or_else(|| BedrockError::validation("knowledgeBaseConfiguration is required"))?;
    let decompose = match &kb.orchestration_configuration {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            if let Some(key) = o.keys().find(|k| *k != "queryTransformationConfiguration") {
                return Err(BedrockError::validation(format!(
                    "orchestrationConfiguration.{key} is not supported by this server; supported: queryTransformationConfiguration"
                )));
            }
            match o.get("queryTransformationConfiguration").map(|q| q.get("type").and_then(Value::as_str)) {
                None => false,
                Some(Some("QUERY_DECOMPOSITION")) => true,
                Some(other) => {
                    return Err(BedrockError::validation(format!(
                        "queryTransformationConfiguration.type must be QUERY_DECOMPOSITION, got {other:?}"
                    )))
                }
            }
        }
        Some(_) => {
            return Err(BedrockError::validation(
                "orchestrationConfiguration must be an object",
            ))
        }
    };
    let kb_id = kb.knowledge_base_id.ok_or_else(|| {
        BedrockError::validation("knowledgeBaseConfiguration.knowledgeBaseId is required")
    })?;
    let model = kb.model_arn.ok_or_else(|| {
        BedrockError::validation("knowledgeBaseConfiguration.modelArn is required")
    })?;
    let retrieve = retrieve_spec(kb_id, text, kb.retrieval_configuration)?;
    let mut params = InferenceParams::default();
    let mut prompt_template = None;
    let mut guardrail = None;
    if let Some(g) = kb.generation_configuration {
        if g.additional_model_request_fields
            .as_ref()
            .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
        {
            return Err(BedrockError::validation(
                "additionalModelRequestFields is not supported by this server",
            ));
        }
        prompt_template = g.prompt_template.and_then(|p| p.text_prompt_template);
        if let Some(t) = g.inference_config.and_then(|c| c.text_inference_config) {
            if t.temperature.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return Err(BedrockError::validation(
                    "temperature must be between 0 and 1",
                ));
            }
            if t.top_p.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return Err(BedrockError::validation("topP must be between 0 and 1"));
            }
            params.max_tokens = t.max_tokens;
            params.temperature = t.temperature;
            params.top_p = t.top_p;
            params.stop_sequences = t.stop_sequences.unwrap_or_default();
        }
        if let Some(g) = g.guardrail_configuration {
            guardrail = Some((
                g.guardrail_id.ok_or_else(|| {
                    BedrockError::validation("guardrailConfiguration.guardrailId is required")
                })?,
                g.guardrail_version.ok_or_else(|| {
                    BedrockError::validation("guardrailConfiguration.guardrailVersion is required")
                })?,
            ));
        }
    }
    Ok(GenerateSpec {
        retrieve,
        model_id: model_id_of(&model).to_owned(),
        session_id: body.session_id,
        prompt_template,
        params,
        guardrail,
        decompose,
    })
}

pub(super) fn citation_json(c: &Citation) -> Value {
    json!({
        "generatedResponsePart": {
            "textResponsePart": { "text": c.text, "span": { "start": c.start, "end": c.end } }
        },
        "retrievedReferences": c.references.iter().map(|r| result_json(r, false)).collect::<Vec<_>>(),
    })
}

async fn generate(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    body: &Bytes,
) -> Result<Generated, BedrockError> {
    let spec = generate_spec(parse_json(body)?)?;
    state
        .knowledge
        .retrieve_and_generate(Some(principal), &request_id.0, spec)
        .await
        .map_err(BedrockError::agent)
}

pub async fn retrieve_and_generate(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let answer = generate(&state, &principal, &request_id, &body).await?;
    let mut out = json!({
        "sessionId": answer.session_id,
        "output": { "text": answer.text },
        "citations": answer.citations.iter().map(citation_json).collect::<Vec<_>>(),
    });
    if answer.guardrail_intervened {
        out["guardrailAction"] = json!("INTERVENED");
    }
    Ok(Json(out).into_response())
}

pub async fn retrieve_and_generate_stream(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let answer = generate(&state, &principal, &request_id, &body).await?;
    let mut frames = Vec::new();
    frames.push(eventstream::event(
        "output",
        &json!({ "text": answer.text }),
    ));
    for c in &answer.citations {
        let citation = citation_json(c);
        frames.push(eventstream::event(
            "citation",
            &json!({
                "generatedResponsePart": citation["generatedResponsePart"],
                "retrievedReferences": citation["retrievedReferences"],
                "citation": citation,
            }),
        ));
    }
    if answer.guardrail_intervened {
        frames.push(eventstream::event(
            "guardrail",
            &json!({ "action": "INTERVENED" }),
        ));
    }
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    if let Ok(v) = HeaderValue::from_str(&answer.session_id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(response)
}
