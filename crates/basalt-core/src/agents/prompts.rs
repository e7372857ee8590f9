//! The prompt templates an agent uses, Bedrock's `promptOverrideConfiguration` by
//! prompt type: ORCHESTRATION (the system prompt of every step),
//! MEMORY_SUMMARIZATION (the summarizer's instructions) and ROUTING_CLASSIFIER (a
//! SUPERVISOR_ROUTER's choice of collaborator). GetAgent shows the defaults
//! for the types the agent does not override; an OVERRIDDEN entry's
//! `basePromptTemplate` replaces the default, and an entry's `inferenceConfiguration`
//! applies to that prompt type's model calls in either mode.

use serde_json::{json, Value};

use super::definition::AgentVersion;
use crate::types::InferenceParams;

/// The default orchestration template. `$instruction$` is the agent's instruction;
/// `$memory_content$` the memory's recent summaries (with their heading, or nothing);
/// `$prompt_session_attributes$` the session's prompt attributes (likewise).
pub const DEFAULT_ORCHESTRATION: &str = "$instruction$$memory_content$$prompt_session_attributes$";

/// The default memory-summarization instructions (the session's transcript is the
/// user message).
pub const DEFAULT_MEMORY_SUMMARIZATION: &str = "You write the memory of an assistant. Summarize the conversation below for the assistant's future sessions with the same user: the user's goals, facts about the user and their preferences, what was decided or done, and what is still open. Write at most 200 words of plain text. Do not invent anything that is not in the conversation.";

/// The default routing instructions of a SUPERVISOR_ROUTER (its model then sees one
/// tool per collaborator and must call exactly one).
pub const DEFAULT_ROUTING_CLASSIFIER: &str = "$instruction$\n\nChoose the one collaborator agent best suited to the user's last message and call its tool with the message. Call exactly one tool.";

/// The prompt types this server runs, with their default templates.
pub const PROMPT_TYPES: [(&str, &str); 3] = [
    ("ORCHESTRATION", DEFAULT_ORCHESTRATION),
    ("MEMORY_SUMMARIZATION", DEFAULT_MEMORY_SUMMARIZATION),
    ("ROUTING_CLASSIFIER", DEFAULT_ROUTING_CLASSIFIER),
];

/// Whether the agent's entry for a prompt type sets `inferenceConfiguration`.
pub fn has_inference_configuration(version: &AgentVersion, prompt_type: &str) -> bool {
    entry(version, prompt_type).is_some_and(|e| e.get("inferenceConfiguration").is_some())
}

/// The system prompt of a router's choice of collaborator.
pub fn routing_classifier(version: &AgentVersion) -> String {
    let instruction = version.settings.instruction.clone().unwrap_or_default();
    fill(
        template(version, "ROUTING_CLASSIFIER"),
        &[("$instruction$", instruction.as_str())],
    )
}

/// `template` with each placeholder replaced, in one pass: a placeholder inside a
/// replacement (an instruction, an attribute value) is left as written.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        match values.iter().find(|(p, _)| after.starts_with(p)) {
            Some((placeholder, value)) => {
                out.push_str(value);
                rest = &after[placeholder.len()..];
            }
            None => {
                out.push('$');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The agent's entry for a prompt type, if it gives one.
fn entry<'a>(version: &'a AgentVersion, prompt_type: &str) -> Option<&'a Value> {
    version
        .settings
        .prompt_overrides
        .as_ref()?
        .get("promptConfigurations")?
        .as_array()?
        .iter()
        .find(|c| c.get("promptType").and_then(Value::as_str) == Some(prompt_type))
}

/// The template of a prompt type: the override's when OVERRIDDEN, else the default.
pub fn template<'a>(version: &'a AgentVersion, prompt_type: &str) -> &'a str {
    let default = PROMPT_TYPES
        .iter()
        .find(|(t, _)| *t == prompt_type)
        .map_or("", |(_, d)| *d);
    entry(version, prompt_type)
        .filter(|e| e.get("promptCreationMode").and_then(Value::as_str) == Some("OVERRIDDEN"))
        .and_then(|e| e.get("basePromptTemplate"))
        .and_then(Value::as_str)
        .unwrap_or(default)
}

/// Sampling settings of a prompt type's calls (its entry's `inferenceConfiguration`).
pub fn params(version: &AgentVersion, prompt_type: &str) -> InferenceParams {
    let mut params = InferenceParams::default();
    let Some(config) = entry(version, prompt_type).and_then(|o| o.get("inferenceConfiguration"))
    else {
        return params;
    };
    params.temperature = config
        .get("temperature")
        .and_then(Value::as_f64)
        .map(|t| t as f32);
    params.top_p = config.get("topP").and_then(Value::as_f64).map(|t| t as f32);
    params.top_k = config.get("topK").and_then(Value::as_u64).map(|k| k as u32);
    params.max_tokens = config
        .get("maximumLength")
        .and_then(Value::as_u64)
        .map(|m| m as u32);
    params.stop_sequences = config
        .get("stopSequences")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    params
}

/// The system prompt of an orchestration step.
pub fn orchestration(
    version: &AgentVersion,
    prompt_attributes: &std::collections::BTreeMap<String, String>,
    memory: &[String],
) -> String {
    let instruction = version.settings.instruction.clone().unwrap_or_default();
    let memory_content = if memory.is_empty() {
        String::new()
    } else {
        let mut out =
            String::from("\n\nSummaries of your earlier sessions with this user, newest first:\n");
        for summary in memory {
            out.push_str(&format!("<summary>\n{summary}\n</summary>\n"));
        }
        out
    };
    let attributes = if prompt_attributes.is_empty() {
        String::new()
    } else {
        let lines: Vec<String> = prompt_attributes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("\n\nSession attributes:\n{}", lines.join("\n"))
    };
    fill(
        template(version, "ORCHESTRATION"),
        &[
            ("$instruction$", instruction.as_str()),
            ("$memory_content$", memory_content.as_str()),
            ("$prompt_session_attributes$", attributes.as_str()),
        ],
    )
}

/// `promptOverrideConfiguration` as GetAgent shows it: the agent's entries, and the
/// default of every prompt type it does not give.
pub fn shown(version: &AgentVersion) -> Value {
    let given: Vec<Value> = version
        .settings
        .prompt_overrides
        .as_ref()
        .and_then(|p| p.get("promptConfigurations"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut configurations = given.clone();
    for (prompt_type, default) in PROMPT_TYPES {
        let present = given
            .iter()
            .any(|c| c.get("promptType").and_then(Value::as_str) == Some(prompt_type));
        if !present {
            configurations.push(json!({
                "promptType": prompt_type,
                "promptCreationMode": "DEFAULT",
                "promptState": "ENABLED",
                "parserMode": "DEFAULT",
                "basePromptTemplate": default,
            }));
        }
    }
    let mut out = match version.settings.prompt_overrides.clone() {
        Some(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    out.insert("promptConfigurations".into(), Value::Array(configurations));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::definition::{AgentSettings, AgentStatus, Collaboration};

    fn version(overrides: Option<Value>) -> AgentVersion {
        AgentVersion {
            agent_id: "AGENT12345".into(),
            version: "DRAFT".into(),
            settings: AgentSettings {
                name: "a".into(),
                description: None,
                instruction: Some("Be helpful with $instruction$ left alone.".into()),
                foundation_model: None,
                role_arn: None,
                idle_session_ttl_secs: 600,
                guardrail: None,
                memory: None,
                prompt_overrides: overrides,
                collaboration: Collaboration::Disabled,
                customer_encryption_key_arn: None,
            },
            status: AgentStatus::NotPrepared,
            failure_reasons: Vec::new(),
            recommended_actions: Vec::new(),
            action_groups: Vec::new(),
            knowledge_bases: Vec::new(),
            collaborators: Vec::new(),
            client_token: None,
            created_ms: 0,
            updated_ms: 0,
            prepared_ms: None,
        }
    }

    #[test]
    fn the_default_template_joins_instruction_memory_and_attributes() {
        let v = version(None);
        let attributes = [("tier".to_string(), "gold".to_string())]
            .into_iter()
            .collect();
        let text = orchestration(&v, &attributes, &["Likes tea.".into()]);
        assert!(text.starts_with("Be helpful with $instruction$ left alone."));
        assert!(text.contains("<summary>\nLikes tea.\n</summary>"));
        assert!(text.ends_with("Session attributes:\ntier: gold"));
        assert_eq!(
            orchestration(&v, &Default::default(), &[]),
            "Be helpful with $instruction$ left alone."
        );
    }

    #[test]
    fn a_router_uses_its_routing_classifier_template_and_sampling() {
        let default = version(None);
        assert!(routing_classifier(&default).starts_with(
            "Be helpful with $instruction$ left alone.\n\nChoose the one collaborator"
        ));
        assert!(!has_inference_configuration(&default, "ROUTING_CLASSIFIER"));
        let v = version(Some(json!({"promptConfigurations": [{
            "promptType": "ROUTING_CLASSIFIER", "promptCreationMode": "OVERRIDDEN",
            "basePromptTemplate": "Route by topic. $instruction$",
            "inferenceConfiguration": {"temperature": 0.0, "maximumLength": 32}}]})));
        assert_eq!(
            routing_classifier(&v),
            "Route by topic. Be helpful with $instruction$ left alone."
        );
        assert!(has_inference_configuration(&v, "ROUTING_CLASSIFIER"));
        assert_eq!(params(&v, "ROUTING_CLASSIFIER").max_tokens, Some(32));
    }

    #[test]
    fn an_overridden_template_replaces_the_default_and_defaults_are_shown() {
        let v = version(Some(json!({"promptConfigurations": [{
            "promptType": "ORCHESTRATION", "promptCreationMode": "OVERRIDDEN",
            "basePromptTemplate": "Rules: $instruction$ Cost: $5.",
            "inferenceConfiguration": {"maximumLength": 64, "temperature": 0.0}}]})));
        assert_eq!(
            orchestration(&v, &Default::default(), &[]),
            "Rules: Be helpful with $instruction$ left alone. Cost: $5."
        );
        assert_eq!(params(&v, "ORCHESTRATION").max_tokens, Some(64));
        let shown = shown(&v);
        let types: Vec<&str> = shown["promptConfigurations"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["promptType"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "ORCHESTRATION",
                "MEMORY_SUMMARIZATION",
                "ROUTING_CLASSIFIER"
            ]
        );
        assert_eq!(
            template(&v, "MEMORY_SUMMARIZATION"),
            DEFAULT_MEMORY_SUMMARIZATION
        );
    }
}
