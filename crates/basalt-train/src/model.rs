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
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor, D};

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
        let (content, _) = open_gguf(path)?;
        Self::from_gguf(&content)
    }

    fn from_gguf(content: &gguf_file::Content) -> Result<Self, TrainError> {
        let md = &content.metadata;
        let string = |key: &str| -> Result<String, TrainError> {
            metadata_text(content, key)
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
                .and_then(|v| {
                    v.to_u32()
                        .ok()
                        .or_else(|| v.to_u64().ok().map(|x| x as u32))
                })
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

/// `x·Wᵀ` with `W` frozen: the backward pass gives the gradient of `x` only. (A plain
/// matmul's backward also computes the gradient of `W`, as large as the weights
/// times the batch, which training a LoRA never reads.)
struct FrozenLinear {
    /// `[out, in]`.
    weight: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg("frozen-linear takes f32".into()));
        };
        if !layout.is_contiguous() {
            return Err(candle_core::Error::Msg(
                "frozen-linear takes a contiguous input".into(),
            ));
        }
        let dims = layout.shape().dims();
        let n_in = dims.last().copied().unwrap_or(0);
        let rows = layout.shape().elem_count() / n_in.max(1);
        let start = layout.start_offset();
        let x = Tensor::from_slice(
            &data[start..start + rows * n_in],
            (rows, n_in),
            &Device::Cpu,
        )?;
        let y = x.matmul(&self.weight.t()?)?;
        let n_out = y.dim(1)?;
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = n_out;
        }
        let values = y.flatten_all()?.to_vec1::<f32>()?;
        Ok((CpuStorage::F32(values), Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let n_out = grad_res.dim(D::Minus1)?;
        let rows = grad_res.elem_count() / n_out.max(1);
        let grad = grad_res
            .contiguous()?
            .reshape((rows, n_out))?
            .matmul(&self.weight)?
            .reshape(arg.shape())?;
        Ok(Some(grad))
    }
}

/// `x·Wᵀ` for a frozen `W` `[out, in]` and `x` `[..., in]`.
fn frozen_linear(x: &Tensor, weight: &Tensor) -> Result<Tensor, TrainError> {
    Ok(x.contiguous()?.apply_op1(FrozenLinear {
        weight: weight.clone(),
    })?)
}

fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        return Err(candle_core::Error::Msg(format!("{op} takes f32")));
    };
    if !layout.is_contiguous() {
        return Err(candle_core::Error::Msg(format!(
            "{op} takes a contiguous input"
        )));
    }
    let start = layout.start_offset();
    Ok(&data[start..start + layout.shape().elem_count()])
}

/// `softmax(scale·s + causal mask)` of each row of `t` scores, in place; a row's
/// query position is its index modulo `t` (so grouped-query layouts, several heads'
/// rows after one another, work too).
fn causal_softmax_rows(scores: &mut [f32], t: usize, scale: f32) {
    use rayon::prelude::*;
    scores.par_chunks_mut(t).enumerate().for_each(|(r, row)| {
        let i = r % t;
        let (live, masked) = row.split_at_mut(i + 1);
        let max = live
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
        let mut sum = 0f32;
        for v in live.iter_mut() {
            *v = (*v * scale - max).exp();
            sum += *v;
        }
        for v in live.iter_mut() {
            *v /= sum;
        }
        masked.fill(0.0);
    });
}

/// Causal attention weights `softmax(scale·q·kᵀ + mask)` from `q` `[.., m, d]` and `k`
/// `[.., t, d]` in one op: only the weights are kept for the backward pass (the
/// composite form keeps the scores and four more tensors of their size per layer).
struct CausalAttention {
    scale: f32,
}

impl CustomOp2 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = Tensor::from_slice(
            contiguous_f32(s1, l1, "causal-attention")?,
            l1.shape(),
            &Device::Cpu,
        )?;
        let k = Tensor::from_slice(
            contiguous_f32(s2, l2, "causal-attention")?,
            l2.shape(),
            &Device::Cpu,
        )?;
        let scores = q.matmul(&k.t()?)?;
        let shape = scores.shape().clone();
        let t = shape.dims().last().copied().unwrap_or(0);
        let mut values = scores.flatten_all()?.to_vec1::<f32>()?;
        if t > 0 {
            causal_softmax_rows(&mut values, t, self.scale);
        }
        Ok((CpuStorage::F32(values), shape))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // d/ds = scale · y · (g − Σ g·y) (masked positions have y = 0); s = q·kᵀ.
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        let grad_scores = ((grad_res.broadcast_sub(&dot)? * res)? * f64::from(self.scale))?;
        let grad_q = grad_scores.matmul(k)?;
        let grad_k = grad_scores.t()?.matmul(q)?;
        Ok((Some(grad_q), Some(grad_k)))
    }
}

/// RMS normalisation with a frozen weight: `x / √(mean(x²) + eps) · w`, the backward
/// pass recomputed from `x` (nothing else kept).
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let data = contiguous_f32(storage, layout, "rms-norm")?;
        let d = layout.shape().dims().last().copied().unwrap_or(0);
        let weight = self.weight.to_vec1::<f32>()?;
        if d == 0 || weight.len() != d {
            return Err(candle_core::Error::Msg(
                "rms-norm: the weight does not fit".into(),
            ));
        }
        let mut out = vec![0f32; data.len()];
        let eps = self.eps as f32;
        out.par_chunks_mut(d)
            .zip(data.par_chunks(d))
            .for_each(|(out, x)| {
                let mean = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let r = 1.0 / (mean + eps).sqrt();
                for ((o, &v), &w) in out.iter_mut().zip(x).zip(&weight) {
                    *o = v * r * w;
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // With r = 1/√(mean(x²)+eps) and x̂ = x·r: dx = r · (g·w − x̂ · mean(g·w·x̂)).
        let r = (arg.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        let x_hat = arg.broadcast_mul(&r)?;
        let gw = grad_res.broadcast_mul(&self.weight)?;
        let mean = (&gw * &x_hat)?.mean_keepdim(D::Minus1)?;
        let grad = (gw - x_hat.broadcast_mul(&mean)?)?.broadcast_mul(&r)?;
        Ok(Some(grad))
    }
}

/// Rotary position embedding by adjacent pairs, as llama.cpp applies it to the llama
/// architecture, on `[batch, heads, seq, head_dim]`; its backward pass is the inverse
/// rotation (nothing kept).
struct Rope {
    /// `cos`/`sin` of each position's angles, `[seq][head_dim / 2]` row-major.
    cos: std::sync::Arc<Vec<f32>>,
    sin: std::sync::Arc<Vec<f32>>,
    inverse: bool,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let data = contiguous_f32(storage, layout, "rope")?;
        let (_, _, seq, hd) = layout.shape().dims4()?;
        let half = hd / 2;
        if self.cos.len() < seq * half {
            return Err(candle_core::Error::Msg(
                "rope: the tables are too short".into(),
            ));
        }
        let sign = if self.inverse { -1.0f32 } else { 1.0 };
        let mut out = vec![0f32; data.len()];
        out.par_chunks_mut(seq * hd)
            .zip(data.par_chunks(seq * hd))
            .for_each(|(out, x)| {
                for p in 0..seq {
                    let (cos, sin) = (
                        &self.cos[p * half..(p + 1) * half],
                        &self.sin[p * half..(p + 1) * half],
                    );
                    let (x, out) = (&x[p * hd..(p + 1) * hd], &mut out[p * hd..(p + 1) * hd]);
                    for i in 0..half {
                        let (x0, x1) = (x[2 * i], x[2 * i + 1]);
                        let (c, s) = (cos[i], sign * sin[i]);
                        out[2 * i] = x0 * c - x1 * s;
                        out[2 * i + 1] = x0 * s + x1 * c;
                    }
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let inverse = Rope {
            cos: std::sync::Arc::clone(&self.cos),
            sin: std::sync::Arc::clone(&self.sin),
            inverse: !self.inverse,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// `silu(gate) · up`, keeping only its two inputs for the backward pass.
struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let gate = contiguous_f32(s1, l1, "swiglu")?;
        let up = contiguous_f32(s2, l2, "swiglu")?;
        if gate.len() != up.len() {
            return Err(candle_core::Error::Msg(
                "swiglu: gate and up differ in size".into(),
            ));
        }
        let mut out = vec![0f32; gate.len()];
        out.par_chunks_mut(4096)
            .zip(gate.par_chunks(4096).zip(up.par_chunks(4096)))
            .for_each(|(out, (gate, up))| {
                for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                    *o = g / (1.0 + (-g).exp()) * u;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // silu(g) = g·σ(g); silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
        let sigmoid = (gate.neg()?.exp()? + 1.0)?.recip()?;
        let silu = (gate * &sigmoid)?;
        let d_silu = (&sigmoid * ((gate * (1.0 - &sigmoid)?)? + 1.0)?)?;
        let grad_gate = ((grad_res * up)? * d_silu)?;
        let grad_up = (grad_res * silu)?;
        Ok((Some(grad_gate), Some(grad_up)))
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
    cos: std::sync::Arc<Vec<f32>>,
    sin: std::sync::Arc<Vec<f32>>,
    device: Device,
}

/// Longest sequence the rotary tables are built for.
pub const MAX_POSITIONS: usize = 8192;

impl LlamaModel {
    /// Reads and dequantizes a GGUF file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let device = Device::Cpu;
        let (content, mut reader) = open_gguf(path)?;
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
        let (cos, sin) = rope_tables(&config);
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
        let scale = 1.0 / (hd as f64).sqrt();
        for (layer, block) in self.blocks.iter().enumerate() {
            let project = |h: &Tensor, target: Target| -> Result<Tensor, TrainError> {
                let base = frozen_linear(h, block.weight(target))?;
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
            let q = self.rope(&q)?;
            let k = self.rope(&k)?;
            // Grouped-query attention without copying k and v per head: the query heads
            // of one key/value head are stacked as rows ([batch, kv_heads, groups·seq,
            // head_dim]; head h uses key/value head h / groups, as llama.cpp does).
            let groups = c.heads / c.kv_heads;
            let q = q.reshape((batch, c.kv_heads, groups * seq, hd))?;
            let weights = q.apply_op2(
                &k,
                CausalAttention {
                    scale: scale as f32,
                },
            )?;
            let attended = weights
                .matmul(&v)?
                .reshape((batch, c.heads, seq, hd))?
                .transpose(1, 2)?
                .reshape((batch, seq, c.hidden))?;
            x = (x + project(&attended, Target::O)?)?;
            let h = rms_norm(&x, &block.ffn_norm, c.rms_eps)?;
            let gate = project(&h, Target::Gate)?.contiguous()?;
            let up = project(&h, Target::Up)?.contiguous()?;
            x = (x + project(&gate.apply_op2(&up, SwiGlu)?, Target::Down)?)?;
        }
        rms_norm(&x, &self.output_norm, c.rms_eps)
    }

    fn rope(&self, x: &Tensor) -> Result<Tensor, TrainError> {
        Ok(x.contiguous()?.apply_op1(Rope {
            cos: std::sync::Arc::clone(&self.cos),
            sin: std::sync::Arc::clone(&self.sin),
            inverse: false,
        })?)
    }

    /// Logits `[n, vocab]` of hidden states `[n, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor, TrainError> {
        frozen_linear(hidden, &self.output)
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
        return Err(TrainError::Data(
            "a batch needs a sequence of two tokens or more".into(),
        ));
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
    let losses = logits.contiguous()?.apply_op1(CrossEntropy {
        targets: std::sync::Arc::new(targets),
    })?;
    Ok((losses.sum_all()?, count))
}

/// The cross-entropy of each row of logits `[n, vocab]` against its target token,
/// `[n]`; only the logits are kept for the backward pass (`softmax − one-hot`).
struct CrossEntropy {
    targets: std::sync::Arc<Vec<u32>>,
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let data = contiguous_f32(storage, layout, "cross-entropy")?;
        let (n, vocab) = layout.shape().dims2()?;
        if self.targets.len() != n || self.targets.iter().any(|&t| t as usize >= vocab) {
            return Err(candle_core::Error::Msg(
                "cross-entropy: targets do not fit the logits".into(),
            ));
        }
        let losses: Vec<f32> = data
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &target)| {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
                max + sum.ln() - row[target as usize]
            })
            .collect();
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (n, vocab) = arg.dims2()?;
        let logits = arg.flatten_all()?.to_vec1::<f32>()?;
        let upstream = grad_res.to_vec1::<f32>()?;
        let mut grad = vec![0f32; n * vocab];
        {
            use rayon::prelude::*;
            grad.par_chunks_mut(vocab)
                .zip(logits.par_chunks(vocab))
                .zip(self.targets.par_iter().zip(upstream.par_iter()))
                .for_each(|((out, row), (&target, &g))| {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let mut sum = 0f32;
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = (v - max).exp();
                        sum += *o;
                    }
                    for o in out.iter_mut() {
                        *o *= g / sum;
                    }
                    out[target as usize] -= g;
                });
        }
        Ok(Some(Tensor::from_vec(grad, (n, vocab), arg.device())?))
    }
}

/// `cos` and `sin` of every position's angles (`[MAX_POSITIONS][head_dim / 2]`).
fn rope_tables(config: &LlamaConfig) -> (std::sync::Arc<Vec<f32>>, std::sync::Arc<Vec<f32>>) {
    let hd = config.head_dim();
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / config.rope_base.powf(2.0 * i as f32 / hd as f32))
        .collect();
    let mut cos = Vec::with_capacity(MAX_POSITIONS * hd / 2);
    let mut sin = Vec::with_capacity(MAX_POSITIONS * hd / 2);
    for p in 0..MAX_POSITIONS {
        for f in &inv {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (std::sync::Arc::new(cos), std::sync::Arc::new(sin))
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor, TrainError> {
    Ok(x.contiguous()?.apply_op1(RmsNorm {
        weight: weight.clone(),
        eps,
    })?)
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
        let last = hidden
            .narrow(1, tokens.len() - 1, 1)?
            .reshape((1, model.config().hidden))?;
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

/// A GGUF file's header (metadata and tensor table), and the reader positioned to
/// read its tensors.
pub(crate) fn open_gguf(path: &Path) -> Result<(gguf_file::Content, BufReader<File>), TrainError> {
    let file = File::open(path).map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
    let mut reader = BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader)
        .map_err(|e| TrainError::Model(format!("{}: not a GGUF file: {e}", path.display())))?;
    Ok((content, reader))
}

/// A string value of a GGUF file's metadata.
pub(crate) fn metadata_text(content: &gguf_file::Content, key: &str) -> Option<String> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_string().ok().cloned())
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
    let (content, _) = open_gguf(path)?;
    let text = |key: &str| metadata_text(&content, key);
    Ok(GgufInfo {
        architecture: text("general.architecture").unwrap_or_default(),
        kind: text("general.type").unwrap_or_else(|| "model".into()),
        chat_template: content.metadata.contains_key("tokenizer.chat_template"),
        tensors: content.tensor_infos.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn random(shape: &[usize], seed: u64) -> Result<Tensor, TrainError> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
    }

    /// The value and the input's gradient of `sum(f(x) · r)`.
    fn value_and_grad(
        x: &Tensor,
        r: &Tensor,
        f: impl Fn(&Tensor) -> Result<Tensor, TrainError>,
    ) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let var = Var::from_tensor(x)?;
        let y = f(var.as_tensor())?;
        let loss = (&y * r)?.sum_all()?;
        let grads = loss.backward()?;
        let grad = grads
            .get(var.as_tensor())
            .ok_or_else(|| TrainError::Model("no gradient".into()))?;
        Ok((y.flatten_all()?.to_vec1()?, grad.flatten_all()?.to_vec1()?))
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn fused_operations_match_their_composite_forms_and_gradients() -> Result<(), TrainError> {
        // RMS norm.
        let x = random(&[2, 3, 8], 1)?;
        let w = random(&[8], 2)?;
        let r = random(&[2, 3, 8], 3)?;
        let fused = value_and_grad(&x, &r, |x| rms_norm(x, &w, 1e-5))?;
        let plain = value_and_grad(&x, &r, |x| {
            let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
            Ok(x.broadcast_div(&(ms + 1e-5)?.sqrt()?)?.broadcast_mul(&w)?)
        })?;
        assert_close(&fused.0, &plain.0, "rms-norm");
        assert_close(&fused.1, &plain.1, "rms-norm gradient");

        // Causal attention weights, against the composite form; the gradients of q and k.
        let q = random(&[1, 2, 6, 4], 4)?;
        let k = random(&[1, 2, 3, 4], 5)?;
        let r = random(&[1, 2, 6, 3], 16)?;
        // Grouped rows: 2 query heads per key head, so row i's position is i % 3.
        let mask: Vec<f32> = (0..6)
            .flat_map(|i| (0..3).map(move |j| if j > i % 3 { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (6, 3), &Device::Cpu)?;
        let composite = |q: &Tensor, k: &Tensor| -> Result<Tensor, TrainError> {
            let z = (q.matmul(&k.t()?)? * 0.5)?.broadcast_add(&mask)?;
            let z = z
                .broadcast_sub(&z.max_keepdim(D::Minus1)?.detach())?
                .exp()?;
            Ok(z.broadcast_div(&z.sum_keepdim(D::Minus1)?)?)
        };
        let op = || CausalAttention { scale: 0.5 };
        let fused = value_and_grad(&q, &r, |q| Ok(q.apply_op2(&k, op())?))?;
        let plain = value_and_grad(&q, &r, |q| composite(q, &k))?;
        assert_close(&fused.0, &plain.0, "causal attention");
        assert_close(&fused.1, &plain.1, "causal attention gradient (q)");
        let fused = value_and_grad(&k, &r, |k| Ok(q.apply_op2(k, op())?))?;
        let plain = value_and_grad(&k, &r, |k| composite(&q, k))?;
        assert_close(&fused.1, &plain.1, "causal attention gradient (k)");

        // SwiGLU, on each input.
        let g = random(&[3, 6], 6)?;
        let u = random(&[3, 6], 7)?;
        let r = random(&[3, 6], 8)?;
        let fused = value_and_grad(&g, &r, |g| Ok(g.apply_op2(&u, SwiGlu)?))?;
        let plain = value_and_grad(&g, &r, |g| Ok((g.silu()? * &u)?))?;
        assert_close(&fused.0, &plain.0, "swiglu");
        assert_close(&fused.1, &plain.1, "swiglu gradient (gate)");
        let fused = value_and_grad(&u, &r, |u| Ok(g.apply_op2(u, SwiGlu)?))?;
        let plain = value_and_grad(&u, &r, |u| Ok((g.silu()? * u)?))?;
        assert_close(&fused.1, &plain.1, "swiglu gradient (up)");

        // Cross-entropy against targets.
        let logits = random(&[3, 7], 12)?;
        let r = random(&[3], 13)?;
        let targets = vec![0u32, 6, 3];
        let fused = value_and_grad(&logits, &r, |l| {
            Ok(l.apply_op1(CrossEntropy {
                targets: std::sync::Arc::new(targets.clone()),
            })?)
        })?;
        let plain = value_and_grad(&logits, &r, |l| {
            let shifted = l.broadcast_sub(&l.max_keepdim(D::Minus1)?.detach())?;
            let log_probs =
                shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
            let picked = log_probs.gather(&Tensor::new(&[[0u32], [6], [3]], &Device::Cpu)?, 1)?;
            Ok(picked.neg()?.flatten_all()?)
        })?;
        assert_close(&fused.0, &plain.0, "cross-entropy");
        assert_close(&fused.1, &plain.1, "cross-entropy gradient");

        // RoPE by adjacent pairs, against the rotation written out.
        let config = LlamaConfig {
            architecture: "llama".into(),
            hidden: 8,
            layers: 1,
            heads: 2,
            kv_heads: 1,
            ffn: 8,
            vocab: 8,
            rope_base: 100.0,
            rms_eps: 1e-5,
        };
        let (cos, sin) = rope_tables(&config);
        let x = random(&[1, 2, 3, 4], 14)?;
        let r = random(&[1, 2, 3, 4], 15)?;
        let op = || Rope {
            cos: std::sync::Arc::clone(&cos),
            sin: std::sync::Arc::clone(&sin),
            inverse: false,
        };
        let fused = value_and_grad(&x, &r, |x| Ok(x.apply_op1(op())?))?;
        let c = Tensor::from_vec(cos[..6].to_vec(), (3, 2, 1), &Device::Cpu)?;
        let s = Tensor::from_vec(sin[..6].to_vec(), (3, 2, 1), &Device::Cpu)?;
        let plain = value_and_grad(&x, &r, |x| {
            let x = x.reshape((1, 2, 3, 2, 2))?;
            let (x0, x1) = (x.narrow(4, 0, 1)?, x.narrow(4, 1, 1)?);
            let y0 = (x0.broadcast_mul(&c)? - x1.broadcast_mul(&s)?)?;
            let y1 = (x0.broadcast_mul(&s)? + x1.broadcast_mul(&c)?)?;
            Ok(Tensor::cat(&[y0, y1], 4)?.reshape((1, 2, 3, 4))?)
        })?;
        assert_close(&fused.0, &plain.0, "rope");
        assert_close(&fused.1, &plain.1, "rope gradient");

        // Frozen linear.
        let x = random(&[2, 4, 5], 9)?;
        let w = random(&[3, 5], 10)?;
        let r = random(&[2, 4, 3], 11)?;
        let fused = value_and_grad(&x, &r, |x| frozen_linear(x, &w))?;
        let plain = value_and_grad(&x, &r, |x| Ok(x.broadcast_matmul(&w.t()?)?))?;
        assert_close(&fused.0, &plain.0, "frozen linear");
        assert_close(&fused.1, &plain.1, "frozen linear gradient");
        Ok(())
    }
}
