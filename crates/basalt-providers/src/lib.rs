//! Remote model providers: each module translates Basalt's provider-independent chat
//! requests ([`basalt_types::ChatRequest`]) into one provider's wire format, sends them
//! over a pooled HTTP client, translates the provider's stream back event by event
//! into [`basalt_types::GenerationDelta`]s, and maps the provider's errors onto
//! [`basalt_types::CoreError`] so the edge answers them in the caller's dialect.
//!
//! - [`openai`]: OpenAI Chat Completions, which every OpenAI-compatible server speaks
//!   (vLLM, TGI, llama-server, Ollama's `/v1`, another Basalt), and Mistral's chat
//!   completions as a flavour of it.
//! - [`anthropic`]: Anthropic's Messages API.
//! - [`bedrock`]: Amazon Bedrock's Converse / ConverseStream, SigV4-signed.
//! - [`cohere`]: Cohere's v2 Chat and Embed.
//! - [`gemini`]: Google's Gemini `generateContent` / `streamGenerateContent` and
//!   `batchEmbedContents`.
//! - [`embeddings`]: OpenAI-style `/embeddings` (OpenAI, compatible servers, Mistral).
//! - [`rerank`]: reranking models (Cohere's Rerank and the servers that copy it;
//!   Bedrock's rerank models through InvokeModel).
//! - [`router`]: several deployments of one model: least in-flight balancing, circuit
//!   breakers, retries with jittered backoff before the first streamed byte.
//!
//! Credentials are given to an adapter as values; they are never logged, never put in
//! an error message and never shown by `Debug`.

pub mod anthropic;
pub mod bedrock;
pub mod cohere;
pub mod embeddings;
mod exchange;
pub mod gemini;
mod http;
pub mod openai;
mod partial_call;
pub mod replay;
pub mod rerank;
pub mod router;
pub use http::HttpClient;
pub use reqwest;
pub use rerank::RerankAdapter;
mod sse;

use std::pin::Pin;
use std::time::Duration;

use basalt_types::{CoreError, GenerationDelta};
use futures::Stream;

/// Deltas of one generation; ends with `End` or `Error`.
pub type DeltaStream = Pin<Box<dyn Stream<Item = GenerationDelta> + Send>>;

/// Where a remote model lives and how to reach it.
#[derive(Clone)]
pub struct Upstream {
    /// Base URL up to and including the API version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The provider's name for the model.
    pub model: String,
    /// The credential, if the upstream needs one.
    pub api_key: Option<String>,
    /// SigV4 credentials (Bedrock as an upstream); used instead of `api_key`.
    pub aws: Option<bedrock::AwsSigning>,
    /// Longest a whole request may take, from sending it to the end of the answer
    /// (streamed or not); past it the caller gets a model timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("aws", &self.aws)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A chat adapter for one of the wire APIs above.
#[derive(Debug, Clone)]
pub enum ChatAdapter {
    OpenAi(openai::OpenAiChat),
    Anthropic(anthropic::AnthropicChat),
    Cohere(cohere::CohereChat),
    Gemini(gemini::GeminiChat),
    Bedrock(bedrock::BedrockChat),
}

impl ChatAdapter {
    /// The adapter for `api` (`openai`, `mistral`, `anthropic`, `cohere`, `gemini`
    /// or `bedrock`); `None` for an unknown API.
    pub fn new(api: &str, client: HttpClient, upstream: Upstream, label: String) -> Option<Self> {
        match api {
            "openai" => Some(Self::OpenAi(openai::OpenAiChat::new(
                client, upstream, label,
            ))),
            "mistral" => Some(Self::OpenAi(openai::OpenAiChat::mistral(
                client, upstream, label,
            ))),
            "anthropic" => Some(Self::Anthropic(anthropic::AnthropicChat::new(
                client, upstream, label,
            ))),
            "cohere" => Some(Self::Cohere(cohere::CohereChat::new(
                client, upstream, label,
            ))),
            "gemini" => Some(Self::Gemini(gemini::GeminiChat::new(
                client, upstream, label,
            ))),
            "bedrock" => Some(Self::Bedrock(bedrock::BedrockChat::new(
                client, upstream, label,
            ))),
            _ => None,
        }
    }

    /// The wire APIs [`ChatAdapter::new`] knows.
    pub const APIS: &'static [&'static str] = &[
        "openai",
        "mistral",
        "anthropic",
        "cohere",
        "gemini",
        "bedrock",
    ];

    pub async fn chat(
        &self,
        request: &basalt_types::ChatRequest,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        match self {
            Self::OpenAi(a) => a.chat(request, max_tokens).await,
            Self::Anthropic(a) => a.chat(request, max_tokens).await,
            Self::Cohere(a) => a.chat(request, max_tokens).await,
            Self::Gemini(a) => a.chat(request, max_tokens).await,
            Self::Bedrock(a) => a.chat(request, max_tokens).await,
        }
    }

    /// A raw prompt (a native InvokeModel body's `prompt`) sent as one user message,
    /// streamed: the same request every adapter's `chat` sends for one turn.
    pub async fn complete(
        &self,
        prompt: &str,
        params: &basalt_types::InferenceParams,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        let request = basalt_types::ChatRequest {
            model_id: String::new(),
            system: Vec::new(),
            messages: vec![basalt_types::Message {
                role: basalt_types::Role::User,
                content: vec![basalt_types::ContentBlock::Text(prompt.to_owned())],
            }],
            params: params.clone(),
            tools: None,
            response_schema: None,
            stream: true,
        };
        self.chat(&request, max_tokens).await
    }
}

/// An embedding model's wire API, chosen by the catalog's `upstream.api`.
#[derive(Debug, Clone)]
pub enum EmbeddingAdapter {
    /// OpenAI's embeddings API; Mistral's is the same.
    OpenAi(embeddings::OpenAiEmbeddings),
    Cohere(cohere::CohereEmbeddings),
    Gemini(gemini::GeminiEmbeddings),
}

impl EmbeddingAdapter {
    /// The adapter for `api` (`openai`, `mistral`, `cohere` or `gemini`); `None` for
    /// an API without embeddings here.
    pub fn new(api: &str, client: HttpClient, upstream: Upstream, label: String) -> Option<Self> {
        match api {
            "openai" | "mistral" => Some(Self::OpenAi(embeddings::OpenAiEmbeddings::new(
                client, upstream, label,
            ))),
            "cohere" => Some(Self::Cohere(cohere::CohereEmbeddings::new(
                client, upstream, label,
            ))),
            "gemini" => Some(Self::Gemini(gemini::GeminiEmbeddings::new(
                client, upstream, label,
            ))),
            _ => None,
        }
    }

    /// The wire APIs with embeddings.
    pub const APIS: &'static [&'static str] = &["openai", "mistral", "cohere", "gemini"];

    pub async fn embed(&self, inputs: &[String]) -> Result<embeddings::Embedded, CoreError> {
        match self {
            Self::OpenAi(a) => a.embed(inputs).await,
            Self::Cohere(a) => a.embed(inputs).await,
            Self::Gemini(a) => a.embed(inputs).await,
        }
    }
}

/// A tool result as text for the APIs that take a tool message's content as a plain
/// string (OpenAI, Mistral, Cohere): a failed one is marked in the text itself.
pub(crate) fn tool_result_text(content: &str, is_error: bool) -> std::borrow::Cow<'_, str> {
    if is_error {
        std::borrow::Cow::Owned(format!("Error: {content}"))
    } else {
        std::borrow::Cow::Borrowed(content)
    }
}

/// A tool as most providers declare one: `{"name", "description"?, <schema_key>: schema}`
/// (OpenAI and Cohere nest it under `function`, Bedrock under `toolSpec`).
pub(crate) fn tool_declaration(
    tool: &basalt_types::ToolSpec,
    schema_key: &str,
    schema: serde_json::Value,
) -> serde_json::Value {
    let mut spec = serde_json::Map::new();
    spec.insert("name".into(), tool.name.clone().into());
    if let Some(d) = &tool.description {
        spec.insert("description".into(), d.clone().into());
    }
    spec.insert(schema_key.into(), schema);
    serde_json::Value::Object(spec)
}

/// What an upstream HTTP status means to Basalt's caller. `message` is the
/// provider's own error text (never containing our credentials).
pub fn error_for_status(
    provider: &str,
    status: u16,
    message: &str,
    retry_after: Option<&str>,
) -> CoreError {
    let text = format!("{provider} returned HTTP {status}: {message}");
    match status {
        400 | 413 | 422 => CoreError::Validation(text),
        // 498: Cohere's "invalid token".
        401 | 403 | 498 => CoreError::AccessDenied(format!(
            "{text} (the upstream refused Basalt's credentials for this model)"
        )),
        429 => CoreError::Throttled(match retry_after {
            Some(after) => format!("{text} (retry after {after} s)"),
            None => text,
        }),
        408 | 504 => CoreError::ModelTimeout(text),
        503 | 529 => CoreError::ServiceUnavailable(text),
        _ => CoreError::ModelError(text),
    }
}

/// What a transport failure (no HTTP status) means to the caller.
pub fn error_for_transport(provider: &str, e: &reqwest::Error) -> CoreError {
    // reqwest's Display never includes headers, so the credential cannot leak here.
    let text = format!("{provider} could not be reached: {e}");
    if e.is_timeout() {
        CoreError::ModelTimeout(format!("{provider} did not answer in time"))
    } else if e.is_connect() {
        CoreError::ServiceUnavailable(text)
    } else {
        CoreError::ModelError(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_error_a_caller_can_act_on() {
        let cases = [
            (400, "Validation"),
            (422, "Validation"),
            (401, "AccessDenied"),
            (403, "AccessDenied"),
            (404, "ModelError"),
            (429, "Throttled"),
            (408, "ModelTimeout"),
            (504, "ModelTimeout"),
            (500, "ModelError"),
            (502, "ModelError"),
            (503, "ServiceUnavailable"),
        ];
        for (status, want) in cases {
            let got = error_for_status("upstream", status, "boom", None);
            let name = format!("{got:?}");
            assert!(
                name.starts_with(want),
                "HTTP {status} became {name}, expected {want}"
            );
        }
        let throttled = error_for_status("upstream", 429, "slow down", Some("7"));
        assert!(throttled.to_string().contains("retry after 7 s"));
    }

    #[test]
    fn debug_never_shows_the_credential() {
        let upstream = Upstream {
            base_url: "http://x/v1".into(),
            model: "m".into(),
            api_key: Some("sk-secret-value".into()),
            aws: None,
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{upstream:?}");
        assert!(!shown.contains("sk-secret-value"));
        assert!(shown.contains("<redacted>"));
    }
}
