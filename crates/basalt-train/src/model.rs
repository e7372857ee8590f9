//! A llama-architecture decoder in candle, on the weights of a GGUF file dequantized
//! to f32: the same numbers llama.cpp multiplies when it serves that file, so an
//! adapter trained here fits the model that is served.
//!
//! The attention projections keep GGUF's row order for `q` and `k`, which llama.cpp
//! rotates by adjacent pairs (its "normal" RoPE); [`rope`] does the same, so no
//! permutation is needed between training and serving.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor, D};

use crate::lora::{LoraLayers, Target};
use crate::TrainError;

/// The shape of a llama-architecture model, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture` (the adapter must name the same one).
    pub architecture: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// The input and output width of a target projection.
    pub fn target_shape(&self, target: Target) -> (usize, usize) {
        let kv = self.kv_heads * self.head_dim();
        match target {
            Target::Q | Target::O => (self.hidden, self.hidden),
            Target::K | Target::V => (self.hidden, kv),
            Target::Gate | Target::Up => (self.hidden, self.ffn),
            Target::Down => (self.ffn, self.hidden),
        }
    }

    /// The shape of the llama model in a GGUF file (its header only).
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let file =
            File::open(path).map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
        let content = gguf_file::Content::read(&mut BufReader::new(file))
            .map_err(|e| TrainError::Model(format!("{}: not a GGUF file: {e}", path.display())))?;
        Self::from_gguf(&content)
    }

    fn from_gguf(content: &gguf_file::Content) -> Result<Self, TrainError> {
        let md = &content.metadata;
        let string = |key: &str| -> Result<String, TrainError> {
            md.get(key)
                .and_then(|v| v.to_string().ok().cloned())
                .ok_or_else(|| TrainError::Model(format!("GGUF metadata {key} is missing")))
        };
        let architecture = string("general.architecture")?;
        if architecture != "llama" {
            return Err(TrainError::Model(format!(
                "architecture {architecture:?} is not supported for training (llama only)"
            )));
        }
        let int = |key: &str| -> Result<usize, TrainError> {
            let full = format!("{architecture}.{key}");
            md.get(&full)
                .and_then(|v| v.to_u32().ok().or_else(|| v.to_u64().ok().map(|x| x as u32)))
                .map(|v| v as usize)
                .ok_or_else(|| TrainError::Model(format!("GGUF metadata {full} is missing")))
        };
        let float = |key: &str, default: f32| -> f32 {
            md.get(&format!("{architecture}.{key}"))
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(default)
        };
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = int("attention.head_count_kv").unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(TrainError::Model(format!(
                "inconsistent attention shape: hidden {hidden}, heads {heads}, kv heads {kv_heads}"
            )));
        }
        let vocab = match content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims().first().copied().unwrap_or(0),
            None => return Err(TrainError::Model("token_embd.weight is missing".into())),
        };
        let layers = int("block_count")?;
        let ffn = int("feed_forward_length")?;
        let rope_base = float("rope.freq_base", 10_000.0);
        let rms_eps = f64::from(float("attention.layer_norm_rms_epsilon", 1e-5));
        Ok(Self {
            architecture,
            hidden,
            layers,
            heads,
            kv_heads,
            ffn,
            vocab,
            rope_base,
            rms_eps,
        })
    }
}

/// One decoder block's frozen weights (`[out, in]` matrices).
struct Block {
    attn_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    ffn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

impl Block {
    fn weight(&self, target: Target) -> &Tensor {
        match target {
            Target::Q => &self.q,
            Target::K => &self.k,
            Target::V => &self.v,
            Target::O => &self.o,
            Target::Gate => &self.gate,
            Target::Up => &self.up,
            Target::Down => &self.down,
        }
    }
}

/// The frozen base model.
pub struct LlamaModel {
    config: LlamaConfig,
    embeddings: Tensor,
    /// `output.weight`, or the embeddings when they are tied.
    output: Tensor,
    output_norm: Tensor,
    blocks: Vec<Block>,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Longest sequence the rotary tables are built for.
pub const MAX_POSITIONS: usize = 8192;

impl LlamaModel {
    /// Reads and dequantizes a GGUF file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let device = Device::Cpu;
        let file = File::open(path)
            .map_err(|e| TrainError::Model(format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| TrainError::Model(format!("{}: not a GGUF file: {e}", path.display())))?;
        let config = LlamaConfig::from_gguf(&content)?;
        let mut tensor = |name: &str| -> Result<Tensor, TrainError> {
            let q = content
                .tensor(&mut reader, name, &device)
                .map_err(|e| TrainError::Model(format!("tensor {name}: {e}")))?;
            Ok(q.dequantize(&device)?)
        };
        let embeddings = tensor("token_embd.weight")?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            tensor("output.weight")?
        } else {
            embeddings.clone()
        };
        let output_norm = tensor("output_norm.weight")?;
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut t = |suffix: &str| tensor(&format!("blk.{i}.{suffix}.weight"));
            blocks.push(Block {
                attn_norm: t("attn_norm")?,
                q: t("attn_q")?,
                k: t("attn_k")?,
                v: t("attn_v")?,
                o: t("attn_output")?,
                ffn_norm: t("ffn_norm")?,
                gate: t("ffn_gate")?,
                up: t("ffn_up")?,
                down: t("ffn_down")?,
            });
        }
        for target in Target::ALL {
            let (n_in, n_out) = config.target_shape(target);
            let dims = blocks[0].weight(target).dims().to_vec();
            if dims != [n_out, n_in] {
                return Err(TrainError::Model(format!(
                    "{} has shape {dims:?}, expected [{n_out}, {n_in}]",
                    target.gguf_name()
                )));
            }
        }
        let (cos, sin) = rope_tables(&config, &device)?;
        Ok(Self {
            config,
            embeddings,
            output,
            output_norm,
            blocks,
            cos,
            sin,
            device,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The final hidden states `[batch, seq, hidden]` of `tokens` (`[batch, seq]`,
    /// u32), with `lora` added to its target projections.
    pub fn hidden_states(
        &self,
        tokens: &Tensor,
        lora: Option<&LoraLayers>,
    ) -> Result<Tensor, TrainError> {
        let (batch, seq) = tokens.dims2()?;
        if seq > MAX_POSITIONS {
            return Err(TrainError::Data(format!(
                "a sequence of {seq} tokens is longer than {MAX_POSITIONS}"
            )));
        }
        let c = &self.config;
        let hd = c.head_dim();
        let mut x = self
            .embeddings
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((batch, seq, c.hidden))?;
        let mask = causal_mask(seq, &self.device)?;
        let cos = self.cos.narrow(0, 0, seq)?;
        let sin = self.sin.narrow(0, 0, seq)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for (layer, block) in self.blocks.iter().enumerate() {
            let project = |h: &Tensor, target: Target| -> Result<Tensor, TrainError> {
                let base = h.broadcast_matmul(&block.weight(target).t()?)?;
                match lora.and_then(|l| l.get(layer, target)) {
                    Some(adapter) => Ok((base + adapter.delta(h)?)?),
                    None => Ok(base),
                }
            };
            let h = rms_norm(&x, &block.attn_norm, c.rms_eps)?;
            let q = project(&h, Target::Q)?
                .reshape((batch, seq, c.heads, hd))?
                .transpose(1, 2)?;
            let k = project(&h, Target::K)?
                .reshape((batch, seq, c.kv_heads, hd))?
                .transpose(1, 2)?;
            let v = project(&h, Target::V)?
                .reshape((batch, seq, c.kv_heads, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = rope(&q.contiguous()?, &cos, &sin)?;
            let k = rope(&k.contiguous()?, &cos, &sin)?;
            let (k, v) = repeat_kv(k, v, c.heads / c.kv_heads)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let weights = softmax_last(&scores)?;
            let attended = weights
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((batch, seq, c.hidden))?;
            x = (x + project(&attended, Target::O)?)?;
            let h = rms_norm(&x, &block.ffn_norm, c.rms_eps)?;
            let gate = project(&h, Target::Gate)?.silu()?;
            let up = project(&h, Target::Up)?;
            x = (x + project(&(gate * up)?, Target::Down)?)?;
        }
        rms_norm(&x, &self.output_norm, c.rms_eps)
    }

    /// Logits `[n, vocab]` of hidden states `[n, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor, TrainError> {
        Ok(hidden.matmul(&self.output.t()?)?)
    }

    /// The frozen weights by GGUF tensor name (for tests and exports).
    pub fn named_weights(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, block) in self.blocks.iter().enumerate() {
            for target in Target::ALL {
                out.insert(
                    format!("blk.{i}.{}.weight", target.gguf_name()),
                    block.weight(target).clone(),
                );
            }
        }
        out
    }
}

/// Cross-entropy of the next token at the positions `mask` selects.
///
/// `tokens` `[batch, seq]` u32; `loss_mask[b][t]` says whether token `t` of
/// sequence `b` is a target (predicted from the tokens before it). Returns the
/// summed loss (a scalar tensor) and how many targets it covers. Only the selected
/// positions go through the output projection, the largest matrix of a small model.
pub fn masked_next_token_loss(
    model: &LlamaModel,
    lora: Option<&LoraLayers>,
    tokens: &[Vec<u32>],
    loss_mask: &[Vec<bool>],
) -> Result<(Tensor, usize), TrainError> {
    let batch = tokens.len();
    let seq = tokens.iter().map(Vec::len).max().unwrap_or(0);
    if batch == 0 || seq < 2 {
        return Err(TrainError::Data("a batch needs a sequence of two tokens or more".into()));
    }
    let mut flat = Vec::with_capacity(batch * seq);
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (b, (row, mask)) in tokens.iter().zip(loss_mask).enumerate() {
        for t in 0..seq {
            flat.push(row.get(t).copied().unwrap_or(0));
        }
        for (t, &token) in row.iter().enumerate().skip(1) {
            if mask.get(t).copied().unwrap_or(false) {
                positions.push((b * seq + t - 1) as u32);
                targets.push(token);
            }
        }
    }
    let count = targets.len();
    if count == 0 {
        return Err(TrainError::Data("a batch has no target tokens".into()));
    }
    let device = model.device();
    let input = Tensor::from_vec(flat, (batch, seq), device)?;
    let hidden = model.hidden_states(&input, lora)?;
    let hidden = hidden
        .reshape((batch * seq, model.config().hidden))?
        .index_select(&Tensor::from_vec(positions, count, device)?, 0)?;
    let logits = model.logits(&hidden)?;
    let log_probs = log_softmax_last(&logits)?;
    let picked = log_probs.gather(&Tensor::from_vec(targets, (count, 1), device)?, 1)?;
    Ok((picked.sum_all()?.neg()?, count))
}

fn rope_tables(config: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor), TrainError> {
    let hd = config.head_dim();
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / config.rope_base.powf(2.0 * i as f32 / hd as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
    let positions: Vec<f32> = (0..MAX_POSITIONS).map(|p| p as f32).collect();
    let positions = Tensor::from_vec(positions, (MAX_POSITIONS, 1), device)?;
    let angles = positions.broadcast_mul(&inv)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Rotates adjacent pairs `(x[2i], x[2i+1])` of each head, as llama.cpp does for the
/// llama architecture. `x` is `[batch, heads, seq, head_dim]`; `cos`/`sin` are
/// `[seq, head_dim / 2]`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor, TrainError> {
    let (b, h, seq, hd) = x.dims4()?;
    let cos = cos.reshape((seq, hd / 2, 1))?;
    let sin = sin.reshape((seq, hd / 2, 1))?;
    let x = x.reshape((b, h, seq, hd / 2, 2))?;
    let x0 = x.narrow(D::Minus1, 0, 1)?;
    let x1 = x.narrow(D::Minus1, 1, 1)?;
    let y0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let y1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
    Ok(Tensor::cat(&[y0, y1], D::Minus1)?.reshape((b, h, seq, hd))?)
}

fn repeat_kv(k: Tensor, v: Tensor, groups: usize) -> Result<(Tensor, Tensor), TrainError> {
    if groups == 1 {
        return Ok((k, v));
    }
    let repeat = |t: Tensor| -> Result<Tensor, TrainError> {
        let (b, kvh, seq, hd) = t.dims4()?;
        Ok(t.unsqueeze(2)?
            .broadcast_as((b, kvh, groups, seq, hd))?
            .reshape((b, kvh * groups, seq, hd))?)
    };
    Ok((repeat(k)?, repeat(v)?))
}

fn causal_mask(seq: usize, device: &Device) -> Result<Tensor, TrainError> {
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (seq, seq), device)?)
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor, TrainError> {
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_div(&(mean_square + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(weight)?)
}

/// Softmax over the last dimension, shifted by its (constant) maximum.
fn softmax_last(x: &Tensor) -> Result<Tensor, TrainError> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let exp = shifted.exp()?;
    Ok(exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)?)
}

fn log_softmax_last(x: &Tensor) -> Result<Tensor, TrainError> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// Greedy next tokens, for parity checks: the argmax of the last position's logits.
pub fn greedy_continuation(
    model: &LlamaModel,
    lora: Option<&LoraLayers>,
    prompt: &[u32],
    max_tokens: usize,
    stop: &[u32],
) -> Result<Vec<u32>, TrainError> {
    let mut tokens = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..max_tokens {
        let input = Tensor::from_vec(tokens.clone(), (1, tokens.len()), model.device())?;
        let hidden = model.hidden_states(&input, lora)?;
        let last = hidden.narrow(1, tokens.len() - 1, 1)?.reshape((1, model.config().hidden))?;
        let logits = model.logits(&last)?.reshape(model.config().vocab)?;
        let next = logits.argmax(0)?.to_dtype(DType::U32)?.to_scalar::<u32>()?;
        out.push(next);
        if stop.contains(&next) {
            break;
        }
        tokens.push(next);
    }
    Ok(out)
}

/// What a GGUF file says about itself (read from its header; no tensor data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufInfo {
    /// `general.architecture`.
    pub architecture: String,
    /// `general.type` (`model` when absent; `adapter` for LoRA files).
    pub kind: String,
    /// Whether it carries a chat template (`tokenizer.chat_template`).
    pub chat_template: bool,
    pub tensors: usize,
}

/// Reads a GGUF file's header.
pub fn describe_gguf(path: &Path) -> Result<GgufInfo, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
    let mut reader = BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader)
        .map_err(|e| TrainError::Model(format!("{}: not a GGUF file: {e}", path.display())))?;
    let text = |key: &str| {
        content
            .metadata
            .get(key)
            .and_then(|v| v.to_string().ok().cloned())
    };
    Ok(GgufInfo {
        architecture: text("general.architecture").unwrap_or_default(),
        kind: text("general.type").unwrap_or_else(|| "model".into()),
        chat_template: content.metadata.contains_key("tokenizer.chat_template"),
        tensors: content.tensor_infos.len(),
    })
}
