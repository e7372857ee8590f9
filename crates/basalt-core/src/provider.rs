//! Providers: what answers a model's requests. One trait per capability; the local
//! engines (`LocalChat`, `LocalEmbedding`), the remote providers (`RemoteChat`,
//! `RemoteEmbedding`, `RemoteRerank`, over `basalt-providers`) and `Echo` implement them here.

use std::sync::Arc;

use async_trait::async_trait;
use basalt_engine::chat::{
    json_schema_grammar, ChatEngine, ChatMessage, FinishReason, GenerationEvent, GenerationRequest,
    OutputConstraint, SamplingParams,
};
use basalt_engine::embed::EmbeddingEngine;

use crate::error::engine_error;
use crate::tool_calls;
use crate::types::{
    ChatRequest, ContentBlock, GenerationDelta, InferenceParams, StopReason, TokenUsage, ToolChoice,
};
use crate::CoreError;

/// Deltas of one generation; ends with `End` or `Error` (one type for local and
/// remote providers).
pub use basalt_providers::DeltaStream;

/// A model that writes text.
#[async_trait]
pub trait ChatProvider: Send + Sync {
    /// Input tokens of a chat request as the model will see it.
    async fn count_chat_tokens(&self, request: &ChatRequest) -> Result<u32, CoreError>;
    /// Input tokens of a raw prompt.
    async fn count_prompt_tokens(&self, prompt: &str) -> Result<u32, CoreError>;
    /// The longest prompt + output this provider takes, in tokens.
    fn context_window(&self) -> u32;
    async fn chat(&self, request: &ChatRequest, max_tokens: u32) -> Result<DeltaStream, CoreError>;
    async fn complete(
        &self,
        prompt: &str,
        params: &InferenceParams,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError>;
}

/// A model that embeds text.
#[async_trait]
pub trait EmbeddingProvider: Send + Sync {
    fn dimensions(&self) -> usize;
    async fn count_tokens(&self, text: &str) -> Result<u32, CoreError>;
    /// Byte spans of each token of `text` (no special tokens, no truncation), when the
    /// model's tokenizer is here; `None` for a remote model (chunking then counts words).
    fn token_spans(&self, _text: &str) -> Option<Result<Vec<(usize, usize)>, CoreError>> {
        None
    }
    /// Vectors (normalised) and token counts, in input order.
    async fn embed(&self, inputs: Vec<String>) -> Result<(Vec<Vec<f32>>, Vec<u32>), CoreError>;
}

/// A GGUF chat model on the local llama.cpp engine.
#[derive(Debug, Clone)]
pub struct LocalChat {
    engine: Arc<ChatEngine>,
}

impl LocalChat {
    pub fn new(engine: Arc<ChatEngine>) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &ChatEngine {
        &self.engine
    }

    fn chat_tokens(&self, request: &ChatRequest) -> Result<Vec<i32>, CoreError> {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        let mut system = request.system.join("\n");
        if let Some(tools) = &request.tools {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(&tool_calls::instructions(tools));
        }
        if let Some(schema) = &request.response_schema {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(&format!(
                "Answer with only a JSON value that follows this JSON schema: {schema}"
            ));
        }
        if !system.is_empty() {
            messages.push(ChatMessage {
                role: "system".into(),
                content: system,
            });
        }
        for m in &request.messages {
            let mut text = String::new();
            for block in &m.content {
                match block {
                    ContentBlock::Text(t) => text.push_str(t),
                    ContentBlock::ToolUse(call) => text.push_str(&tool_calls::render_call(call)),
                    ContentBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => {
                        let kind = if *is_error { "error" } else { "result" };
                        text.push_str(&format!("Tool {kind} for call {tool_use_id}: {content}\n"));
                    }
                    ContentBlock::Other { kind } => {
                        return Err(CoreError::Validation(format!(
                            "model {} does not support {kind} content blocks; send text",
                            request.model_id
                        )))
                    }
                    ContentBlock::Image(_) => {
                        return Err(CoreError::Validation(format!(
                            "model {} does not accept image content",
                            request.model_id
                        )))
                    }
                }
            }
            messages.push(ChatMessage {
                role: m.role.as_str().into(),
                content: text,
            });
        }
        self.engine.tokenize_chat(&messages).map_err(engine_error)
    }

    /// The grammar a request's output must follow, compiled before any work is queued.
    fn constraint(request: &ChatRequest) -> Result<Option<OutputConstraint>, CoreError> {
        if let Some(schema) = &request.response_schema {
            let grammar = json_schema_grammar(schema).map_err(|e| {
                CoreError::Validation(format!("the response JSON schema is not usable: {e}"))
            })?;
            return Ok(Some(OutputConstraint::Grammar(grammar)));
        }
        let Some(tools) = &request.tools else {
            return Ok(None);
        };
        let grammar = json_schema_grammar(&tool_calls::call_schema(tools)).map_err(|e| {
            CoreError::Validation(format!("a tool's input schema is not usable: {e}"))
        })?;
        Ok(Some(match tools.choice {
            ToolChoice::Auto => OutputConstraint::LazyGrammar {
                grammar,
                trigger_patterns: vec![r"^\s*(\{)".to_string()],
            },
            ToolChoice::Any | ToolChoice::Tool(_) => OutputConstraint::Grammar(grammar),
        }))
    }

    fn start(
        &self,
        prompt: Vec<i32>,
        params: &InferenceParams,
        max_tokens: u32,
        constraint: Option<OutputConstraint>,
        tool_request: Option<ChatRequest>,
    ) -> Result<DeltaStream, CoreError> {
        let sampling = SamplingParams {
            temperature: params.temperature.unwrap_or(0.0),
            top_p: params.top_p.unwrap_or(1.0),
            top_k: params.top_k.map_or(0, |k| k as i32),
            seed: params.seed.unwrap_or_else(rand::random),
        };
        let mut events = self
            .engine
            .submit(GenerationRequest {
                prompt,
                max_tokens,
                sampling,
                stop_sequences: params.stop_sequences.clone(),
                constraint,
                priority: match params.priority {
                    crate::types::Priority::Background => basalt_engine::chat::Priority::Background,
                    crate::types::Priority::Standard => basalt_engine::chat::Priority::Standard,
                    crate::types::Priority::Reserved => basalt_engine::chat::Priority::Reserved,
                },
            })
            .map_err(engine_error)?;
        let stream = async_stream_from(
            move |tx: futures::channel::mpsc::UnboundedSender<GenerationDelta>| async move {
                // With tools, the output is held until it is known to be a call or text.
                // Under `auto` the grammar is lazy: a call can only open the output, so
                // output whose first visible character is not `{` is text, and streams
                // from there on (a forced choice is always a call).
                let mut held = tool_request.as_ref().map(|_| String::new());
                let lazy = tool_request
                    .as_ref()
                    .and_then(|r| r.tools.as_ref())
                    .is_some_and(|t| matches!(t.choice, ToolChoice::Auto));
                while let Some(event) = events.recv().await {
                    let mut deltas = Vec::with_capacity(2);
                    match event {
                        GenerationEvent::Text(t) => {
                            let is_text = match held.as_mut() {
                                Some(buffer) => {
                                    buffer.push_str(&t);
                                    lazy && buffer
                                        .trim_start()
                                        .chars()
                                        .next()
                                        .is_some_and(|c| c != '{')
                                }
                                None => {
                                    deltas.push(GenerationDelta::Text(t));
                                    false
                                }
                            };
                            if is_text {
                                if let Some(text) = held.take() {
                                    deltas.push(GenerationDelta::Text(text));
                                }
                            }
                        }
                        GenerationEvent::Finished(s) => {
                            let mut stop_reason = match s.finish_reason {
                                FinishReason::EndOfTurn => StopReason::EndTurn,
                                FinishReason::MaxTokens => StopReason::MaxTokens,
                                FinishReason::StopSequence => StopReason::StopSequence,
                                FinishReason::ContextWindow => {
                                    StopReason::ModelContextWindowExceeded
                                }
                            };
                            if let (Some(text), Some(request)) =
                                (held.take(), tool_request.as_ref())
                            {
                                match tool_calls::parse_call(&text, request) {
                                    Some(call) => {
                                        deltas.push(GenerationDelta::ToolCall(call));
                                        stop_reason = StopReason::ToolUse;
                                    }
                                    None if !text.is_empty() => {
                                        deltas.push(GenerationDelta::Text(text))
                                    }
                                    None => {}
                                }
                            }
                            deltas.push(GenerationDelta::End {
                                stop_reason,
                                usage: TokenUsage {
                                    input_tokens: s.prompt_tokens,
                                    output_tokens: s.completion_tokens,
                                    cache_read_input_tokens: s.cached_prompt_tokens,
                                },
                                latency_ms: 0,
                                first_token_ms: None,
                            });
                        }
                        GenerationEvent::Failed(e) => {
                            deltas.push(GenerationDelta::Error(engine_error(e)))
                        }
                    }
                    for delta in deltas {
                        let last = matches!(
                            delta,
                            GenerationDelta::End { .. } | GenerationDelta::Error(_)
                        );
                        if tx.unbounded_send(delta).is_err() || last {
                            return;
                        }
                    }
                }
                let _ = tx.unbounded_send(GenerationDelta::Error(CoreError::ModelError(
                    "the engine stopped before the generation finished".into(),
                )));
            },
        );
        Ok(stream)
    }
}

/// Runs `producer` on the Tokio runtime, feeding a channel that becomes the stream.
/// Dropping the stream closes the channel, which ends the producer and (through the
/// dropped engine receiver) frees the engine slot.
fn async_stream_from<F, Fut>(producer: F) -> DeltaStream
where
    F: FnOnce(futures::channel::mpsc::UnboundedSender<GenerationDelta>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tokio::spawn(producer(tx));
    Box::pin(rx)
}

/// Runs CPU work of a request on the blocking pool and waits for it.
async fn off_serving_thread<T, F>(work: F) -> Result<T, CoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CoreError::Internal(format!("request preparation failed: {e}")))?
}

#[async_trait]
impl ChatProvider for LocalChat {
    async fn count_chat_tokens(&self, request: &ChatRequest) -> Result<u32, CoreError> {
        let this = self.clone();
        let request = request.clone();
        off_serving_thread(move || Ok(this.chat_tokens(&request)?.len() as u32)).await
    }

    async fn count_prompt_tokens(&self, prompt: &str) -> Result<u32, CoreError> {
        let engine = Arc::clone(&self.engine);
        let prompt = prompt.to_string();
        off_serving_thread(move || Ok(engine.tokenize(&prompt).len() as u32)).await
    }

    fn context_window(&self) -> u32 {
        self.engine.context_window()
    }

    async fn chat(&self, request: &ChatRequest, max_tokens: u32) -> Result<DeltaStream, CoreError> {
        // Rendering, tokenizing and compiling a grammar are CPU work that grows with
        // the request: never on the serving thread, whose other connections would wait.
        let this = self.clone();
        let request = request.clone();
        off_serving_thread(move || {
            let constraint = Self::constraint(&request)?;
            let prompt = this.chat_tokens(&request)?;
            let tool_request = request.tools.is_some().then(|| request.clone());
            this.start(
                prompt,
                &request.params,
                max_tokens,
                constraint,
                tool_request,
            )
        })
        .await
    }

    async fn complete(
        &self,
        prompt: &str,
        params: &InferenceParams,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        if prompt.is_empty() {
            return Err(CoreError::Validation("prompt must not be empty".into()));
        }
        let this = self.clone();
        let prompt = prompt.to_string();
        let params = params.clone();
        off_serving_thread(move || {
            let tokens = this.engine.tokenize(&prompt);
            this.start(tokens, &params, max_tokens, None, None)
        })
        .await
    }
}

/// A chat model served by a remote provider or another inference server.
#[derive(Debug)]
pub struct RemoteChat {
    model_id: String,
    adapter: basalt_providers::router::Router,
    context_window: u32,
}

impl RemoteChat {
    pub fn new(
        model_id: String,
        adapter: basalt_providers::router::Router,
        context_window: u32,
    ) -> Self {
        Self {
            model_id,
            adapter,
            context_window,
        }
    }

    fn cannot_count(&self) -> CoreError {
        CoreError::Validation(format!(
            "CountTokens is not supported for model {}: its upstream provider counts the tokens it bills",
            self.model_id
        ))
    }
}

#[async_trait]
impl ChatProvider for RemoteChat {
    async fn count_chat_tokens(&self, _request: &ChatRequest) -> Result<u32, CoreError> {
        Err(self.cannot_count())
    }

    async fn count_prompt_tokens(&self, _prompt: &str) -> Result<u32, CoreError> {
        Err(self.cannot_count())
    }

    fn context_window(&self) -> u32 {
        self.context_window
    }

    async fn chat(&self, request: &ChatRequest, max_tokens: u32) -> Result<DeltaStream, CoreError> {
        self.adapter.chat(request, max_tokens).await
    }

    async fn complete(
        &self,
        prompt: &str,
        params: &InferenceParams,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        self.adapter.complete(prompt, params, max_tokens).await
    }
}

/// A sentence-embedding model on the local embedding engine (llama.cpp BERT).
#[derive(Debug, Clone)]
pub struct LocalEmbedding {
    engine: Arc<EmbeddingEngine>,
}

impl LocalEmbedding {
    pub fn new(engine: Arc<EmbeddingEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl EmbeddingProvider for LocalEmbedding {
    fn dimensions(&self) -> usize {
        self.engine.dimensions()
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, CoreError> {
        self.engine.count_tokens(text).map_err(engine_error)
    }

    fn token_spans(&self, text: &str) -> Option<Result<Vec<(usize, usize)>, CoreError>> {
        Some(self.engine.token_spans(text).map_err(engine_error))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<(Vec<Vec<f32>>, Vec<u32>), CoreError> {
        let engine = Arc::clone(&self.engine);
        let out = tokio::task::spawn_blocking(move || engine.embed(&inputs))
            .await
            .map_err(|e| CoreError::Internal(format!("embedding task failed: {e}")))?
            .map_err(engine_error)?;
        Ok(out.into_iter().map(|e| (e.vector, e.tokens)).unzip())
    }
}

/// An embedding model served by a remote provider (OpenAI, Mistral, any
/// OpenAI-compatible server), across its deployments.
#[derive(Debug)]
pub struct RemoteEmbedding {
    model_id: String,
    router: basalt_providers::router::Router<basalt_providers::EmbeddingAdapter>,
    dimensions: usize,
}

impl RemoteEmbedding {
    pub fn new(
        model_id: String,
        router: basalt_providers::router::Router<basalt_providers::EmbeddingAdapter>,
        dimensions: usize,
    ) -> Self {
        Self {
            model_id,
            router,
            dimensions,
        }
    }
}

#[async_trait]
impl EmbeddingProvider for RemoteEmbedding {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn count_tokens(&self, _text: &str) -> Result<u32, CoreError> {
        Err(CoreError::Validation(format!(
            "CountTokens is not supported for model {}: its upstream provider counts the tokens it bills",
            self.model_id
        )))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<(Vec<Vec<f32>>, Vec<u32>), CoreError> {
        let embedded = self.router.embed(&inputs).await?;
        if let Some(v) = embedded.vectors.iter().find(|v| v.len() != self.dimensions) {
            return Err(CoreError::ModelError(format!(
                "the upstream of model {} answered {}-dimensional vectors; the catalog says {}",
                self.model_id,
                v.len(),
                self.dimensions
            )));
        }
        Ok((embedded.vectors, embedded.input_tokens))
    }
}

/// A document's place in a reranking (its index in the request, its relevance).
pub use basalt_providers::rerank::Ranked;

/// A reranking model served by a remote provider (Cohere Rerank and the servers that
/// copy its API, or Bedrock's rerank models), across its deployments.
#[derive(Debug)]
pub struct RemoteRerank {
    router: basalt_providers::router::Router<basalt_providers::RerankAdapter>,
}

impl RemoteRerank {
    pub fn new(router: basalt_providers::router::Router<basalt_providers::RerankAdapter>) -> Self {
        Self { router }
    }

    /// The `top_n` most relevant `documents` to `query`, most relevant first, and the
    /// search units billed.
    pub async fn rerank(
        &self,
        query: &str,
        documents: &[String],
        top_n: usize,
    ) -> Result<(Vec<Ranked>, u32), CoreError> {
        let answer = self.router.rerank(query, documents, top_n).await?;
        Ok((answer.ranking, answer.search_units))
    }
}

/// A provider with no model: it answers with the last user message (or the prompt) at
/// once, cut to `max_tokens` words. It exists to measure the gateway alone.
#[derive(Debug, Clone, Default)]
pub struct Echo;

fn words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

impl Echo {
    fn answer(text: &str, input_tokens: u32, max_tokens: u32) -> DeltaStream {
        let all: Vec<&str> = text.split_whitespace().collect();
        let (kept, stop_reason) = if all.len() > max_tokens as usize {
            (&all[..max_tokens as usize], StopReason::MaxTokens)
        } else {
            (&all[..], StopReason::EndTurn)
        };
        let usage = TokenUsage {
            input_tokens,
            output_tokens: kept.len() as u32,
            cache_read_input_tokens: 0,
        };
        let deltas = vec![
            GenerationDelta::Text(kept.join(" ")),
            GenerationDelta::End {
                stop_reason,
                usage,
                latency_ms: 0,
                first_token_ms: None,
            },
        ];
        Box::pin(futures::stream::iter(deltas))
    }

    fn flatten(request: &ChatRequest) -> String {
        let mut text = request.system.join(" ");
        for m in &request.messages {
            for b in &m.content {
                if let ContentBlock::Text(t) = b {
                    text.push(' ');
                    text.push_str(t);
                }
            }
        }
        text
    }
}

#[async_trait]
impl ChatProvider for Echo {
    async fn count_chat_tokens(&self, request: &ChatRequest) -> Result<u32, CoreError> {
        Ok(words(&Self::flatten(request)))
    }

    async fn count_prompt_tokens(&self, prompt: &str) -> Result<u32, CoreError> {
        Ok(words(prompt))
    }

    fn context_window(&self) -> u32 {
        1 << 20
    }

    async fn chat(&self, request: &ChatRequest, max_tokens: u32) -> Result<DeltaStream, CoreError> {
        let last = request
            .messages
            .last()
            .map(|m| {
                m.content
                    .iter()
                    .filter_map(|b| {
                        if let ContentBlock::Text(t) = b {
                            Some(t.as_str())
                        } else {
                            None
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        Ok(Self::answer(
            &last,
            words(&Self::flatten(request)),
            max_tokens,
        ))
    }

    async fn complete(
        &self,
        prompt: &str,
        _params: &InferenceParams,
        max_tokens: u32,
    ) -> Result<DeltaStream, CoreError> {
        Ok(Self::answer(prompt, words(prompt), max_tokens))
    }
}
