//! What each API request does, in IAM's terms: the action (`bedrock:InvokeModel`,
//! `bedrock:CreateGuardrail`, `basalt:CreateKey`, ...) and the resources it acts on, so
//! that a key's policy can allow or deny it as an AWS IAM policy would.
//!
//! `ROUTES` has one row per method and path of [`crate::api_routes`], in the order of
//! the route files (`bedrock/mod.rs`, `openai.rs`, `anthropic.rs`, `responses.rs`,
//! `admin.rs`). A path matches a row as axum matches it: segment by segment, a `{param}`
//! takes one non-empty segment, a trailing `/` is significant, and where a literal
//! segment and a `{param}` both match, the literal wins. Parameters are percent-decoded
//! (boto3 percent-encodes ARNs and `:` in paths), as axum's `Path` extractor decodes them.
//!
//! The body is read only where a route takes its model, knowledge base or guardrail from
//! it; a body that is not JSON, or lacks the field, gives [`Resource::Any`] (or leaves
//! the field out) instead of an error: the handler refuses such a request itself.

use std::cell::OnceCell;

use axum::http::{HeaderMap, Method};
use serde_json::Value;

/// What a request acts on, before ARNs are rendered (the caller knows region and account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A model as the request names it: a model ID (`anthropic.claude...`), or any ARN
    /// (foundation model, inference profile, provisioned model, custom model, imported model,
    /// custom-model deployment) as given.
    Model(String),
    /// A guardrail: ID or ARN as given.
    Guardrail(String),
    /// A knowledge base ID.
    KnowledgeBase(String),
    /// An agent ID.
    Agent(String),
    AgentAlias {
        agent: String,
        alias: String,
    },
    /// A batch inference job: ID or ARN as given.
    BatchJob(String),
    CustomizationJob(String),
    ImportJob(String),
    CustomModel(String),
    ImportedModel(String),
    Deployment(String),
    InferenceProfile(String),
    ProvisionedModel(String),
    /// Basalt's own resources (keys, audit log, stored responses): a name such as "key/<id>" or "response/<id>".
    Basalt(String),
    /// No particular resource (List*, Create* of a new resource): IAM's "*".
    Any,
}

/// The action and resources of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The IAM action, e.g. "bedrock:InvokeModel", "bedrock:CreateGuardrail", "bedrock:Retrieve";
    /// Basalt's own admin routes use the "basalt:" prefix, e.g. "basalt:CreateKey".
    pub action: &'static str,
    pub resources: Vec<Resource>,
    /// For model invocations: the guardrail the request applies, as "<identifier>:<version>"
    /// (identifier as given, ID or ARN; version as given, e.g. "1" or "DRAFT"), or None when
    /// the request applies no guardrail.
    pub guardrail: Option<String>,
    /// True when the request changes something (create, update, delete, start, stop, ingest, ...):
    /// what an audit log records. Reads (Get/List/Invoke/Retrieve/Converse/...) are false.
    pub mutates: bool,
}

/// The target of a request by method, path (no query string) and body; None when no route
/// matches (the caller denies such a request for a key with a policy).
pub fn target_of(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Target> {
    let (route, found) = route_of(method, path)?;
    let request = Request {
        params: found.params,
        headers,
        body,
        json: OnceCell::new(),
    };
    let acts = (route.acts_on)(&request);
    Some(Target {
        action: if acts.streaming {
            "bedrock:InvokeModelWithResponseStream"
        } else {
            route.action
        },
        resources: if acts.resources.is_empty() {
            vec![Resource::Any]
        } else {
            acts.resources
        },
        guardrail: acts.guardrail,
        mutates: route.mutates,
    })
}

/// Whether the request's route changes something (`None`: no route matches), from
/// the method and path alone: no body is read.
pub fn mutates(method: &Method, path: &str) -> Option<bool> {
    route_of(method, path).map(|(route, _)| route.mutates)
}

/// The route a request reaches and its path parameters, as axum picks it.
fn route_of(method: &Method, path: &str) -> Option<(&'static Route, Match)> {
    // axum's `get` answers HEAD too.
    let verb = match *method {
        Method::GET | Method::HEAD => Verb::Get,
        Method::POST => Verb::Post,
        Method::PUT => Verb::Put,
        Method::DELETE => Verb::Delete,
        Method::PATCH => Verb::Patch,
        _ => return None,
    };
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    // As axum: the path picks the route (the best match), then the method picks the
    // handler; a method the route does not serve is a 405, not another route's match.
    let mut best: Option<Match> = None;
    for route in ROUTES {
        if best.as_ref().is_some_and(|b| b.template == route.template) {
            continue;
        }
        let Some(found) = match_template(route.template, &segments) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| found.literals > b.literals) {
            best = Some(found);
        }
    }
    let best = best?;
    let route = ROUTES
        .iter()
        .find(|r| r.template == best.template && r.verb == verb)?;
    Some((route, best))
}

/// The HTTP methods the routes use (HEAD is served as GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Put,
    Delete,
    Patch,
}

const GET: Verb = Verb::Get;
const POST: Verb = Verb::Post;
const PUT: Verb = Verb::Put;
const DELETE: Verb = Verb::Delete;
const PATCH: Verb = Verb::Patch;

/// `mutates` of a route that creates, changes, deletes, starts or stops something.
const WRITES: bool = true;
/// `mutates` of a route that only reads, lists or invokes.
const READS: bool = false;

/// One method of one route.
struct Route {
    verb: Verb,
    /// The path as the route file writes it.
    template: &'static str,
    action: &'static str,
    mutates: bool,
    acts_on: fn(&Request<'_>) -> ActsOn,
}

const fn route(
    verb: Verb,
    template: &'static str,
    action: &'static str,
    mutates: bool,
    acts_on: fn(&Request<'_>) -> ActsOn,
) -> Route {
    Route {
        verb,
        template,
        action,
        mutates,
        acts_on,
    }
}

/// Every API route, in the order of the route files.
#[rustfmt::skip]
const ROUTES: &[Route] = &[
    // bedrock/mod.rs: bedrock-runtime
    route(POST, "/model/{model_id}/converse", "bedrock:InvokeModel", READS, converse),
    route(POST, "/model/{model_id}/converse-stream", "bedrock:InvokeModelWithResponseStream", READS, converse),
    route(POST, "/model/{model_id}/invoke", "bedrock:InvokeModel", READS, invoke),
    route(POST, "/model/{model_id}/invoke-with-response-stream", "bedrock:InvokeModelWithResponseStream", READS, invoke),
    route(POST, "/model/{model_id}/count-tokens", "bedrock:CountTokens", READS, model),
    route(POST, "/guardrail/{guardrail_id}/version/{guardrail_version}/apply", "bedrock:ApplyGuardrail", READS, apply_guardrail),
    // bedrock: guardrails
    route(POST, "/guardrails", "bedrock:CreateGuardrail", WRITES, any),
    route(GET, "/guardrails", "bedrock:ListGuardrails", READS, any),
    route(GET, "/guardrails/{guardrail_id}", "bedrock:GetGuardrail", READS, guardrail),
    route(PUT, "/guardrails/{guardrail_id}", "bedrock:UpdateGuardrail", WRITES, guardrail),
    route(POST, "/guardrails/{guardrail_id}", "bedrock:CreateGuardrailVersion", WRITES, guardrail),
    route(DELETE, "/guardrails/{guardrail_id}", "bedrock:DeleteGuardrail", WRITES, guardrail),
    // bedrock: batch inference
    route(POST, "/model-invocation-job", "bedrock:CreateModelInvocationJob", WRITES, batch_create),
    route(GET, "/model-invocation-job/{job_id}", "bedrock:GetModelInvocationJob", READS, batch_job),
    route(POST, "/model-invocation-job/{job_id}/stop", "bedrock:StopModelInvocationJob", WRITES, batch_job),
    route(GET, "/model-invocation-jobs", "bedrock:ListModelInvocationJobs", READS, any),
    // bedrock: customization, import, custom models, deployments
    route(POST, "/model-customization-jobs", "bedrock:CreateModelCustomizationJob", WRITES, customization_create),
    route(GET, "/model-customization-jobs", "bedrock:ListModelCustomizationJobs", READS, any),
    route(GET, "/model-customization-jobs/{job_id}", "bedrock:GetModelCustomizationJob", READS, customization_job),
    route(POST, "/model-customization-jobs/{job_id}/stop", "bedrock:StopModelCustomizationJob", WRITES, customization_job),
    route(GET, "/custom-models", "bedrock:ListCustomModels", READS, any),
    route(POST, "/model-import-jobs", "bedrock:CreateModelImportJob", WRITES, any),
    route(GET, "/model-import-jobs", "bedrock:ListModelImportJobs", READS, any),
    route(GET, "/model-import-jobs/{job_id}", "bedrock:GetModelImportJob", READS, import_job),
    route(GET, "/imported-models", "bedrock:ListImportedModels", READS, any),
    route(GET, "/imported-models/{model_id}", "bedrock:GetImportedModel", READS, imported_model),
    route(DELETE, "/imported-models/{model_id}", "bedrock:DeleteImportedModel", WRITES, imported_model),
    route(POST, "/model-customization/custom-model-deployments", "bedrock:CreateCustomModelDeployment", WRITES, deployment_create),
    route(GET, "/model-customization/custom-model-deployments", "bedrock:ListCustomModelDeployments", READS, any),
    route(GET, "/model-customization/custom-model-deployments/{deployment_id}", "bedrock:GetCustomModelDeployment", READS, deployment),
    route(PATCH, "/model-customization/custom-model-deployments/{deployment_id}", "bedrock:UpdateCustomModelDeployment", WRITES, deployment_update),
    route(DELETE, "/model-customization/custom-model-deployments/{deployment_id}", "bedrock:DeleteCustomModelDeployment", WRITES, deployment),
    route(GET, "/custom-models/{model_id}", "bedrock:GetCustomModel", READS, custom_model),
    route(DELETE, "/custom-models/{model_id}", "bedrock:DeleteCustomModel", WRITES, custom_model),
    // bedrock: inference profiles, provisioned throughput
    route(POST, "/inference-profiles", "bedrock:CreateInferenceProfile", WRITES, profile_create),
    route(GET, "/inference-profiles", "bedrock:ListInferenceProfiles", READS, any),
    route(GET, "/inference-profiles/{profile_id}", "bedrock:GetInferenceProfile", READS, profile),
    route(DELETE, "/inference-profiles/{profile_id}", "bedrock:DeleteInferenceProfile", WRITES, profile),
    route(POST, "/provisioned-model-throughput", "bedrock:CreateProvisionedModelThroughput", WRITES, provisioned_create),
    route(GET, "/provisioned-model-throughput/{provisioned_id}", "bedrock:GetProvisionedModelThroughput", READS, provisioned),
    route(PATCH, "/provisioned-model-throughput/{provisioned_id}", "bedrock:UpdateProvisionedModelThroughput", WRITES, provisioned),
    route(DELETE, "/provisioned-model-throughput/{provisioned_id}", "bedrock:DeleteProvisionedModelThroughput", WRITES, provisioned),
    route(GET, "/provisioned-model-throughputs", "bedrock:ListProvisionedModelThroughputs", READS, any),
    // bedrock-agent: knowledge bases, data sources, ingestion jobs, documents
    route(PUT, "/knowledgebases/", "bedrock:CreateKnowledgeBase", WRITES, any),
    route(POST, "/knowledgebases/", "bedrock:ListKnowledgeBases", READS, any),
    route(GET, "/knowledgebases/{kb}", "bedrock:GetKnowledgeBase", READS, knowledge_base),
    route(PUT, "/knowledgebases/{kb}", "bedrock:UpdateKnowledgeBase", WRITES, knowledge_base),
    route(DELETE, "/knowledgebases/{kb}", "bedrock:DeleteKnowledgeBase", WRITES, knowledge_base),
    route(PUT, "/knowledgebases/{kb}/datasources/", "bedrock:CreateDataSource", WRITES, knowledge_base),
    route(POST, "/knowledgebases/{kb}/datasources/", "bedrock:ListDataSources", READS, knowledge_base),
    route(GET, "/knowledgebases/{kb}/datasources/{ds}", "bedrock:GetDataSource", READS, knowledge_base),
    route(PUT, "/knowledgebases/{kb}/datasources/{ds}", "bedrock:UpdateDataSource", WRITES, knowledge_base),
    route(DELETE, "/knowledgebases/{kb}/datasources/{ds}", "bedrock:DeleteDataSource", WRITES, knowledge_base),
    route(PUT, "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/", "bedrock:StartIngestionJob", WRITES, knowledge_base),
    route(POST, "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/", "bedrock:ListIngestionJobs", READS, knowledge_base),
    route(GET, "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/{job}", "bedrock:GetIngestionJob", READS, knowledge_base),
    route(POST, "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/{job}/stop", "bedrock:StopIngestionJob", WRITES, knowledge_base),
    route(PUT, "/knowledgebases/{kb}/datasources/{ds}/documents", "bedrock:IngestKnowledgeBaseDocuments", WRITES, knowledge_base),
    route(POST, "/knowledgebases/{kb}/datasources/{ds}/documents", "bedrock:ListKnowledgeBaseDocuments", READS, knowledge_base),
    route(POST, "/knowledgebases/{kb}/datasources/{ds}/documents/deleteDocuments", "bedrock:DeleteKnowledgeBaseDocuments", WRITES, knowledge_base),
    route(POST, "/knowledgebases/{kb}/datasources/{ds}/documents/getDocuments", "bedrock:GetKnowledgeBaseDocuments", READS, knowledge_base),
    // bedrock-agent-runtime: retrieval
    route(POST, "/knowledgebases/{kb}/retrieve", "bedrock:Retrieve", READS, knowledge_base),
    route(POST, "/retrieveAndGenerate", "bedrock:RetrieveAndGenerate", READS, retrieve_and_generate),
    // IAM has no separate action for the streamed variant.
    route(POST, "/retrieveAndGenerateStream", "bedrock:RetrieveAndGenerate", READS, retrieve_and_generate),
    route(POST, "/rerank", "bedrock:Rerank", READS, rerank),
    // bedrock-agent: agents
    route(PUT, "/agents/", "bedrock:CreateAgent", WRITES, any),
    route(POST, "/agents/", "bedrock:ListAgents", READS, any),
    route(GET, "/agents/{agent_id}/", "bedrock:GetAgent", READS, agent),
    route(PUT, "/agents/{agent_id}/", "bedrock:UpdateAgent", WRITES, agent),
    route(DELETE, "/agents/{agent_id}/", "bedrock:DeleteAgent", WRITES, agent),
    route(POST, "/agents/{agent_id}/", "bedrock:PrepareAgent", WRITES, agent),
    // bedrock-agent-runtime: InvokeInlineAgent (the parameter is the session ID).
    route(POST, "/agents/{agent_id}", "bedrock:InvokeInlineAgent", READS, inline_agent),
    route(PUT, "/agents/{agent_id}/agentversions/{version}/actiongroups/", "bedrock:CreateAgentActionGroup", WRITES, agent),
    route(POST, "/agents/{agent_id}/agentversions/{version}/actiongroups/", "bedrock:ListAgentActionGroups", READS, agent),
    route(GET, "/agents/{agent_id}/agentversions/{version}/actiongroups/{group_id}/", "bedrock:GetAgentActionGroup", READS, agent),
    route(PUT, "/agents/{agent_id}/agentversions/{version}/actiongroups/{group_id}/", "bedrock:UpdateAgentActionGroup", WRITES, agent),
    route(DELETE, "/agents/{agent_id}/agentversions/{version}/actiongroups/{group_id}/", "bedrock:DeleteAgentActionGroup", WRITES, agent),
    route(PUT, "/agents/{agent_id}/agentversions/{version}/knowledgebases/", "bedrock:AssociateAgentKnowledgeBase", WRITES, agent_and_body_knowledge_base),
    route(POST, "/agents/{agent_id}/agentversions/{version}/knowledgebases/", "bedrock:ListAgentKnowledgeBases", READS, agent),
    route(GET, "/agents/{agent_id}/agentversions/{version}/knowledgebases/{kb_id}/", "bedrock:GetAgentKnowledgeBase", READS, agent_and_knowledge_base),
    route(PUT, "/agents/{agent_id}/agentversions/{version}/knowledgebases/{kb_id}/", "bedrock:UpdateAgentKnowledgeBase", WRITES, agent_and_knowledge_base),
    route(DELETE, "/agents/{agent_id}/agentversions/{version}/knowledgebases/{kb_id}/", "bedrock:DisassociateAgentKnowledgeBase", WRITES, agent_and_knowledge_base),
    route(PUT, "/agents/{agent_id}/agentversions/{version}/agentcollaborators/", "bedrock:AssociateAgentCollaborator", WRITES, agent),
    route(POST, "/agents/{agent_id}/agentversions/{version}/agentcollaborators/", "bedrock:ListAgentCollaborators", READS, agent),
    route(GET, "/agents/{agent_id}/agentversions/{version}/agentcollaborators/{collaborator_id}/", "bedrock:GetAgentCollaborator", READS, agent),
    route(PUT, "/agents/{agent_id}/agentversions/{version}/agentcollaborators/{collaborator_id}/", "bedrock:UpdateAgentCollaborator", WRITES, agent),
    route(DELETE, "/agents/{agent_id}/agentversions/{version}/agentcollaborators/{collaborator_id}/", "bedrock:DisassociateAgentCollaborator", WRITES, agent),
    route(POST, "/agents/{agent_id}/agentversions/", "bedrock:ListAgentVersions", READS, agent),
    route(GET, "/agents/{agent_id}/agentversions/{version}/", "bedrock:GetAgentVersion", READS, agent),
    route(DELETE, "/agents/{agent_id}/agentversions/{version}/", "bedrock:DeleteAgentVersion", WRITES, agent),
    route(PUT, "/agents/{agent_id}/agentaliases/", "bedrock:CreateAgentAlias", WRITES, agent),
    route(POST, "/agents/{agent_id}/agentaliases/", "bedrock:ListAgentAliases", READS, agent),
    route(GET, "/agents/{agent_id}/agentaliases/{alias_id}/", "bedrock:GetAgentAlias", READS, agent_alias),
    route(PUT, "/agents/{agent_id}/agentaliases/{alias_id}/", "bedrock:UpdateAgentAlias", WRITES, agent_alias),
    route(DELETE, "/agents/{agent_id}/agentaliases/{alias_id}/", "bedrock:DeleteAgentAlias", WRITES, agent_alias),
    // bedrock-agent-runtime: memory, InvokeAgent
    route(GET, "/agents/{agent_id}/agentAliases/{alias_id}/memories", "bedrock:GetAgentMemory", READS, agent_alias),
    route(DELETE, "/agents/{agent_id}/agentAliases/{alias_id}/memories", "bedrock:DeleteAgentMemory", WRITES, agent_alias),
    route(POST, "/agents/{agent_id}/agentAliases/{alias_id}/sessions/{session_id}/text", "bedrock:InvokeAgent", READS, agent_alias),
    // bedrock: foundation models
    route(GET, "/foundation-models", "bedrock:ListFoundationModels", READS, any),
    route(GET, "/foundation-models/{model_id}", "bedrock:GetFoundationModel", READS, model),
    // openai.rs
    route(POST, "/v1/chat/completions", "bedrock:InvokeModel", READS, chat_completion),
    route(POST, "/v1/embeddings", "bedrock:InvokeModel", READS, body_model),
    route(POST, "/v1/rerank", "bedrock:Rerank", READS, body_model),
    route(GET, "/v1/models", "bedrock:ListFoundationModels", READS, any),
    route(GET, "/v1/models/{model_id}", "bedrock:GetFoundationModel", READS, model),
    // anthropic.rs
    route(POST, "/v1/messages", "bedrock:InvokeModel", READS, body_model_maybe_streamed),
    route(POST, "/v1/messages/count_tokens", "bedrock:CountTokens", READS, body_model),
    // responses.rs
    route(POST, "/v1/responses", "bedrock:InvokeModel", READS, body_model_maybe_streamed),
    route(GET, "/v1/responses/{id}", "basalt:GetResponse", READS, stored_response),
    route(DELETE, "/v1/responses/{id}", "basalt:DeleteResponse", WRITES, stored_response),
    route(GET, "/v1/responses/{id}/input_items", "basalt:GetResponse", READS, stored_response),
    // admin.rs
    route(GET, "/basalt/v1/keys", "basalt:ListKeys", READS, any),
    route(POST, "/basalt/v1/keys", "basalt:CreateKey", WRITES, any),
    route(DELETE, "/basalt/v1/keys/{key_id}", "basalt:RevokeKey", WRITES, key),
    route(GET, "/basalt/v1/keys/{key_id}/limits", "basalt:GetKeyLimits", READS, key),
    route(PUT, "/basalt/v1/keys/{key_id}/limits", "basalt:UpdateKeyLimits", WRITES, key),
    route(PUT, "/basalt/v1/keys/{key_id}/retrieval-filter", "basalt:UpdateKeyRetrievalFilter", WRITES, key),
    route(PUT, "/basalt/v1/keys/{key_id}/policy", "basalt:UpdateKeyPolicy", WRITES, key),
    route(GET, "/basalt/v1/audit", "basalt:GetAuditLog", READS, audit),
    route(GET, "/basalt/v1/usage", "basalt:GetUsage", READS, usage),
    route(GET, "/basalt/v1/model-customization-jobs/{job_id}/loss-curve", "basalt:GetModelCustomizationJobLossCurve", READS, customization_job),
];

/// Path parameters by name, percent-decoded.
type Params = Vec<(&'static str, String)>;

/// A template a path matches.
struct Match {
    template: &'static str,
    /// For each segment, whether it matched a literal: where two templates match, the
    /// greater (a literal earliest) wins, as in axum.
    literals: Vec<bool>,
    params: Params,
}

/// Matches `segments` (the path after its leading `/`, split at `/`) against a template.
fn match_template(template: &'static str, segments: &[&str]) -> Option<Match> {
    let parts = template.strip_prefix('/')?.split('/');
    // Every route is tried on every request: refuse without allocating first.
    if parts.clone().count() != segments.len()
        || parts.clone().zip(segments).any(|(part, segment)| {
            if part.starts_with('{') && part.ends_with('}') {
                segment.is_empty()
            } else {
                part != *segment
            }
        })
    {
        return None;
    }
    let parts: Vec<&'static str> = parts.collect();
    let mut literals = Vec::with_capacity(parts.len());
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(segments) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                if segment.is_empty() {
                    return None;
                }
                let value = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
                params.push((name, value.into_owned()));
                literals.push(false);
            }
            None => {
                if part != segment {
                    return None;
                }
                literals.push(true);
            }
        }
    }
    Some(Match {
        template,
        literals,
        params,
    })
}

/// A matched request, as the row builders see it.
struct Request<'a> {
    params: Params,
    headers: &'a HeaderMap,
    body: &'a [u8],
    /// The body as JSON, parsed on first use (None: not JSON).
    json: OnceCell<Option<Value>>,
}

impl Request<'_> {
    /// A path parameter, decoded ("" if the template has none of that name).
    fn param(&self, name: &str) -> String {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.body).ok())
            .as_ref()
    }

    /// A non-empty string of the body at a JSON pointer (`/a/b`).
    fn body_str(&self, pointer: &str) -> Option<String> {
        text(self.json()?.pointer(pointer)?)
    }

    /// Whether the body asks for a streamed answer (`"stream": true`).
    fn streams(&self) -> bool {
        self.json()
            .and_then(|j| j.get("stream"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    }

    /// The guardrail of the Bedrock guardrail headers (as on InvokeModel).
    fn header_guardrail(&self) -> Option<String> {
        guardrail_of(
            self.header("x-amzn-bedrock-guardrailidentifier")
                .map(str::to_owned),
            self.header("x-amzn-bedrock-guardrailversion")
                .map(str::to_owned),
        )
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// "<identifier>:<version>"; a missing version is DRAFT, as the OpenAI dialect takes
/// the headers (where Bedrock requires one, the handler refuses the request anyway).
fn guardrail_of(identifier: Option<String>, version: Option<String>) -> Option<String> {
    let identifier = identifier?;
    let version = version.unwrap_or_else(|| "DRAFT".to_owned());
    Some(format!("{identifier}:{version}"))
}

/// What a row's builder found: the resources (none: [`Resource::Any`]), the guardrail
/// applied, and whether the body asks for a stream (the action is then
/// `bedrock:InvokeModelWithResponseStream` whatever the row says).
struct ActsOn {
    resources: Vec<Resource>,
    guardrail: Option<String>,
    streaming: bool,
}

fn on(resources: Vec<Resource>) -> ActsOn {
    ActsOn {
        resources,
        guardrail: None,
        streaming: false,
    }
}

fn on_one(resource: Option<Resource>) -> ActsOn {
    on(resource.into_iter().collect())
}

// Resources from the path.

fn any(_: &Request<'_>) -> ActsOn {
    on(vec![Resource::Any])
}

fn model(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::Model(r.param("model_id"))])
}

fn guardrail(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::Guardrail(r.param("guardrail_id"))])
}

fn batch_job(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::BatchJob(r.param("job_id"))])
}

fn customization_job(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::CustomizationJob(r.param("job_id"))])
}

fn import_job(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::ImportJob(r.param("job_id"))])
}

fn imported_model(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::ImportedModel(r.param("model_id"))])
}

fn custom_model(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::CustomModel(r.param("model_id"))])
}

fn deployment(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::Deployment(r.param("deployment_id"))])
}

fn profile(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::InferenceProfile(r.param("profile_id"))])
}

fn provisioned(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::ProvisionedModel(r.param("provisioned_id"))])
}

fn knowledge_base(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::KnowledgeBase(r.param("kb"))])
}

fn agent(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::Agent(r.param("agent_id"))])
}

fn agent_alias(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::AgentAlias {
        agent: r.param("agent_id"),
        alias: r.param("alias_id"),
    }])
}

/// An agent's knowledge-base association: the agent and the knowledge base.
fn agent_and_knowledge_base(r: &Request<'_>) -> ActsOn {
    on(vec![
        Resource::Agent(r.param("agent_id")),
        Resource::KnowledgeBase(r.param("kb_id")),
    ])
}

fn stored_response(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::Basalt(format!(
        "response/{}",
        r.param("id")
    ))])
}

fn key(r: &Request<'_>) -> ActsOn {
    on(vec![Resource::Basalt(format!("key/{}", r.param("key_id")))])
}

fn usage(_: &Request<'_>) -> ActsOn {
    on(vec![Resource::Basalt("usage".to_owned())])
}

fn audit(_: &Request<'_>) -> ActsOn {
    on(vec![Resource::Basalt("audit".to_owned())])
}

// Invocations.

/// Converse / ConverseStream: the model of the path, the body's `guardrailConfig`.
fn converse(r: &Request<'_>) -> ActsOn {
    ActsOn {
        guardrail: guardrail_of(
            r.body_str("/guardrailConfig/guardrailIdentifier"),
            r.body_str("/guardrailConfig/guardrailVersion"),
        ),
        ..model(r)
    }
}

/// InvokeModel / InvokeModelWithResponseStream: the model of the path, the guardrail
/// headers.
fn invoke(r: &Request<'_>) -> ActsOn {
    ActsOn {
        guardrail: r.header_guardrail(),
        ..model(r)
    }
}

/// ApplyGuardrail applies the guardrail version of its path.
fn apply_guardrail(r: &Request<'_>) -> ActsOn {
    ActsOn {
        guardrail: guardrail_of(
            Some(r.param("guardrail_id")),
            Some(r.param("guardrail_version")),
        ),
        ..guardrail(r)
    }
}

/// The model named by the body's `model` (embeddings, count_tokens).
fn body_model(r: &Request<'_>) -> ActsOn {
    on_one(r.body_str("/model").map(Resource::Model))
}

/// Anthropic's messages and OpenAI's responses: the body's `model`, streamed when
/// `stream` is true (neither takes a guardrail).
fn body_model_maybe_streamed(r: &Request<'_>) -> ActsOn {
    ActsOn {
        streaming: r.streams(),
        ..body_model(r)
    }
}

/// A chat completion: the body's `model`, streamed when `stream` is true, guarded by the
/// body's `guardrailConfig` or else the Bedrock guardrail headers (as openai.rs takes it).
fn chat_completion(r: &Request<'_>) -> ActsOn {
    let guardrail = match r.json().and_then(|j| j.get("guardrailConfig")) {
        Some(config) if !config.is_null() => guardrail_of(
            config.get("guardrailIdentifier").and_then(text),
            config.get("guardrailVersion").and_then(text),
        ),
        _ => r.header_guardrail(),
    };
    ActsOn {
        guardrail,
        ..body_model_maybe_streamed(r)
    }
}

/// RetrieveAndGenerate(Stream): the knowledge base and model of
/// `retrieveAndGenerateConfiguration.knowledgeBaseConfiguration`, and its generation
/// guardrail.
/// Rerank acts on the reranking model its body names.
fn rerank(r: &Request<'_>) -> ActsOn {
    on(r.body_str(
        "/rerankingConfiguration/bedrockRerankingConfiguration/modelConfiguration/modelArn",
    )
    .map(Resource::Model)
    .into_iter()
    .collect())
}

fn retrieve_and_generate(r: &Request<'_>) -> ActsOn {
    const KB: &str = "/retrieveAndGenerateConfiguration/knowledgeBaseConfiguration";
    let resources = [
        r.body_str(&format!("{KB}/knowledgeBaseId"))
            .map(Resource::KnowledgeBase),
        r.body_str(&format!("{KB}/modelArn")).map(Resource::Model),
    ];
    const GUARD: &str = "/generationConfiguration/guardrailConfiguration";
    ActsOn {
        guardrail: guardrail_of(
            r.body_str(&format!("{KB}{GUARD}/guardrailId")),
            r.body_str(&format!("{KB}{GUARD}/guardrailVersion")),
        ),
        ..on(resources.into_iter().flatten().collect())
    }
}

/// InvokeInlineAgent: its `foundationModel`, the knowledge bases it searches, and its
/// `guardrailConfiguration`.
fn inline_agent(r: &Request<'_>) -> ActsOn {
    let mut resources: Vec<Resource> = r
        .body_str("/foundationModel")
        .map(Resource::Model)
        .into_iter()
        .collect();
    if let Some(kbs) = r
        .json()
        .and_then(|j| j.get("knowledgeBases"))
        .and_then(Value::as_array)
    {
        resources.extend(
            kbs.iter()
                .filter_map(|kb| kb.get("knowledgeBaseId").and_then(text))
                .map(Resource::KnowledgeBase),
        );
    }
    ActsOn {
        guardrail: guardrail_of(
            r.body_str("/guardrailConfiguration/guardrailIdentifier"),
            r.body_str("/guardrailConfiguration/guardrailVersion"),
        ),
        ..on(resources)
    }
}

// Control-plane creations that name a model.

fn batch_create(r: &Request<'_>) -> ActsOn {
    on_one(r.body_str("/modelId").map(Resource::Model))
}

fn customization_create(r: &Request<'_>) -> ActsOn {
    on_one(r.body_str("/baseModelIdentifier").map(Resource::Model))
}

fn profile_create(r: &Request<'_>) -> ActsOn {
    on_one(r.body_str("/modelSource/copyFrom").map(Resource::Model))
}

fn provisioned_create(r: &Request<'_>) -> ActsOn {
    on_one(r.body_str("/modelId").map(Resource::Model))
}

/// CreateCustomModelDeployment deploys the custom model of its `modelArn`.
fn deployment_create(r: &Request<'_>) -> ActsOn {
    on_one(r.body_str("/modelArn").map(Resource::CustomModel))
}

/// UpdateCustomModelDeployment: the deployment, and the custom model it moves to.
fn deployment_update(r: &Request<'_>) -> ActsOn {
    let mut acts = deployment(r);
    acts.resources
        .extend(r.body_str("/modelArn").map(Resource::CustomModel));
    acts
}

/// AssociateAgentKnowledgeBase: the agent, and the body's `knowledgeBaseId`.
fn agent_and_body_knowledge_base(r: &Request<'_>) -> ActsOn {
    let mut acts = agent(r);
    acts.resources
        .extend(r.body_str("/knowledgeBaseId").map(Resource::KnowledgeBase));
    acts
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn call(method: Method, path: &str, body: Value) -> Option<Target> {
        let body = serde_json::to_vec(&body).expect("json");
        target_of(&method, path, &HeaderMap::new(), &body)
    }

    fn expect(method: Method, path: &str, body: Value) -> Target {
        call(method.clone(), path, body)
            .unwrap_or_else(|| panic!("{method} {path} matches no route"))
    }

    fn a_model(id: &str) -> Resource {
        Resource::Model(id.to_owned())
    }

    #[test]
    fn converse_decodes_an_arn_and_reads_the_guardrail() {
        let t = expect(
            Method::POST,
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            json!({
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "guardrailConfig": {"guardrailIdentifier": "gr-abc", "guardrailVersion": "2"}
            }),
        );
        assert_eq!(t.action, "bedrock:InvokeModel");
        assert_eq!(
            t.resources,
            vec![a_model(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
            )]
        );
        assert_eq!(t.guardrail.as_deref(), Some("gr-abc:2"));
        assert!(!t.mutates);
    }

    #[test]
    fn converse_stream_is_a_response_stream() {
        let t = expect(
            Method::POST,
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
            json!({"messages": []}),
        );
        assert_eq!(t.action, "bedrock:InvokeModelWithResponseStream");
        assert_eq!(
            t.resources,
            vec![a_model("anthropic.claude-3-haiku-20240307-v1:0")]
        );
        assert_eq!(t.guardrail, None);
        assert!(!t.mutates);
    }

    #[test]
    fn invoke_model_reads_the_guardrail_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-bedrock-guardrailidentifier",
            HeaderValue::from_static("arn:aws:bedrock:us-east-1:123456789012:guardrail/gr1"),
        );
        headers.insert(
            "x-amzn-bedrock-guardrailversion",
            HeaderValue::from_static("DRAFT"),
        );
        let t = target_of(
            &Method::POST,
            "/model/meta.llama3-8b-instruct-v1:0/invoke",
            &headers,
            b"{\"prompt\": \"hi\"}",
        )
        .expect("routed");
        assert_eq!(t.action, "bedrock:InvokeModel");
        assert_eq!(t.resources, vec![a_model("meta.llama3-8b-instruct-v1:0")]);
        assert_eq!(
            t.guardrail.as_deref(),
            Some("arn:aws:bedrock:us-east-1:123456789012:guardrail/gr1:DRAFT")
        );
        let t = target_of(
            &Method::POST,
            "/model/meta.llama3-8b-instruct-v1:0/invoke-with-response-stream",
            &headers,
            b"",
        )
        .expect("routed");
        assert_eq!(t.action, "bedrock:InvokeModelWithResponseStream");
        assert!(t.guardrail.is_some());
    }

    #[test]
    fn openai_chat_streams_by_the_body() {
        let t = expect(
            Method::POST,
            "/v1/chat/completions",
            json!({"model": "meta.llama3-8b-instruct-v1:0", "messages": [], "stream": true}),
        );
        assert_eq!(t.action, "bedrock:InvokeModelWithResponseStream");
        assert_eq!(t.resources, vec![a_model("meta.llama3-8b-instruct-v1:0")]);
        assert!(!t.mutates);
        let t = expect(
            Method::POST,
            "/v1/chat/completions",
            json!({
                "model": "meta.llama3-8b-instruct-v1:0",
                "messages": [],
                "stream": false,
                "guardrailConfig": {"guardrailIdentifier": "gr1", "guardrailVersion": "3"}
            }),
        );
        assert_eq!(t.action, "bedrock:InvokeModel");
        assert_eq!(t.guardrail.as_deref(), Some("gr1:3"));
        // Without `stream`, and with the guardrail in the headers (no version: DRAFT).
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-bedrock-guardrailidentifier",
            HeaderValue::from_static("gr2"),
        );
        let t = target_of(
            &Method::POST,
            "/v1/chat/completions",
            &headers,
            br#"{"model": "m", "messages": []}"#,
        )
        .expect("routed");
        assert_eq!(t.action, "bedrock:InvokeModel");
        assert_eq!(t.guardrail.as_deref(), Some("gr2:DRAFT"));
    }

    #[test]
    fn other_dialects() {
        let t = expect(
            Method::POST,
            "/v1/messages",
            json!({"model": "m", "stream": true}),
        );
        assert_eq!(t.action, "bedrock:InvokeModelWithResponseStream");
        assert_eq!(t.resources, vec![a_model("m")]);
        let t = expect(
            Method::POST,
            "/v1/messages/count_tokens",
            json!({"model": "m"}),
        );
        assert_eq!(t.action, "bedrock:CountTokens");
        assert_eq!(t.resources, vec![a_model("m")]);
        let t = expect(Method::POST, "/v1/embeddings", json!({"model": "e"}));
        assert_eq!(t.action, "bedrock:InvokeModel");
        assert_eq!(t.resources, vec![a_model("e")]);
        let t = expect(Method::POST, "/v1/responses", json!({"model": "m"}));
        assert_eq!(t.action, "bedrock:InvokeModel");
        let t = expect(Method::GET, "/v1/models", json!(null));
        assert_eq!(t.action, "bedrock:ListFoundationModels");
        assert_eq!(t.resources, vec![Resource::Any]);
        let t = expect(Method::GET, "/v1/models/m%3A0", json!(null));
        assert_eq!(t.action, "bedrock:GetFoundationModel");
        assert_eq!(t.resources, vec![a_model("m:0")]);
        let t = expect(Method::DELETE, "/v1/responses/resp_1", json!(null));
        assert_eq!(t.action, "basalt:DeleteResponse");
        assert_eq!(
            t.resources,
            vec![Resource::Basalt("response/resp_1".into())]
        );
        assert!(t.mutates);
        let t = expect(Method::GET, "/v1/responses/resp_1/input_items", json!(null));
        assert_eq!(t.action, "basalt:GetResponse");
        assert!(!t.mutates);
    }

    #[test]
    fn guardrail_routes() {
        let t = expect(Method::POST, "/guardrails", json!({"name": "g"}));
        assert_eq!(t.action, "bedrock:CreateGuardrail");
        assert_eq!(t.resources, vec![Resource::Any]);
        assert!(t.mutates);
        let t = expect(Method::DELETE, "/guardrails/gr-abc", json!(null));
        assert_eq!(t.action, "bedrock:DeleteGuardrail");
        assert_eq!(t.resources, vec![Resource::Guardrail("gr-abc".into())]);
        assert!(t.mutates);
        let t = expect(Method::GET, "/guardrails", json!(null));
        assert_eq!(t.action, "bedrock:ListGuardrails");
        assert_eq!(t.resources, vec![Resource::Any]);
        assert!(!t.mutates);
        let t = expect(Method::POST, "/guardrails/gr-abc", json!({}));
        assert_eq!(t.action, "bedrock:CreateGuardrailVersion");
        assert!(t.mutates);
        let t = expect(
            Method::POST,
            "/guardrail/gr-abc/version/1/apply",
            json!({"source": "INPUT", "content": []}),
        );
        assert_eq!(t.action, "bedrock:ApplyGuardrail");
        assert_eq!(t.resources, vec![Resource::Guardrail("gr-abc".into())]);
        assert_eq!(t.guardrail.as_deref(), Some("gr-abc:1"));
        assert!(!t.mutates);
    }

    #[test]
    fn retrieve() {
        let t = expect(
            Method::POST,
            "/knowledgebases/KB12345678/retrieve",
            json!({"retrievalQuery": {"text": "q"}}),
        );
        assert_eq!(t.action, "bedrock:Retrieve");
        assert_eq!(
            t.resources,
            vec![Resource::KnowledgeBase("KB12345678".into())]
        );
        assert!(!t.mutates);
    }

    #[test]
    fn retrieve_and_generate_names_the_model_and_guardrail() {
        let body = json!({
            "input": {"text": "q"},
            "retrieveAndGenerateConfiguration": {
                "type": "KNOWLEDGE_BASE",
                "knowledgeBaseConfiguration": {
                    "knowledgeBaseId": "KB12345678",
                    "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2",
                    "generationConfiguration": {
                        "guardrailConfiguration": {"guardrailId": "gr9", "guardrailVersion": "4"}
                    }
                }
            }
        });
        for path in ["/retrieveAndGenerate", "/retrieveAndGenerateStream"] {
            let t = expect(Method::POST, path, body.clone());
            assert_eq!(t.action, "bedrock:RetrieveAndGenerate");
            assert_eq!(
                t.resources,
                vec![
                    Resource::KnowledgeBase("KB12345678".into()),
                    a_model("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2"),
                ]
            );
            assert_eq!(t.guardrail.as_deref(), Some("gr9:4"));
            assert!(!t.mutates);
        }
    }

    #[test]
    fn agents() {
        let t = expect(
            Method::POST,
            "/agents/AGENT12345/agentAliases/ALIAS12345/sessions/s1/text",
            json!({"inputText": "hi"}),
        );
        assert_eq!(t.action, "bedrock:InvokeAgent");
        assert_eq!(
            t.resources,
            vec![Resource::AgentAlias {
                agent: "AGENT12345".into(),
                alias: "ALIAS12345".into()
            }]
        );
        assert!(!t.mutates);
        // The trailing slash tells the stored agent from the inline agent's session.
        let t = expect(Method::POST, "/agents/AGENT12345/", json!(null));
        assert_eq!(t.action, "bedrock:PrepareAgent");
        assert!(t.mutates);
        let t = expect(
            Method::POST,
            "/agents/session-1",
            json!({
                "foundationModel": "m",
                "knowledgeBases": [{"knowledgeBaseId": "KB1"}],
                "guardrailConfiguration": {"guardrailIdentifier": "g", "guardrailVersion": "1"}
            }),
        );
        assert_eq!(t.action, "bedrock:InvokeInlineAgent");
        assert_eq!(
            t.resources,
            vec![a_model("m"), Resource::KnowledgeBase("KB1".into())]
        );
        assert_eq!(t.guardrail.as_deref(), Some("g:1"));
        let t = expect(Method::PUT, "/agents/", json!({}));
        assert_eq!(t.action, "bedrock:CreateAgent");
        assert_eq!(t.resources, vec![Resource::Any]);
        let t = expect(Method::POST, "/agents/", json!({}));
        assert_eq!(t.action, "bedrock:ListAgents");
        assert!(!t.mutates);
        let t = expect(Method::POST, "/agents/A1/agentversions/", json!({}));
        assert_eq!(t.action, "bedrock:ListAgentVersions");
        let t = expect(
            Method::PUT,
            "/agents/A1/agentversions/DRAFT/knowledgebases/",
            json!({"knowledgeBaseId": "KB1", "description": "d"}),
        );
        assert_eq!(t.action, "bedrock:AssociateAgentKnowledgeBase");
        assert_eq!(
            t.resources,
            vec![
                Resource::Agent("A1".into()),
                Resource::KnowledgeBase("KB1".into())
            ]
        );
        let t = expect(
            Method::DELETE,
            "/agents/A1/agentAliases/AL1/memories",
            json!(null),
        );
        assert_eq!(t.action, "bedrock:DeleteAgentMemory");
        assert!(t.mutates);
    }

    #[test]
    fn knowledge_base_control_plane() {
        let t = expect(Method::PUT, "/knowledgebases/", json!({}));
        assert_eq!(t.action, "bedrock:CreateKnowledgeBase");
        assert!(t.mutates);
        let t = expect(Method::POST, "/knowledgebases/", json!({}));
        assert_eq!(t.action, "bedrock:ListKnowledgeBases");
        assert!(!t.mutates);
        // No trailing slash: not a route.
        assert_eq!(call(Method::POST, "/knowledgebases", json!({})), None);
        let t = expect(
            Method::PUT,
            "/knowledgebases/KB1/datasources/DS1/ingestionjobs/",
            json!({}),
        );
        assert_eq!(t.action, "bedrock:StartIngestionJob");
        assert_eq!(t.resources, vec![Resource::KnowledgeBase("KB1".into())]);
        assert!(t.mutates);
        let t = expect(
            Method::POST,
            "/knowledgebases/KB1/datasources/DS1/documents/deleteDocuments",
            json!({}),
        );
        assert_eq!(t.action, "bedrock:DeleteKnowledgeBaseDocuments");
        assert!(t.mutates);
    }

    #[test]
    fn model_invocation_job() {
        let t = expect(
            Method::POST,
            "/model-invocation-job",
            json!({"jobName": "j", "modelId": "anthropic.claude-3-haiku-20240307-v1:0"}),
        );
        assert_eq!(t.action, "bedrock:CreateModelInvocationJob");
        assert_eq!(
            t.resources,
            vec![a_model("anthropic.claude-3-haiku-20240307-v1:0")]
        );
        assert!(t.mutates);
        let t = expect(
            Method::POST,
            "/model-invocation-job/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Amodel-invocation-job%2Fabc/stop",
            json!(null),
        );
        assert_eq!(t.action, "bedrock:StopModelInvocationJob");
        assert_eq!(
            t.resources,
            vec![Resource::BatchJob(
                "arn:aws:bedrock:us-east-1:1:model-invocation-job/abc".into()
            )]
        );
        assert!(t.mutates);
        let t = expect(Method::GET, "/model-invocation-jobs", json!(null));
        assert_eq!(t.action, "bedrock:ListModelInvocationJobs");
        assert!(!t.mutates);
    }

    #[test]
    fn other_creations_name_their_model() {
        let t = expect(
            Method::POST,
            "/model-customization-jobs",
            json!({"baseModelIdentifier": "base"}),
        );
        assert_eq!(t.resources, vec![a_model("base")]);
        let t = expect(
            Method::POST,
            "/provisioned-model-throughput",
            json!({"modelId": "pm"}),
        );
        assert_eq!(t.action, "bedrock:CreateProvisionedModelThroughput");
        assert_eq!(t.resources, vec![a_model("pm")]);
        let t = expect(
            Method::POST,
            "/inference-profiles",
            json!({"modelSource": {"copyFrom": "fm-arn"}}),
        );
        assert_eq!(t.action, "bedrock:CreateInferenceProfile");
        assert_eq!(t.resources, vec![a_model("fm-arn")]);
        let t = expect(Method::POST, "/model-import-jobs", json!({}));
        assert_eq!(t.resources, vec![Resource::Any]);
        assert!(t.mutates);
        let t = expect(
            Method::PATCH,
            "/model-customization/custom-model-deployments/d1",
            json!({"modelArn": "cm"}),
        );
        assert_eq!(t.action, "bedrock:UpdateCustomModelDeployment");
        assert_eq!(
            t.resources,
            vec![
                Resource::Deployment("d1".into()),
                Resource::CustomModel("cm".into())
            ]
        );
    }

    #[test]
    fn admin_routes() {
        let t = expect(Method::POST, "/basalt/v1/keys", json!({"name": "k"}));
        assert_eq!(t.action, "basalt:CreateKey");
        assert_eq!(t.resources, vec![Resource::Any]);
        assert!(t.mutates);
        let t = expect(Method::DELETE, "/basalt/v1/keys/key-1", json!(null));
        assert_eq!(t.action, "basalt:RevokeKey");
        assert_eq!(t.resources, vec![Resource::Basalt("key/key-1".into())]);
        assert!(t.mutates);
        let t = expect(Method::GET, "/basalt/v1/keys/key-1/limits", json!(null));
        assert_eq!(t.action, "basalt:GetKeyLimits");
        assert!(!t.mutates);
        let t = expect(Method::PUT, "/basalt/v1/keys/key-1/limits", json!({}));
        assert_eq!(t.action, "basalt:UpdateKeyLimits");
        assert!(t.mutates);
        let t = expect(Method::GET, "/basalt/v1/usage", json!(null));
        assert_eq!(t.action, "basalt:GetUsage");
        assert!(!t.mutates);
    }

    #[test]
    fn unknown_paths_and_methods_match_nothing() {
        assert_eq!(call(Method::GET, "/nope", json!(null)), None);
        assert_eq!(call(Method::GET, "/health", json!(null)), None);
        assert_eq!(call(Method::GET, "", json!(null)), None);
        assert_eq!(call(Method::GET, "/", json!(null)), None);
        // A route, but not with this method (axum answers 405).
        assert_eq!(call(Method::GET, "/model/m/converse", json!(null)), None);
        assert_eq!(call(Method::OPTIONS, "/v1/models", json!(null)), None);
        // An empty parameter matches nothing.
        assert_eq!(call(Method::POST, "/model//converse", json!(null)), None);
        assert_eq!(call(Method::GET, "/v1/models/", json!(null)), None);
        // HEAD is served as GET.
        let t = call(Method::HEAD, "/v1/models", json!(null)).expect("routed");
        assert_eq!(t.action, "bedrock:ListFoundationModels");
    }

    #[test]
    fn a_garbage_body_does_not_panic() {
        let garbage: &[&[u8]] = &[
            b"",
            b"\xff\xfe\x00garbage",
            b"{\"model\": 3, \"stream\": \"yes\"}",
            b"[1, 2, 3]",
            b"{\"guardrailConfig\": [], \"modelSource\": {\"copyFrom\": {}}}",
            b"{\"retrieveAndGenerateConfiguration\": \"x\", \"knowledgeBases\": 7}",
            b"{\"knowledgeBases\": [null, 1, {\"knowledgeBaseId\": 2}]}",
            b"null",
        ];
        for body in garbage {
            for route in ROUTES {
                let method = match route.verb {
                    Verb::Get => Method::GET,
                    Verb::Post => Method::POST,
                    Verb::Put => Method::PUT,
                    Verb::Delete => Method::DELETE,
                    Verb::Patch => Method::PATCH,
                };
                let path = sample_path(route.template);
                let t = target_of(&method, &path, &HeaderMap::new(), body)
                    .unwrap_or_else(|| panic!("{method} {path} matches no route"));
                assert!(!t.resources.is_empty());
            }
        }
        let t = target_of(
            &Method::POST,
            "/v1/chat/completions",
            &HeaderMap::new(),
            b"not json",
        )
        .expect("routed");
        assert_eq!(t.action, "bedrock:InvokeModel");
        assert_eq!(t.resources, vec![Resource::Any]);
        assert_eq!(t.guardrail, None);
        // Bad percent-encoding in a parameter is kept as given.
        let t = call(Method::POST, "/model/%zz%E2/converse", json!(null)).expect("routed");
        assert_eq!(t.action, "bedrock:InvokeModel");
    }

    /// The template with each `{param}` replaced by a sample value.
    fn sample_path(template: &str) -> String {
        template
            .split('/')
            .map(|part| if part.starts_with('{') { "p1" } else { part })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_row_is_reached_by_its_own_path() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[..i]
                    .iter()
                    .any(|r| r.template == route.template && r.verb == route.verb),
                "{:?} {} is in the table twice",
                route.verb,
                route.template
            );
            let method = match route.verb {
                Verb::Get => Method::GET,
                Verb::Post => Method::POST,
                Verb::Put => Method::PUT,
                Verb::Delete => Method::DELETE,
                Verb::Patch => Method::PATCH,
            };
            let path = sample_path(route.template);
            let t = target_of(&method, &path, &HeaderMap::new(), b"")
                .unwrap_or_else(|| panic!("{method} {path} matches no route"));
            assert_eq!(t.action, route.action, "{method} {path}");
            assert_eq!(t.mutates, route.mutates, "{method} {path}");
        }
    }

    /// Every `.route("<template>", <method router>)` of a route file: the template and
    /// the methods (`get(`, `.post(`, ...) of its method router.
    fn routes_in(source: &str) -> Vec<(String, Vec<Verb>)> {
        let mut found = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(literal) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some(end) = literal.find('"') else {
                break;
            };
            let template = literal[..end].to_owned();
            // The call's arguments: up to the parenthesis closing `.route(`.
            let mut depth = 1usize;
            let mut close = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &rest[..close];
            let mut verbs = Vec::new();
            for (name, verb) in [
                ("get(", GET),
                ("post(", POST),
                ("put(", PUT),
                ("delete(", DELETE),
                ("patch(", PATCH),
            ] {
                let mut from = 0;
                while let Some(i) = args[from..].find(name) {
                    let start = from + i;
                    let before = args[..start].chars().next_back();
                    if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                        verbs.push(verb);
                    }
                    from = start + name.len();
                }
            }
            found.push((template, verbs));
        }
        found
    }

    #[test]
    fn the_table_has_every_route_of_the_route_files() {
        let files = [
            ("bedrock/mod.rs", include_str!("../bedrock/mod.rs")),
            ("openai.rs", include_str!("../openai.rs")),
            ("rerank.rs", include_str!("../rerank.rs")),
            ("anthropic.rs", include_str!("../anthropic.rs")),
            ("responses.rs", include_str!("../responses.rs")),
            ("admin.rs", include_str!("../admin.rs")),
        ];
        let mut missing = Vec::new();
        let mut defined = Vec::new();
        for (file, source) in files {
            let routes = routes_in(source);
            assert!(!routes.is_empty(), "no .route( found in {file}");
            for (template, verbs) in routes {
                if !ROUTES.iter().any(|r| r.template == template) {
                    missing.push(format!("{template} ({file})"));
                }
                if verbs.is_empty() {
                    missing.push(format!("{template} ({file}): its methods were not read"));
                }
                for verb in verbs {
                    if !ROUTES
                        .iter()
                        .any(|r| r.template == template && r.verb == verb)
                    {
                        missing.push(format!("{verb:?} {template} ({file})"));
                    }
                    defined.push((template.clone(), verb));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "routes missing from ROUTES: {missing:#?}"
        );
        let extra: Vec<String> = ROUTES
            .iter()
            .filter(|r| !defined.iter().any(|(t, v)| t == r.template && *v == r.verb))
            .map(|r| format!("{:?} {}", r.verb, r.template))
            .collect();
        assert!(
            extra.is_empty(),
            "rows of ROUTES no route file defines: {extra:#?}"
        );
    }
}
