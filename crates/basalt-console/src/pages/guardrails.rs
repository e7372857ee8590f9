//! Guardrails: list, create, edit (a full replace, as UpdateGuardrail), publish
//! versions, delete, and a test pane that runs ApplyGuardrail on a text and marks
//! the spans each policy matched.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::{Extension, Form};
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{filled, json_field, paged, see_other, PageQuery};
use crate::api::segment;
use crate::{ApiFailure, Console, Signed};

/// What the policy box holds for a new guardrail.
const EXAMPLE_POLICIES: &str = r#"{
  "sensitiveInformationPolicyConfig": {
    "piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"}]
  },
  "wordPolicyConfig": {"wordsConfig": [{"text": "confidential"}]}
}"#;

async fn render_list(
    console: &Console,
    signed: &Signed,
    next: Option<&str>,
    error: Option<ApiFailure>,
    form: Value,
) -> Response {
    let status = super::status_of(error.as_ref());
    let (guardrails, next_token, list_error) = console
        .list_page(
            signed,
            Method::GET,
            &paged("/guardrails", next),
            None,
            "guardrails",
        )
        .await;
    console.page_with_status(
        status,
        signed,
        "guardrails.html",
        "guardrails",
        context! {
            guardrails, next_token, form, example => EXAMPLE_POLICIES,
            error => error.map(|e| e.to_string()).or(list_error),
        },
    )
}

pub async fn list(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<PageQuery>,
) -> Response {
    render_list(&console, &signed, q.next.as_deref(), None, Value::Null).await
}

#[derive(Debug, Deserialize, serde::Serialize)]
pub struct GuardrailForm {
    name: Option<String>,
    description: Option<String>,
    blocked_input: Option<String>,
    blocked_output: Option<String>,
    policies: Option<String>,
}

/// The CreateGuardrail / UpdateGuardrail body a form stands for.
fn guardrail_body(form: &GuardrailForm) -> Result<Value, ApiFailure> {
    let mut body = match filled(&form.policies) {
        None => Map::new(),
        Some(text) => match json_field("the policies", text)? {
            Value::Object(m) => m,
            _ => {
                return Err(ApiFailure {
                    status: axum::http::StatusCode::BAD_REQUEST,
                    code: "ValidationException".into(),
                    message: "the policies must be a JSON object of *PolicyConfig members".into(),
                })
            }
        },
    };
    body.insert("name".into(), filled(&form.name).unwrap_or_default().into());
    if let Some(d) = filled(&form.description) {
        body.insert("description".into(), d.into());
    }
    body.insert(
        "blockedInputMessaging".into(),
        filled(&form.blocked_input)
            .unwrap_or("Sorry, I cannot answer that.")
            .into(),
    );
    body.insert(
        "blockedOutputsMessaging".into(),
        filled(&form.blocked_output)
            .unwrap_or("Sorry, I cannot answer that.")
            .into(),
    );
    Ok(Value::Object(body))
}

/// GetGuardrail's policies as the `*PolicyConfig` members that create them again
/// (`topicPolicy.topics` → `topicPolicyConfig.topicsConfig`, and so on).
fn policies_as_config(guardrail: &Value) -> Value {
    let mut out = Map::new();
    for policy in [
        "topicPolicy",
        "contentPolicy",
        "wordPolicy",
        "sensitiveInformationPolicy",
        "contextualGroundingPolicy",
    ] {
        let Some(Value::Object(members)) = guardrail.get(policy) else {
            continue;
        };
        let config: Map<String, Value> = members
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Array(a) if a.is_empty()))
            .map(|(k, v)| (format!("{k}Config"), v.clone()))
            .collect();
        if !config.is_empty() {
            out.insert(format!("{policy}Config"), Value::Object(config));
        }
    }
    Value::Object(out)
}

pub async fn create(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Form(form): Form<GuardrailForm>,
) -> Response {
    let form_value = serde_json::to_value(&form).unwrap_or(Value::Null);
    let body = match guardrail_body(&form) {
        Ok(b) => b,
        Err(e) => return render_list(&console, &signed, None, Some(e), form_value).await,
    };
    match console
        .call(&signed, Method::POST, "/guardrails", Some(&body))
        .await
    {
        Ok(v) => see_other(&format!(
            "/console/guardrails/{}",
            segment(v["guardrailId"].as_str().unwrap_or_default())
        )),
        Err(e) => render_list(&console, &signed, None, Some(e), form_value).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct VersionQuery {
    version: Option<String>,
}

async fn render_detail(
    console: &Console,
    signed: &Signed,
    id: &str,
    version: Option<&str>,
    error: Option<ApiFailure>,
) -> Response {
    let status = super::status_of(error.as_ref());
    let version = version.filter(|v| !v.is_empty()).unwrap_or("DRAFT");
    let path = format!(
        "/guardrails/{}?guardrailVersion={}",
        segment(id),
        segment(version)
    );
    let guardrail = match console.call(signed, Method::GET, &path, None).await {
        Ok(g) => g,
        Err(e) => return console.error_page(signed, "guardrails", &e),
    };
    // Versions: the list filtered to this guardrail lists every version of it.
    let versions = console
        .call(
            signed,
            Method::GET,
            &format!(
                "/guardrails?guardrailIdentifier={}&maxResults=100",
                segment(id)
            ),
            None,
        )
        .await
        .map(|v| v["guardrails"].clone())
        .unwrap_or(Value::Null);
    let policies =
        serde_json::to_string_pretty(&policies_as_config(&guardrail)).unwrap_or_default();
    console.page_with_status(
        status,
        signed,
        "guardrail.html",
        "guardrails",
        context! { guardrail, versions, policies, version, error => error.map(|e| e.to_string()) },
    )
}

pub async fn detail(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Response {
    render_detail(&console, &signed, &id, q.version.as_deref(), None).await
}

pub async fn update(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<GuardrailForm>,
) -> Response {
    let body = match guardrail_body(&form) {
        Ok(b) => b,
        Err(e) => return render_detail(&console, &signed, &id, None, Some(e)).await,
    };
    let path = format!("/guardrails/{}", segment(&id));
    match console.call(&signed, Method::PUT, &path, Some(&body)).await {
        Ok(_) => see_other(&format!("/console/guardrails/{}", segment(&id))),
        Err(e) => render_detail(&console, &signed, &id, None, Some(e)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct PublishForm {
    description: Option<String>,
}

pub async fn publish(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<PublishForm>,
) -> Response {
    let mut body = json!({});
    if let Some(d) = filled(&form.description) {
        body["description"] = d.into();
    }
    let path = format!("/guardrails/{}", segment(&id));
    match console
        .call(&signed, Method::POST, &path, Some(&body))
        .await
    {
        Ok(v) => see_other(&format!(
            "/console/guardrails/{}?version={}",
            segment(&id),
            segment(v["version"].as_str().unwrap_or("DRAFT"))
        )),
        Err(e) => render_detail(&console, &signed, &id, None, Some(e)).await,
    }
}

pub async fn delete(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/guardrails/{}", segment(&id));
    match console.call(&signed, Method::DELETE, &path, None).await {
        Ok(_) => see_other("/console/guardrails"),
        Err(e) => render_detail(&console, &signed, &id, None, Some(e)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct TestForm {
    text: Option<String>,
    source: Option<String>,
    version: Option<String>,
}

/// One stretch of the tested text: plain, or matched by a policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Segment {
    text: String,
    /// `pii`, `regex`, `word` (None: not matched).
    policy: Option<&'static str>,
    label: String,
}

/// The spans of `text` that the assessments' `match` values name, marked by policy
/// (every occurrence; where two overlap, the one that starts first wins).
fn highlight(text: &str, assessments: &Value) -> Vec<Segment> {
    let mut found: Vec<(usize, usize, &'static str, String)> = Vec::new();
    for a in assessments.as_array().into_iter().flatten() {
        let mut add = |items: &Value, policy: &'static str, label_key: &str| {
            for item in items.as_array().into_iter().flatten() {
                let Some(m) = item["match"].as_str().filter(|m| !m.is_empty()) else {
                    continue;
                };
                let label = format!(
                    "{} {} ({})",
                    policy,
                    item[label_key].as_str().unwrap_or(""),
                    item["action"].as_str().unwrap_or("")
                );
                for (start, _) in text.match_indices(m) {
                    found.push((start, start + m.len(), policy, label.clone()));
                }
            }
        };
        add(
            &a["sensitiveInformationPolicy"]["piiEntities"],
            "pii",
            "type",
        );
        add(&a["sensitiveInformationPolicy"]["regexes"], "regex", "name");
        add(&a["wordPolicy"]["customWords"], "word", "match");
        add(&a["wordPolicy"]["managedWordLists"], "word", "type");
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = Vec::new();
    let mut at = 0;
    for (start, end, policy, label) in found {
        if start < at {
            continue;
        }
        if start > at {
            out.push(Segment {
                text: text[at..start].to_string(),
                policy: None,
                label: String::new(),
            });
        }
        out.push(Segment {
            text: text[start..end].to_string(),
            policy: Some(policy),
            label,
        });
        at = end;
    }
    if at < text.len() {
        out.push(Segment {
            text: text[at..].to_string(),
            policy: None,
            label: String::new(),
        });
    }
    out
}

/// `POST /console/guardrails/{id}/test` (htmx): ApplyGuardrail, rendered as a fragment.
pub async fn test(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<TestForm>,
) -> Response {
    let text = form.text.clone().unwrap_or_default();
    let source = match form.source.as_deref() {
        Some("OUTPUT") => "OUTPUT",
        _ => "INPUT",
    };
    let version = filled(&form.version).unwrap_or("DRAFT");
    let path = format!(
        "/guardrail/{}/version/{}/apply",
        segment(&id),
        segment(version)
    );
    let body = json!({ "source": source, "content": [{ "text": { "text": text } }] });
    match console
        .call(&signed, Method::POST, &path, Some(&body))
        .await
    {
        Ok(result) => {
            let segments = highlight(&text, &result["assessments"]);
            let outputs: Vec<String> = result["outputs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["text"].as_str().map(str::to_string))
                .collect();
            let mut fired = Vec::new();
            for a in result["assessments"].as_array().into_iter().flatten() {
                for t in a["topicPolicy"]["topics"].as_array().into_iter().flatten() {
                    fired.push(format!(
                        "topic {} ({})",
                        t["name"].as_str().unwrap_or(""),
                        t["action"].as_str().unwrap_or("")
                    ));
                }
                for f in a["contentPolicy"]["filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    fired.push(format!(
                        "content filter {} at {} confidence ({})",
                        f["type"].as_str().unwrap_or(""),
                        f["confidence"].as_str().unwrap_or(""),
                        f["action"].as_str().unwrap_or("")
                    ));
                }
                for f in a["contextualGroundingPolicy"]["filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    fired.push(format!(
                        "grounding {} score {} threshold {} ({})",
                        f["type"].as_str().unwrap_or(""),
                        f["score"],
                        f["threshold"],
                        f["action"].as_str().unwrap_or("")
                    ));
                }
            }
            console.html(
                axum::http::StatusCode::OK,
                "guardrail_test.html",
                context! { action => result["action"], segments, outputs, fired, assessments => result["assessments"] },
            )
        }
        Err(e) => console.error_fragment(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_are_marked_by_policy_in_order() {
        let text = "Mail bob@example.com about the confidential plan, bob@example.com.";
        let assessments = json!([{
            "sensitiveInformationPolicy": {"piiEntities": [{"match": "bob@example.com", "type": "EMAIL", "action": "ANONYMIZED"}]},
            "wordPolicy": {"customWords": [{"match": "confidential", "action": "BLOCKED"}]}
        }]);
        let s = highlight(text, &assessments);
        let marked: Vec<(&str, Option<&str>)> =
            s.iter().map(|s| (s.text.as_str(), s.policy)).collect();
        assert_eq!(
            marked,
            vec![
                ("Mail ", None),
                ("bob@example.com", Some("pii")),
                (" about the ", None),
                ("confidential", Some("word")),
                (" plan, ", None),
                ("bob@example.com", Some("pii")),
                (".", None),
            ]
        );
        assert_eq!(s.iter().map(|s| s.text.as_str()).collect::<String>(), text);
    }

    #[test]
    fn policies_round_trip_to_config_members() {
        let g = json!({
            "wordPolicy": {"words": [{"text": "x"}], "managedWordLists": []},
            "topicPolicy": {"topics": [{"name": "t"}], "tier": {"tierName": "CLASSIC"}}
        });
        let c = policies_as_config(&g);
        assert_eq!(
            c["wordPolicyConfig"],
            json!({"wordsConfig": [{"text": "x"}]})
        );
        assert_eq!(
            c["topicPolicyConfig"]["tierConfig"],
            json!({"tierName": "CLASSIC"})
        );
    }
}
