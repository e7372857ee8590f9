//! Agents: the list, an agent's configuration (action groups, knowledge bases,
//! aliases), and a test chat through InvokeAgent with a trace viewer: every step,
//! its model input and output, tool calls and observations, grouped by trace ID.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use base64::Engine;
use http_body_util::BodyExt;
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{filled, paged_body, PageQuery};
use crate::api::segment;
use crate::{Console, Signed};

async fn render_list(
    console: &Console,
    signed: &Signed,
    next: Option<&str>,
    error: Option<crate::ApiFailure>,
) -> Response {
    let status = super::status_of(error.as_ref());
    let (agents, next_token, list_error) = console
        .list_page(
            signed,
            Method::POST,
            "/agents/",
            Some(&paged_body(next)),
            "agentSummaries",
        )
        .await;
    let models: Vec<String> = super::overview::invocable_chat_models(
        console,
        basalt_core::types::InferenceType::OnDemand,
    )
    .into_iter()
    .filter(|m| m.tools)
    .map(|m| m.id.clone())
    .collect();
    console.page_with_status(
        status,
        signed,
        "agents.html",
        "agents",
        context! { agents, next_token, models, error => error.map(|e| e.to_string()).or(list_error) },
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
    model: Option<String>,
    instruction: Option<String>,
    description: Option<String>,
}

/// `POST /console/agents`: CreateAgent (the draft), then its page.
pub async fn create(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Form(form): Form<CreateForm>,
) -> Response {
    let mut body = json!({
        "agentName": filled(&form.name).unwrap_or_default(),
        "foundationModel": filled(&form.model).unwrap_or_default(),
        "instruction": filled(&form.instruction).unwrap_or_default(),
        "agentResourceRoleArn": format!("arn:aws:iam::{}:role/basalt-console", console.app().core.account_id()),
        "idleSessionTTLInSeconds": 600,
    });
    if let Some(d) = filled(&form.description) {
        body["description"] = d.into();
    }
    match console
        .call(&signed, Method::PUT, "/agents/", Some(&body))
        .await
    {
        Ok(v) => super::see_other(&format!(
            "/console/agents/{}",
            segment(v["agent"]["agentId"].as_str().unwrap_or_default())
        )),
        Err(e) => render_list(&console, &signed, None, Some(e)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct ActionGroupForm {
    name: Option<String>,
    description: Option<String>,
    functions: Option<String>,
    lambda: Option<String>,
}

/// `POST /console/agents/{id}/action-groups`: CreateAgentActionGroup on the draft,
/// with a function schema; the caller runs the functions (RETURN_CONTROL) unless a
/// Lambda ARN is given.
pub async fn create_action_group(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<ActionGroupForm>,
) -> Response {
    let functions =
        match super::json_field("the functions", filled(&form.functions).unwrap_or("[]")) {
            Ok(f) => f,
            Err(e) => return console.error_page(&signed, "agents", &e),
        };
    let executor = match filled(&form.lambda) {
        Some(arn) => json!({ "lambda": arn }),
        None => json!({ "customControl": "RETURN_CONTROL" }),
    };
    let mut body = json!({
        "actionGroupName": filled(&form.name).unwrap_or_default(),
        "actionGroupExecutor": executor,
        "functionSchema": { "functions": functions },
    });
    if let Some(d) = filled(&form.description) {
        body["description"] = d.into();
    }
    let path = format!("/agents/{}/agentversions/DRAFT/actiongroups/", segment(&id));
    let then = format!("/console/agents/{}", segment(&id));
    console
        .act(&signed, Method::PUT, &path, Some(&body), &then, "agents")
        .await
}

#[derive(Debug, Deserialize)]
pub struct KnowledgeBaseForm {
    knowledge_base: Option<String>,
    description: Option<String>,
}

/// `POST /console/agents/{id}/knowledge-bases`: AssociateAgentKnowledgeBase.
pub async fn associate_knowledge_base(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<KnowledgeBaseForm>,
) -> Response {
    let body = json!({
        "knowledgeBaseId": filled(&form.knowledge_base).unwrap_or_default(),
        "description": filled(&form.description).unwrap_or("Search this knowledge base for facts the user asks about."),
        "knowledgeBaseState": "ENABLED",
    });
    let path = format!(
        "/agents/{}/agentversions/DRAFT/knowledgebases/",
        segment(&id)
    );
    let then = format!("/console/agents/{}", segment(&id));
    console
        .act(&signed, Method::PUT, &path, Some(&body), &then, "agents")
        .await
}

/// `POST /console/agents/{id}/prepare`: PrepareAgent.
pub async fn prepare(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/agents/{}/", segment(&id));
    let then = format!("/console/agents/{}", segment(&id));
    console
        .act(&signed, Method::POST, &path, None, &then, "agents")
        .await
}

/// `POST /console/agents/{id}/delete`: DeleteAgent.
pub async fn delete(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/agents/{}/", segment(&id));
    console
        .act(
            &signed,
            Method::DELETE,
            &path,
            None,
            "/console/agents",
            "agents",
        )
        .await
}

pub async fn detail(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    let base = format!("/agents/{}", segment(&id));
    let agent = match console
        .call(&signed, Method::GET, &format!("{base}/"), None)
        .await
    {
        Ok(v) => v["agent"].clone(),
        Err(e) => return console.error_page(&signed, "agents", &e),
    };
    let all = json!({ "maxResults": 100 });
    let list = |path: String, member: &'static str| {
        let console = console.clone();
        let signed = signed.clone();
        let all = all.clone();
        async move {
            console
                .call(&signed, Method::POST, &path, Some(&all))
                .await
                .map(|v| v[member].clone())
                .unwrap_or(Value::Null)
        }
    };
    let action_groups = list(
        format!("{base}/agentversions/DRAFT/actiongroups/"),
        "actionGroupSummaries",
    )
    .await;
    let knowledge_bases = list(
        format!("{base}/agentversions/DRAFT/knowledgebases/"),
        "agentKnowledgeBaseSummaries",
    )
    .await;
    let aliases = list(format!("{base}/agentaliases/"), "agentAliasSummaries").await;
    let all_kbs = console
        .call(
            &signed,
            Method::POST,
            "/knowledgebases/",
            Some(&json!({ "maxResults": 100 })),
        )
        .await
        .map(|v| v["knowledgeBaseSummaries"].clone())
        .unwrap_or(Value::Null);
    let session = crate::session::random_token()[..16].to_string();
    console.page(
        &signed,
        "agent.html",
        "agents",
        context! { agent, action_groups, knowledge_bases, aliases, session, all_kbs },
    )
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    text: Option<String>,
    alias: Option<String>,
    session: Option<String>,
}

/// One trace event flattened for the viewer.
fn trace_step(event: &Value) -> Value {
    let trace = &event["trace"];
    let (step, inner) = trace
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_default();
    let (part, body) = inner
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_default();
    let trace_id = body["traceId"].as_str().unwrap_or("").to_string();
    let meta = &body["metadata"];
    json!({
        "step": step, "part": part, "traceId": trace_id,
        "eventTime": event["eventTime"],
        "collaborator": event["collaboratorName"],
        "startTime": meta["startTime"], "endTime": meta["endTime"],
        "usage": meta["usage"],
        "body": body,
    })
}

/// `POST /console/agents/{id}/test` (htmx): one InvokeAgent turn with its trace.
pub async fn test(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<TestForm>,
) -> Response {
    let alias = filled(&form.alias).unwrap_or("TSTALIASID");
    let session = filled(&form.session).unwrap_or("console");
    let path = format!(
        "/agents/{}/agentAliases/{}/sessions/{}/text",
        segment(&id),
        segment(alias),
        segment(session)
    );
    let body = json!({ "inputText": filled(&form.text).unwrap_or_default(), "enableTrace": true });
    let started = std::time::Instant::now();
    let response = match console
        .send(&signed, Method::POST, &path, Some(&body))
        .await
    {
        Ok(r) => r,
        Err(e) => return console.error_fragment(&e),
    };
    if !response.status().is_success() {
        return match Console::read(response).await {
            Err(e) => console.error_fragment(&e),
            Ok(_) => console.error_fragment(&crate::ApiFailure {
                status: StatusCode::BAD_GATEWAY,
                code: String::new(),
                message: "InvokeAgent failed".into(),
            }),
        };
    }
    let bytes = match http_body_util::Limited::new(response.into_body(), 32 << 20)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return console.error_fragment(&crate::ApiFailure {
                status: StatusCode::BAD_GATEWAY,
                code: String::new(),
                message: format!("cannot read the answer: {e}"),
            })
        }
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let mut answer = String::new();
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    let mut return_control = Vec::new();
    match crate::frames::read_all(&bytes) {
        Ok(frames) => {
            for f in frames {
                match (f.kind.as_str(), f.name.as_str()) {
                    ("event", "chunk") => {
                        if let Some(b) = f.payload["bytes"].as_str() {
                            if let Ok(text) = base64::engine::general_purpose::STANDARD.decode(b) {
                                answer.push_str(&String::from_utf8_lossy(&text));
                            }
                        }
                    }
                    ("event", "trace") => steps.push(trace_step(&f.payload)),
                    ("event", "returnControl") => return_control.push(f.payload),
                    _ => errors.push(format!(
                        "{}: {}",
                        f.name,
                        f.payload["message"].as_str().unwrap_or("the agent failed")
                    )),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    // Steps grouped by trace ID, in the order they started.
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for s in steps {
        let key = s["traceId"].as_str().unwrap_or("").to_string();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(s),
            None => groups.push((key, vec![s])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(id, steps)| json!({ "traceId": id, "steps": steps }))
        .collect();
    console.html(
        StatusCode::OK,
        "agent_test.html",
        context! { answer, groups, errors, return_control, elapsed_ms, input => form.text },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_events_flatten_to_steps() {
        let event = json!({"eventTime": "t", "trace": {"orchestrationTrace": {"rationale": {"traceId": "x-0", "text": "why"}}}});
        let s = trace_step(&event);
        assert_eq!(s["step"], "orchestrationTrace");
        assert_eq!(s["part"], "rationale");
        assert_eq!(s["traceId"], "x-0");
        assert_eq!(s["body"]["text"], "why");
    }
}
