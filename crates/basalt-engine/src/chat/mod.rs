//! Chat generation on llama.cpp.
//!
//! A [`ChatEngine`] owns one model. Callers render and tokenize on their own thread
//! ([`ChatEngine::render`], [`ChatEngine::tokenize`]) and [`ChatEngine::submit`] a
//! [`GenerationRequest`]; the model's scheduler thread decodes every active request in
//! one llama.cpp batch per step and streams [`GenerationEvent`]s back. Dropping the
//! receiver cancels the request and frees its slot at the next step.

mod grammar;
mod scheduler;
mod shared;
mod stop;
mod template;
mod threads;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc as tokio_mpsc;

pub use grammar::{check_schema, json_schema_grammar, SchemaLimits, SCHEMA_LIMITS};
pub use stop::{StopMatcher, StopScan};
pub use template::{ChatMessage, ChatTemplate, RenderedPiece};

use crate::EngineError;

/// How a chat engine is sized.
#[derive(Debug, Clone)]
pub struct ChatEngineConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Sequences decoded together (each has its own KV cache region).
    pub slots: u32,
    /// Context window of each slot, in tokens (prompt + output).
    pub context_per_slot: u32,
    /// Most tokens sent to llama.cpp in one decode step (prompt chunks share it).
    pub batch_tokens: u32,
    /// Requests that may wait for a slot before new ones are refused.
    pub queue_capacity: usize,
    /// CPU threads for llama.cpp.
    pub threads: i32,
    /// Most bytes the KV cache may take; `slots` is lowered to fit (each slot holds
    /// `context_per_slot` tokens of f16 keys and values). `None`: no limit.
    pub kv_cache_budget_bytes: Option<u64>,
    /// While a `Reserved` request runs, the other requests join one decode step in
    /// this many (1: every step, i.e. no compute kept for reserved requests).
    pub shared_step_interval: u32,
    /// Greedy answers that do not depend on what else the engine is doing: every
    /// token's logits come out bit for bit the same whatever shares its decode step,
    /// however its prompt was chunked and on any thread count. It turns llama.cpp's
    /// flash attention off (its CPU kernel splits a sum by thread count once the
    /// KV cache holds 512 cells, and tiles it by the step's rows); the build also
    /// leaves out llamafile's tinyBLAS (`.cargo/config.toml`), whose multi-row
    /// kernels sum in another order than the one-row ones. Cost: `benches/README.md`.
    pub batch_invariant: bool,
    /// Prompt-lookup speculation: at most this many tokens drafted per step from the
    /// prompt and the answer so far (what followed an earlier occurrence of the last
    /// three tokens) and verified in the same step; 0 turns it off. Every draft is
    /// checked against what the model samples, so the output is the one plain
    /// decoding gives (with `batch_invariant`, bit for bit).
    pub lookup_drafts: u32,
    /// A GGUF LoRA adapter applied to every request of this engine (a custom model:
    /// the base file plus the adapter). The engine has its own context, so no KV
    /// prefix computed under another adapter is ever reused.
    pub lora_adapter: Option<PathBuf>,
}

/// Bytes of f16 keys and values one token takes in the KV cache of `model`.
fn kv_bytes_per_token(model: &LlamaModel) -> u64 {
    let n_head = u64::from(model.n_head().max(1));
    let head_dim = model.n_embd().max(1) as u64 / n_head;
    u64::from(model.n_layer()) * 2 * u64::from(model.n_head_kv()) * head_dim * 2
}

/// Sampling settings of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy decoding.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 means no top-k cut.
    pub top_k: i32,
    pub seed: u32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
        }
    }
}

/// A grammar the output must follow (llama.cpp GBNF, compiled from a JSON schema with
/// [`json_schema_grammar`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputConstraint {
    /// The whole output follows the grammar.
    Grammar(String),
    /// The output is free until it matches one of the regex patterns (from the start of
    /// the output); from the pattern's first group on it follows the grammar.
    LazyGrammar {
        grammar: String,
        trigger_patterns: Vec<String>,
    },
}

/// One generation: a tokenized prompt and how to continue it.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt: Vec<i32>,
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop_sequences: Vec<String>,
    pub constraint: Option<OutputConstraint>,
    pub priority: Priority,
}

/// Scheduling class of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Admitted to a free slot only when no other request is waiting (batch work
    /// on left-over capacity).
    Background,
    #[default]
    Standard,
    /// Admitted first; while one decodes, other requests join only one decode step
    /// in `ChatEngineConfig::shared_step_interval` (compute kept for it).
    Reserved,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced its end-of-turn token.
    EndOfTurn,
    /// `max_tokens` were produced.
    MaxTokens,
    /// A stop sequence matched (it is not part of the output).
    StopSequence,
    /// The slot's context window is full.
    ContextWindow,
}

/// Counters of one finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSummary {
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV entries were reused from an earlier request.
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// What the scheduler sends back for a request.
#[derive(Debug)]
pub enum GenerationEvent {
    /// Output text, in order.
    Text(String),
    /// The generation ended; no more events follow.
    Finished(GenerationSummary),
    /// The generation failed; no more events follow.
    Failed(EngineError),
}

/// Counters over the engine's life, for metrics and tests.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Requests accepted but not yet in a slot (a gauge; bounded by `queue_capacity`).
    pub waiting: std::sync::atomic::AtomicU64,
    pub prompt_tokens_processed: std::sync::atomic::AtomicU64,
    pub prompt_tokens_reused: std::sync::atomic::AtomicU64,
    pub tokens_generated: std::sync::atomic::AtomicU64,
    pub requests_finished: std::sync::atomic::AtomicU64,
    pub decode_steps: std::sync::atomic::AtomicU64,
    /// Tokens drafted by prompt lookup, and those of them the model confirmed.
    pub lookup_drafted: std::sync::atomic::AtomicU64,
    pub lookup_accepted: std::sync::atomic::AtomicU64,
    /// llama.cpp threads of the last decode step (a gauge; see [`crate::cpu`]).
    pub threads: std::sync::atomic::AtomicU64,
}

/// A loaded chat model and its scheduler thread.
pub struct ChatEngine {
    model: Arc<shared::SharedModel>,
    template: ChatTemplate,
    jobs: mpsc::SyncSender<scheduler::Job>,
    config: ChatEngineConfig,
    counters: Arc<EngineCounters>,
    context_train: u32,
}

impl std::fmt::Debug for ChatEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ChatEngine {
    /// Loads the model, compiles its chat template and starts the scheduler thread.
    pub fn load(config: ChatEngineConfig) -> Result<Self, EngineError> {
        let backend = crate::backend()?;
        let load_err = |reason: String| EngineError::Load {
            path: config.model_path.display().to_string(),
            reason,
        };
        let gpu_layers = if cfg!(feature = "cuda") { 999 } else { 0 };
        let mut model = shared::load(backend, &config.model_path, gpu_layers).map_err(&load_err)?;
        let adapter = match &config.lora_adapter {
            Some(path) => {
                let adapter_err = |reason: String| EngineError::Load {
                    path: path.display().to_string(),
                    reason: format!("not a LoRA adapter for this model: {reason}"),
                };
                match shared::Adapter::init(&model, path).map_err(adapter_err)? {
                    Some(adapter) => Some(adapter),
                    None => {
                        // The shared model's pointer is not confirmed: a copy of our own.
                        let mut private =
                            shared::load_private(backend, &config.model_path, gpu_layers)
                                .map_err(&load_err)?;
                        let own = Arc::get_mut(&mut private)
                            .ok_or_else(|| load_err("a private model is shared".into()))?;
                        let adapter = own
                            .model_mut()
                            .lora_adapter_init(path)
                            .map_err(|e| adapter_err(e.to_string()))?;
                        model = private;
                        Some(shared::Adapter::Private(adapter))
                    }
                }
            }
            None => None,
        };
        let template_source = model
            .chat_template(None)
            .map_err(|e| load_err(format!("no chat template in the GGUF: {e}")))?
            .to_string()
            .map_err(|e| load_err(e.to_string()))?;
        let vocab = model.vocab();
        let piece = |t: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        let bos = piece(vocab.bos());
        let eos = piece(vocab.eos());
        let template = ChatTemplate::new(&template_source, &bos, &eos)?;
        let context_train = model.n_ctx_train();
        let context_per_slot = config.context_per_slot.min(context_train).max(64);
        let mut slots = config.slots.max(1);
        if let Some(budget) = config.kv_cache_budget_bytes {
            let per_slot = kv_bytes_per_token(&model) * u64::from(context_per_slot);
            let fit = budget / per_slot.max(1);
            if fit == 0 {
                return Err(load_err(format!(
                    "the KV-cache budget of {budget} bytes does not hold one {context_per_slot}-token slot ({per_slot} bytes); raise it or lower context_per_slot"
                )));
            }
            slots = slots.min(fit as u32);
        }
        tracing::info!(
            slots,
            context_per_slot,
            kv_bytes = kv_bytes_per_token(&model) * u64::from(context_per_slot) * u64::from(slots),
            "chat engine sized"
        );
        let config = ChatEngineConfig {
            context_per_slot,
            slots,
            ..config
        };
        let counters = Arc::new(EngineCounters::default());
        let (jobs, receiver) =
            mpsc::sync_channel(config.queue_capacity.max(1) + config.slots as usize);
        let ready = scheduler::spawn(
            backend,
            Arc::clone(&model),
            adapter,
            config.clone(),
            receiver,
            Arc::clone(&counters),
        )?;
        ready
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| EngineError::Stopped)??;
        Ok(Self {
            model,
            template,
            jobs,
            config,
            counters,
            context_train,
        })
    }

    /// Whether this engine and `other` serve from one copy of the weights (a base
    /// model and its custom models do).
    pub fn shares_weights_with(&self, other: &ChatEngine) -> bool {
        Arc::ptr_eq(&self.model, &other.model)
    }

    /// Renders messages with the model's chat template.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        self.template.render(messages, add_generation_prompt)
    }

    /// Renders and tokenizes a conversation for generation. Only the chat template's
    /// own text is parsed for control tokens: message content (user text, tool
    /// results, retrieved documents) is tokenized as plain text, so `<|im_end|>` in it
    /// is the characters, not the marker, and cannot close a turn or open a fake one.
    /// Linear in the conversation's length.
    pub fn tokenize_chat(&self, messages: &[ChatMessage]) -> Result<Vec<i32>, EngineError> {
        let pieces = self.template.render_pieces(messages, true)?;
        let vocab = self.model.vocab();
        let mut add_bos = vocab.should_add_bos();
        let mut tokens = Vec::new();
        for piece in &pieces {
            let (text, parse_special) = match piece {
                RenderedPiece::Template(t) => (t.as_str(), true),
                RenderedPiece::Content(c) => (*c, false),
            };
            tokens.extend(
                vocab
                    .tokenize(text.as_bytes(), add_bos, parse_special)
                    .into_iter()
                    .map(|t| t.0),
            );
            add_bos = false;
        }
        Ok(tokens)
    }

    /// Tokenizes text as a raw prompt: special tokens in it are parsed as such (the
    /// caller writes the model's own prompt format, as InvokeModel's native bodies do).
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), self.model.vocab().should_add_bos(), true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Tokenizes text as message content: no BOS, and control-token text is the
    /// characters, not the token (as [`Self::tokenize_chat`] treats content).
    pub fn tokenize_text(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// The text of one token (control tokens as their text).
    pub fn token_text(&self, token: i32) -> String {
        String::from_utf8_lossy(
            &self
                .model
                .vocab()
                .token_to_piece(LlamaToken(token), true, None),
        )
        .into_owned()
    }

    /// The end-of-generation token (for ChatML models, the end of a turn).
    pub fn eos_token(&self) -> i32 {
        self.model.vocab().eos().0
    }

    /// The beginning-of-sequence token, when the model's tokenizer adds one.
    pub fn bos_token(&self) -> Option<i32> {
        let vocab = self.model.vocab();
        vocab.should_add_bos().then(|| vocab.bos().0)
    }

    /// The context window of one request (prompt + output), in tokens.
    pub fn context_window(&self) -> u32 {
        self.config.context_per_slot
    }

    /// The context length the model was trained with.
    pub fn trained_context(&self) -> u32 {
        self.context_train
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    pub fn config(&self) -> &ChatEngineConfig {
        &self.config
    }

    /// Queues a generation. Fails at once when the request cannot fit the context
    /// window or the queue is full.
    pub fn submit(
        &self,
        request: GenerationRequest,
    ) -> Result<tokio_mpsc::UnboundedReceiver<GenerationEvent>, EngineError> {
        self.submit_job(request, None)
    }

    /// The logits this engine computes for the token after `prompt` (on its own
    /// context, with its adapter): the numbers greedy decoding takes the argmax of.
    /// Blocks until the scheduler has decoded the prompt. For comparing the served
    /// model with another implementation of it (the trainer's parity test).
    pub fn next_token_logits(&self, prompt: Vec<i32>) -> Result<Vec<f32>, EngineError> {
        let (logits, received) = mpsc::channel();
        let request = GenerationRequest {
            prompt,
            max_tokens: 1,
            sampling: SamplingParams::default(),
            stop_sequences: Vec::new(),
            constraint: None,
            priority: Priority::Standard,
        };
        // The events are kept until the logits arrive: dropping them cancels the job.
        let _events = self.submit_job(request, Some(logits))?;
        received
            .recv_timeout(Duration::from_secs(600))
            .map_err(|_| EngineError::Stopped)
    }

    fn submit_job(
        &self,
        request: GenerationRequest,
        logits: Option<mpsc::Sender<Vec<f32>>>,
    ) -> Result<tokio_mpsc::UnboundedReceiver<GenerationEvent>, EngineError> {
        if request.prompt.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        let window = self.config.context_per_slot as usize;
        if request.prompt.len() >= window {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt is {} tokens; this model's context window is {window} tokens",
                request.prompt.len()
            )));
        }
        use std::sync::atomic::Ordering;
        // Waiting requests are bounded here: the scheduler drains the channel at once.
        if self.counters.waiting.load(Ordering::Relaxed) >= self.config.queue_capacity as u64 {
            return Err(EngineError::Overloaded {
                capacity: self.config.queue_capacity,
            });
        }
        // llama.cpp parses the grammar recursively: on a thread with a known stack.
        let sampler = grammar::on_native_stack(|| {
            scheduler::make_sampler(&self.model, &request.sampling, request.constraint.as_ref())
        })??;
        let (events, receiver) = tokio_mpsc::unbounded_channel();
        let job = scheduler::Job {
            request,
            events,
            sampler,
            logits,
        };
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(mpsc::TrySendError::Full(_)) => {
                self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(EngineError::Overloaded {
                    capacity: self.config.queue_capacity,
                })
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }
}

/// Whether `path` looks like a GGUF file (checks the magic bytes).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}
