//! Guardrail policies and their evaluation, independent of any model and of HTTP.
//!
//! The policy model ([`policy`]) has its own names; a dialect parses its request
//! shapes into it (the Bedrock edge parses `CreateGuardrail`'s body) and spells a
//! validation error's [`policy::FieldPath`] in its own names. The model's serde form
//! is the one the store keeps.
//!
//! A [`GuardrailPolicy`] is validated and compiled once into a [`CompiledGuardrail`]
//! (word automatons, regexes). Policies that compare meanings — denied topics and
//! contextual grounding — work on sentence embeddings that the caller computes with
//! its embedding model: [`CompiledGuardrail::topic_reference_texts`] once per
//! compiled guardrail, then per evaluation [`CompiledGuardrail::plan`] lists the texts
//! to embed and [`CompiledGuardrail::evaluate`] takes their vectors. Everything else
//! is pure pattern work with no model.

pub mod content;
pub mod pii;
pub mod policy;
pub mod semantic;
pub mod words;

use std::time::Instant;

pub use pii::PiiType;
pub use policy::{
    ConfiguredAction, FieldPath, GroundingKind, GroundingRule, GuardrailPolicy, PolicyError,
    PolicyPart, Strength,
};
use regex::Regex;
use semantic::{EmbeddingPlan, TopicIndex};
use words::WordMatcher;

/// Which side of a model call is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Input,
    Output,
}

/// How a text block takes part in an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// Checked by every policy (also the meaning of a block with no qualifier).
    GuardContent,
    /// The source a response must be grounded in (contextual grounding only).
    GroundingSource,
    /// The question a response must be relevant to (contextual grounding only).
    Query,
}

/// One text block of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub text: String,
    pub qualifiers: Vec<Qualifier>,
}

impl Segment {
    pub fn guarded(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            qualifiers: Vec::new(),
        }
    }

    /// Whether the content policies check this block.
    pub fn is_guarded(&self) -> bool {
        self.qualifiers.is_empty() || self.qualifiers.contains(&Qualifier::GuardContent)
    }
}

/// What a policy did with a finding (the runtime's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Blocked,
    Anonymized,
    None,
}

impl Taken {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "BLOCKED",
            Self::Anonymized => "ANONYMIZED",
            Self::None => "NONE",
        }
    }

    fn from_configured(action: ConfiguredAction) -> Self {
        match action {
            ConfiguredAction::Block => Self::Blocked,
            ConfiguredAction::Anonymize => Self::Anonymized,
            ConfiguredAction::None => Self::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicFinding {
    pub name: String,
    pub detected: bool,
    pub action: Taken,
    /// Highest similarity of any sentence to the topic (0..1).
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContentFinding {
    /// The category (`HATE`, …, `PROMPT_ATTACK`).
    pub kind: String,
    pub confidence: Strength,
    pub strength: Strength,
    pub detected: bool,
    pub action: Taken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WordFinding {
    pub matched: String,
    pub action: Taken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PiiFinding {
    pub matched: String,
    pub kind: PiiType,
    pub action: Taken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegexFinding {
    pub name: String,
    pub matched: String,
    pub regex: String,
    pub action: Taken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroundingFinding {
    pub kind: GroundingKind,
    pub threshold: f64,
    pub score: f64,
    pub detected: bool,
    pub action: Taken,
}

/// Text units processed per policy (one unit is up to 1,000 characters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub topic_policy_units: u64,
    pub content_policy_units: u64,
    pub word_policy_units: u64,
    pub sensitive_information_policy_units: u64,
    pub sensitive_information_policy_free_units: u64,
    pub contextual_grounding_policy_units: u64,
}

/// Every policy's findings for one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub topics: Vec<TopicFinding>,
    pub content: Vec<ContentFinding>,
    pub custom_words: Vec<WordFinding>,
    pub managed_words: Vec<WordFinding>,
    pub pii: Vec<PiiFinding>,
    pub regexes: Vec<RegexFinding>,
    pub grounding: Vec<GroundingFinding>,
    pub usage: Usage,
    pub characters_guarded: u64,
    pub characters_total: u64,
    pub latency_ms: u64,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub assessment: Assessment,
    /// A finding with a BLOCK action: the caller replaces the content with the blocked
    /// message.
    pub blocked: bool,
    /// A finding was masked; `masked` has the rewritten text of each segment.
    pub anonymized: bool,
    /// Each segment's text after masking (unchanged for unguarded ones).
    pub masked: Vec<String>,
}

impl Verdict {
    pub fn intervened(&self) -> bool {
        self.blocked || self.anonymized
    }
}

/// A policy ready to evaluate.
#[derive(Debug)]
pub struct CompiledGuardrail {
    policy: GuardrailPolicy,
    custom_words: WordMatcher,
    managed_words: WordMatcher,
    regexes: Vec<Regex>,
    topics: TopicIndex,
}

/// Whole text units for a number of characters (an empty text is none).
fn units(characters: u64) -> u64 {
    characters.div_ceil(1000)
}

impl CompiledGuardrail {
    /// Validates and compiles a policy.
    pub fn compile(policy: GuardrailPolicy) -> Result<Self, PolicyError> {
        policy.validate()?;
        let custom_words = WordMatcher::new(policy.words.iter().map(|w| w.text.as_str()))
            .map_err(PolicyError::unsupported)?;
        let managed_words = if policy.managed_word_lists.is_empty() {
            WordMatcher::new(std::iter::empty())
        } else {
            WordMatcher::new(words::profanity_list())
        }
        .map_err(PolicyError::unsupported)?;
        let regexes = policy
            .regexes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                regex::RegexBuilder::new(&r.pattern)
                    .size_limit(policy::REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| PolicyError::Invalid {
                        field: policy::FieldPath::rule(policy::PolicyPart::Regexes, i)
                            .member("pattern"),
                        problem: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let topics = TopicIndex::new(&policy.topics);
        Ok(Self {
            policy,
            custom_words,
            managed_words,
            regexes,
            topics,
        })
    }

    pub fn policy(&self) -> &GuardrailPolicy {
        &self.policy
    }

    /// Whether evaluations need sentence embeddings (denied topics or grounding).
    pub fn needs_embeddings(&self) -> bool {
        !self.policy.topics.is_empty()
            || !self.policy.grounding_filters.is_empty()
            || !self.policy.content_filters.is_empty()
    }

    /// The texts (topic definitions and examples) whose vectors
    /// [`Self::set_topic_references`] takes, in order.
    pub fn topic_reference_texts(&self) -> Vec<String> {
        self.topics.reference_texts()
    }

    /// Supplies the vectors of [`Self::topic_reference_texts`].
    pub fn set_topic_references(&mut self, vectors: Vec<Vec<f32>>) -> Result<(), String> {
        self.topics.set_references(vectors)
    }

    /// The texts an evaluation of `segments` needs embedded (possibly none).
    pub fn plan(&self, source: Source, segments: &[Segment]) -> EmbeddingPlan {
        let topics_on = self
            .policy
            .topics
            .iter()
            .any(|t| t.sides.action(source, ConfiguredAction::Block).is_some());
        let grounding_on = source == Source::Output
            && self
                .policy
                .grounding_filters
                .iter()
                .any(|g| g.enabled.unwrap_or(true));
        EmbeddingPlan::new(
            segments,
            topics_on,
            !self.content_filters(source).is_empty(),
            grounding_on,
        )
    }

    /// The content filters active on `source`: (rule index, strength, action).
    fn content_filters(&self, source: Source) -> Vec<(usize, Strength, ConfiguredAction)> {
        self.policy
            .content_filters
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let strength = match source {
                    Source::Input => f.input_strength,
                    Source::Output => f.output_strength,
                };
                let action = f.sides.action(source, ConfiguredAction::Block)?;
                (strength != Strength::None).then_some((i, strength, action))
            })
            .collect()
    }

    /// Evaluates every policy on `segments`; `vectors` are the embeddings of
    /// `plan.texts`, in order.
    pub fn evaluate(
        &self,
        source: Source,
        segments: &[Segment],
        plan: &EmbeddingPlan,
        vectors: &[Vec<f32>],
    ) -> Verdict {
        let started = Instant::now();
        let mut assessment = Assessment::default();
        let guarded: Vec<usize> = (0..segments.len())
            .filter(|&i| segments[i].is_guarded())
            .collect();
        let guarded_chars: u64 = guarded
            .iter()
            .map(|&i| segments[i].text.chars().count() as u64)
            .sum();
        assessment.characters_guarded = guarded_chars;
        assessment.characters_total = segments.iter().map(|s| s.text.chars().count() as u64).sum();
        let text_units = units(guarded_chars);
        let mut blocked = false;
        let mut anonymized = false;
        let mut note = |taken: Taken| match taken {
            Taken::Blocked => blocked = true,
            Taken::Anonymized => anonymized = true,
            Taken::None => {}
        };

        // Denied topics.
        let topic_scores = self.topics.scores(plan, vectors);
        let mut topics_billed = false;
        for (rule, score) in self.policy.topics.iter().zip(topic_scores) {
            let Some(action) = rule.sides.action(source, ConfiguredAction::Block) else {
                continue;
            };
            topics_billed = true;
            let detected = score >= semantic::TOPIC_THRESHOLD;
            let taken = if detected {
                Taken::from_configured(action)
            } else {
                Taken::None
            };
            note(taken);
            assessment.topics.push(TopicFinding {
                name: rule.name.clone(),
                detected,
                action: taken,
                score,
            });
        }
        if topics_billed {
            assessment.usage.topic_policy_units = text_units;
        }

        // Content filters: each category's classifier on each whole guarded block; the
        // most confident block counts.
        let filters = self.content_filters(source);
        if !filters.is_empty() {
            assessment.usage.content_policy_units = text_units;
        }
        for (index, strength, action) in filters {
            let rule = &self.policy.content_filters[index];
            let confidence = content::classifier(&rule.kind)
                .and_then(|classifier| {
                    plan.content_units
                        .iter()
                        .filter_map(|&i| vectors.get(i).and_then(|v| classifier.probability(v)))
                        .reduce(f32::max)
                        .map(|p| classifier.confidence(p))
                })
                .unwrap_or(Strength::None);
            let detected = confidence.trips(strength);
            let taken = if detected {
                Taken::from_configured(action)
            } else {
                Taken::None
            };
            note(taken);
            assessment.content.push(ContentFinding {
                kind: rule.kind.clone(),
                confidence,
                strength,
                detected,
                action: taken,
            });
        }

        // Word filters.
        let mut words_billed = false;
        for &i in &guarded {
            let text = &segments[i].text;
            for hit in self.custom_words.find(text) {
                let rule = &self.policy.words[hit.entry];
                let Some(action) = rule.sides.action(source, ConfiguredAction::Block) else {
                    continue;
                };
                let taken = Taken::from_configured(action);
                note(taken);
                assessment.custom_words.push(WordFinding {
                    matched: text[hit.start..hit.end].to_string(),
                    action: taken,
                });
            }
            for list in &self.policy.managed_word_lists {
                let Some(action) = list.sides.action(source, ConfiguredAction::Block) else {
                    continue;
                };
                for hit in self.managed_words.find(text) {
                    let taken = Taken::from_configured(action);
                    note(taken);
                    assessment.managed_words.push(WordFinding {
                        matched: text[hit.start..hit.end].to_string(),
                        action: taken,
                    });
                }
            }
        }
        words_billed |= self
            .policy
            .words
            .iter()
            .any(|r| r.sides.action(source, ConfiguredAction::Block).is_some())
            || self
                .policy
                .managed_word_lists
                .iter()
                .any(|r| r.sides.action(source, ConfiguredAction::Block).is_some());
        if words_billed {
            assessment.usage.word_policy_units = text_units;
        }

        // Sensitive information: PII types and custom regexes.
        let pii_actions: Vec<(PiiType, ConfiguredAction)> = self
            .policy
            .pii_entities
            .iter()
            .filter_map(|r| r.sides.action(source, r.action).map(|a| (r.kind, a)))
            .collect();
        let regex_actions: Vec<Option<ConfiguredAction>> = self
            .policy
            .regexes
            .iter()
            .map(|r| r.sides.action(source, r.action))
            .collect();
        if !pii_actions.is_empty() {
            assessment.usage.sensitive_information_policy_units = text_units;
        }
        if regex_actions.iter().any(Option::is_some) {
            assessment.usage.sensitive_information_policy_free_units = text_units;
        }
        let wanted: Vec<PiiType> = pii_actions.iter().map(|(k, _)| *k).collect();
        let mut masked: Vec<String> = segments.iter().map(|s| s.text.clone()).collect();
        for &i in &guarded {
            let text = &segments[i].text;
            // (start, end, tag) of every span to mask.
            let mut spans: Vec<(usize, usize, String)> = Vec::new();
            if !wanted.is_empty() {
                for m in pii::detect(text, &wanted) {
                    let Some(&(_, action)) = pii_actions.iter().find(|(k, _)| *k == m.kind) else {
                        continue;
                    };
                    let taken = Taken::from_configured(action);
                    note(taken);
                    if taken == Taken::Anonymized {
                        spans.push((m.start, m.end, m.kind.as_str().to_string()));
                    }
                    assessment.pii.push(PiiFinding {
                        matched: text[m.start..m.end].to_string(),
                        kind: m.kind,
                        action: taken,
                    });
                }
            }
            for ((rule, regex), action) in self
                .policy
                .regexes
                .iter()
                .zip(&self.regexes)
                .zip(&regex_actions)
            {
                let Some(action) = action else { continue };
                for m in regex.find_iter(text).filter(|m| !m.is_empty()) {
                    let taken = Taken::from_configured(*action);
                    note(taken);
                    if taken == Taken::Anonymized {
                        spans.push((m.start(), m.end(), rule.name.clone()));
                    }
                    assessment.regexes.push(RegexFinding {
                        name: rule.name.clone(),
                        matched: m.as_str().to_string(),
                        regex: rule.pattern.clone(),
                        action: taken,
                    });
                }
            }
            if !spans.is_empty() {
                masked[i] = mask(text, spans);
            }
        }

        // Contextual grounding (responses only).
        if let Some(scores) = plan.grounding_scores(segments, vectors) {
            let mut billed = false;
            for rule in &self.policy.grounding_filters {
                if !rule.enabled.unwrap_or(true) {
                    continue;
                }
                billed = true;
                let score = match rule.kind {
                    GroundingKind::Grounding => scores.grounding,
                    GroundingKind::Relevance => scores.relevance,
                };
                let detected = score < rule.threshold;
                let taken = if detected {
                    Taken::from_configured(rule.action.unwrap_or(ConfiguredAction::Block))
                } else {
                    Taken::None
                };
                note(taken);
                assessment.grounding.push(GroundingFinding {
                    kind: rule.kind,
                    threshold: rule.threshold,
                    score,
                    detected,
                    action: taken,
                });
            }
            if billed {
                assessment.usage.contextual_grounding_policy_units = text_units;
            }
        }

        assessment.latency_ms = started.elapsed().as_millis() as u64;
        Verdict {
            assessment,
            blocked,
            anonymized: anonymized && !blocked,
            masked,
        }
    }
}

/// Replaces each span with `{TAG}`; overlapping spans keep the earliest, longest.
fn mask(text: &str, mut spans: Vec<(usize, usize, String)>) -> String {
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, tag) in spans {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push('{');
        out.push_str(&tag);
        out.push('}');
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{ManagedWordsRule, PiiRule, RegexRule, WordRule};

    fn pii(kind: PiiType, action: ConfiguredAction) -> PiiRule {
        PiiRule {
            kind,
            action,
            sides: Default::default(),
        }
    }

    fn run(policy: GuardrailPolicy, source: Source, text: &str) -> Verdict {
        let compiled = CompiledGuardrail::compile(policy).expect("compiles");
        let segments = vec![Segment::guarded(text)];
        let plan = compiled.plan(source, &segments);
        assert!(plan.texts.is_empty(), "no semantic policy here");
        compiled.evaluate(source, &segments, &plan, &[])
    }

    fn content_filter(kind: &str, input: &str, output: &str) -> policy::ContentFilterRule {
        policy::ContentFilterRule {
            kind: kind.to_string(),
            input_strength: Strength::parse(input).expect("a strength"),
            output_strength: Strength::parse(output).expect("a strength"),
            input_modalities: None,
            output_modalities: None,
            sides: Default::default(),
        }
    }

    #[test]
    fn a_harm_filter_acts_on_the_most_confident_block_on_outputs_and_only_its_side() {
        let violence = content::classifier("VIOLENCE").expect("shipped");
        let policy = GuardrailPolicy {
            content_filters: vec![
                content_filter("VIOLENCE", "NONE", "HIGH"),
                content_filter("SEXUAL", "HIGH", "HIGH"),
            ],
            ..Default::default()
        };
        let compiled = CompiledGuardrail::compile(policy).expect("compiles");
        let segments = vec![Segment::guarded("first block"), Segment::guarded("second")];
        let plan = compiled.plan(Source::Output, &segments);
        assert_eq!(
            plan.texts,
            ["first block", "second"],
            "each guarded block whole"
        );
        // The second block is what the classifier is most confident on; the first, least.
        let vectors = vec![violence.direction(-1.0), violence.direction(1.0)];
        let v = compiled.evaluate(Source::Output, &segments, &plan, &vectors);
        let found = &v.assessment.content[0];
        assert_eq!(found.kind, "VIOLENCE");
        assert_eq!(
            found.confidence,
            Strength::High,
            "the most confident block counts"
        );
        assert!(found.detected && v.blocked);
        assert_eq!(v.assessment.content.len(), 2, "SEXUAL is reported too");
        // Only the least confident block: VIOLENCE detects nothing.
        let one = vec![Segment::guarded("first block")];
        let plan = compiled.plan(Source::Output, &one);
        let v = compiled.evaluate(Source::Output, &one, &plan, &[violence.direction(-1.0)]);
        let found = &v.assessment.content[0];
        assert_eq!(
            (found.kind.as_str(), found.confidence),
            ("VIOLENCE", Strength::None)
        );
        assert!(!found.detected);
        // VIOLENCE is off on inputs (strength NONE): only SEXUAL is evaluated there.
        let plan = compiled.plan(Source::Input, &segments);
        let v = compiled.evaluate(Source::Input, &segments, &plan, &vectors);
        let kinds: Vec<&str> = v
            .assessment
            .content
            .iter()
            .map(|f| f.kind.as_str())
            .collect();
        assert_eq!(kinds, ["SEXUAL"]);
    }

    #[test]
    fn anonymize_masks_with_type_tags() {
        let policy = GuardrailPolicy {
            pii_entities: vec![
                pii(PiiType::Email, ConfiguredAction::Anonymize),
                pii(PiiType::Phone, ConfiguredAction::Anonymize),
            ],
            ..Default::default()
        };
        let v = run(
            policy,
            Source::Output,
            "Mail jo@example.org or call 415-555-2671.",
        );
        assert!(v.anonymized && !v.blocked);
        assert_eq!(v.masked[0], "Mail {EMAIL} or call {PHONE}.");
        assert_eq!(v.assessment.pii.len(), 2);
        assert_eq!(v.assessment.usage.sensitive_information_policy_units, 1);
    }

    #[test]
    fn block_wins_over_anonymize_and_directions_are_separate() {
        let mut rule = pii(PiiType::UsSocialSecurityNumber, ConfiguredAction::Block);
        rule.sides.output_action = Some(ConfiguredAction::Anonymize);
        let policy = GuardrailPolicy {
            pii_entities: vec![rule, pii(PiiType::Email, ConfiguredAction::Anonymize)],
            ..Default::default()
        };
        let text = "ssn 123-45-6789, mail a@b.io";
        let input = run(policy.clone(), Source::Input, text);
        assert!(input.blocked && !input.anonymized);
        let output = run(policy, Source::Output, text);
        assert!(output.anonymized && !output.blocked);
        assert_eq!(
            output.masked[0],
            "ssn {US_SOCIAL_SECURITY_NUMBER}, mail {EMAIL}"
        );
    }

    #[test]
    fn words_regexes_and_disabled_sides() {
        let policy = GuardrailPolicy {
            words: vec![WordRule {
                text: "project falcon".into(),
                sides: policy::Sides {
                    output_enabled: Some(false),
                    ..Default::default()
                },
            }],
            managed_word_lists: vec![ManagedWordsRule {
                kind: policy::ManagedWordList::Profanity,
                sides: policy::Sides {
                    input_action: Some(ConfiguredAction::None),
                    ..Default::default()
                },
            }],
            regexes: vec![RegexRule {
                name: "ticket".into(),
                description: None,
                pattern: r"TCK-\d{4}".into(),
                action: ConfiguredAction::Anonymize,
                sides: Default::default(),
            }],
            ..Default::default()
        };
        let text = "About Project  Falcon: ticket TCK-1234, damn it";
        let input = run(policy.clone(), Source::Input, text);
        assert!(input.blocked, "custom word blocks on input");
        assert_eq!(input.assessment.custom_words[0].matched, "Project  Falcon");
        assert_eq!(input.assessment.managed_words[0].matched, "damn");
        assert_eq!(input.assessment.managed_words[0].action, Taken::None);
        let output = run(policy, Source::Output, text);
        assert!(
            output.assessment.custom_words.is_empty(),
            "disabled on output"
        );
        assert!(output.blocked, "profanity blocks on output");
        assert!(output.masked[0].contains("ticket {ticket}"));
    }

    #[test]
    fn clean_text_passes_untouched() {
        let policy = GuardrailPolicy {
            pii_entities: PiiType::ALL
                .iter()
                .map(|&k| pii(k, ConfiguredAction::Block))
                .collect(),
            ..Default::default()
        };
        let v = run(
            policy,
            Source::Input,
            "What is the boiling point of water at sea level?",
        );
        assert!(!v.intervened(), "{:?}", v.assessment.pii);
    }
}
