//! Remote embedding models: OpenAI's embeddings API (`POST {base}/embeddings`), which
//! OpenAI-compatible servers (vLLM, TGI, llama-server, Ollama's `/v1`, another Basalt)
//! and Mistral (`mistral-embed`) speak alike: `{"model", "input": [texts]}` →
//! `{"data": [{"index", "embedding"}], "usage": {"prompt_tokens"}}`.
//!
//! Vectors are returned in input order and L2-normalised (Basalt's embedding API
//! promises normalised vectors). The upstream reports one token count for the whole
//! request; it is split over the inputs in proportion to their lengths, so the
//! per-input counts add up to what the upstream bills.

use serde_json::{json, Value};

use basalt_types::CoreError;

use crate::exchange::exchange_json;
use crate::Upstream;

/// What one embeddings call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Per input, adding up to the upstream's count.
    pub input_tokens: Vec<u32>,
}

/// An embedding model behind an OpenAI-style embeddings endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiEmbeddings {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

impl OpenAiEmbeddings {
    pub fn new(client: crate::HttpClient, upstream: Upstream, label: impl Into<String>) -> Self {
        Self {
            client,
            upstream,
            label: label.into(),
        }
    }

    pub fn request_body(&self, inputs: &[String]) -> Value {
        json!({ "model": self.upstream.model, "input": inputs })
    }

    pub async fn embed(&self, inputs: &[String]) -> Result<Embedded, CoreError> {
        let url = format!(
            "{}/embeddings",
            self.upstream.base_url.trim_end_matches('/')
        );
        let mut request = self
            .client
            .post(&url)
            .timeout(self.upstream.timeout)
            .json(&self.request_body(inputs));
        if let Some(key) = &self.upstream.api_key {
            request = request.bearer_auth(key);
        }
        let answer = exchange_json(request, &self.label).await?;
        read_answer(&answer, inputs, &self.label)
    }
}

/// Reads an embeddings answer: every input's vector exactly once, by `index`.
fn read_answer(answer: &Value, inputs: &[String], label: &str) -> Result<Embedded, CoreError> {
    let bad = |what: &str| CoreError::ModelError(format!("{label} answered {what}"));
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("without data"))?;
    if data.len() != inputs.len() {
        return Err(bad(&format!(
            "{} vectors for {} inputs",
            data.len(),
            inputs.len()
        )));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
    for (position, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        let vector = unit_vector(item.get("embedding"))
            .ok_or_else(|| bad("an embedding that is not a list of numbers"))?;
        match vectors.get_mut(index) {
            Some(slot @ None) => *slot = Some(vector),
            _ => return Err(bad(&format!("index {index} twice or out of range"))),
        }
    }
    let vectors: Vec<Vec<f32>> = vectors.into_iter().flatten().collect();
    if vectors.windows(2).any(|w| w[0].len() != w[1].len()) {
        return Err(bad("vectors of different lengths"));
    }
    let total = answer
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(Embedded {
        vectors,
        input_tokens: split_tokens(total, inputs),
    })
}

/// A JSON array of numbers as a normalised vector; None when it is not one.
pub(crate) fn unit_vector(value: Option<&Value>) -> Option<Vec<f32>> {
    let v: Vec<f32> = value?
        .as_array()?
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32))
        .collect::<Option<_>>()?;
    Some(normalised(v))
}

pub(crate) fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// `total` split over the inputs by length (largest remainders), summing to `total`.
pub(crate) fn split_tokens(total: u64, inputs: &[String]) -> Vec<u32> {
    let weights: Vec<u64> = inputs
        .iter()
        .map(|s| s.chars().count().max(1) as u64)
        .collect();
    let sum: u64 = weights.iter().sum::<u64>().max(1);
    let mut shares: Vec<u64> = weights.iter().map(|w| total * w / sum).collect();
    let mut rest = total - shares.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((total * weights[i]) % sum));
    for i in order {
        if rest == 0 {
            break;
        }
        shares[i] += 1;
        rest -= 1;
    }
    shares
        .into_iter()
        .map(|s| s.min(u64::from(u32::MAX)) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_index_normalised_and_counted() {
        let inputs = vec!["a".to_string(), "bbb".to_string()];
        let answer = json!({"data": [
            {"index": 1, "embedding": [0.0, 2.0]},
            {"index": 0, "embedding": [3.0, 4.0]},
        ], "usage": {"prompt_tokens": 9, "total_tokens": 9}});
        let e = read_answer(&answer, &inputs, "up").expect("reads");
        assert_eq!(e.vectors, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
        assert_eq!(e.input_tokens.iter().sum::<u32>(), 9);
        assert!(e.input_tokens[1] > e.input_tokens[0]);
    }

    #[test]
    fn malformed_answers_are_model_errors() {
        let inputs = vec!["a".to_string(), "b".to_string()];
        for answer in [
            json!({}),
            json!({"data": [{"index": 0, "embedding": [1.0]}]}),
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}),
            json!({"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": [1.0]}]}),
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]}),
        ] {
            assert!(
                matches!(
                    read_answer(&answer, &inputs, "up"),
                    Err(CoreError::ModelError(_))
                ),
                "{answer}"
            );
        }
    }

    #[test]
    fn token_shares_add_up() {
        let inputs: Vec<String> = ["x", "yy", "zzz"].iter().map(|s| s.to_string()).collect();
        for total in [0, 1, 5, 6, 7, 100] {
            assert_eq!(
                split_tokens(total, &inputs)
                    .iter()
                    .map(|&t| u64::from(t))
                    .sum::<u64>(),
                total
            );
        }
    }
}
