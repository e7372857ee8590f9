//! Reranking models: a query and documents in, each document's relevance out.
//!
//! - `cohere`: Cohere's Rerank (`POST {base}/rerank`, `{model, query, documents,
//!   top_n}` → `{results: [{index, relevance_score}], meta: {billed_units:
//!   {search_units}}}`). Jina's, vLLM's and llama-server's `/rerank` take the same body
//!   and answer the same `results`, so they are reached with this API too.
//! - `bedrock`: a rerank model on Amazon Bedrock through InvokeModel (`POST
//!   {base}/model/{modelId}/invoke`, SigV4 or a bearer key) with the models' native
//!   body `{query, documents, top_n}` (plus `api_version: 2` for Cohere's models on
//!   Bedrock) → `{results: [{index, relevance_score}]}`.
//!
//! Billing on both is by search unit: one query over up to 100 documents.

use basalt_types::CoreError;
use serde_json::{json, Value};

use crate::exchange::exchange_json;
use crate::Upstream;

/// Documents one search unit covers.
pub const DOCUMENTS_PER_SEARCH_UNIT: usize = 100;

/// One document's place in a reranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// Position of the document in the request.
    pub index: usize,
    /// Relevance to the query (higher is more relevant); the model's own scale.
    pub score: f64,
}

/// A reranking: the most relevant documents first, and what the upstream billed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reranked {
    pub ranking: Vec<Ranked>,
    pub search_units: u32,
}

/// Search units of one query over `documents` documents.
pub fn search_units(documents: usize) -> u32 {
    documents.div_ceil(DOCUMENTS_PER_SEARCH_UNIT).max(1) as u32
}

/// A rerank model's wire API, chosen by the catalog's `upstream.api`.
#[derive(Debug, Clone)]
pub enum RerankAdapter {
    Cohere(Rerank),
    Bedrock(Rerank),
}

/// The state both wire APIs need.
#[derive(Debug, Clone)]
pub struct Rerank {
    client: crate::HttpClient,
    upstream: Upstream,
    label: String,
}

impl RerankAdapter {
    /// The adapter for `api` (`cohere` or `bedrock`); `None` for an API without
    /// reranking here.
    pub fn new(
        api: &str,
        client: crate::HttpClient,
        upstream: Upstream,
        label: String,
    ) -> Option<Self> {
        let rerank = Rerank {
            client,
            upstream,
            label,
        };
        match api {
            "cohere" => Some(Self::Cohere(rerank)),
            "bedrock" => Some(Self::Bedrock(rerank)),
            _ => None,
        }
    }

    /// The wire APIs with reranking.
    pub const APIS: &'static [&'static str] = &["cohere", "bedrock"];

    /// The request body this adapter sends.
    pub fn request_body(&self, query: &str, documents: &[String], top_n: usize) -> Value {
        match self {
            Self::Cohere(r) => json!({
                "model": r.upstream.model,
                "query": query,
                "documents": documents,
                "top_n": top_n,
            }),
            Self::Bedrock(r) => {
                let mut body = json!({ "query": query, "documents": documents, "top_n": top_n });
                // Cohere's rerank models on Bedrock require their API version.
                if r.upstream.model.starts_with("cohere.") {
                    body["api_version"] = json!(2);
                }
                body
            }
        }
    }

    /// The `top_n` most relevant of `documents` to `query`, most relevant first.
    pub async fn rerank(
        &self,
        query: &str,
        documents: &[String],
        top_n: usize,
    ) -> Result<Reranked, CoreError> {
        let body = self.request_body(query, documents, top_n);
        let (r, answer) = match self {
            Self::Cohere(r) => {
                let url = format!("{}/rerank", r.upstream.base_url.trim_end_matches('/'));
                let mut request = r.client.post(&url).timeout(r.upstream.timeout).json(&body);
                if let Some(key) = &r.upstream.api_key {
                    request = request.bearer_auth(key);
                }
                (r, exchange_json(request, &r.label).await?)
            }
            Self::Bedrock(r) => {
                let url = format!(
                    "{}/model/{}/invoke",
                    r.upstream.base_url.trim_end_matches('/'),
                    crate::bedrock::encode_segment(&r.upstream.model)
                );
                let bytes = serde_json::to_vec(&body)
                    .map_err(|e| CoreError::Internal(format!("cannot encode the request: {e}")))?;
                let request = crate::bedrock::authorized_post(
                    &r.client,
                    &r.upstream,
                    &r.label,
                    &url,
                    bytes,
                    "application/json",
                )?;
                (r, exchange_json(request, &r.label).await?)
            }
        };
        let ranking = read_results(&answer, documents.len(), top_n)
            .map_err(|what| CoreError::ModelError(format!("{} answered {what}", r.label)))?;
        let search_units = answer
            .pointer("/meta/billed_units/search_units")
            .and_then(Value::as_u64)
            .map_or_else(|| search_units(documents.len()), |u| u as u32);
        Ok(Reranked {
            ranking,
            search_units,
        })
    }
}

/// `results: [{index, relevance_score}]`, checked: every index names a document and
/// appears once, every score is a finite number; sorted most relevant first (ties in
/// request order) and cut to `top_n`.
pub fn read_results(answer: &Value, documents: usize, top_n: usize) -> Result<Vec<Ranked>, String> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or("without a results list")?;
    let mut seen = vec![false; documents];
    let mut ranking = Vec::with_capacity(results.len());
    for r in results {
        let index = r
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| i as usize)
            .filter(|&i| i < documents)
            .ok_or_else(|| {
                format!("a result whose index is not one of the {documents} documents")
            })?;
        if std::mem::replace(&mut seen[index], true) {
            return Err(format!("document {index} twice"));
        }
        let score = r
            .get("relevance_score")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite())
            .ok_or_else(|| format!("document {index} without a numeric relevance_score"))?;
        ranking.push(Ranked { index, score });
    }
    ranking.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    ranking.truncate(top_n);
    Ok(ranking)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(api: &str, model: &str) -> RerankAdapter {
        let upstream = Upstream {
            base_url: "http://127.0.0.1:9/v2".into(),
            model: model.into(),
            api_key: None,
            aws: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let client = crate::HttpClient::per_thread().expect("client");
        RerankAdapter::new(api, client, upstream, "test".into()).expect("known api")
    }

    #[test]
    fn bodies_follow_each_wire() {
        let docs = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            adapter("cohere", "rerank-v3.5").request_body("q", &docs, 1),
            json!({"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"], "top_n": 1})
        );
        assert_eq!(
            adapter("bedrock", "amazon.rerank-v1:0").request_body("q", &docs, 2),
            json!({"query": "q", "documents": ["a", "b"], "top_n": 2})
        );
        assert_eq!(
            adapter("bedrock", "cohere.rerank-v3-5:0").request_body("q", &docs, 2)["api_version"],
            json!(2)
        );
        assert!(RerankAdapter::new(
            "openai",
            crate::HttpClient::per_thread().expect("client"),
            Upstream {
                base_url: String::new(),
                model: String::new(),
                api_key: None,
                aws: None,
                timeout: std::time::Duration::from_secs(1),
            },
            String::new()
        )
        .is_none());
    }

    #[test]
    fn results_are_checked_sorted_and_cut() {
        let answer = json!({"results": [
            {"index": 2, "relevance_score": 0.5},
            {"index": 0, "relevance_score": 0.9},
            {"index": 1, "relevance_score": 0.5},
        ]});
        let ranking = read_results(&answer, 3, 2).expect("valid");
        assert_eq!(
            ranking,
            vec![
                Ranked {
                    index: 0,
                    score: 0.9
                },
                Ranked {
                    index: 1,
                    score: 0.5
                }
            ]
        );
        for (bad, why) in [
            (json!({}), "without a results list"),
            (
                json!({"results": [{"index": 3, "relevance_score": 1.0}]}),
                "index",
            ),
            (
                json!({"results": [{"index": 0, "relevance_score": 1.0}, {"index": 0, "relevance_score": 0.5}]}),
                "twice",
            ),
            (
                json!({"results": [{"index": 0, "relevance_score": "high"}]}),
                "relevance_score",
            ),
        ] {
            let e = read_results(&bad, 3, 3).expect_err("refused");
            assert!(e.contains(why), "{e} should say {why}");
        }
    }

    #[test]
    fn a_search_unit_covers_a_hundred_documents() {
        assert_eq!([1, 100, 101, 1000].map(search_units), [1, 1, 2, 10]);
    }
}
