//! A guardrail's policies as configured, and their validation against Bedrock's limits.
//!
//! The item types keep Bedrock's member names (`inputAction`, `inputEnabled`, …) so a
//! stored policy renders back exactly as it was configured; the edge maps the
//! containers (`topicsConfig` on create, `topics` on get).

use serde::{Deserialize, Serialize};

use crate::content;
use crate::pii::PiiType;

/// What a policy does when it detects something (the control plane's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfiguredAction {
    Block,
    Anonymize,
    None,
}

/// A denied topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicRule {
    pub name: String,
    pub definition: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_enabled: Option<bool>,
}

/// A filter strength: how confident a classifier must be before the filter acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    None,
    Low,
    Medium,
    High,
}

impl Strength {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NONE" => Self::None,
            "LOW" => Self::Low,
            "MEDIUM" => Self::Medium,
            "HIGH" => Self::High,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
        }
    }

    /// Whether a finding of this confidence trips a filter of `strength`: a LOW
    /// filter acts on HIGH confidence only, MEDIUM on MEDIUM and up, HIGH on LOW and
    /// up (Bedrock's mapping).
    pub fn trips(self, strength: Strength) -> bool {
        match strength {
            Strength::None => false,
            Strength::Low => self >= Strength::High,
            Strength::Medium => self >= Strength::Medium,
            Strength::High => self >= Strength::Low,
        }
    }
}

/// A content filter (HATE, INSULTS, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentFilterRule {
    #[serde(rename = "type")]
    pub kind: String,
    pub input_strength: String,
    pub output_strength: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_enabled: Option<bool>,
}

/// A custom word or phrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WordRule {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_enabled: Option<bool>,
}

/// A managed word list (only `PROFANITY` exists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedWordsRule {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_enabled: Option<bool>,
}

/// A PII entity type and what to do with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PiiRule {
    #[serde(rename = "type")]
    pub kind: PiiType,
    pub action: ConfiguredAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_enabled: Option<bool>,
}

/// A custom regular-expression entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub pattern: String,
    pub action: ConfiguredAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_enabled: Option<bool>,
}

/// A contextual grounding filter (GROUNDING or RELEVANCE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroundingRule {
    #[serde(rename = "type")]
    pub kind: GroundingKind,
    pub threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ConfiguredAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The two contextual grounding checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroundingKind {
    Grounding,
    Relevance,
}

impl GroundingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grounding => "GROUNDING",
            Self::Relevance => "RELEVANCE",
        }
    }
}

/// Every policy of one guardrail version. An empty list means the policy is off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardrailPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_filters: Vec<ContentFilterRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<WordRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_word_lists: Vec<ManagedWordsRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pii_entities: Vec<PiiRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regexes: Vec<RegexRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grounding_filters: Vec<GroundingRule>,
}

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{0}")]
    Unsupported(String),
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), PolicyError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            field,
            format!("must be {min} to {max} characters long (it is {n})"),
        ));
    }
    Ok(())
}

fn check_count(field: &str, n: usize, min: usize, max: usize) -> Result<(), PolicyError> {
    if n < min || n > max {
        return Err(invalid(
            field,
            format!("must have {min} to {max} entries (it has {n})"),
        ));
    }
    Ok(())
}

/// Checks a guardrail name against Bedrock's pattern and length.
pub fn validate_name(name: &str) -> Result<(), PolicyError> {
    check_len("name", name, 1, 50)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid("name", "may contain only letters, digits, - and _"));
    }
    Ok(())
}

/// Checks a blocked message (`blockedInputMessaging`, `blockedOutputsMessaging`).
pub fn validate_message(field: &str, message: &str) -> Result<(), PolicyError> {
    check_len(field, message, 1, 500)
}

/// The largest compiled size of one custom regex (bytes of the regex program).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl GuardrailPolicy {
    /// Checks every limit Bedrock documents and that every pattern compiles.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !self.topics.is_empty() {
            check_count("topicPolicyConfig.topicsConfig", self.topics.len(), 1, 30)?;
        }
        for (i, topic) in self.topics.iter().enumerate() {
            let at = format!("topicPolicyConfig.topicsConfig[{i}]");
            check_len(&format!("{at}.name"), &topic.name, 1, 100)?;
            if !topic
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " -_!?.".contains(c))
            {
                return Err(invalid(
                    format!("{at}.name"),
                    "may contain only letters, digits, spaces and - _ ! ? .",
                ));
            }
            check_len(&format!("{at}.definition"), &topic.definition, 1, 200)?;
            check_count(&format!("{at}.examples"), topic.examples.len(), 0, 5)?;
            for (j, example) in topic.examples.iter().enumerate() {
                check_len(&format!("{at}.examples[{j}]"), example, 1, 100)?;
            }
            if topic.kind != "DENY" {
                return Err(invalid(format!("{at}.type"), "must be DENY"));
            }
            no_anonymize(&at, topic.input_action, topic.output_action)?;
        }
        if let Some(tier) = &self.topics_tier {
            check_tier("topicPolicyConfig.tierConfig.tierName", tier)?;
        }
        if !self.content_filters.is_empty() {
            check_count(
                "contentPolicyConfig.filtersConfig",
                self.content_filters.len(),
                1,
                6,
            )?;
        }
        let mut filter_types = std::collections::HashSet::new();
        for (i, filter) in self.content_filters.iter().enumerate() {
            let at = format!("contentPolicyConfig.filtersConfig[{i}]");
            if !content::CATEGORIES.contains(&filter.kind.as_str()) {
                return Err(invalid(
                    format!("{at}.type"),
                    format!(
                        "{:?} is not one of {}",
                        filter.kind,
                        content::CATEGORIES.join(", ")
                    ),
                ));
            }
            if content::classifier(&filter.kind).is_none() {
                return Err(PolicyError::Unsupported(format!(
                    "{at}.type: the {} content filter has no classifier on this server; configure the other policies",
                    filter.kind
                )));
            }
            if !filter_types.insert(filter.kind.as_str()) {
                return Err(invalid(
                    format!("{at}.type"),
                    format!("{} is configured twice", filter.kind),
                ));
            }
            for (field, strength) in [
                ("inputStrength", &filter.input_strength),
                ("outputStrength", &filter.output_strength),
            ] {
                if Strength::parse(strength).is_none() {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        format!("{strength:?} is not one of NONE, LOW, MEDIUM, HIGH"),
                    ));
                }
            }
            if filter.kind == "PROMPT_ATTACK" && filter.output_strength != "NONE" {
                return Err(invalid(
                    format!("{at}.outputStrength"),
                    "must be NONE for PROMPT_ATTACK: prompt attacks are checked on inputs only",
                ));
            }
            for (field, modalities) in [
                ("inputModalities", &filter.input_modalities),
                ("outputModalities", &filter.output_modalities),
            ] {
                if modalities
                    .as_ref()
                    .is_some_and(|m| m.iter().any(|x| x != "TEXT"))
                {
                    return Err(PolicyError::Unsupported(format!(
                        "{at}.{field}: only TEXT is supported by this server"
                    )));
                }
            }
            no_anonymize(&at, filter.input_action, filter.output_action)?;
        }
        if !self.words.is_empty() {
            check_count("wordPolicyConfig.wordsConfig", self.words.len(), 1, 10_000)?;
        }
        for (i, word) in self.words.iter().enumerate() {
            let at = format!("wordPolicyConfig.wordsConfig[{i}]");
            check_len(&format!("{at}.text"), &word.text, 1, 100)?;
            if word.text.trim().is_empty() {
                return Err(invalid(format!("{at}.text"), "must not be blank"));
            }
            no_anonymize(&at, word.input_action, word.output_action)?;
        }
        for (i, list) in self.managed_word_lists.iter().enumerate() {
            let at = format!("wordPolicyConfig.managedWordListsConfig[{i}]");
            if list.kind != "PROFANITY" {
                return Err(invalid(format!("{at}.type"), "must be PROFANITY"));
            }
            no_anonymize(&at, list.input_action, list.output_action)?;
        }
        if !self.regexes.is_empty() {
            check_count(
                "sensitiveInformationPolicyConfig.regexesConfig",
                self.regexes.len(),
                1,
                30,
            )?;
        }
        for (i, rule) in self.regexes.iter().enumerate() {
            let at = format!("sensitiveInformationPolicyConfig.regexesConfig[{i}]");
            check_len(&format!("{at}.name"), &rule.name, 1, 100)?;
            check_len(&format!("{at}.pattern"), &rule.pattern, 1, 500)?;
            if let Some(d) = &rule.description {
                check_len(&format!("{at}.description"), d, 1, 1000)?;
            }
            regex::RegexBuilder::new(&rule.pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    invalid(
                        format!("{at}.pattern"),
                        format!("is not a valid regular expression: {e}"),
                    )
                })?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.pii_entities.iter().enumerate() {
            if !seen.insert(rule.kind) {
                return Err(invalid(
                    format!("sensitiveInformationPolicyConfig.piiEntitiesConfig[{i}].type"),
                    format!("{} is configured twice", rule.kind.as_str()),
                ));
            }
        }
        let mut kinds = std::collections::HashSet::new();
        for (i, rule) in self.grounding_filters.iter().enumerate() {
            let at = format!("contextualGroundingPolicyConfig.filtersConfig[{i}]");
            if !kinds.insert(rule.kind) {
                return Err(invalid(
                    format!("{at}.type"),
                    format!("{} is configured twice", rule.kind.as_str()),
                ));
            }
            if !(0.0..=0.99).contains(&rule.threshold) || rule.threshold.is_nan() {
                return Err(invalid(
                    format!("{at}.threshold"),
                    "must be between 0 and 0.99",
                ));
            }
            if rule.action == Some(ConfiguredAction::Anonymize) {
                return Err(invalid(format!("{at}.action"), "must be BLOCK or NONE"));
            }
        }
        Ok(())
    }

    /// Whether any policy is configured at all.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
            && self.content_filters.is_empty()
            && self.words.is_empty()
            && self.managed_word_lists.is_empty()
            && self.pii_entities.is_empty()
            && self.regexes.is_empty()
            && self.grounding_filters.is_empty()
    }
}

fn check_tier(field: &str, tier: &str) -> Result<(), PolicyError> {
    match tier {
        "CLASSIC" | "STANDARD" => Ok(()),
        other => Err(invalid(
            field,
            format!("{other:?} is not one of CLASSIC, STANDARD"),
        )),
    }
}

fn no_anonymize(
    at: &str,
    input: Option<ConfiguredAction>,
    output: Option<ConfiguredAction>,
) -> Result<(), PolicyError> {
    if input == Some(ConfiguredAction::Anonymize) || output == Some(ConfiguredAction::Anonymize) {
        return Err(invalid(at, "actions must be BLOCK or NONE"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicRule {
        TopicRule {
            name: name.into(),
            definition: "Advice on what to invest in.".into(),
            examples: vec!["Which stocks should I buy?".into()],
            kind: "DENY".into(),
            input_action: None,
            output_action: None,
            input_enabled: None,
            output_enabled: None,
        }
    }

    #[test]
    fn limits_are_enforced_with_the_field_named() {
        let mut policy = GuardrailPolicy {
            topics: vec![topic("Investment advice")],
            ..Default::default()
        };
        assert_eq!(policy.validate(), Ok(()));
        policy.topics[0].examples = vec!["x".into(); 6];
        let err = policy.validate().expect_err("six examples");
        assert!(
            err.to_string().contains("topicsConfig[0].examples"),
            "{err}"
        );
        policy.topics = (0..31).map(|i| topic(&format!("t{i}"))).collect();
        assert!(policy.validate().is_err(), "31 topics");
    }

    #[test]
    fn an_invalid_regex_is_refused_with_its_error() {
        let policy = GuardrailPolicy {
            regexes: vec![RegexRule {
                name: "bad".into(),
                description: None,
                pattern: "(unclosed".into(),
                action: ConfiguredAction::Block,
                input_action: None,
                output_action: None,
                input_enabled: None,
                output_enabled: None,
            }],
            ..Default::default()
        };
        let err = policy.validate().expect_err("bad regex");
        assert!(
            err.to_string().contains("regexesConfig[0].pattern"),
            "{err}"
        );
    }

    #[test]
    fn strengths_map_to_confidences_as_on_bedrock() {
        use Strength::*;
        assert!(High.trips(Low) && !Medium.trips(Low));
        assert!(Medium.trips(Medium) && !Low.trips(Medium));
        assert!(Low.trips(High) && !None.trips(High));
        assert!(!High.trips(None));
    }

    #[test]
    fn names_follow_bedrocks_pattern() {
        assert!(validate_name("support-bot_1").is_ok());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"a".repeat(51)).is_err());
    }
}
