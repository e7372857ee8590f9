//! Bedrock's wire form of a guardrail's policies: the rule shapes of `CreateGuardrail`
//! and `GetGuardrail` (`topicsConfig[]` items on the way in, `topics[]` on the way out,
//! with Bedrock's member names), parsed into the guardrail crate's policy model and
//! rendered back from it; and the model's validation errors with their field in
//! Bedrock's spelling (`topicPolicyConfig.topicsConfig[0].examples`).

use basalt_core::guardrail_policy::policy::{
    ContentFilterRule, FieldPath, GroundingKind, GroundingRule, ManagedWordList, ManagedWordsRule,
    Modality, PiiRule, PolicyError, PolicyPart, RegexRule, Sides, Strength, Tier, TopicRule,
    WordRule,
};
use basalt_core::guardrail_policy::{ConfiguredAction, PiiType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::BedrockError;

/// A rule's per-side members (`inputAction`, `inputEnabled`, …).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_enabled: Option<bool>,
}

impl WireSides {
    fn parse(self) -> Sides {
        Sides {
            input_action: self.input_action,
            output_action: self.output_action,
            input_enabled: self.input_enabled,
            output_enabled: self.output_enabled,
        }
    }

    fn render(sides: &Sides) -> Self {
        Self {
            input_action: sides.input_action,
            output_action: sides.output_action,
            input_enabled: sides.input_enabled,
            output_enabled: sides.output_enabled,
        }
    }
}

/// Refuses a rule with members this server does not know, naming the first.
fn known_members(at: FieldPath, unknown: &Map<String, Value>) -> Result<(), BedrockError> {
    match unknown.keys().next() {
        None => Ok(()),
        Some(name) => Err(BedrockError::validation(format!(
            "{}: unknown member {name:?}",
            wire_path(&at)
        ))),
    }
}

/// `GuardrailTopicConfig` / `GuardrailTopic`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    name: String,
    definition: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    examples: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(flatten)]
    sides: WireSides,
    /// Members this server does not know (refused by `parse`).
    #[serde(flatten, skip_serializing)]
    unknown: Map<String, Value>,
}

/// `GuardrailContentFilterConfig` / `GuardrailContentFilter`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentFilter {
    #[serde(rename = "type")]
    kind: String,
    input_strength: String,
    output_strength: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_modalities: Option<Vec<String>>,
    #[serde(flatten)]
    sides: WireSides,
    /// Members this server does not know (refused by `parse`).
    #[serde(flatten, skip_serializing)]
    unknown: Map<String, Value>,
}

/// `GuardrailWordConfig` / `GuardrailWord`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Word {
    text: String,
    #[serde(flatten)]
    sides: WireSides,
    /// Members this server does not know (refused by `parse`).
    #[serde(flatten, skip_serializing)]
    unknown: Map<String, Value>,
}

/// `GuardrailManagedWordsConfig` / `GuardrailManagedWords`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedWords {
    #[serde(rename = "type")]
    kind: String,
    #[serde(flatten)]
    sides: WireSides,
    /// Members this server does not know (refused by `parse`).
    #[serde(flatten, skip_serializing)]
    unknown: Map<String, Value>,
}

/// `GuardrailPiiEntityConfig` / `GuardrailPiiEntity`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PiiEntity {
    #[serde(rename = "type")]
    kind: PiiType,
    action: ConfiguredAction,
    #[serde(flatten)]
    sides: WireSides,
    /// Members this server does not know (refused by `parse`).
    #[serde(flatten, skip_serializing)]
    unknown: Map<String, Value>,
}

/// `GuardrailRegexConfig` / `GuardrailRegex`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Regex {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    pattern: String,
    action: ConfiguredAction,
    #[serde(flatten)]
    sides: WireSides,
    /// Members this server does not know (refused by `parse`).
    #[serde(flatten, skip_serializing)]
    unknown: Map<String, Value>,
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
        known_members(at, &self.unknown)?;
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
            sides: self.sides.parse(),
        })
    }

    pub fn render(rule: &TopicRule) -> Self {
        Self {
            name: rule.name.clone(),
            definition: rule.definition.clone(),
            examples: rule.examples.clone(),
            kind: "DENY".into(),
            sides: WireSides::render(&rule.sides),
            unknown: Map::new(),
        }
    }
}

impl ContentFilter {
    pub fn parse(self, at: FieldPath) -> Result<ContentFilterRule, BedrockError> {
        known_members(at, &self.unknown)?;
        Ok(ContentFilterRule {
            kind: self.kind,
            input_strength: strength(at, "input_strength", &self.input_strength)?,
            output_strength: strength(at, "output_strength", &self.output_strength)?,
            input_modalities: modalities(at, "input_modalities", self.input_modalities)?,
            output_modalities: modalities(at, "output_modalities", self.output_modalities)?,
            sides: self.sides.parse(),
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
            sides: WireSides::render(&rule.sides),
            unknown: Map::new(),
        }
    }
}

impl Word {
    pub fn parse(self, at: FieldPath) -> Result<WordRule, BedrockError> {
        known_members(at, &self.unknown)?;
        Ok(WordRule {
            text: self.text,
            sides: self.sides.parse(),
        })
    }

    pub fn render(rule: &WordRule) -> Self {
        Self {
            text: rule.text.clone(),
            sides: WireSides::render(&rule.sides),
            unknown: Map::new(),
        }
    }
}

impl ManagedWords {
    pub fn parse(self, at: FieldPath) -> Result<ManagedWordsRule, BedrockError> {
        known_members(at, &self.unknown)?;
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
            sides: self.sides.parse(),
        })
    }

    pub fn render(rule: &ManagedWordsRule) -> Self {
        Self {
            kind: rule.kind.as_str().into(),
            sides: WireSides::render(&rule.sides),
            unknown: Map::new(),
        }
    }
}

impl PiiEntity {
    pub fn parse(self, at: FieldPath) -> Result<PiiRule, BedrockError> {
        known_members(at, &self.unknown)?;
        Ok(PiiRule {
            kind: self.kind,
            action: self.action,
            sides: self.sides.parse(),
        })
    }

    pub fn render(rule: &PiiRule) -> Self {
        Self {
            kind: rule.kind,
            action: rule.action,
            sides: WireSides::render(&rule.sides),
            unknown: Map::new(),
        }
    }
}

impl Regex {
    pub fn parse(self, at: FieldPath) -> Result<RegexRule, BedrockError> {
        known_members(at, &self.unknown)?;
        Ok(RegexRule {
            name: self.name,
            description: self.description,
            pattern: self.pattern,
            action: self.action,
            sides: self.sides.parse(),
        })
    }

    pub fn render(rule: &RegexRule) -> Self {
        Self {
            name: rule.name.clone(),
            description: rule.description.clone(),
            pattern: rule.pattern.clone(),
            action: rule.action,
            sides: WireSides::render(&rule.sides),
            unknown: Map::new(),
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
    fn per_side_members_are_known_and_others_refused() {
        let at = FieldPath::rule(PolicyPart::Topics, 3);
        let topic: Topic = serde_json::from_str(
            r#"{"name": "t", "definition": "d", "type": "DENY", "inputAction": "NONE", "outputEnabled": false}"#,
        )
        .expect("parses");
        let rule = topic.parse(at).expect("every member is known");
        assert_eq!(rule.sides.input_action, Some(ConfiguredAction::None));
        assert_eq!(rule.sides.output_enabled, Some(false));
        let odd: Topic = serde_json::from_str(
            r#"{"name": "t", "definition": "d", "type": "DENY", "inputActoin": "NONE"}"#,
        )
        .expect("parses");
        let err = odd.parse(at).expect_err("a misspelt member");
        assert!(
            err.message
                .contains(r#"topicPolicyConfig.topicsConfig[3]: unknown member "inputActoin""#),
            "{}",
            err.message
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
