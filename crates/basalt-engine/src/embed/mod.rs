//! Sentence embeddings with a BERT model in the sentence-transformers layout
//! (`config.json`, `tokenizer.json`, `model.safetensors`), on ONNX Runtime.
//!
//! At load the safetensors weights become an ONNX graph in memory ([`graph`]), with
//! int8 linear layers, which ONNX Runtime runs on its int8 CPU kernels (VNNI or AMX
//! where the CPU has them). ONNX Runtime itself is a shared library loaded at run time
//! (`libonnxruntime.so` from the pinned `onnxruntime` wheel, fetched and checked like
//! the model weights), so building Basalt does not download or compile it.
//!
//! Each of `threads` worker threads owns a session (one ONNX Runtime thread each) and
//! takes inputs off one queue shared by all calls, `batch_size` at a time. With the
//! default of 1 every input runs alone: its vector depends on its own text only,
//! which int8 needs (activation scales are taken over a whole pass), and two cores
//! encoding two inputs side by side beat two threads splitting one small matrix
//! product. A larger `batch_size` pads several queued inputs into one pass (up to
//! `batch_tokens` padded tokens); padding is masked out of attention and pooling, but
//! the shared int8 scales then move a vector slightly with its neighbours. Pooling
//! is the mean of the sequence's last hidden states, then L2 normalisation, as
//! sentence-transformers' `all-MiniLM-L6-v2` pipeline does. Tokenization is the
//! Hugging Face tokenizer (`tokenizers`), so token counts match the reference exactly.

mod graph;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};

use ort::editor::Model;
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
    /// Most inputs in one encoder pass (1: every input alone, see the module docs).
    pub batch_size: usize,
    /// Most padded tokens (inputs × longest) in one encoder pass (raised to
    /// `max_tokens` if lower).
    pub batch_tokens: usize,
    /// Encoder worker threads, one session and one CPU core each.
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

/// One call in progress: its inputs, the vectors so far and where they go.
struct Call {
    sequences: Vec<Vec<u32>>,
    outcome: Mutex<CallOutcome>,
    reply: mpsc::Sender<Result<Vec<Vec<f32>>, EngineError>>,
}

struct CallOutcome {
    vectors: Vec<Vec<f32>>,
    failure: Option<EngineError>,
    remaining: usize,
}

impl Call {
    /// Records the vectors (or the failure) of some of the call's inputs; the last
    /// one answers the caller.
    fn finish(&self, indices: &[usize], result: Result<Vec<Vec<f32>>, EngineError>) {
        let Ok(mut outcome) = self.outcome.lock() else {
            return;
        };
        match result {
            Ok(vectors) => {
                for (&i, v) in indices.iter().zip(vectors) {
                    if let Some(slot) = outcome.vectors.get_mut(i) {
                        *slot = v;
                    }
                }
            }
            Err(e) => outcome.failure = Some(e),
        }
        outcome.remaining = outcome.remaining.saturating_sub(indices.len());
        if outcome.remaining == 0 {
            let answer = match outcome.failure.take() {
                Some(e) => Err(e),
                None => Ok(std::mem::take(&mut outcome.vectors)),
            };
            let _ = self.reply.send(answer);
        }
    }
}

/// Inputs waiting for a worker: (call, index of the input in the call).
#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    wakeup: Condvar,
}

#[derive(Default)]
struct Waiting {
    inputs: VecDeque<(Arc<Call>, usize)>,
    stopped: bool,
}

/// A loaded sentence-embedding model and its worker threads.
pub struct EmbeddingEngine {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation (token spans of whole documents).
    untruncated: Tokenizer,
    dimensions: usize,
    queue: Arc<Queue>,
    config: EmbeddingEngineConfig,
}

impl Drop for EmbeddingEngine {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.queue.waiting.lock() {
            waiting.stopped = true;
        }
        self.queue.wakeup.notify_all();
    }
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

/// One single-threaded ONNX Runtime session on `model`.
fn open_session(environment: &Environment, model: Model) -> Result<Session, EngineError> {
    fn text<R>(e: ort::Error<R>) -> String {
        e.to_string()
    }
    let open = || -> Result<Session, String> {
        let builder = Session::builder(environment)
            .map_err(text)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(text)?
            .with_intra_threads(1)
            .map_err(text)?
            .with_inter_threads(1)
            .map_err(text)?
            // The fused residual + layer norm (SkipLayerNormalization) of ONNX Runtime
            // 1.31's CPU kernel keeps a running mean one element at a time: 10 % of an
            // embedding's time on an AVX2 machine (perf), where the plain Add and
            // LayerNormalization it replaces took a fifth of that.
            .with_disabled_optimizers("SkipLayerNormFusion")
            .map_err(text)?;
        model.into_session(&builder).map_err(|e| e.to_string())
    };
    open().map_err(|e| EngineError::Load {
        path: "ONNX Runtime session".into(),
        reason: format!("ONNX Runtime cannot open the encoder: {e}"),
    })
}

/// Texts whose feed-forward activations pick the float channels of the int8 graph: varied
/// prose, questions, numbers, code and other languages, so that the channels that carry
/// outliers on any kind of input show them here.
const CALIBRATION_TEXTS: &[&str] = &[
    "The committee approved the budget after a long debate about road repairs.",
    "What time does the last train leave for the airport on Sundays?",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Invoice 4471-B: 12 units at $19.99 each, due on 2024-03-31.",
    "fn main() { let total: u32 = values.iter().sum(); println!(\"{total}\"); }",
    "Der Zug nach Berlin hat heute zwanzig Minuten Verspätung.",
    "¿Dónde está la biblioteca más cercana?",
    "ok",
    "I loved the film, but the ending felt rushed and the sound was far too loud.",
    "ERROR 503: upstream timed out after 30000 ms (retry 3 of 5)",
    "Mix two cups of flour with a pinch of salt, then add the eggs one at a time.",
    "Quarterly revenue rose 8% year over year, driven by subscriptions in Asia.",
];

/// Runs the float graph over [`CALIBRATION_TEXTS`], one text per pass, and returns the
/// largest |GELU output| per channel of each layer's feed-forward block.
fn calibrate(
    environment: &Environment,
    weights: &graph::WeightsFile,
    bert: &graph::BertConfig,
    tokenizer: &Tokenizer,
) -> Result<Vec<Vec<f32>>, EngineError> {
    let model = graph::build(weights, bert, &graph::Purpose::Calibration)?;
    let mut session = open_session(environment, model)?;
    let mut absmax = vec![vec![0f32; bert.intermediate_size]; bert.num_hidden_layers];
    for text in CALIBRATION_TEXTS {
        let encoding = tokenizer.encode(*text, true).map_err(compute)?;
        let batch = pad(&[encoding.get_ids()]);
        let outputs = session.run(batch.inputs()?).map_err(compute)?;
        for (layer, seen) in absmax.iter_mut().enumerate() {
            let (_, data) = outputs[graph::ffn_absmax_output(layer).as_str()]
                .try_extract_tensor::<f32>()
                .map_err(compute)?;
            if data.len() != seen.len() {
                return Err(compute(format!(
                    "calibration returned {} channels for layer {layer}, expected {}",
                    data.len(),
                    seen.len()
                )));
            }
            for (m, &x) in seen.iter_mut().zip(data) {
                *m = m.max(x);
            }
        }
    }
    Ok(absmax)
}

impl EmbeddingEngine {
    /// Builds the encoder graph, opens one ONNX Runtime session on it per worker and
    /// starts the worker threads.
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
        // Every session first, so a failure leaves no thread behind.
        let weights = graph::WeightsFile::read(&dir)?;
        let absmax = calibrate(environment, &weights, &bert, &tokenizer)?;
        let ffn_float_channels = graph::float_channels(&absmax);
        let purpose = graph::Purpose::Serving {
            ffn_float_channels: &ffn_float_channels,
        };
        let mut sessions = Vec::new();
        for _ in 0..config.threads {
            let model = graph::build(&weights, &bert, &purpose)?;
            sessions.push(open_session(environment, model)?);
        }
        let queue = Arc::new(Queue::default());
        for (worker_index, session) in sessions.into_iter().enumerate() {
            let worker_queue = Arc::clone(&queue);
            let worker_config = config.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("basalt-embedding-{worker_index}"))
                .spawn(move || worker(session, &worker_config, &worker_queue));
            if let Err(e) = spawned {
                // Stop the workers already started.
                if let Ok(mut waiting) = queue.waiting.lock() {
                    waiting.stopped = true;
                }
                queue.wakeup.notify_all();
                return Err(load_err(format!("cannot start an embedding thread: {e}")));
            }
        }
        Ok(Self {
            tokenizer,
            untruncated,
            dimensions: bert.hidden_size,
            queue,
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
        let count = sequences.len();
        let call = Arc::new(Call {
            sequences,
            outcome: Mutex::new(CallOutcome {
                vectors: vec![Vec::new(); count],
                failure: None,
                remaining: count,
            }),
            reply,
        });
        {
            let mut waiting = self
                .queue
                .waiting
                .lock()
                .map_err(|_| EngineError::Stopped)?;
            waiting
                .inputs
                .extend((0..count).map(|i| (Arc::clone(&call), i)));
        }
        self.queue.wakeup.notify_all();
        drop(call);
        let vectors = answer.recv().map_err(|_| EngineError::Stopped)??;
        Ok(vectors
            .into_iter()
            .zip(tokens)
            .map(|(vector, tokens)| Embedding { vector, tokens })
            .collect())
    }
}

fn worker(mut session: Session, config: &EmbeddingEngineConfig, queue: &Queue) {
    loop {
        let taken = {
            let Ok(mut waiting) = queue.waiting.lock() else {
                return;
            };
            while waiting.inputs.is_empty() && !waiting.stopped {
                waiting = match queue.wakeup.wait(waiting) {
                    Ok(w) => w,
                    Err(_) => return,
                };
            }
            if waiting.inputs.is_empty() {
                return; // stopped, and nothing left to answer
            }
            take_pass(&mut waiting.inputs, config)
        };
        let group: Vec<&[u32]> = taken
            .iter()
            .map(|(call, i)| call.sequences[*i].as_slice())
            .collect();
        // One core per pass, within what the process's CPU budget gives embeddings
        // (chat decoding beside it keeps its part).
        let permit = crate::cpu::budget().embedding_pass();
        let (mut vectors, failure) = match encode_group(&mut session, &group) {
            Ok(vectors) => (vectors.into_iter(), None),
            Err(e) => (Vec::new().into_iter(), Some(e.to_string())),
        };
        drop(permit);
        // Answer per call, in the order the inputs were taken.
        let mut start = 0;
        while start < taken.len() {
            let call = &taken[start].0;
            let mut end = start;
            while end < taken.len() && Arc::ptr_eq(&taken[end].0, call) {
                end += 1;
            }
            let indices: Vec<usize> = taken[start..end].iter().map(|(_, i)| *i).collect();
            let part = match &failure {
                None => Ok(vectors.by_ref().take(end - start).collect()),
                Some(reason) => Err(EngineError::Compute(reason.clone())),
            };
            call.finish(&indices, part);
            start = end;
        }
    }
}

/// The next inputs for one pass: the first waiting one, then as many following as
/// fit in `batch_size` inputs and `batch_tokens` padded tokens.
fn take_pass(
    inputs: &mut VecDeque<(Arc<Call>, usize)>,
    config: &EmbeddingEngineConfig,
) -> Vec<(Arc<Call>, usize)> {
    let mut taken: Vec<(Arc<Call>, usize)> = Vec::new();
    let mut longest = 0;
    while taken.len() < config.batch_size {
        let Some((call, i)) = inputs.front() else {
            break;
        };
        let len = call.sequences[*i].len();
        let padded = (taken.len() + 1) * longest.max(len);
        if !taken.is_empty() && padded > config.batch_tokens {
            break;
        }
        longest = longest.max(len);
        if let Some(next) = inputs.pop_front() {
            taken.push(next);
        }
    }
    taken
}

/// The graph's four inputs for a group of sequences, padded to the longest.
struct PaddedBatch {
    shape: [i64; 2],
    input_ids: Vec<i64>,
    position_ids: Vec<i64>,
    key_mask: Vec<i32>,
    pool_weights: Vec<f32>,
}

impl PaddedBatch {
    /// The graph's inputs, by name.
    fn inputs(self) -> Result<Vec<(&'static str, ort::value::DynValue)>, EngineError> {
        let [rows, cols] = self.shape;
        Ok(vec![
            (
                graph::INPUT_IDS,
                Tensor::from_array((self.shape, self.input_ids))
                    .map_err(compute)?
                    .into_dyn(),
            ),
            (
                graph::POSITION_IDS,
                Tensor::from_array((self.shape, self.position_ids))
                    .map_err(compute)?
                    .into_dyn(),
            ),
            (
                graph::KEY_MASK,
                Tensor::from_array((self.shape, self.key_mask))
                    .map_err(compute)?
                    .into_dyn(),
            ),
            (
                graph::POOL_WEIGHTS,
                Tensor::from_array(([rows, cols, 1], self.pool_weights))
                    .map_err(compute)?
                    .into_dyn(),
            ),
        ])
    }
}

fn pad(group: &[&[u32]]) -> PaddedBatch {
    let rows = group.len();
    let cols = group.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    let mut batch = PaddedBatch {
        shape: [rows as i64, cols as i64],
        input_ids: vec![0; rows * cols],
        position_ids: vec![0; rows * cols],
        key_mask: vec![0; rows * cols],
        pool_weights: vec![0.0; rows * cols],
    };
    for (r, sequence) in group.iter().enumerate() {
        let weight = 1.0 / sequence.len().max(1) as f32;
        for (c, &token) in sequence.iter().enumerate() {
            let at = r * cols + c;
            batch.input_ids[at] = i64::from(token);
            batch.position_ids[at] = c as i64;
            batch.key_mask[at] = 1;
            batch.pool_weights[at] = weight;
        }
    }
    batch
}

fn encode_group(session: &mut Session, group: &[&[u32]]) -> Result<Vec<Vec<f32>>, EngineError> {
    let batch = pad(group);
    let [rows, _] = batch.shape;
    let outputs = session.run(batch.inputs()?).map_err(compute)?;
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
        assert_eq!(batch.key_mask, vec![1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.pool_weights[..4], [0.25; 4]);
        assert_eq!(batch.pool_weights[4..], [0.5, 0.5, 0.0, 0.0]);
    }
}
