//! Builds the ONNX graph of a BERT sentence encoder from a Hugging Face model folder
//! (`config.json`, `model.safetensors`), in memory, through ONNX Runtime's model
//! editor: nothing is written to disk and no conversion step runs before serving.
//!
//! The graph is the BERT encoder with sentence-transformers' pooling on top: word and
//! position embeddings (token type 0 is folded into the position table), then per
//! layer self-attention and the GELU feed-forward block with their residual layer
//! norms, then the mean of the token states weighted by the caller's pooling weights
//! (1/len on real tokens, 0 on padding) and L2 normalisation.
//!
//! Linear layers run as int8 with per-output-column weight scales
//! (`com.microsoft.DynamicQuantizeMatMul`: activations are quantised with one scale
//! per product on each pass, and the product runs on the CPU's int8 dot-product units,
//! VNNI or AMX). The feed-forward output projection (whose input is the GELU output)
//! of the first [`FLOAT_FFN_OUTPUT_LAYERS`] layers stays float: quantising it there
//! cost the most agreement with sentence-transformers (worst cosine on the reference
//! sentences, alone and in one padded pass: 0.986 with every layer int8, 0.991 with layer 0
//! float, 0.993 with 0 and 1, 0.994 with 0 to 2).

use std::path::Path;

use ort::editor::{Graph, Model, Node, Opset, ONNX_DOMAIN};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::value::{
    Outlet, PrimitiveTensorElementType, Shape, SymbolicDimensions, Tensor, TensorElementType,
    ValueType,
};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::EngineError;

/// Layers (from the first) whose feed-forward output projection stays float.
pub(super) const FLOAT_FFN_OUTPUT_LAYERS: usize = 3;

/// Graph input: token ids, `[batch, seq]` int64.
pub(super) const INPUT_IDS: &str = "input_ids";
/// Graph input: positions, `[batch, seq]` int64 (0.. per sequence).
pub(super) const POSITION_IDS: &str = "position_ids";
/// Graph input: added to attention scores, `[batch, 1, 1, seq]` f32 (0 or a large
/// negative number on padding).
pub(super) const ATTENTION_BIAS: &str = "attention_bias";
/// Graph input: pooling weights, `[batch, seq, 1]` f32 (1/len on tokens, 0 on padding).
pub(super) const POOL_WEIGHTS: &str = "pool_weights";
/// Graph output: normalised sentence vectors, `[batch, hidden]` f32.
pub(super) const EMBEDDING: &str = "embedding";

/// The parts of a BERT `config.json` the graph needs.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct BertConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

fn load_error(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

pub(super) fn read_config(dir: &Path) -> Result<BertConfig, EngineError> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| load_error(&path, e))?;
    let config: BertConfig = serde_json::from_slice(&bytes).map_err(|e| load_error(&path, e))?;
    if let Some(act) = config.hidden_act.as_deref() {
        if act != "gelu" {
            return Err(load_error(
                &path,
                format!("hidden_act {act:?} is not supported (gelu only)"),
            ));
        }
    }
    if let Some(kind) = config.position_embedding_type.as_deref() {
        if kind != "absolute" {
            return Err(load_error(
                &path,
                format!("position_embedding_type {kind:?} is not supported (absolute only)"),
            ));
        }
    }
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(load_error(
            &path,
            format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            ),
        ));
    }
    Ok(config)
}

/// A float matrix read from safetensors, row-major.
struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

/// The weights file, checked tensor by tensor against the config's shapes.
struct Weights<'a> {
    file: SafeTensors<'a>,
    path: &'a Path,
}

impl Weights<'_> {
    /// The tensor `name`; some exports prefix every name with the architecture.
    fn find(&self, name: &str) -> Option<safetensors::tensor::TensorView<'_>> {
        self.file
            .tensor(name)
            .or_else(|_| self.file.tensor(&format!("bert.{name}")))
            .ok()
    }

    /// How many rows the tensor `name` has (0 when it is absent).
    fn rows(&self, name: &str) -> usize {
        self.find(name)
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(0)
    }

    fn read(&self, name: &str, shape: &[usize]) -> Result<Matrix, EngineError> {
        let view = self
            .find(name)
            .ok_or_else(|| load_error(self.path, format!("no tensor {name}")))?;
        if view.shape() != shape {
            return Err(load_error(
                self.path,
                format!("{name} has shape {:?}, expected {shape:?}", view.shape()),
            ));
        }
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => view
                .data()
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => view
                .data()
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(load_error(
                    self.path,
                    format!("{name} is {other:?}; F32, F16 or BF16 expected"),
                ))
            }
        };
        let (rows, cols) = match shape {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => (1, data.len()),
        };
        Ok(Matrix { rows, cols, data })
    }
}

/// Weights quantised to int8 per output column (symmetric, zero point 0).
pub(super) struct QuantizedColumns {
    /// `[in, out]`, row-major: the transposed weight, as MatMul's right operand.
    pub values: Vec<i8>,
    /// One scale per output column.
    pub scales: Vec<f32>,
}

/// Quantises a PyTorch `Linear` weight (`[out, in]`) for `x · Wᵀ`.
pub(super) fn quantize_columns(weight: &[f32], out: usize, inp: usize) -> QuantizedColumns {
    let mut scales = Vec::with_capacity(out);
    let mut values = vec![0i8; inp * out];
    for o in 0..out {
        let row = &weight[o * inp..(o + 1) * inp];
        let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        for (i, &x) in row.iter().enumerate() {
            values[i * out + o] = (x / scale).round().clamp(-127.0, 127.0) as i8;
        }
        scales.push(scale);
    }
    QuantizedColumns { values, scales }
}

fn transpose(m: &Matrix) -> Vec<f32> {
    let mut t = vec![0f32; m.data.len()];
    for r in 0..m.rows {
        for c in 0..m.cols {
            t[c * m.rows + r] = m.data[r * m.cols + c];
        }
    }
    t
}

fn ort_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        path: "ONNX Runtime graph".into(),
        reason: e.to_string(),
    }
}

/// The graph under construction: nodes get numbered outputs.
struct Builder {
    graph: Graph,
    next: usize,
}

impl Builder {
    fn tensor<T>(&mut self, name: &str, shape: &[i64], data: &[T]) -> Result<String, EngineError>
    where
        T: Copy + PrimitiveTensorElementType + std::fmt::Debug,
    {
        let mut tensor =
            Tensor::<T>::new(&Allocator::default(), shape.to_vec()).map_err(ort_err)?;
        tensor.extract_tensor_mut().1.copy_from_slice(data);
        self.graph
            .add_initializer(name, tensor, false)
            .map_err(ort_err)?;
        Ok(name.to_string())
    }

    fn node(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
    ) -> Result<String, EngineError> {
        self.next += 1;
        let out = format!("{op}_{}", self.next);
        let node =
            Node::new(op, domain, &out, inputs, [out.as_str()], attributes).map_err(ort_err)?;
        self.graph.add_node(node).map_err(ort_err)?;
        Ok(out)
    }

    fn op(&mut self, op: &str, inputs: &[&str]) -> Result<String, EngineError> {
        self.node(op, ONNX_DOMAIN, inputs, Vec::new())
    }
}

fn attr(name: &str, value: impl ort::operator::ToAttribute) -> Result<Attribute, EngineError> {
    Attribute::new(name, value).map_err(ort_err)
}

fn outlet(name: &str, ty: TensorElementType, dims: &[&str]) -> Outlet {
    Outlet::new(
        name,
        ValueType::Tensor {
            ty,
            shape: Shape::new(dims.iter().map(|_| -1i64)),
            dimension_symbols: SymbolicDimensions::new(dims.iter().map(|d| d.to_string())),
        },
    )
}

/// The weights file of a model folder, read once for every graph built from it.
pub(super) struct WeightsFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl WeightsFile {
    pub(super) fn read(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| load_error(&path, e))?;
        Ok(Self { path, bytes })
    }
}

/// Builds the encoder graph into an ONNX Runtime model.
pub(super) fn build(source: &WeightsFile, config: &BertConfig) -> Result<Model, EngineError> {
    let path = &source.path;
    let file = SafeTensors::deserialize(&source.bytes).map_err(|e| load_error(path, e))?;
    let weights = Weights { file, path };
    let h = config.hidden_size;
    let ff = config.intermediate_size;
    let heads = config.num_attention_heads;
    let head_dim = h / heads;
    let eps = config.layer_norm_eps as f32;

    let mut graph = Graph::new().map_err(ort_err)?;
    graph
        .set_inputs([
            outlet(INPUT_IDS, TensorElementType::Int64, &["batch", "seq"]),
            outlet(POSITION_IDS, TensorElementType::Int64, &["batch", "seq"]),
            outlet(
                ATTENTION_BIAS,
                TensorElementType::Float32,
                &["batch", "one", "one2", "seq"],
            ),
            outlet(
                POOL_WEIGHTS,
                TensorElementType::Float32,
                &["batch", "seq", "one3"],
            ),
        ])
        .map_err(ort_err)?;
    graph
        .set_outputs([outlet(
            EMBEDDING,
            TensorElementType::Float32,
            &["batch", "hidden"],
        )])
        .map_err(ort_err)?;
    let mut b = Builder { graph, next: 0 };

    // Embeddings.
    let vocab = weights.rows("embeddings.word_embeddings.weight");
    let words = weights.read("embeddings.word_embeddings.weight", &[vocab, h])?;
    let mut positions = weights.read(
        "embeddings.position_embeddings.weight",
        &[config.max_position_embeddings, h],
    )?;
    let types = weights.rows("embeddings.token_type_embeddings.weight");
    if types > 0 {
        // Every input is one segment (token type 0): fold its vector into positions.
        let token_type = weights.read("embeddings.token_type_embeddings.weight", &[types, h])?;
        for row in positions.data.chunks_exact_mut(h) {
            for (p, t) in row.iter_mut().zip(&token_type.data[..h]) {
                *p += t;
            }
        }
    }
    let words = b.tensor("words", &[vocab as i64, h as i64], &words.data)?;
    let positions = b.tensor(
        "positions",
        &[config.max_position_embeddings as i64, h as i64],
        &positions.data,
    )?;
    let gathered_words = b.node(
        "Gather",
        ONNX_DOMAIN,
        &[&words, INPUT_IDS],
        vec![attr("axis", 0i64)?],
    )?;
    let gathered_positions = b.node(
        "Gather",
        ONNX_DOMAIN,
        &[&positions, POSITION_IDS],
        vec![attr("axis", 0i64)?],
    )?;
    let summed = b.op("Add", &[&gathered_words, &gathered_positions])?;
    let mut x = layer_norm(&mut b, &weights, "embeddings.LayerNorm", &summed, h, eps)?;

    // Shared constants.
    let split_heads = b.tensor(
        "split_heads",
        &[4],
        &[0i64, 0, heads as i64, head_dim as i64],
    )?;
    let merge_heads = b.tensor("merge_heads", &[3], &[0i64, 0, h as i64])?;
    let scale = b.tensor("score_scale", &[], &[1.0f32 / (head_dim as f32).sqrt()])?;
    let half = b.tensor("half", &[], &[0.5f32])?;
    let one = b.tensor("one", &[], &[1.0f32])?;
    let sqrt2 = b.tensor("sqrt2", &[], &[std::f32::consts::SQRT_2])?;

    for layer in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{layer}.");
        let heads_of =
            |b: &mut Builder, x: &str, name: &str, perm: &[i64]| -> Result<String, EngineError> {
                let projected = linear(
                    b,
                    &weights,
                    &format!("{p}attention.self.{name}"),
                    x,
                    h,
                    h,
                    true,
                )?;
                let split = b.op("Reshape", &[&projected, &split_heads])?;
                b.node(
                    "Transpose",
                    ONNX_DOMAIN,
                    &[&split],
                    vec![attr("perm", perm.to_vec())?],
                )
            };
        let q = heads_of(&mut b, &x, "query", &[0, 2, 1, 3])?;
        let k = heads_of(&mut b, &x, "key", &[0, 2, 3, 1])?;
        let v = heads_of(&mut b, &x, "value", &[0, 2, 1, 3])?;
        let scores = b.op("MatMul", &[&q, &k])?;
        let scores = b.op("Mul", &[&scores, &scale])?;
        let scores = b.op("Add", &[&scores, ATTENTION_BIAS])?;
        let probs = b.node(
            "Softmax",
            ONNX_DOMAIN,
            &[&scores],
            vec![attr("axis", -1i64)?],
        )?;
        let context = b.op("MatMul", &[&probs, &v])?;
        let context = b.node(
            "Transpose",
            ONNX_DOMAIN,
            &[&context],
            vec![attr("perm", vec![0i64, 2, 1, 3])?],
        )?;
        let context = b.op("Reshape", &[&context, &merge_heads])?;
        let attended = linear(
            &mut b,
            &weights,
            &format!("{p}attention.output.dense"),
            &context,
            h,
            h,
            true,
        )?;
        let residual = b.op("Add", &[&attended, &x])?;
        x = layer_norm(
            &mut b,
            &weights,
            &format!("{p}attention.output.LayerNorm"),
            &residual,
            h,
            eps,
        )?;

        let inner = linear(
            &mut b,
            &weights,
            &format!("{p}intermediate.dense"),
            &x,
            h,
            ff,
            true,
        )?;
        // Exact GELU: x · ½ · (1 + erf(x / √2)).
        let scaled = b.op("Div", &[&inner, &sqrt2])?;
        let erf = b.op("Erf", &[&scaled])?;
        let shifted = b.op("Add", &[&erf, &one])?;
        let halved = b.op("Mul", &[&inner, &half])?;
        let activated = b.op("Mul", &[&halved, &shifted])?;
        let quantized = layer >= FLOAT_FFN_OUTPUT_LAYERS;
        let out = linear(
            &mut b,
            &weights,
            &format!("{p}output.dense"),
            &activated,
            ff,
            h,
            quantized,
        )?;
        let residual = b.op("Add", &[&out, &x])?;
        x = layer_norm(
            &mut b,
            &weights,
            &format!("{p}output.LayerNorm"),
            &residual,
            h,
            eps,
        )?;
    }

    // Mean pooling (weights 1/len on tokens, 0 on padding) and L2 normalisation.
    let seq_axis = b.tensor("seq_axis", &[1], &[1i64])?;
    let weighted = b.op("Mul", &[&x, POOL_WEIGHTS])?;
    let pooled = b.node(
        "ReduceSum",
        ONNX_DOMAIN,
        &[&weighted, &seq_axis],
        vec![attr("keepdims", 0i64)?],
    )?;
    let norm = b.node(
        "ReduceL2",
        ONNX_DOMAIN,
        &[&pooled, &seq_axis],
        vec![attr("keepdims", 1i64)?],
    )?;
    let tiny = b.tensor("tiny", &[], &[1e-12f32])?;
    let norm = b.op("Max", &[&norm, &tiny])?;
    let node = Node::new(
        "Div",
        ONNX_DOMAIN,
        "normalize",
        [pooled.as_str(), norm.as_str()],
        [EMBEDDING],
        [],
    )
    .map_err(ort_err)?;
    b.graph.add_node(node).map_err(ort_err)?;

    let mut model = Model::new([
        Opset::new(ONNX_DOMAIN, 18).map_err(ort_err)?,
        Opset::new("com.microsoft", 1).map_err(ort_err)?,
    ])
    .map_err(ort_err)?;
    model.set_graph(b.graph).map_err(ort_err)?;
    Ok(model)
}

fn layer_norm(
    b: &mut Builder,
    weights: &Weights<'_>,
    name: &str,
    x: &str,
    h: usize,
    eps: f32,
) -> Result<String, EngineError> {
    let gamma = weights.read(&format!("{name}.weight"), &[h])?;
    let beta = weights.read(&format!("{name}.bias"), &[h])?;
    let gamma = b.tensor(&format!("{name}.weight"), &[h as i64], &gamma.data)?;
    let beta = b.tensor(&format!("{name}.bias"), &[h as i64], &beta.data)?;
    b.node(
        "LayerNormalization",
        ONNX_DOMAIN,
        &[x, &gamma, &beta],
        vec![attr("axis", -1i64)?, attr("epsilon", eps)?],
    )
}

/// `x · Wᵀ + b` for a PyTorch `Linear` named `name` (`[out, in]` weight).
fn linear(
    b: &mut Builder,
    weights: &Weights<'_>,
    name: &str,
    x: &str,
    inp: usize,
    out: usize,
    quantized: bool,
) -> Result<String, EngineError> {
    let weight = weights.read(&format!("{name}.weight"), &[out, inp])?;
    let bias = weights.read(&format!("{name}.bias"), &[out])?;
    let bias = b.tensor(&format!("{name}.bias"), &[out as i64], &bias.data)?;
    if quantized {
        let q = quantize_columns(&weight.data, out, inp);
        let values = b.tensor(
            &format!("{name}.weight.q"),
            &[inp as i64, out as i64],
            &q.values,
        )?;
        let scales = b.tensor(&format!("{name}.weight.scale"), &[out as i64], &q.scales)?;
        let zeros = b.tensor(
            &format!("{name}.weight.zero"),
            &[out as i64],
            &vec![0i8; out],
        )?;
        b.node(
            "DynamicQuantizeMatMul",
            "com.microsoft",
            &[x, &values, &scales, &zeros, &bias],
            Vec::new(),
        )
    } else {
        let transposed = transpose(&weight);
        let w = b.tensor(
            &format!("{name}.weight.t"),
            &[inp as i64, out as i64],
            &transposed,
        )?;
        let product = b.op("MatMul", &[x, &w])?;
        b.op("Add", &[&product, &bias])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_quantise_to_their_own_scale() {
        // Two output columns of very different ranges, three inputs.
        let weight = [1.0, -0.5, 0.25, 100.0, 50.0, -100.0];
        let q = quantize_columns(&weight, 2, 3);
        assert_eq!(q.scales.len(), 2);
        assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-7);
        assert!((q.scales[1] - 100.0 / 127.0).abs() < 1e-5);
        // Transposed to [in, out]: row i holds input i for both columns.
        assert_eq!(q.values, vec![127, 127, -64, 64, 32, -127]);
        for (i, &x) in weight.iter().enumerate() {
            let (o, k) = (i / 3, i % 3);
            let back = f32::from(q.values[k * 2 + o]) * q.scales[o];
            assert!(
                (back - x).abs() <= q.scales[o] / 2.0 + 1e-6,
                "{x} came back as {back}"
            );
        }
    }
}
