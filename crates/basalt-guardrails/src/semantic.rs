//! The policies that compare meanings, on sentence embeddings the caller computes.
//!
//! Denied topics: every guarded sentence (and each guarded block whole) is compared
//! with the topic's definition and examples, and with a contrast text generated from
//! the topic's name ("Explain how <name> works in general.") that stands for
//! harmless general questions about the same subject. The topic's score is the best
//! similarity to the topic minus [`CONTRAST_WEIGHT`] times the best similarity to the
//! contrast text; it is detected at or above [`TOPIC_THRESHOLD`]. Without the
//! contrast, questions *about* a subject ("what are the key factors to consider when
//! investing?") score as high as requests *in* it.
//!
//! Contextual grounding: each response sentence's support is its best similarity to a
//! source sentence, scaled by how many of its salient tokens (numbers, capitalised
//! words) the source contains — embeddings alone rate "Paris" and "Berlin" as close,
//! the token check does not; the grounding score is the mean support. Relevance is the
//! best similarity of the query to the response or one of its sentences.

use crate::policy::TopicRule;
use crate::{Qualifier, Segment};

/// Topic score at which a sentence is on a denied topic (all-MiniLM-L6-v2). Chosen
/// on the calibration half of a public labelled set and checked on the other half:
/// see `benches/guardrails/topics.py` and `benches/README.md`.
pub const TOPIC_THRESHOLD: f32 = 0.23;

/// How much similarity to the topic's contrast text counts against it.
pub const CONTRAST_WEIGHT: f32 = 0.5;

/// The contrast text of a topic: a harmless general question about its subject.
pub fn contrast_text(topic_name: &str) -> String {
    format!(
        "Explain how {} works in general.",
        topic_name.to_lowercase()
    )
}

/// Splits text into sentences (on `.`, `!`, `?` followed by whitespace, and on line
/// breaks); blank pieces are dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let boundary = match c {
            '\n' => true,
            '.' | '!' | '?' => bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()),
            _ => false,
        };
        if boundary {
            let piece = text[start..i + c.len_utf8()].trim();
            if !piece.is_empty() {
                out.push(piece);
            }
            start = i + c.len_utf8();
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Which texts one evaluation needs embedded (each distinct text once), and which of
/// them each check uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingPlan {
    pub texts: Vec<String>,
    /// Guarded sentences and whole guarded blocks, for the topic policy.
    topic_units: Vec<usize>,
    /// Whole guarded blocks, for the content filters.
    pub(crate) content_units: Vec<usize>,
    grounding: Option<GroundingPlan>,
}

#[derive(Debug, Clone, PartialEq)]
struct GroundingPlan {
    response_sentences: Vec<usize>,
    response_whole: usize,
    source_sentences: Vec<usize>,
    query: Option<usize>,
}

/// Adds texts to a plan, each distinct text once.
#[derive(Default)]
struct Texts {
    texts: Vec<String>,
    index: std::collections::HashMap<String, usize>,
}

impl Texts {
    fn add(&mut self, text: &str) -> usize {
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        self.texts.push(text.to_string());
        self.index.insert(text.to_string(), self.texts.len() - 1);
        self.texts.len() - 1
    }
}

/// The two grounding scores of a response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundingScores {
    pub grounding: f64,
    pub relevance: f64,
}

impl EmbeddingPlan {
    pub(crate) fn new(segments: &[Segment], topics: bool, content: bool, grounding: bool) -> Self {
        let mut texts = Texts::default();
        let guarded: Vec<&Segment> = segments.iter().filter(|s| s.is_guarded()).collect();
        let content_units = if content {
            guarded
                .iter()
                .filter(|s| !s.text.trim().is_empty())
                .map(|s| texts.add(&s.text))
                .collect()
        } else {
            Vec::new()
        };
        let mut topic_units = Vec::new();
        if topics {
            for segment in &guarded {
                let pieces = sentences(&segment.text);
                if pieces.len() > 1 {
                    topic_units.push(texts.add(&segment.text));
                }
                topic_units.extend(pieces.into_iter().map(|p| texts.add(p)));
            }
        }
        let sources: Vec<&Segment> = segments
            .iter()
            .filter(|s| s.qualifiers.contains(&Qualifier::GroundingSource))
            .collect();
        let query = segments
            .iter()
            .find(|s| s.qualifiers.contains(&Qualifier::Query));
        let grounding = (grounding && (!sources.is_empty() || query.is_some())).then(|| {
            let response: String = guarded
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let response_sentences = sentences(&response)
                .into_iter()
                .map(|p| texts.add(p))
                .collect();
            let response_whole = texts.add(&response);
            let source_sentences = sources
                .iter()
                .flat_map(|source| sentences(&source.text))
                .map(|p| texts.add(p))
                .collect();
            GroundingPlan {
                response_sentences,
                response_whole,
                source_sentences,
                query: query.map(|q| texts.add(&q.text)),
            }
        });
        Self {
            texts: texts.texts,
            topic_units,
            content_units,
            grounding,
        }
    }

    /// Grounding and relevance of the response, when grounding was planned.
    pub(crate) fn grounding_scores(
        &self,
        segments: &[Segment],
        vectors: &[Vec<f32>],
    ) -> Option<GroundingScores> {
        let plan = self.grounding.as_ref()?;
        if vectors.len() != self.texts.len() {
            return None;
        }
        let source_text: String = segments
            .iter()
            .filter(|s| s.qualifiers.contains(&Qualifier::GroundingSource))
            .map(|s| s.text.to_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let supports: Vec<f64> = plan
            .response_sentences
            .iter()
            .map(|&i| {
                let similarity = plan
                    .source_sentences
                    .iter()
                    .map(|&s| cosine(&vectors[i], &vectors[s]))
                    .fold(0.0f32, f32::max);
                f64::from(similarity.max(0.0)) * salient_coverage(&self.texts[i], &source_text)
            })
            .collect();
        let grounding = if supports.is_empty() {
            1.0
        } else {
            supports.iter().sum::<f64>() / supports.len() as f64
        };
        let relevance = match plan.query {
            None => 1.0,
            Some(q) => plan
                .response_sentences
                .iter()
                .copied()
                .chain([plan.response_whole])
                .map(|i| cosine(&vectors[q], &vectors[i]))
                .fold(0.0f32, f32::max)
                .max(0.0)
                .into(),
        };
        Some(GroundingScores {
            grounding: round2(grounding),
            relevance: round2(relevance),
        })
    }
}

fn round2(x: f64) -> f64 {
    (x.clamp(0.0, 1.0) * 100.0).round() / 100.0
}

/// The share of a sentence's salient tokens (numbers, capitalised words not at the
/// start) that appear in the source; 1 when it has none.
fn salient_coverage(sentence: &str, source_lower: &str) -> f64 {
    let tokens: Vec<&str> = sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let salient: Vec<String> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            t.chars().any(|c| c.is_ascii_digit())
                || (*i > 0 && t.chars().next().is_some_and(char::is_uppercase))
        })
        .map(|(_, t)| t.to_lowercase())
        .collect();
    if salient.is_empty() {
        return 1.0;
    }
    let found = salient
        .iter()
        .filter(|t| {
            source_lower
                .split(|c: char| !c.is_alphanumeric())
                .any(|s| s == t.as_str())
        })
        .count();
    found as f64 / salient.len() as f64
}

/// The embedded definitions and examples of the denied topics.
#[derive(Debug, Default)]
pub(crate) struct TopicIndex {
    /// For each topic, the texts that describe it.
    texts: Vec<Vec<String>>,
    /// Their vectors, same shape, once supplied.
    vectors: Vec<Vec<Vec<f32>>>,
}

impl TopicIndex {
    pub(crate) fn new(topics: &[TopicRule]) -> Self {
        let texts = topics
            .iter()
            .map(|t| {
                let mut refs = vec![format!("{}: {}", t.name, t.definition)];
                refs.extend(t.examples.iter().cloned());
                // The last text of each topic is its contrast text.
                refs.push(contrast_text(&t.name));
                refs
            })
            .collect();
        Self {
            texts,
            vectors: Vec::new(),
        }
    }

    pub(crate) fn reference_texts(&self) -> Vec<String> {
        self.texts.iter().flatten().cloned().collect()
    }

    pub(crate) fn set_references(&mut self, vectors: Vec<Vec<f32>>) -> Result<(), String> {
        let expected: usize = self.texts.iter().map(Vec::len).sum();
        if vectors.len() != expected {
            return Err(format!(
                "expected {expected} topic reference vectors, got {}",
                vectors.len()
            ));
        }
        let mut it = vectors.into_iter();
        self.vectors = self
            .texts
            .iter()
            .map(|refs| it.by_ref().take(refs.len()).collect())
            .collect();
        Ok(())
    }

    /// Each topic's score: over the planned topic units, the best similarity to the
    /// topic minus the weighted best similarity to its contrast text (0 without
    /// vectors).
    pub(crate) fn scores(&self, plan: &EmbeddingPlan, vectors: &[Vec<f32>]) -> Vec<f32> {
        self.texts
            .iter()
            .enumerate()
            .map(|(t, _)| {
                let Some((contrast, refs)) = self.vectors.get(t).and_then(|v| v.split_last())
                else {
                    return 0.0;
                };
                if plan.topic_units.is_empty() {
                    return 0.0;
                }
                let best = |refs: &[Vec<f32>]| {
                    plan.topic_units
                        .iter()
                        .filter_map(|&i| vectors.get(i))
                        .flat_map(|v| refs.iter().map(move |r| cosine(v, r)))
                        .fold(f32::MIN, f32::max)
                };
                let score = best(refs) - CONTRAST_WEIGHT * best(std::slice::from_ref(contrast));
                if score.is_finite() {
                    score
                } else {
                    0.0
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_terminal_punctuation_and_lines() {
        assert_eq!(
            sentences("Hi there. Version 1.2 is out!\nNew line? yes"),
            vec!["Hi there.", "Version 1.2 is out!", "New line?", "yes"]
        );
    }

    #[test]
    fn salient_tokens_catch_swapped_facts() {
        let source = "the capital of france is paris. it has 2 million people.";
        assert_eq!(salient_coverage("The capital is Paris.", source), 1.0);
        assert_eq!(salient_coverage("The capital is Berlin.", source), 0.0);
        assert_eq!(salient_coverage("It is big.", source), 1.0);
    }

    #[test]
    fn topic_scores_take_the_best_sentence() {
        let segments = vec![Segment::guarded("Hello. Buy stocks now.")];
        let plan = EmbeddingPlan::new(&segments, true, false, false);
        assert_eq!(plan.texts.len(), 3, "whole block and two sentences");
        let mut index = TopicIndex {
            texts: vec![vec!["investing".into(), "contrast".into()]],
            vectors: Vec::new(),
        };
        index
            .set_references(vec![vec![1.0, 0.0], vec![0.0, 1.0]])
            .expect("one ref and the contrast");
        let vectors = vec![vec![0.6, 0.8], vec![0.0, 1.0], vec![1.0, 0.0]];
        let scores = index.scores(&plan, &vectors);
        // Best topic similarity 1.0 (third unit), best contrast similarity 1.0 (second).
        assert!(
            (scores[0] - (1.0 - CONTRAST_WEIGHT)).abs() < 1e-6,
            "{scores:?}"
        );
    }
}
