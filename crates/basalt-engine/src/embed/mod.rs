//! Sentence embeddings with a BERT model in the sentence-transformers layout
//! (`config.json`, `tokenizer.json`, `model.safetensors`), on ONNX Runtime.
//!
//! At load the safetensors weights become an ONNX graph in memory ([`graph`]), with
//! int8 linear layers, which ONNX Runtime runs on its int8 CPU kernels (VNNI or AMX
//! where the CPU has them). ONNX Runtime itself is a shared library loaded at run time
//! (`libonnxruntime.so` from the pinned `onnxruntime` wheel, fetched and checked like
//! the model weights), so building Basalt does not download or compile it.
//!
//! One worker thread owns the session and batches across calls: the inputs of every
//! call waiting when it wakes are sorted by length and grouped into padded batches (up
//! to `batch_size` sequences and `batch_tokens` padded tokens each), so many small
//! requests cost about as much as one large one and padding stays small. Padding is
//! masked out of attention and of the pooling, so a sequence's vector does not depend
//! on its neighbours beyond int8 rounding. Pooling is the mean of the sequence's last
//! hidden states, then L2 normalisation, as sentence-transformers' `all-MiniLM-L6-v2`
//! pipeline does. Tokenization is the Hugging Face tokenizer (`tokenizers`), so token
//! counts match the reference exactly.

mod graph;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
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
    /// Most padded tokens (sequences × longest) in one encoder batch (raised to
    /// `max_tokens` if lower).
    pub batch_tokens: usize,
    /// CPU threads for the encoder.
    pub threads: i32,
    /// ONNX Runtime's shared library (`libonnxruntime.so.<version>`). The first engine
    /// loaded in a process loads it; later ones use the same.
    pub runtime_library: PathBuf,
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

/// ONNX Runtime's process-wide environment, created from the first library path given.
fn runtime(library: &Path) -> Result<&'static Environment, EngineError> {
    static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?
                .with_name("basalt")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        })
        .as_ref()
        .map_err(|reason| EngineError::Load {
            path: library.display().to_string(),
            reason: reason.clone(),
        })
}

impl EmbeddingEngine {
    /// Builds the encoder graph, opens an ONNX Runtime session on it and starts the
    /// worker thread.
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

        let bert = graph::read_config(&dir)?;
        if config.max_tokens > bert.max_position_embeddings {
            return Err(load_err(format!(
                "max_tokens {} exceeds the model's {} positions",
                config.max_tokens, bert.max_position_embeddings
            )));
        }
        let config = EmbeddingEngineConfig {
            batch_size: config.batch_size.clamp(1, 256),
            batch_tokens: config.batch_tokens.max(config.max_tokens),
            threads: config.threads.max(1),
            ..config
        };
        let environment = runtime(&config.runtime_library)?;
        let model = graph::build(&dir, &bert)?;
        let open = || -> Result<Session, String> {
            fn text<R>(e: ort::Error<R>) -> String {
                e.to_string()
            }
            let builder = Session::builder(environment)
                .map_err(text)?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(text)?
                .with_intra_threads(config.threads as usize)
                .map_err(text)?
                .with_inter_threads(1)
                .map_err(text)?;
            model.into_session(&builder).map_err(|e| e.to_string())
        };
        let session =
            open().map_err(|e| load_err(format!("ONNX Runtime cannot open the encoder: {e}")))?;
        let (jobs, receiver) = mpsc::channel();
        let worker_config = config.clone();
        std::thread::Builder::new()
            .name("basalt-embedding-engine".into())
            .spawn(move || worker(session, worker_config, receiver))
            .map_err(|e| load_err(format!("cannot start the embedding thread: {e}")))?;
        Ok(Self {
            tokenizer,
            untruncated,
            dimensions: bert.hidden_size,
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

fn worker(mut session: Session, config: EmbeddingEngineConfig, jobs: mpsc::Receiver<Job>) {
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
        embed_round(&mut session, &config, round);
    }
}

/// Embeds the sequences of every job in `round` and answers each job.
fn embed_round(session: &mut Session, config: &EmbeddingEngineConfig, round: Vec<Job>) {
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
        // Group sequences until the batch is full in sequences or padded tokens, or
        // padding would pass a quarter of the batch (lengths only grow along
        // `order`, so the last one added is the longest). Padding costs compute,
        // and int8 activation scales are taken over the whole batch.
        let mut end = start;
        let mut real = 0;
        while end < order.len() && end - start < config.batch_size {
            let (j, i) = order[end];
            let longest = round[j].sequences[i].len();
            let padded = (end - start + 1) * longest;
            if end > start && (padded > config.batch_tokens || padded * 4 > (real + longest) * 5) {
                break;
            }
            real += longest;
            end += 1;
        }
        let group: Vec<&[u32]> = order[start..end]
            .iter()
            .map(|&(j, i)| round[j].sequences[i].as_slice())
            .collect();
        match encode_group(session, &group) {
            Ok(group_vectors) => {
                for (&(j, i), v) in order[start..end].iter().zip(group_vectors) {
                    vectors[j][i] = v;
                }
            }
            Err(e) => {
                for &(j, _) in &order[start..end] {
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

/// Added to the attention score of a padding position: softmax gives it no weight.
const MASKED: f32 = -1e4;

/// The graph's four inputs for a group of sequences, padded to the longest.
struct PaddedBatch {
    shape: [i64; 2],
    input_ids: Vec<i64>,
    position_ids: Vec<i64>,
    attention_bias: Vec<f32>,
    pool_weights: Vec<f32>,
}

fn pad(group: &[&[u32]]) -> PaddedBatch {
    let rows = group.len();
    let cols = group.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    let mut batch = PaddedBatch {
        shape: [rows as i64, cols as i64],
        input_ids: vec![0; rows * cols],
        position_ids: vec![0; rows * cols],
        attention_bias: vec![MASKED; rows * cols],
        pool_weights: vec![0.0; rows * cols],
    };
    for (r, sequence) in group.iter().enumerate() {
        let weight = 1.0 / sequence.len().max(1) as f32;
        for (c, &token) in sequence.iter().enumerate() {
            let at = r * cols + c;
            batch.input_ids[at] = i64::from(token);
            batch.position_ids[at] = c as i64;
            batch.attention_bias[at] = 0.0;
            batch.pool_weights[at] = weight;
        }
    }
    batch
}

fn encode_group(session: &mut Session, group: &[&[u32]]) -> Result<Vec<Vec<f32>>, EngineError> {
    let batch = pad(group);
    let [rows, cols] = batch.shape;
    let inputs = ort::inputs![
        graph::INPUT_IDS => Tensor::from_array((batch.shape, batch.input_ids)).map_err(compute)?,
        graph::POSITION_IDS => Tensor::from_array((batch.shape, batch.position_ids)).map_err(compute)?,
        graph::ATTENTION_BIAS => Tensor::from_array(([rows, 1, 1, cols], batch.attention_bias)).map_err(compute)?,
        graph::POOL_WEIGHTS => Tensor::from_array(([rows, cols, 1], batch.pool_weights)).map_err(compute)?,
    ];
    let outputs = session.run(inputs).map_err(compute)?;
    let (shape, data) = outputs[graph::EMBEDDING]
        .try_extract_tensor::<f32>()
        .map_err(compute)?;
    let dims: &[i64] = shape;
    let width = match dims {
        [r, w] if *r == rows && *w > 0 => *w as usize,
        other => {
            return Err(compute(format!(
                "the encoder returned shape {other:?} for {rows} sequences"
            )))
        }
    };
    Ok(data.chunks_exact(width).map(<[f32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_masked_and_left_out_of_the_mean() {
        let long = [101u32, 7, 8, 102];
        let short = [101u32, 102];
        let batch = pad(&[&long, &short]);
        assert_eq!(batch.shape, [2, 4]);
        assert_eq!(batch.input_ids, vec![101, 7, 8, 102, 101, 102, 0, 0]);
        assert_eq!(batch.position_ids, vec![0, 1, 2, 3, 0, 1, 0, 0]);
        assert_eq!(batch.attention_bias[4..], [0.0, 0.0, MASKED, MASKED]);
        assert_eq!(batch.pool_weights[..4], [0.25; 4]);
        assert_eq!(batch.pool_weights[4..], [0.5, 0.5, 0.0, 0.0]);
    }
}
