//! LoRA training of local llama-architecture models on CPU.
//!
//! [`LlamaModel`] runs a decoder in candle on the weights of the GGUF file the local
//! engine serves, dequantized; [`Trainer`] fits low-rank adapters ([`LoraLayers`]) to
//! tokenized records with AdamW and checkpoints as it goes; [`write_gguf_adapter`]
//! writes the result as a GGUF LoRA adapter llama.cpp applies over the same file.
//! Tokenization and chat templates are the caller's (the serving engine's), so the
//! trained and the served model see the same tokens.

pub mod adapter;
pub mod lora;
pub mod model;
pub mod optim;
pub mod peft;
pub mod train;

pub use adapter::{read_gguf_adapter, write_gguf_adapter, write_named_adapter};
pub use lora::{LoraLayers, LoraSpec, Target};
pub use model::{describe_gguf, greedy_continuation, GgufInfo, LlamaConfig, LlamaModel};
pub use peft::{convert_peft_adapter, PeftAdapter};
pub use train::{evaluate, Example, StepMetrics, TrainConfig, Trainer};

/// Runs `work` with candle's matrix products on at most `threads` threads (a pool of
/// its own, so a training job leaves the other cores to the serving engines).
pub fn with_threads<R: Send>(
    threads: usize,
    work: impl FnOnce() -> R + Send,
) -> Result<R, TrainError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("basalt-train-{i}"))
        .build()
        .map_err(|e| TrainError::Io(format!("cannot start the training threads: {e}")))?;
    Ok(pool.install(work))
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("model: {0}")]
    Model(String),
    #[error("data: {0}")]
    Data(String),
    #[error("io: {0}")]
    Io(String),
    #[error("the loss diverged (not finite) at step {0}; lower learningRate")]
    Diverged(usize),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}
