//! A guardrail's policies: the model the evaluator compiles ([`GuardrailPolicy`]),
//! independent of any wire format, and its validation against the limits Bedrock
//! documents.
//!
//! A dialect parses its own request shapes into these types (the Bedrock edge maps
//! `topicPolicyConfig.topicsConfig[]` and the rest) and names a [`PolicyError`]'s
//! [`FieldPath`] in its own spelling. The serde forms below are the stored form only:
//! the model's own field names, with `alias`es that read the rows written before the
//! model had its own names (they used Bedrock's member names).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::content;
use crate::pii::PiiType;

/// What a policy does when it detects something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfiguredAction {
    Block,
    Anonymize,
    None,
}

/// What a rule does on each side of a model call: its action (the policy's default
/// when unset) and whether it is on (on when unset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sides {
    #[serde(
        default,
        alias = "inputAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_action: Option<ConfiguredAction>,
    #[serde(
        default,
        alias = "outputAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_action: Option<ConfiguredAction>,
    #[serde(
        default,
        alias = "inputEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_enabled: Option<bool>,
    #[serde(
        default,
        alias = "outputEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_enabled: Option<bool>,
}

impl Sides {
    /// The rule's action on `source`, or `None` when it is off on that side.
    pub fn action(
        &self,
        source: crate::Source,
        default: ConfiguredAction,
    ) -> Option<ConfiguredAction> {
        let (action, enabled) = match source {
            crate::Source::Input => (self.input_action, self.input_enabled),
            crate::Source::Output => (self.output_action, self.output_enabled),
        };
        enabled.unwrap_or(true).then(|| action.unwrap_or(default))
    }

    fn anonymizes(&self) -> bool {
        self.input_action == Some(ConfiguredAction::Anonymize)
            || self.output_action == Some(ConfiguredAction::Anonymize)
    }
}

/// A denied topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRule {
    pub name: String,
    pub definition: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    #[serde(flatten)]
    pub sides: Sides,
}

/// The topic policy's tier: which topic classifier a guardrail asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Tier {
    Classic,
    Standard,
}

impl Tier {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CLASSIC" => Some(Self::Classic),
            "STANDARD" => Some(Self::Standard),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "CLASSIC",
            Self::Standard => "STANDARD",
        }
    }
}

/// A filter strength: how confident a classifier must be before the filter acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

/// What a content filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Modality {
    Text,
    Image,
}

impl Modality {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TEXT" => Some(Self::Text),
            "IMAGE" => Some(Self::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "TEXT",
            Self::Image => "IMAGE",
        }
    }
}

/// A content filter: a category ([`content::CATEGORIES`]: HATE, INSULTS, …) and its
/// strength on each side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentFilterRule {
    #[serde(alias = "type")]
    pub kind: String,
    #[serde(alias = "inputStrength")]
    pub input_strength: Strength,
    #[serde(alias = "outputStrength")]
    pub output_strength: Strength,
    #[serde(
        default,
        alias = "inputModalities",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_modalities: Option<Vec<Modality>>,
    #[serde(
        default,
        alias = "outputModalities",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_modalities: Option<Vec<Modality>>,
    #[serde(flatten)]
    pub sides: Sides,
}

/// A custom word or phrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordRule {
    pub text: String,
    #[serde(flatten)]
    pub sides: Sides,
}

/// The managed word lists there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManagedWordList {
    Profanity,
}

impl ManagedWordList {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Profanity => "PROFANITY",
        }
    }
}

/// A managed word list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedWordsRule {
    #[serde(alias = "type")]
    pub kind: ManagedWordList,
    #[serde(flatten)]
    pub sides: Sides,
}

/// A PII entity type and what to do with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiiRule {
    #[serde(alias = "type")]
    pub kind: PiiType,
    pub action: ConfiguredAction,
    #[serde(flatten)]
    pub sides: Sides,
}

/// A custom regular-expression entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegexRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub pattern: String,
    pub action: ConfiguredAction,
    #[serde(flatten)]
    pub sides: Sides,
}

/// A contextual grounding filter (GROUNDING or RELEVANCE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundingRule {
    #[serde(alias = "type")]
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
pub struct GuardrailPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicRule>,
    #[serde(default, alias = "topicsTier", skip_serializing_if = "Option::is_none")]
    pub topics_tier: Option<Tier>,
    #[serde(
        default,
        alias = "contentFilters",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub content_filters: Vec<ContentFilterRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<WordRule>,
    #[serde(
        default,
        alias = "managedWordLists",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub managed_word_lists: Vec<ManagedWordsRule>,
    #[serde(default, alias = "piiEntities", skip_serializing_if = "Vec::is_empty")]
    pub pii_entities: Vec<PiiRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regexes: Vec<RegexRule>,
    #[serde(
        default,
        alias = "groundingFilters",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub grounding_filters: Vec<GroundingRule>,
}

/// Which part of a guardrail a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyPart {
    Topics,
    TopicsTier,
    ContentFilters,
    Words,
    ManagedWordLists,
    PiiEntities,
    Regexes,
    GroundingFilters,
    /// A setting outside the policies (the name, a blocked message), as its caller
    /// labelled it.
    Setting(&'static str),
}

impl PolicyPart {
    /// The model's name for the part (the field of [`GuardrailPolicy`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Topics => "topics",
            Self::TopicsTier => "topics_tier",
            Self::ContentFilters => "content_filters",
            Self::Words => "words",
            Self::ManagedWordLists => "managed_word_lists",
            Self::PiiEntities => "pii_entities",
            Self::Regexes => "regexes",
            Self::GroundingFilters => "grounding_filters",
            Self::Setting(label) => label,
        }
    }
}

/// Where a problem is: the part, the rule's index in it, the rule's field (the
/// model's field name) and the index of an item of that field (a topic's example).
/// A dialect renders it in its own spelling; `Display` uses the model's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPath {
    pub part: PolicyPart,
    pub index: Option<usize>,
    pub member: Option<&'static str>,
    pub item: Option<usize>,
}

impl FieldPath {
    pub fn part(part: PolicyPart) -> Self {
        Self {
            part,
            index: None,
            member: None,
            item: None,
        }
    }

    pub fn rule(part: PolicyPart, index: usize) -> Self {
        Self {
            index: Some(index),
            ..Self::part(part)
        }
    }

    pub fn member(self, member: &'static str) -> Self {
        Self {
            member: Some(member),
            ..self
        }
    }

    pub fn item(self, item: usize) -> Self {
        Self {
            item: Some(item),
            ..self
        }
    }

    /// The path with the part and field names given by `part_name` and `member_name`.
    pub fn render(
        &self,
        part_name: impl Fn(PolicyPart) -> String,
        member_name: impl Fn(&'static str) -> String,
    ) -> String {
        let mut out = part_name(self.part);
        if let Some(i) = self.index {
            out.push_str(&format!("[{i}]"));
        }
        if let Some(m) = self.member {
            out.push('.');
            out.push_str(&member_name(m));
        }
        if let Some(j) = self.item {
            out.push_str(&format!("[{j}]"));
        }
        out
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(|p| p.as_str().to_string(), str::to_string))
    }
}

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{field}: {problem}")]
    Invalid { field: FieldPath, problem: String },
    /// Valid, but not something this server can evaluate.
    #[error("{}{problem}", .field.map(|f| format!("{f}: ")).unwrap_or_default())]
    Unsupported {
        field: Option<FieldPath>,
        problem: String,
    },
}

impl PolicyError {
    /// Where the problem is, if it is in one place.
    pub fn field(&self) -> Option<FieldPath> {
        match self {
            Self::Invalid { field, .. } => Some(*field),
            Self::Unsupported { field, .. } => *field,
        }
    }

    /// The problem without its place.
    pub fn problem(&self) -> &str {
        match self {
            Self::Invalid { problem, .. } | Self::Unsupported { problem, .. } => problem,
        }
    }

    pub(crate) fn unsupported(problem: impl Into<String>) -> Self {
        Self::Unsupported {
            field: None,
            problem: problem.into(),
        }
    }
}

fn invalid(field: FieldPath, problem: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field,
        problem: problem.into(),
    }
}

fn check_len(field: FieldPath, value: &str, min: usize, max: usize) -> Result<(), PolicyError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            field,
            format!("must be {min} to {max} characters long (it is {n})"),
        ));
    }
    Ok(())
}

fn check_count(field: FieldPath, n: usize, min: usize, max: usize) -> Result<(), PolicyError> {
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
    let field = FieldPath::part(PolicyPart::Setting("name"));
    check_len(field, name, 1, 50)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(field, "may contain only letters, digits, - and _"));
    }
    Ok(())
}

/// Checks a blocked message; `label` names it in the error.
pub fn validate_message(label: &'static str, message: &str) -> Result<(), PolicyError> {
    check_len(FieldPath::part(PolicyPart::Setting(label)), message, 1, 500)
}

/// The largest compiled size of one custom regex (bytes of the regex program).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl GuardrailPolicy {
    /// Checks every limit Bedrock documents and that every pattern compiles.
    pub fn validate(&self) -> Result<(), PolicyError> {
        use PolicyPart as P;
        if !self.topics.is_empty() {
            check_count(FieldPath::part(P::Topics), self.topics.len(), 1, 30)?;
        }
        for (i, topic) in self.topics.iter().enumerate() {
            let at = FieldPath::rule(P::Topics, i);
            check_len(at.member("name"), &topic.name, 1, 100)?;
            if !topic
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " -_!?.".contains(c))
            {
                return Err(invalid(
                    at.member("name"),
                    "may contain only letters, digits, spaces and - _ ! ? .",
                ));
            }
            check_len(at.member("definition"), &topic.definition, 1, 200)?;
            check_count(at.member("examples"), topic.examples.len(), 0, 5)?;
            for (j, example) in topic.examples.iter().enumerate() {
                check_len(at.member("examples").item(j), example, 1, 100)?;
            }
            no_anonymize(at, &topic.sides)?;
        }
        if !self.content_filters.is_empty() {
            check_count(
                FieldPath::part(P::ContentFilters),
                self.content_filters.len(),
                1,
                6,
            )?;
        }
        let mut filter_types = std::collections::HashSet::new();
        for (i, filter) in self.content_filters.iter().enumerate() {
            let at = FieldPath::rule(P::ContentFilters, i);
            if !content::CATEGORIES.contains(&filter.kind.as_str()) {
                return Err(invalid(
                    at.member("kind"),
                    format!(
                        "{:?} is not one of {}",
                        filter.kind,
                        content::CATEGORIES.join(", ")
                    ),
                ));
            }
            if content::classifier(&filter.kind).is_none() {
                return Err(PolicyError::Unsupported {
                    field: Some(at.member("kind")),
                    problem: format!(
                        "the {} content filter has no classifier on this server; configure the other policies",
                        filter.kind
                    ),
                });
            }
            if !filter_types.insert(filter.kind.as_str()) {
                return Err(invalid(
                    at.member("kind"),
                    format!("{} is configured twice", filter.kind),
                ));
            }
            if filter.kind == "PROMPT_ATTACK" && filter.output_strength != Strength::None {
                return Err(invalid(
                    at.member("output_strength"),
                    "must be NONE for PROMPT_ATTACK: prompt attacks are checked on inputs only",
                ));
            }
            for (member, modalities) in [
                ("input_modalities", &filter.input_modalities),
                ("output_modalities", &filter.output_modalities),
            ] {
                if modalities
                    .as_ref()
                    .is_some_and(|m| m.iter().any(|x| *x != Modality::Text))
                {
                    return Err(PolicyError::Unsupported {
                        field: Some(at.member(member)),
                        problem: "only TEXT is supported by this server".into(),
                    });
                }
            }
            no_anonymize(at, &filter.sides)?;
        }
        if !self.words.is_empty() {
            check_count(FieldPath::part(P::Words), self.words.len(), 1, 10_000)?;
        }
        for (i, word) in self.words.iter().enumerate() {
            let at = FieldPath::rule(P::Words, i);
            check_len(at.member("text"), &word.text, 1, 100)?;
            if word.text.trim().is_empty() {
                return Err(invalid(at.member("text"), "must not be blank"));
            }
            no_anonymize(at, &word.sides)?;
        }
        for (i, list) in self.managed_word_lists.iter().enumerate() {
            no_anonymize(FieldPath::rule(P::ManagedWordLists, i), &list.sides)?;
        }
        if !self.regexes.is_empty() {
            check_count(FieldPath::part(P::Regexes), self.regexes.len(), 1, 30)?;
        }
        for (i, rule) in self.regexes.iter().enumerate() {
            let at = FieldPath::rule(P::Regexes, i);
            check_len(at.member("name"), &rule.name, 1, 100)?;
            check_len(at.member("pattern"), &rule.pattern, 1, 500)?;
            if let Some(d) = &rule.description {
                check_len(at.member("description"), d, 1, 1000)?;
            }
            regex::RegexBuilder::new(&rule.pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    invalid(
                        at.member("pattern"),
                        format!("is not a valid regular expression: {e}"),
                    )
                })?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.pii_entities.iter().enumerate() {
            if !seen.insert(rule.kind) {
                return Err(invalid(
                    FieldPath::rule(P::PiiEntities, i).member("kind"),
                    format!("{} is configured twice", rule.kind.as_str()),
                ));
            }
        }
        let mut kinds = std::collections::HashSet::new();
        for (i, rule) in self.grounding_filters.iter().enumerate() {
            let at = FieldPath::rule(P::GroundingFilters, i);
            if !kinds.insert(rule.kind) {
                return Err(invalid(
                    at.member("kind"),
                    format!("{} is configured twice", rule.kind.as_str()),
                ));
            }
            if !(0.0..=0.99).contains(&rule.threshold) || rule.threshold.is_nan() {
                return Err(invalid(
                    at.member("threshold"),
                    "must be between 0 and 0.99",
                ));
            }
            if rule.action == Some(ConfiguredAction::Anonymize) {
                return Err(invalid(at.member("action"), "must be BLOCK or NONE"));
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

fn no_anonymize(at: FieldPath, sides: &Sides) -> Result<(), PolicyError> {
    if sides.anonymizes() {
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
            sides: Sides::default(),
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
        assert_eq!(
            err.field(),
            Some(FieldPath::rule(PolicyPart::Topics, 0).member("examples"))
        );
        assert!(err.to_string().contains("topics[0].examples"), "{err}");
        policy.topics[0].examples = vec!["x".repeat(101)];
        let err = policy.validate().expect_err("a long example");
        assert_eq!(
            err.to_string().split(':').next(),
            Some("topics[0].examples[0]")
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
                sides: Sides::default(),
            }],
            ..Default::default()
        };
        let err = policy.validate().expect_err("bad regex");
        assert_eq!(
            err.field(),
            Some(FieldPath::rule(PolicyPart::Regexes, 0).member("pattern"))
        );
        assert!(
            err.problem().contains("not a valid regular expression"),
            "{err}"
        );
    }

    #[test]
    fn a_dialect_renders_the_path_in_its_own_names() {
        let path = FieldPath::rule(PolicyPart::Topics, 2)
            .member("examples")
            .item(1);
        let wire = path.render(
            |p| match p {
                PolicyPart::Topics => "topicPolicyConfig.topicsConfig".into(),
                other => other.as_str().into(),
            },
            |m| m.to_uppercase(),
        );
        assert_eq!(wire, "topicPolicyConfig.topicsConfig[2].EXAMPLES[1]");
        assert_eq!(path.to_string(), "topics[2].examples[1]");
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

    /// Rows written before the model had its own names hold Bedrock's member names;
    /// they still read, into the same policy a new row holds.
    #[test]
    fn stored_policies_of_both_forms_read_alike() {
        let legacy = r#"{
            "topics": [{"name": "Investment advice", "definition": "Advice on what to invest in.",
                        "examples": ["Which stocks should I buy?"], "type": "DENY", "inputAction": "BLOCK"}],
            "topicsTier": "CLASSIC",
            "contentFilters": [{"type": "HATE", "inputStrength": "HIGH", "outputStrength": "LOW",
                                "inputModalities": ["TEXT"], "outputEnabled": false}],
            "words": [{"text": "gizmo", "inputEnabled": true}],
            "managedWordLists": [{"type": "PROFANITY"}],
            "piiEntities": [{"type": "EMAIL", "action": "ANONYMIZE", "outputAction": "BLOCK"}],
            "regexes": [{"name": "id", "pattern": "ID-[0-9]+", "action": "BLOCK"}],
            "groundingFilters": [{"type": "GROUNDING", "threshold": 0.5}]
        }"#;
        let old: GuardrailPolicy = serde_json::from_str(legacy).expect("a legacy row reads");
        assert_eq!(
            old.topics[0].sides.input_action,
            Some(ConfiguredAction::Block)
        );
        assert_eq!(old.topics_tier, Some(Tier::Classic));
        assert_eq!(old.content_filters[0].input_strength, Strength::High);
        assert_eq!(old.content_filters[0].output_strength, Strength::Low);
        assert_eq!(
            old.content_filters[0].input_modalities,
            Some(vec![Modality::Text])
        );
        assert_eq!(old.content_filters[0].sides.output_enabled, Some(false));
        assert_eq!(old.words[0].sides.input_enabled, Some(true));
        assert_eq!(old.managed_word_lists[0].kind, ManagedWordList::Profanity);
        assert_eq!(old.pii_entities[0].kind, PiiType::Email);
        assert_eq!(
            old.pii_entities[0].sides.output_action,
            Some(ConfiguredAction::Block)
        );
        assert_eq!(old.grounding_filters[0].kind, GroundingKind::Grounding);
        assert_eq!(old.validate(), Ok(()));
        let stored = serde_json::to_string(&old).expect("serializes");
        assert!(stored.contains("\"input_strength\":\"HIGH\""), "{stored}");
        assert!(!stored.contains("inputStrength"), "{stored}");
        let new: GuardrailPolicy = serde_json::from_str(&stored).expect("a new row reads");
        assert_eq!(new, old);
    }
}
