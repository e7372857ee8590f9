//! Sentence embeddings with a BERT model in the sentence-transformers layout
//! (`config.json`, `tokenizer.json`, `model.safetensors`), on llama.cpp.
//!
//! At load the safetensors weights are converted to a GGUF with Q8_0 layer matrices
//! ([`gguf`]), which llama.cpp runs on its fastest CPU kernels (AMX or VNNI int8). One
//! worker thread owns the llama.cpp context and batches across calls: inputs of every
//! call waiting when it wakes are sorted by length and packed into encoder batches
//! (up to `batch_size` sequences and `batch_tokens` tokens each), so many small
//! requests cost about as much as one large one, and nothing is padded: each sequence
//! attends only to itself. Pooling is the mean of the sequence's last hidden states,
//! then L2 normalisation, as sentence-transformers' `all-MiniLM-L6-v2` pipeline does.
//! Tokenization is the Hugging Face tokenizer (`tokenizers`), so token counts match
//! the reference exactly.

mod gguf;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokenizers::{Tokenizer, TruncationParams};

use crate::EngineError;

/// Where the embedding model's files are and how to batch.
#[derive(Debug, Clone)]
pub struct EmbeddingEngineConfig {
    /// Folder with `config.json`, `tokenizer.json` and `model.safetensors`.
    pub model_dir: PathBuf,
    /// Longest input in tokens; longer inputs are truncated (sentence-transformers'
    /// `max_seq_length`).
    pub max_tokens: usize,
    /// Most sequences in one encoder batch.
    pub batch_size: usize,
    /// Most tokens in one encoder batch (raised to `max_tokens` if lower).
    pub batch_tokens: usize,
    /// CPU threads for the encoder.
    pub threads: i32,
}

/// One embedded input.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Tokens of the input that were embedded (after truncation, with special tokens).
    pub tokens: u32,
}

/// A call's token sequences and where its vectors go.
struct Job {
    sequences: Vec<Vec<u32>>,
    reply: mpsc::Sender<Result<Vec<Vec<f32>>, EngineError>>,
}

/// A loaded sentence-embedding model and its worker thread.
pub struct EmbeddingEngine {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation (token spans of whole documents).
    untruncated: Tokenizer,
    dimensions: usize,
    jobs: mpsc::Sender<Job>,
    config: EmbeddingEngineConfig,
}

impl std::fmt::Debug for EmbeddingEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn compute(e: impl std::fmt::Display) -> EngineError {
    EngineError::Compute(e.to_string())
}

/// A unique path for a converted model in the temporary directory.
fn temporary_gguf_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "basalt-embedding-{}-{}.gguf",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

impl EmbeddingEngine {
    /// Converts the model for llama.cpp, loads it and starts the worker thread.
    pub fn load(config: EmbeddingEngineConfig) -> Result<Self, EngineError> {
        let dir = config.model_dir.clone();
        let tokenizer_path = dir.join("tokenizer.json");
        let load_err = |reason: String| EngineError::Load {
            path: dir.display().to_string(),
            reason,
        };
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| load_err(e.to_string()))?;
        tokenizer.with_padding(None);
        let mut untruncated = tokenizer.clone();
        untruncated
            .with_truncation(None)
            .map_err(|e| load_err(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| load_err(e.to_string()))?;

        let bert = gguf::read_config(&dir)?;
        if config.max_tokens > bert.max_position_embeddings {
            return Err(load_err(format!(
                "max_tokens {} exceeds the model's {} positions",
                config.max_tokens, bert.max_position_embeddings
            )));
        }
        let gguf_path = temporary_gguf_path();
        if let Err(e) = gguf::convert(&dir, &bert, &gguf_path) {
            let _ = std::fs::remove_file(&gguf_path);
            return Err(e);
        }
        let config = EmbeddingEngineConfig {
            batch_size: config.batch_size.clamp(1, 256),
            batch_tokens: config.batch_tokens.max(config.max_tokens),
            threads: config.threads.max(1),
            ..config
        };
        let (jobs, receiver) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker_config = config.clone();
        std::thread::Builder::new()
            .name("basalt-embedding-engine".into())
            .spawn(move || worker(gguf_path, worker_config, receiver, ready_tx))
            .map_err(|e| load_err(format!("cannot start the embedding thread: {e}")))?;
        let dimensions = ready_rx
            .recv()
            .map_err(|_| load_err("the embedding thread stopped while loading".into()))??;
        if dimensions != bert.hidden_size {
            return Err(load_err(format!(
                "llama.cpp reports {dimensions} dimensions, config.json {}",
                bert.hidden_size
            )));
        }
        Ok(Self {
            tokenizer,
            untruncated,
            dimensions,
            jobs,
            config,
        })
    }

    /// The length of every vector.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens the model would see for `text` (special tokens included, after truncation).
    pub fn count_tokens(&self, text: &str) -> Result<u32, EngineError> {
        let encoding = self.tokenizer.encode(text, true).map_err(compute)?;
        Ok(encoding.get_ids().len() as u32)
    }

    /// Byte spans of each token of `text`, special tokens left out and nothing
    /// truncated (for cutting a document into chunks of so many tokens).
    pub fn token_spans(&self, text: &str) -> Result<Vec<(usize, usize)>, EngineError> {
        let encoding = self.untruncated.encode(text, false).map_err(compute)?;
        Ok(encoding.get_offsets().to_vec())
    }

    /// Embeds every input, in order. Blocks until the worker has embedded them
    /// (together with whatever other calls were waiting).
    pub fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EngineError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let encodings = self.tokenizer.encode_batch(texts, true).map_err(compute)?;
        let sequences: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let tokens: Vec<u32> = sequences.iter().map(|s| s.len() as u32).collect();
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send(Job { sequences, reply })
            .map_err(|_| EngineError::Stopped)?;
        let vectors = answer.recv().map_err(|_| EngineError::Stopped)??;
        Ok(vectors
            .into_iter()
            .zip(tokens)
            .map(|(vector, tokens)| Embedding { vector, tokens })
            .collect())
    }
}

/// Inputs of all waiting calls that one wake-up takes at most; the rest wait for the
/// next round, so a huge call cannot hold small ones back for long.
const MAX_SEQUENCES_PER_ROUND: usize = 4096;

fn worker(
    gguf_path: PathBuf,
    config: EmbeddingEngineConfig,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<usize, EngineError>>,
) {
    let load_err = |reason: String| EngineError::Load {
        path: config.model_dir.display().to_string(),
        reason,
    };
    let loaded = crate::backend().and_then(|backend| {
        LlamaModel::load_from_file(backend, &gguf_path, &LlamaModelParams::default())
            .map(|model| (backend, model))
            .map_err(|e| load_err(format!("llama.cpp cannot load the converted model: {e}")))
    });
    // Loaded (mapped or read) or not, the file is not needed on disk any more.
    let _ = std::fs::remove_file(&gguf_path);
    let (backend, model) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let batch_tokens = config.batch_tokens as u32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(batch_tokens))
        .with_n_batch(batch_tokens)
        .with_n_ubatch(batch_tokens)
        .with_n_seq_max(config.batch_size as u32)
        .with_n_threads(config.threads)
        .with_n_threads_batch(config.threads)
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        // Flash attention skips the masked pairs of a packed batch, so sequences
        // cost about what they would alone (without it: 16 instead of 277
        // sentences/s on benches/embeddings.py).
        .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED);
    let mut ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(load_err(format!("cannot create the context: {e}"))));
            return;
        }
    };
    let dimensions = usize::try_from(model.n_embd()).unwrap_or(0);
    let _ = ready.send(Ok(dimensions));
    let mut batch = LlamaBatch::new(config.batch_tokens, config.batch_size as i32);
    while let Ok(first) = jobs.recv() {
        let mut round = vec![first];
        let mut sequences = round[0].sequences.len();
        while sequences < MAX_SEQUENCES_PER_ROUND {
            match jobs.try_recv() {
                Ok(job) => {
                    sequences += job.sequences.len();
                    round.push(job);
                }
                Err(_) => break,
            }
        }
        embed_round(&mut ctx, &mut batch, &config, dimensions, round);
    }
}

/// Embeds the sequences of every job in `round` and answers each job.
fn embed_round(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    config: &EmbeddingEngineConfig,
    dimensions: usize,
    round: Vec<Job>,
) {
    // (job, index in job) of every sequence, shortest first so that similar lengths
    // share a batch.
    let mut order: Vec<(usize, usize)> = round
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.sequences.len()).map(move |i| (j, i)))
        .collect();
    order.sort_by_key(|&(j, i)| round[j].sequences[i].len());
    let mut vectors: Vec<Vec<Vec<f32>>> = round
        .iter()
        .map(|job| vec![Vec::new(); job.sequences.len()])
        .collect();
    let mut failed: Vec<Option<EngineError>> = round.iter().map(|_| None).collect();

    let mut start = 0;
    while start < order.len() {
        // Pack sequences until the batch is full in sequences or tokens.
        let mut end = start;
        let mut tokens = 0;
        while end < order.len() && end - start < config.batch_size {
            let (j, i) = order[end];
            let len = round[j].sequences[i].len();
            if end > start && tokens + len > config.batch_tokens {
                break;
            }
            tokens += len;
            end += 1;
        }
        let group = &order[start..end];
        match encode_group(ctx, batch, &round, group, dimensions) {
            Ok(group_vectors) => {
                for (&(j, i), v) in group.iter().zip(group_vectors) {
                    vectors[j][i] = v;
                }
            }
            Err(e) => {
                for &(j, _) in group {
                    failed[j] = Some(EngineError::Compute(e.to_string()));
                }
            }
        }
        start = end;
    }
    for ((job, vectors), failure) in round.into_iter().zip(vectors).zip(failed) {
        let _ = job.reply.send(match failure {
            Some(e) => Err(e),
            None => Ok(vectors),
        });
    }
}

fn encode_group(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    round: &[Job],
    group: &[(usize, usize)],
    dimensions: usize,
) -> Result<Vec<Vec<f32>>, EngineError> {
    batch.clear();
    for (seq, &(j, i)) in group.iter().enumerate() {
        for (pos, &token) in round[j].sequences[i].iter().enumerate() {
            batch
                .add(LlamaToken(token as i32), pos as i32, &[seq as i32], true)
                .map_err(compute)?;
        }
    }
    ctx.encode(batch).map_err(compute)?;
    let mut out = Vec::with_capacity(group.len());
    for seq in 0..group.len() {
        let pooled = ctx.embeddings_seq_ith(seq as i32).map_err(|_| {
            compute(format!(
                "llama.cpp returned no pooled embedding for sequence {seq}"
            ))
        })?;
        let mut vector: Vec<f32> = pooled.iter().take(dimensions).copied().collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        for x in &mut vector {
            *x /= norm;
        }
        out.push(vector);
    }
    Ok(out)
}
