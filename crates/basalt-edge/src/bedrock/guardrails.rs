//! Guardrails on the Bedrock wire: the control plane (CreateGuardrail, GetGuardrail,
//! ListGuardrails, UpdateGuardrail, CreateGuardrailVersion, DeleteGuardrail), the
//! runtime's ApplyGuardrail, and the assessment JSON shared with Converse traces.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use basalt_core::guardrail_policy::policy::{validate_message, validate_name, PolicyPart};
use basalt_core::guardrail_policy::{
    Assessment, GuardrailPolicy, Qualifier, Segment, Source, Taken, Usage, Verdict,
};
use basalt_core::guardrails::{GuardrailInfo, GuardrailSpec};
use basalt_core::keys::Principal;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::guardrail_policy::{
    self as wire_policy, policy_error, rules, ContentFilter, GroundingFilter, ManagedWords,
    PiiEntity, Regex, Topic, Word,
};
use super::paging::Paging;
use super::wire::parse_json;
use crate::common::rfc3339;
use crate::error::BedrockError;
use crate::AppState;

// ---- control plane -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TopicPolicyConfig {
    topics_config: Vec<Topic>,
    tier_config: Option<TierConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TierConfig {
    tier_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContentPolicyConfig {
    filters_config: Vec<ContentFilter>,
    /// Accepted; this server has one classifier per category for every tier.
    #[allow(dead_code)]
    tier_config: Option<TierConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WordPolicyConfig {
    #[serde(default)]
    words_config: Vec<Word>,
    #[serde(default)]
    managed_word_lists_config: Vec<ManagedWords>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SensitiveInformationPolicyConfig {
    #[serde(default)]
    pii_entities_config: Vec<PiiEntity>,
    #[serde(default)]
    regexes_config: Vec<Regex>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroundingPolicyConfig {
    filters_config: Vec<GroundingFilter>,
    /// Accepted; this server has one grounding method for every tier.
    #[allow(dead_code)]
    tier_config: Option<TierConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tag {
    key: String,
    value: String,
}

/// CreateGuardrail and UpdateGuardrail bodies (Update has no tags or token).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GuardrailBody {
    name: Option<String>,
    description: Option<String>,
    topic_policy_config: Option<TopicPolicyConfig>,
    content_policy_config: Option<ContentPolicyConfig>,
    word_policy_config: Option<WordPolicyConfig>,
    sensitive_information_policy_config: Option<SensitiveInformationPolicyConfig>,
    contextual_grounding_policy_config: Option<GroundingPolicyConfig>,
    automated_reasoning_policy_config: Option<Value>,
    /// Accepted for compatibility; one server has no other regions to route to.
    #[allow(dead_code)]
    cross_region_config: Option<Value>,
    blocked_input_messaging: Option<String>,
    blocked_outputs_messaging: Option<String>,
    kms_key_id: Option<String>,
    tags: Option<Vec<Tag>>,
    client_request_token: Option<String>,
}

impl GuardrailBody {
    fn into_spec(self, creating: bool) -> Result<GuardrailSpec, BedrockError> {
        if self.automated_reasoning_policy_config.is_some() {
            return Err(BedrockError::validation(
                "automatedReasoningPolicyConfig is not supported by this server",
            ));
        }
        if !creating && (self.tags.is_some() || self.client_request_token.is_some()) {
            return Err(BedrockError::validation(
                "UpdateGuardrail takes neither tags nor clientRequestToken",
            ));
        }
        let mut policy = GuardrailPolicy::default();
        if let Some(t) = self.topic_policy_config {
            policy.topics = rules(PolicyPart::Topics, t.topics_config, Topic::parse)?;
            policy.topics_tier = t
                .tier_config
                .map(|c| wire_policy::tier(&c.tier_name))
                .transpose()?;
        }
        if let Some(c) = self.content_policy_config {
            policy.content_filters = rules(
                PolicyPart::ContentFilters,
                c.filters_config,
                ContentFilter::parse,
            )?;
        }
        if let Some(w) = self.word_policy_config {
            if w.words_config.is_empty() && w.managed_word_lists_config.is_empty() {
                return Err(BedrockError::validation(
                    "wordPolicyConfig needs wordsConfig or managedWordListsConfig",
                ));
            }
            policy.words = rules(PolicyPart::Words, w.words_config, Word::parse)?;
            policy.managed_word_lists = rules(
                PolicyPart::ManagedWordLists,
                w.managed_word_lists_config,
                ManagedWords::parse,
            )?;
        }
        if let Some(p) = self.sensitive_information_policy_config {
            if p.pii_entities_config.is_empty() && p.regexes_config.is_empty() {
                return Err(BedrockError::validation(
                    "sensitiveInformationPolicyConfig needs piiEntitiesConfig or regexesConfig",
                ));
            }
            policy.pii_entities = rules(
                PolicyPart::PiiEntities,
                p.pii_entities_config,
                PiiEntity::parse,
            )?;
            policy.regexes = rules(PolicyPart::Regexes, p.regexes_config, Regex::parse)?;
        }
        if let Some(g) = self.contextual_grounding_policy_config {
            if g.filters_config.is_empty() {
                return Err(BedrockError::validation(
                    "contextualGroundingPolicyConfig.filtersConfig needs at least one filter",
                ));
            }
            policy.grounding_filters = rules(
                PolicyPart::GroundingFilters,
                g.filters_config,
                GroundingFilter::parse,
            )?;
        }
        let name = self
            .name
            .ok_or_else(|| BedrockError::validation("name is required"))?;
        let blocked_input_messaging = self
            .blocked_input_messaging
            .ok_or_else(|| BedrockError::validation("blockedInputMessaging is required"))?;
        let blocked_outputs_messaging = self
            .blocked_outputs_messaging
            .ok_or_else(|| BedrockError::validation("blockedOutputsMessaging is required"))?;
        // The model's checks, here so that their errors name Bedrock's fields.
        validate_name(&name).map_err(policy_error)?;
        validate_message("blockedInputMessaging", &blocked_input_messaging)
            .map_err(policy_error)?;
        validate_message("blockedOutputsMessaging", &blocked_outputs_messaging)
            .map_err(policy_error)?;
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.is_empty() || d.chars().count() > 200)
        {
            return Err(BedrockError::validation(
                "description must be 1 to 200 characters long",
            ));
        }
        policy.validate().map_err(policy_error)?;
        Ok(GuardrailSpec {
            name,
            description: self.description,
            policy,
            blocked_input_messaging,
            blocked_outputs_messaging,
            kms_key_id: self.kms_key_id,
            tags: self
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect(),
            client_token: self.client_request_token,
        })
    }
}

/// Guardrail timestamps: RFC 3339, empty for a time out of range.
fn timestamp(ms: i64) -> String {
    rfc3339(ms).unwrap_or_default()
}

fn accepted(body: Value) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

pub async fn create_guardrail(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let spec = parse_json::<GuardrailBody>(&body)?.into_spec(true)?;
    let info = state.guardrails.create_guardrail(spec)?;
    Ok(accepted(json!({
        "guardrailId": info.id,
        "guardrailArn": info.arn,
        "version": info.version,
        "createdAt": timestamp(info.created_at_ms),
    })))
}

pub async fn update_guardrail(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let spec = parse_json::<GuardrailBody>(&body)?.into_spec(false)?;
    let info = state.guardrails.update_guardrail(&identifier, spec)?;
    Ok(accepted(json!({
        "guardrailId": info.id,
        "guardrailArn": info.arn,
        "version": info.version,
        "updatedAt": timestamp(info.updated_at_ms),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VersionBody {
    description: Option<String>,
    client_request_token: Option<String>,
}

pub async fn create_guardrail_version(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: VersionBody = if body.is_empty() {
        VersionBody {
            description: None,
            client_request_token: None,
        }
    } else {
        parse_json(&body)?
    };
    let (id, version) = state.guardrails.create_guardrail_version(
        &identifier,
        body.description.as_deref(),
        body.client_request_token.as_deref(),
    )?;
    Ok(accepted(json!({ "guardrailId": id, "version": version })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionQuery {
    guardrail_version: Option<String>,
}

/// The policies of `GetGuardrail`'s answer (`topicPolicy`, …), in Bedrock's shapes.
fn policy_json(info: &GuardrailInfo) -> Map<String, Value> {
    let p = &info.policy;
    let mut out = Map::new();
    if !p.topics.is_empty() {
        let mut topic = json!({ "topics": render(&p.topics, Topic::render) });
        if let Some(t) = p.topics_tier {
            topic["tier"] = json!({ "tierName": t.as_str() });
        }
        out.insert("topicPolicy".into(), topic);
    }
    if !p.content_filters.is_empty() {
        out.insert(
            "contentPolicy".into(),
            json!({ "filters": render(&p.content_filters, ContentFilter::render) }),
        );
    }
    if !p.words.is_empty() || !p.managed_word_lists.is_empty() {
        out.insert(
            "wordPolicy".into(),
            json!({
                "words": render(&p.words, Word::render),
                "managedWordLists": render(&p.managed_word_lists, ManagedWords::render),
            }),
        );
    }
    if !p.pii_entities.is_empty() || !p.regexes.is_empty() {
        out.insert(
            "sensitiveInformationPolicy".into(),
            json!({
                "piiEntities": render(&p.pii_entities, PiiEntity::render),
                "regexes": render(&p.regexes, Regex::render),
            }),
        );
    }
    if !p.grounding_filters.is_empty() {
        out.insert(
            "contextualGroundingPolicy".into(),
            json!({ "filters": render(&p.grounding_filters, GroundingFilter::render) }),
        );
    }
    out
}

/// Model rules as a JSON list of their wire shapes.
fn render<M, W: serde::Serialize>(rules: &[M], wire: impl Fn(&M) -> W) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|r| serde_json::to_value(wire(r)).unwrap_or(Value::Null))
            .collect(),
    )
}

pub async fn get_guardrail(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Response, BedrockError> {
    let info = state
        .guardrails
        .get_guardrail(&identifier, query.guardrail_version.as_deref())?;
    let mut body = json!({
        "name": info.name,
        "guardrailId": info.id,
        "guardrailArn": info.arn,
        "version": info.version,
        "status": "READY",
        "createdAt": timestamp(info.created_at_ms),
        "updatedAt": timestamp(info.updated_at_ms),
        "blockedInputMessaging": info.blocked_input_messaging,
        "blockedOutputsMessaging": info.blocked_outputs_messaging,
    });
    if let Some(d) = &info.description {
        body["description"] = json!(d);
    }
    if let Some(k) = &info.kms_key_id {
        body["kmsKeyArn"] = json!(k);
    }
    if let Value::Object(map) = &mut body {
        map.extend(policy_json(&info));
    }
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    guardrail_identifier: Option<String>,
    max_results: Option<String>,
    next_token: Option<String>,
}

pub async fn list_guardrails(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
) -> Result<Response, BedrockError> {
    let paging = Paging::from_query(
        "ListGuardrails",
        &principal.key_id,
        query.max_results.as_deref(),
        query.next_token.as_deref(),
    )?;
    let all = state
        .guardrails
        .list_guardrails(query.guardrail_identifier.as_deref())?;
    let body = paging.page(all).into_json("guardrails", |info| {
        let mut summary = json!({
            "id": info.id,
            "arn": info.arn,
            "status": "READY",
            "name": info.name,
            "version": info.version,
            "createdAt": timestamp(info.created_at_ms),
            "updatedAt": timestamp(info.updated_at_ms),
        });
        if let Some(d) = &info.description {
            summary["description"] = json!(d);
        }
        summary
    });
    Ok(Json(body).into_response())
}

pub async fn delete_guardrail(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Response, BedrockError> {
    state
        .guardrails
        .delete_guardrail(&identifier, query.guardrail_version.as_deref())?;
    Ok(accepted(json!({})))
}

// ---- runtime: ApplyGuardrail -----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyBody {
    source: Option<String>,
    content: Option<Vec<Map<String, Value>>>,
    output_scope: Option<String>,
}

fn apply_segments(content: Vec<Map<String, Value>>) -> Result<Vec<Segment>, BedrockError> {
    if content.is_empty() {
        return Err(BedrockError::validation(
            "content must have at least one block",
        ));
    }
    let mut segments = Vec::with_capacity(content.len());
    for (i, block) in content.into_iter().enumerate() {
        let at = format!("content[{i}]");
        let mut iter = block.into_iter();
        let (Some((member, value)), None) = (iter.next(), iter.next()) else {
            return Err(BedrockError::validation(format!(
                "{at} must set exactly one member"
            )));
        };
        match member.as_str() {
            "text" => {
                let text = value
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        BedrockError::validation(format!("{at}.text needs a string text"))
                    })?
                    .to_string();
                let mut qualifiers = Vec::new();
                if let Some(list) = value.get("qualifiers") {
                    for q in list.as_array().ok_or_else(|| {
                        BedrockError::validation(format!("{at}.text.qualifiers must be a list"))
                    })? {
                        qualifiers.push(match q.as_str() {
                            Some("guard_content") => Qualifier::GuardContent,
                            Some("grounding_source") => Qualifier::GroundingSource,
                            Some("query") => Qualifier::Query,
                            _ => {
                                return Err(BedrockError::validation(format!(
                                    "{at}.text.qualifiers must be guard_content, grounding_source or query"
                                )))
                            }
                        });
                    }
                }
                segments.push(Segment { text, qualifiers });
            }
            "image" => {
                return Err(BedrockError::validation(format!(
                    "{at}: image content is not supported by this server's guardrails"
                )))
            }
            other => {
                return Err(BedrockError::validation(format!(
                    "{at} has unknown member {other:?}; expected text or image"
                )))
            }
        }
    }
    Ok(segments)
}

pub async fn apply_guardrail(
    State(state): State<AppState>,
    Path((identifier, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let body: ApplyBody = parse_json(&body)?;
    let source = match body.source.as_deref() {
        Some("INPUT") => Source::Input,
        Some("OUTPUT") => Source::Output,
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "source {other:?} is not one of INPUT, OUTPUT"
            )))
        }
        None => return Err(BedrockError::validation("source is required")),
    };
    let full = match body.output_scope.as_deref() {
        None | Some("INTERVENTIONS") => false,
        Some("FULL") => true,
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "outputScope {other:?} is not one of INTERVENTIONS, FULL"
            )))
        }
    };
    let segments = apply_segments(
        body.content
            .ok_or_else(|| BedrockError::validation("content is required"))?,
    )?;
    let guarded: Vec<usize> = (0..segments.len())
        .filter(|&i| segments[i].is_guarded())
        .collect();
    let outcome = state
        .guardrails
        .apply_guardrail(&identifier, &version, source, segments)
        .await?;
    let verdict = &outcome.verdict;
    let outputs: Vec<Value> = if verdict.blocked {
        vec![json!({ "text": outcome.blocked_message })]
    } else if verdict.anonymized || full {
        guarded
            .iter()
            .map(|&i| json!({ "text": verdict.masked[i] }))
            .collect()
    } else {
        Vec::new()
    };
    let a = &verdict.assessment;
    Ok(Json(json!({
        "usage": usage_json(&a.usage),
        "action": if verdict.intervened() { "GUARDRAIL_INTERVENED" } else { "NONE" },
        "actionReason": action_reason(verdict),
        "outputs": outputs,
        "assessments": [assessment_json(a, full)],
        "guardrailCoverage": coverage_json(a),
    }))
    .into_response())
}

// ---- assessment JSON (ApplyGuardrail and Converse traces) -------------------------

pub fn action_reason(verdict: &Verdict) -> &'static str {
    if verdict.blocked {
        "Guardrail blocked."
    } else if verdict.anonymized {
        "Guardrail masked."
    } else {
        "No action."
    }
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "topicPolicyUnits": u.topic_policy_units,
        "contentPolicyUnits": u.content_policy_units,
        "wordPolicyUnits": u.word_policy_units,
        "sensitiveInformationPolicyUnits": u.sensitive_information_policy_units,
        "sensitiveInformationPolicyFreeUnits": u.sensitive_information_policy_free_units,
        "contextualGroundingPolicyUnits": u.contextual_grounding_policy_units,
    })
}

fn coverage_json(a: &Assessment) -> Value {
    json!({ "textCharacters": { "guarded": a.characters_guarded, "total": a.characters_total } })
}

fn taken(t: Taken) -> &'static str {
    t.as_str()
}

/// One assessment; `full` keeps findings that did not trigger (topics below the
/// threshold) as Bedrock's `outputScope: FULL` does.
pub fn assessment_json(a: &Assessment, full: bool) -> Value {
    let mut out = Map::new();
    let topics: Vec<Value> = a
        .topics
        .iter()
        .filter(|t| full || t.detected)
        .map(|t| json!({ "name": t.name, "type": "DENY", "action": taken(t.action), "detected": t.detected }))
        .collect();
    if !topics.is_empty() {
        out.insert("topicPolicy".into(), json!({ "topics": topics }));
    }
    let filters: Vec<Value> = a
        .content
        .iter()
        .filter(|f| full || f.detected)
        .map(|f| json!({ "type": f.kind, "confidence": f.confidence.as_str(), "filterStrength": f.strength.as_str(), "action": taken(f.action), "detected": f.detected }))
        .collect();
    if !filters.is_empty() {
        out.insert("contentPolicy".into(), json!({ "filters": filters }));
    }
    if !a.custom_words.is_empty() || !a.managed_words.is_empty() {
        out.insert(
            "wordPolicy".into(),
            json!({
                "customWords": a.custom_words.iter().map(|w| json!({ "match": w.matched, "action": taken(w.action), "detected": true })).collect::<Vec<_>>(),
                "managedWordLists": a.managed_words.iter().map(|w| json!({ "match": w.matched, "type": "PROFANITY", "action": taken(w.action), "detected": true })).collect::<Vec<_>>(),
            }),
        );
    }
    if !a.pii.is_empty() || !a.regexes.is_empty() {
        out.insert(
            "sensitiveInformationPolicy".into(),
            json!({
                "piiEntities": a.pii.iter().map(|p| json!({ "match": p.matched, "type": p.kind.as_str(), "action": taken(p.action), "detected": true })).collect::<Vec<_>>(),
                "regexes": a.regexes.iter().map(|r| json!({ "name": r.name, "match": r.matched, "regex": r.regex, "action": taken(r.action), "detected": true })).collect::<Vec<_>>(),
            }),
        );
    }
    if !a.grounding.is_empty() {
        out.insert(
            "contextualGroundingPolicy".into(),
            json!({
                "filters": a.grounding.iter().map(|g| json!({ "type": g.kind.as_str(), "threshold": g.threshold, "score": g.score, "action": taken(g.action), "detected": g.detected })).collect::<Vec<_>>(),
            }),
        );
    }
    out.insert(
        "invocationMetrics".into(),
        json!({
            "guardrailProcessingLatency": a.latency_ms,
            "usage": usage_json(&a.usage),
            "guardrailCoverage": coverage_json(a),
        }),
    );
    Value::Object(out)
}
