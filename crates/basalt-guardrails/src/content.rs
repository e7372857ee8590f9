//! Content filters. PROMPT_ATTACK is a logistic-regression classifier on the
//! sentence embeddings of each guarded input block (all-MiniLM-L6-v2, the vectors the
//! caller supplies), trained by `benches/guardrails/prompt_attack.py` on public
//! labelled data (bastioncorpus, spikee); its weights and its confidence thresholds
//! (chosen on out-of-fold scores: HIGH ≈ 1 %, MEDIUM ≈ 5 %, LOW ≈ 15 % false
//! positives) ship in `data/prompt_attack_classifier.json`. The other categories have
//! no classifier yet and are refused at configuration time.

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
}

/// The shipped PROMPT_ATTACK classifier.
pub static PROMPT_ATTACK: LazyLock<Option<LinearClassifier>> = LazyLock::new(|| {
    let parsed: Result<LinearClassifier, _> =
        serde_json::from_str(include_str!("../data/prompt_attack_classifier.json"));
    parsed.ok().filter(|c| {
        c.weights.len() == c.dimensions
            && c.thresholds.low <= c.thresholds.medium
            && c.thresholds.medium <= c.thresholds.high
    })
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_classifier_loads_and_orders_its_thresholds() {
        let c = PROMPT_ATTACK
            .as_ref()
            .expect("data/prompt_attack_classifier.json is valid");
        assert_eq!(c.dimensions, 384);
        assert_eq!(c.confidence(c.thresholds.high), Strength::High);
        assert_eq!(c.confidence(c.thresholds.low - 1e-6), Strength::None);
        assert_eq!(c.probability(&[0.0; 3]), None, "wrong vector length");
        let p = c.probability(&vec![0.0; 384]).expect("right length");
        assert!((0.0..=1.0).contains(&p));
    }
}
