//! Sentence embeddings with a BERT model in the sentence-transformers layout
//! (`config.json`, `tokenizer.json`, `model.safetensors`), on candle.
//!
//! Pooling is the attention-masked mean of the last hidden states, then L2
//! normalisation, as sentence-transformers' `all-MiniLM-L6-v2` pipeline does.
//! Inputs of one call are embedded together, padded to the longest in each batch.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::EngineError;

/// Where the embedding model's files are.
#[derive(Debug, Clone)]
pub struct EmbeddingEngineConfig {
    /// Folder with `config.json`, `tokenizer.json` and `model.safetensors`.
    pub model_dir: PathBuf,
    /// Longest input in tokens; longer inputs are truncated (sentence-transformers'
    /// `max_seq_length`).
    pub max_tokens: usize,
    /// Inputs embedded in one forward pass.
    pub batch_size: usize,
}

/// One embedded input.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Tokens of the input that were embedded (after truncation, with special tokens).
    pub tokens: u32,
}

/// A loaded sentence-embedding model.
pub struct EmbeddingEngine {
    model: BertModel,
    tokenizer: Tokenizer,
    dimensions: usize,
    config: EmbeddingEngineConfig,
}

impl std::fmt::Debug for EmbeddingEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn load_error(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn compute(e: impl std::fmt::Display) -> EngineError {
    EngineError::Compute(e.to_string())
}

impl EmbeddingEngine {
    pub fn load(config: EmbeddingEngineConfig) -> Result<Self, EngineError> {
        let dir = &config.model_dir;
        let config_path = dir.join("config.json");
        let bert_config: BertConfig = serde_json::from_slice(
            &std::fs::read(&config_path).map_err(|e| load_error(&config_path, e))?,
        )
        .map_err(|e| load_error(&config_path, e))?;
        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| load_error(&weights_path, e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| load_error(&weights_path, e))?;
        let model = BertModel::load(vb, &bert_config).map_err(|e| load_error(&weights_path, e))?;
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| load_error(&tokenizer_path, e))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| load_error(&tokenizer_path, e))?;
        Ok(Self {
            model,
            tokenizer,
            dimensions: bert_config.hidden_size,
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

    /// Embeds every input, in order.
    pub fn embed(&self, inputs: &[String]) -> Result<Vec<Embedding>, EngineError> {
        let mut out = Vec::with_capacity(inputs.len());
        // Sorting by length keeps padding small inside each batch.
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].len());
        let mut results: Vec<Option<Embedding>> = vec![None; inputs.len()];
        for chunk in order.chunks(self.config.batch_size.max(1)) {
            let texts: Vec<&str> = chunk.iter().map(|&i| inputs[i].as_str()).collect();
            let embedded = self.embed_batch(&texts)?;
            for (&i, e) in chunk.iter().zip(embedded) {
                results[i] = Some(e);
            }
        }
        for e in results {
            out.push(e.ok_or_else(|| compute("an input was not embedded"))?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Embedding>, EngineError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(compute)?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let n = encodings.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut type_ids = Vec::with_capacity(n * len);
        let mut tokens = Vec::with_capacity(n);
        for e in &encodings {
            ids.extend(e.get_ids().iter().copied());
            mask.extend(e.get_attention_mask().iter().copied());
            type_ids.extend(e.get_type_ids().iter().copied());
            tokens.push(e.get_attention_mask().iter().filter(|&&m| m == 1).count() as u32);
        }
        let device = &Device::Cpu;
        let ids = Tensor::from_vec(ids, (n, len), device).map_err(compute)?;
        let type_ids = Tensor::from_vec(type_ids, (n, len), device).map_err(compute)?;
        let mask = Tensor::from_vec(mask, (n, len), device).map_err(compute)?;
        let hidden = self
            .model
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(compute)?;
        // Masked mean over the sequence, then L2 normalisation.
        let mask_f = mask
            .to_dtype(DType::F32)
            .map_err(compute)?
            .unsqueeze(2)
            .map_err(compute)?;
        let summed = hidden
            .broadcast_mul(&mask_f)
            .map_err(compute)?
            .sum(1)
            .map_err(compute)?;
        let counts = mask_f
            .sum(1)
            .map_err(compute)?
            .clamp(1e-9, f64::MAX)
            .map_err(compute)?;
        let mean = summed.broadcast_div(&counts).map_err(compute)?;
        let norm = mean
            .sqr()
            .map_err(compute)?
            .sum_keepdim(1)
            .map_err(compute)?
            .sqrt()
            .map_err(compute)?;
        let normalised = mean
            .broadcast_div(&norm.clamp(1e-12, f64::MAX).map_err(compute)?)
            .map_err(compute)?;
        let rows: Vec<Vec<f32>> = normalised.to_vec2().map_err(compute)?;
        Ok(rows
            .into_iter()
            .zip(tokens)
            .map(|(vector, tokens)| Embedding { vector, tokens })
            .collect())
    }
}
