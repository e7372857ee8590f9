//! Builds the ONNX graph of a BERT sentence encoder from a Hugging Face model folder
//! (`config.json`, `model.safetensors`), in memory, through ONNX Runtime's model
//! editor: nothing is written to disk and no conversion step runs before serving.
//!
//! The graph is the BERT encoder with sentence-transformers' pooling on top: word and
//! position embeddings (token type 0 is folded into the position table), then per
//! layer self-attention (ONNX Runtime's fused `com.microsoft.MultiHeadAttention`, the
//! padding keys masked) and the GELU feed-forward block with their residual layer
//! norms, then the mean of the token states weighted by the caller's pooling weights
//! (1/len on real tokens, 0 on padding) and L2 normalisation.
//!
//! Linear layers run as int8 with per-output-column 7-bit weight scales
//! (`com.microsoft.DynamicQuantizeMatMul`: activations are quantised with one scale
//! per product on each pass, and the product runs on the CPU's int8 dot-product
//! units). The few outlier channels of the GELU output, found at load by a float
//! calibration pass over [`super::CALIBRATION_TEXTS`], stay float in the feed-forward
//! output projection (a gather and a `[tokens, k] · [k, hidden]` product beside the
//! int8 one). Worst cosine against sentence-transformers on the reference sentences
//! (AVX2): 0.987 with every channel int8, 0.992 with the outliers float; keeping the
//! whole projection float in the first three layers gave 0.992 at about a fifth
//! fewer sentences/s.

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

/// What a graph is built for.
pub(super) enum Purpose<'a> {
    /// Every linear layer float, and per layer one more output,
    /// [`ffn_absmax_output`]: the largest |GELU output| of the feed-forward block per
    /// channel (`[intermediate]`), over the pass's tokens.
    Calibration,
    /// Serving: int8 linear layers, except the input channels `ffn_float_channels[l]`
    /// of layer `l`'s feed-forward output projection, which stay float (see
    /// [`float_channels`]).
    Serving {
        ffn_float_channels: &'a [Vec<usize>],
    },
}

/// The calibration graph's output for layer `layer`.
pub(super) fn ffn_absmax_output(layer: usize) -> String {
    format!("ffn_absmax_{layer}")
}

/// Graph input: token ids, `[batch, seq]` int64.
pub(super) const INPUT_IDS: &str = "input_ids";
/// Graph input: positions, `[batch, seq]` int64 (0.. per sequence).
pub(super) const POSITION_IDS: &str = "position_ids";
/// Graph input: which keys attention may look at, `[batch, seq]` int32 (1 on tokens, 0
/// on padding).
pub(super) const KEY_MASK: &str = "key_mask";
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

/// How far above the median channel a channel's calibrated largest |GELU output| must
/// be for its slice of the feed-forward output projection to stay float.
const FLOAT_CHANNEL_FACTOR: f32 = 8.0;

/// The channels of each layer's GELU output that stay float in the feed-forward output
/// projection: those whose calibrated largest magnitude (`absmax[layer]`) exceeds
/// [`FLOAT_CHANNEL_FACTOR`] times the layer's median channel. In all-MiniLM-L6-v2 these
/// are one or two channels in each of the first four layers, carrying values up to 25
/// on the first token where the median channel peaks below 1; with one activation scale
/// per pass they left every other channel a handful of int8 steps.
pub(super) fn float_channels(absmax: &[Vec<f32>]) -> Vec<Vec<usize>> {
    absmax
        .iter()
        .map(|seen| {
            let mut sorted = seen.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
            seen.iter()
                .enumerate()
                .filter(|(_, &m)| m > FLOAT_CHANNEL_FACTOR * median)
                .map(|(j, _)| j)
                .collect()
        })
        .collect()
}

/// The largest quantised weight magnitude: 7 bits. Without VNNI the int8 kernels
/// multiply-add pairs of u8 · s8 products into saturating int16 (`vpmaddubsw`), which
/// 255 · 127 · 2 overflows and 255 · 63 · 2 does not. Measured on AVX2 (Zen 3): the same
/// agreement with sentence-transformers as 127, and 10 % more sentences/s.
const WEIGHT_LIMIT: f32 = 63.0;

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
        let scale = if max > 0.0 { max / WEIGHT_LIMIT } else { 1.0 };
        for (i, &x) in row.iter().enumerate() {
            values[i * out + o] = (x / scale).round().clamp(-WEIGHT_LIMIT, WEIGHT_LIMIT) as i8;
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

    /// A node whose output is the graph output `out`.
    fn node_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
        out: &str,
    ) -> Result<(), EngineError> {
        let node = Node::new(op, ONNX_DOMAIN, out, inputs, [out], attributes).map_err(ort_err)?;
        self.graph.add_node(node).map_err(ort_err)
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
pub(super) fn build(
    source: &WeightsFile,
    config: &BertConfig,
    purpose: &Purpose<'_>,
) -> Result<Model, EngineError> {
    let calibration = matches!(purpose, Purpose::Calibration);
    let quantized = !calibration;
    let path = &source.path;
    let file = SafeTensors::deserialize(&source.bytes).map_err(|e| load_error(path, e))?;
    let weights = Weights { file, path };
    let h = config.hidden_size;
    let ff = config.intermediate_size;
    let heads = config.num_attention_heads;
    let eps = config.layer_norm_eps as f32;

    let mut graph = Graph::new().map_err(ort_err)?;
    graph
        .set_inputs([
            outlet(INPUT_IDS, TensorElementType::Int64, &["batch", "seq"]),
            outlet(POSITION_IDS, TensorElementType::Int64, &["batch", "seq"]),
            outlet(KEY_MASK, TensorElementType::Int32, &["batch", "seq"]),
            outlet(
                POOL_WEIGHTS,
                TensorElementType::Float32,
                &["batch", "seq", "one3"],
            ),
        ])
        .map_err(ort_err)?;
    let mut outputs = vec![outlet(
        EMBEDDING,
        TensorElementType::Float32,
        &["batch", "hidden"],
    )];
    if calibration {
        outputs.extend(
            (0..config.num_hidden_layers)
                .map(|l| outlet(&ffn_absmax_output(l), TensorElementType::Float32, &["ff"])),
        );
    }
    graph.set_outputs(outputs).map_err(ort_err)?;
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
    let half = b.tensor("half", &[], &[0.5f32])?;
    let one = b.tensor("one", &[], &[1.0f32])?;
    let sqrt2 = b.tensor("sqrt2", &[], &[std::f32::consts::SQRT_2])?;
    let token_axes = b.tensor("token_axes", &[2], &[0i64, 1])?;

    for layer in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{layer}.");
        let project = |b: &mut Builder, name: &str| {
            linear(
                b,
                &weights,
                &format!("{p}attention.self.{name}"),
                &x,
                h,
                h,
                Precision::of(quantized),
            )
        };
        let q = project(&mut b, "query")?;
        let k = project(&mut b, "key")?;
        let v = project(&mut b, "value")?;
        // Per head softmax(q·kᵀ/√d) · v on [batch, seq, hidden] inputs, padding keys
        // masked. Measured against the same attention as Reshape/Transpose/MatMul/Softmax
        // nodes (one process, the two interleaved per batch): 1 % more sentences/s.
        let context = b.node(
            "MultiHeadAttention",
            "com.microsoft",
            &[&q, &k, &v, "", KEY_MASK],
            vec![attr("num_heads", heads as i64)?],
        )?;
        let attended = linear(
            &mut b,
            &weights,
            &format!("{p}attention.output.dense"),
            &context,
            h,
            h,
            Precision::of(quantized),
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
            Precision::of(quantized),
        )?;
        // Exact GELU: x · ½ · (1 + erf(x / √2)).
        let scaled = b.op("Div", &[&inner, &sqrt2])?;
        let erf = b.op("Erf", &[&scaled])?;
        let shifted = b.op("Add", &[&erf, &one])?;
        let halved = b.op("Mul", &[&inner, &half])?;
        let activated = b.op("Mul", &[&halved, &shifted])?;
        if calibration {
            let magnitude = b.op("Abs", &[&activated])?;
            b.node_into(
                "ReduceMax",
                &[&magnitude, &token_axes],
                vec![attr("keepdims", 0i64)?],
                &ffn_absmax_output(layer),
            )?;
        }
        let float_channels = match purpose {
            Purpose::Serving { ffn_float_channels } => ffn_float_channels
                .get(layer)
                .map(Vec::as_slice)
                .unwrap_or_default(),
            Purpose::Calibration => &[],
        };
        let out = if quantized && !float_channels.is_empty() {
            linear_split(
                &mut b,
                &weights,
                &format!("{p}output.dense"),
                &activated,
                ff,
                h,
                float_channels,
            )?
        } else {
            linear(
                &mut b,
                &weights,
                &format!("{p}output.dense"),
                &activated,
                ff,
                h,
                Precision::of(quantized),
            )?
        };
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

/// How a linear layer runs.
#[derive(Clone, Copy)]
enum Precision {
    Float,
    /// int8 weights ([`quantize_columns`]), activations quantised per pass.
    Int8,
}

impl Precision {
    fn of(quantized: bool) -> Self {
        if quantized {
            Precision::Int8
        } else {
            Precision::Float
        }
    }
}

/// `x · Wᵀ + b` for a PyTorch `Linear` named `name` (`[out, in]` weight).
fn linear(
    b: &mut Builder,
    weights: &Weights<'_>,
    name: &str,
    x: &str,
    inp: usize,
    out: usize,
    precision: Precision,
) -> Result<String, EngineError> {
    let weight = weights.read(&format!("{name}.weight"), &[out, inp])?;
    let bias = weights.read(&format!("{name}.bias"), &[out])?;
    let bias = b.tensor(&format!("{name}.bias"), &[out as i64], &bias.data)?;
    if let Precision::Int8 = precision {
        int8_product(b, name, x, &weight.data, inp, out, &bias)
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

/// `x · Wᵀ + bias` in int8 for the `[out, in]` weight `weight` ([`quantize_columns`]),
/// the activations quantised on each pass; `bias` is the name of its initializer.
fn int8_product(
    b: &mut Builder,
    name: &str,
    x: &str,
    weight: &[f32],
    inp: usize,
    out: usize,
    bias: &str,
) -> Result<String, EngineError> {
    let q = quantize_columns(weight, out, inp);
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
        &[x, &values, &scales, &zeros, bias],
        Vec::new(),
    )
}

/// `x · Wᵀ + bias` with the input channels `float_channels` in float and the rest int8.
fn linear_split(
    b: &mut Builder,
    weights: &Weights<'_>,
    name: &str,
    x: &str,
    inp: usize,
    out: usize,
    float_channels: &[usize],
) -> Result<String, EngineError> {
    let mut weight = weights.read(&format!("{name}.weight"), &[out, inp])?;
    let bias = weights.read(&format!("{name}.bias"), &[out])?;
    let bias = b.tensor(&format!("{name}.bias"), &[out as i64], &bias.data)?;
    let k = float_channels.len();
    let mut float_rows = vec![0f32; k * out];
    let mut mask = vec![1f32; inp];
    for (c, &j) in float_channels.iter().enumerate() {
        mask[j] = 0.0;
        for o in 0..out {
            float_rows[c * out + o] = weight.data[o * inp + j];
            weight.data[o * inp + j] = 0.0;
        }
    }
    let mask = b.tensor(&format!("{name}.int8_mask"), &[inp as i64], &mask)?;
    let indices: Vec<i64> = float_channels.iter().map(|&j| j as i64).collect();
    let indices = b.tensor(&format!("{name}.float_channels"), &[k as i64], &indices)?;
    let float_w = b.tensor(
        &format!("{name}.float_weight"),
        &[k as i64, out as i64],
        &float_rows,
    )?;
    let masked = b.op("Mul", &[x, &mask])?;
    let int8_part = int8_product(b, name, &masked, &weight.data, inp, out, &bias)?;
    let picked = b.node(
        "Gather",
        ONNX_DOMAIN,
        &[x, &indices],
        vec![attr("axis", -1i64)?],
    )?;
    let float_part = b.op("MatMul", &[&picked, &float_w])?;
    b.op("Add", &[&int8_part, &float_part])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_channels_far_above_the_median_stay_float() {
        let layers = vec![
            vec![0.5, 0.6, 24.0, 0.4, 4.0, 0.55, 0.45],
            vec![0.5, 0.6, 0.7, 0.4, 3.0, 0.55, 0.45],
        ];
        assert_eq!(float_channels(&layers), vec![vec![2], vec![]]);
    }

    #[test]
    fn columns_quantise_to_their_own_scale() {
        // Two output columns of very different ranges, three inputs.
        // No value sits on a rounding tie, so the expected codes are exact.
        let weight = [1.0, -0.4, 0.25, 100.0, 40.0, -100.0];
        let q = quantize_columns(&weight, 2, 3);
        assert_eq!(q.scales.len(), 2);
        assert!((q.scales[0] - 1.0 / WEIGHT_LIMIT).abs() < 1e-7);
        assert!((q.scales[1] - 100.0 / WEIGHT_LIMIT).abs() < 1e-5);
        // Transposed to [in, out]: row i holds input i for both columns.
        assert_eq!(q.values, vec![63, 63, -25, 25, 16, -63]);
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
