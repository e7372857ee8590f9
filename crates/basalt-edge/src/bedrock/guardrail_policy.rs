//! Bedrock's wire form of a guardrail's policies: the rule shapes of `CreateGuardrail`
//! and `GetGuardrail` (`topicsConfig[]` items on the way in, `topics[]` on the way out,
//! with Bedrock's member names), parsed into the guardrail crate's policy model and
//! rendered back from it; and the model's validation errors with their field in
//! Bedrock's spelling (`topicPolicyConfig.topicsConfig[0].examples`).

use basalt_core::guardrail_policy::policy::{
    ContentFilterRule, FieldPath, GroundingKind, GroundingRule, ManagedWordList, ManagedWordsRule,
    Modality, PiiRule, PolicyError, PolicyPart, RegexRule, Strength, Tier, TopicRule, WordRule,
};
use basalt_core::guardrail_policy::{ConfiguredAction, PiiType};
use serde::{Deserialize, Serialize};

use crate::error::BedrockError;

/// `GuardrailTopicConfig` / `GuardrailTopic`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topic {
    name: String,
    definition: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    examples: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_enabled: Option<bool>,
}

/// `GuardrailContentFilterConfig` / `GuardrailContentFilter`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentFilter {
    #[serde(rename = "type")]
    kind: String,
    input_strength: String,
    output_strength: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_enabled: Option<bool>,
}

/// `GuardrailWordConfig` / `GuardrailWord`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Word {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_enabled: Option<bool>,
}

/// `GuardrailManagedWordsConfig` / `GuardrailManagedWords`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedWords {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_enabled: Option<bool>,
}

/// `GuardrailPiiEntityConfig` / `GuardrailPiiEntity`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PiiEntity {
    #[serde(rename = "type")]
    kind: PiiType,
    action: ConfiguredAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_enabled: Option<bool>,
}

/// `GuardrailRegexConfig` / `GuardrailRegex`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Regex {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    pattern: String,
    action: ConfiguredAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_enabled: Option<bool>,
}

/// `GuardrailContextualGroundingFilterConfig` / `GuardrailContextualGroundingFilter`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroundingFilter {
    #[serde(rename = "type")]
    kind: GroundingKind,
    threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
}

/// A policy part's path on the wire (`CreateGuardrail`'s member names).
fn part_name(part: PolicyPart) -> String {
    match part {
        PolicyPart::Topics => "topicPolicyConfig.topicsConfig",
        PolicyPart::TopicsTier => "topicPolicyConfig.tierConfig.tierName",
        PolicyPart::ContentFilters => "contentPolicyConfig.filtersConfig",
        PolicyPart::Words => "wordPolicyConfig.wordsConfig",
        PolicyPart::ManagedWordLists => "wordPolicyConfig.managedWordListsConfig",
        PolicyPart::PiiEntities => "sensitiveInformationPolicyConfig.piiEntitiesConfig",
        PolicyPart::Regexes => "sensitiveInformationPolicyConfig.regexesConfig",
        PolicyPart::GroundingFilters => "contextualGroundingPolicyConfig.filtersConfig",
        PolicyPart::Setting(label) => label,
    }
    .to_string()
}

/// A rule field's wire name: the model's `kind` is `type`; the rest are the model's
/// names in camelCase.
fn member_name(member: &'static str) -> String {
    if member == "kind" {
        return "type".into();
    }
    let mut out = String::with_capacity(member.len());
    let mut upper = false;
    for c in member.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The model's path in Bedrock's spelling.
pub fn wire_path(path: &FieldPath) -> String {
    path.render(part_name, member_name)
}

/// A policy error as Bedrock's ValidationException, its field in Bedrock's spelling.
pub fn policy_error(e: PolicyError) -> BedrockError {
    match e.field() {
        Some(field) => BedrockError::validation(format!("{}: {}", wire_path(&field), e.problem())),
        None => BedrockError::validation(e.problem().to_string()),
    }
}

fn not_one_of(at: FieldPath, member: &'static str, value: &str, allowed: &str) -> BedrockError {
    BedrockError::validation(format!(
        "{}: {value:?} is not one of {allowed}",
        wire_path(&at.member(member))
    ))
}

fn strength(at: FieldPath, member: &'static str, value: &str) -> Result<Strength, BedrockError> {
    Strength::parse(value).ok_or_else(|| not_one_of(at, member, value, "NONE, LOW, MEDIUM, HIGH"))
}

fn modalities(
    at: FieldPath,
    member: &'static str,
    values: Option<Vec<String>>,
) -> Result<Option<Vec<Modality>>, BedrockError> {
    values
        .map(|list| {
            list.iter()
                .map(|v| Modality::parse(v).ok_or_else(|| not_one_of(at, member, v, "TEXT, IMAGE")))
                .collect()
        })
        .transpose()
}

/// Parses a topic tier name (`tierConfig.tierName`).
pub fn tier(name: &str) -> Result<Tier, BedrockError> {
    Tier::parse(name).ok_or_else(|| {
        BedrockError::validation(format!(
            "{}: {name:?} is not one of CLASSIC, STANDARD",
            part_name(PolicyPart::TopicsTier)
        ))
    })
}

/// Parses a `Vec` of wire rules into model rules; `parse` gets each rule's path.
pub fn rules<W, M>(
    part: PolicyPart,
    wire: Vec<W>,
    parse: impl Fn(W, FieldPath) -> Result<M, BedrockError>,
) -> Result<Vec<M>, BedrockError> {
    wire.into_iter()
        .enumerate()
        .map(|(i, w)| parse(w, FieldPath::rule(part, i)))
        .collect()
}

impl Topic {
    pub fn parse(self, at: FieldPath) -> Result<TopicRule, BedrockError> {
        if self.kind != "DENY" {
            return Err(BedrockError::validation(format!(
                "{}: must be DENY",
                wire_path(&at.member("kind"))
            )));
        }
        Ok(TopicRule {
            name: self.name,
            definition: self.definition,
            examples: self.examples,
            input_action: self.input_action,
            output_action: self.output_action,
            input_enabled: self.input_enabled,
            output_enabled: self.output_enabled,
        })
    }

    pub fn render(rule: &TopicRule) -> Self {
        Self {
            name: rule.name.clone(),
            definition: rule.definition.clone(),
            examples: rule.examples.clone(),
            kind: "DENY".into(),
            input_action: rule.input_action,
            output_action: rule.output_action,
            input_enabled: rule.input_enabled,
            output_enabled: rule.output_enabled,
        }
    }
}

impl ContentFilter {
    pub fn parse(self, at: FieldPath) -> Result<ContentFilterRule, BedrockError> {
        Ok(ContentFilterRule {
            kind: self.kind,
            input_strength: strength(at, "input_strength", &self.input_strength)?,
            output_strength: strength(at, "output_strength", &self.output_strength)?,
            input_modalities: modalities(at, "input_modalities", self.input_modalities)?,
            output_modalities: modalities(at, "output_modalities", self.output_modalities)?,
            input_action: self.input_action,
            output_action: self.output_action,
            input_enabled: self.input_enabled,
            output_enabled: self.output_enabled,
        })
    }

    pub fn render(rule: &ContentFilterRule) -> Self {
        let names = |m: &Option<Vec<Modality>>| {
            m.as_ref()
                .map(|l| l.iter().map(|x| x.as_str().to_string()).collect())
        };
        Self {
            kind: rule.kind.clone(),
            input_strength: rule.input_strength.as_str().into(),
            output_strength: rule.output_strength.as_str().into(),
            input_modalities: names(&rule.input_modalities),
            output_modalities: names(&rule.output_modalities),
            input_action: rule.input_action,
            output_action: rule.output_action,
            input_enabled: rule.input_enabled,
            output_enabled: rule.output_enabled,
        }
    }
}

impl Word {
    pub fn parse(self, _at: FieldPath) -> Result<WordRule, BedrockError> {
        Ok(WordRule {
            text: self.text,
            input_action: self.input_action,
            output_action: self.output_action,
            input_enabled: self.input_enabled,
            output_enabled: self.output_enabled,
        })
    }

    pub fn render(rule: &WordRule) -> Self {
        Self {
            text: rule.text.clone(),
            input_action: rule.input_action,
            output_action: rule.output_action,
            input_enabled: rule.input_enabled,
            output_enabled: rule.output_enabled,
        }
    }
}

impl ManagedWords {
    pub fn parse(self, at: FieldPath) -> Result<ManagedWordsRule, BedrockError> {
        let kind = match self.kind.as_str() {
            "PROFANITY" => ManagedWordList::Profanity,
            _ => {
                return Err(BedrockError::validation(format!(
                    "{}: must be PROFANITY",
                    wire_path(&at.member("kind"))
                )))
            }
        };
        Ok(ManagedWordsRule {
            kind,
            input_action: self.input_action,
            output_action: self.output_action,
            input_enabled: self.input_enabled,
            output_enabled: self.output_enabled,
        })
    }

    pub fn render(rule: &ManagedWordsRule) -> Self {
        Self {
            kind: rule.kind.as_str().into(),
            input_action: rule.input_action,
            output_action: rule.output_action,
            input_enabled: rule.input_enabled,
            output_enabled: rule.output_enabled,
        }
    }
}

impl PiiEntity {
    pub fn parse(self, _at: FieldPath) -> Result<PiiRule, BedrockError> {
        Ok(PiiRule {
            kind: self.kind,
            action: self.action,
            input_action: self.input_action,
            output_action: self.output_action,
            input_enabled: self.input_enabled,
            output_enabled: self.output_enabled,
        })
    }

    pub fn render(rule: &PiiRule) -> Self {
        Self {
            kind: rule.kind,
            action: rule.action,
            input_action: rule.input_action,
            output_action: rule.output_action,
            input_enabled: rule.input_enabled,
            output_enabled: rule.output_enabled,
        }
    }
}

impl Regex {
    pub fn parse(self, _at: FieldPath) -> Result<RegexRule, BedrockError> {
        Ok(RegexRule {
            name: self.name,
            description: self.description,
            pattern: self.pattern,
            action: self.action,
            input_action: self.input_action,
            output_action: self.output_action,
            input_enabled: self.input_enabled,
            output_enabled: self.output_enabled,
        })
    }

    pub fn render(rule: &RegexRule) -> Self {
        Self {
            name: rule.name.clone(),
            description: rule.description.clone(),
            pattern: rule.pattern.clone(),
            action: rule.action,
            input_action: rule.input_action,
            output_action: rule.output_action,
            input_enabled: rule.input_enabled,
            output_enabled: rule.output_enabled,
        }
    }
}

impl GroundingFilter {
    pub fn parse(self, _at: FieldPath) -> Result<GroundingRule, BedrockError> {
        Ok(GroundingRule {
            kind: self.kind,
            threshold: self.threshold,
            action: self.action,
            enabled: self.enabled,
        })
    }

    pub fn render(rule: &GroundingRule) -> Self {
        Self {
            kind: rule.kind,
            threshold: rule.threshold,
            action: rule.action,
            enabled: rule.enabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths_render_in_bedrocks_member_names() {
        let at = FieldPath::rule(PolicyPart::ContentFilters, 0);
        assert_eq!(
            wire_path(&at.member("input_strength")),
            "contentPolicyConfig.filtersConfig[0].inputStrength"
        );
        assert_eq!(
            wire_path(&at.member("kind")),
            "contentPolicyConfig.filtersConfig[0].type"
        );
        assert_eq!(
            wire_path(
                &FieldPath::rule(PolicyPart::Topics, 1)
                    .member("examples")
                    .item(2)
            ),
            "topicPolicyConfig.topicsConfig[1].examples[2]"
        );
        assert_eq!(
            wire_path(&FieldPath::part(PolicyPart::Setting(
                "blockedInputMessaging"
            ))),
            "blockedInputMessaging"
        );
    }

    #[test]
    fn a_content_filter_round_trips_through_the_model() {
        let wire: ContentFilter = serde_json::from_str(
            r#"{"type": "HATE", "inputStrength": "HIGH", "outputStrength": "LOW", "inputModalities": ["TEXT"], "outputEnabled": false}"#,
        )
        .expect("parses");
        let at = FieldPath::rule(PolicyPart::ContentFilters, 0);
        let rule = wire.parse(at).expect("valid");
        assert_eq!(rule.input_strength, Strength::High);
        let back = serde_json::to_value(ContentFilter::render(&rule)).expect("renders");
        assert_eq!(
            back,
            serde_json::json!({"type": "HATE", "inputStrength": "HIGH", "outputStrength": "LOW", "inputModalities": ["TEXT"], "outputEnabled": false})
        );
        let bad: ContentFilter = serde_json::from_str(
            r#"{"type": "HATE", "inputStrength": "EXTREME", "outputStrength": "LOW"}"#,
        )
        .expect("parses");
        let err = bad.parse(at).expect_err("an unknown strength");
        assert!(
            err.message
                .contains("contentPolicyConfig.filtersConfig[0].inputStrength"),
            "{}",
            err.message
        );
    }
}
