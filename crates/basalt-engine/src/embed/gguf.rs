//! Converts a BERT model in the Hugging Face layout (`config.json`, `tokenizer.json`,
//! `model.safetensors`) into a GGUF file that llama.cpp's BERT graph loads.
//!
//! The matrices of the encoder layers are stored as Q8_0, the type llama.cpp's fastest
//! CPU kernels take (AMX tiles where the CPU has them, VNNI otherwise); embeddings,
//! biases and norms stay F32. The tensor names and metadata keys are those llama.cpp's
//! own `convert_hf_to_gguf.py` writes for `BertModel`. Tokenization stays with the
//! `tokenizers` crate (exactly the Hugging Face pipeline); the vocabulary is written
//! too because llama.cpp will not load a model without one.

use std::collections::HashMap;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::EngineError;

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
    Ok(config)
}

/// llama.cpp token types (`llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_UNKNOWN: i32 = 2;
const TOKEN_CONTROL: i32 = 3;

/// The vocabulary in id order, spelled as llama.cpp's WordPiece tokenizer expects:
/// word-initial pieces prefixed with `▁`, continuation pieces (`##x`) without the
/// marker, special tokens as they are.
fn vocabulary(tokenizer_path: &Path) -> Result<(Vec<Value>, Vec<Value>), EngineError> {
    #[derive(Deserialize)]
    struct TokenizerFile {
        model: WordPieceModel,
        #[serde(default)]
        added_tokens: Vec<AddedToken>,
    }
    #[derive(Deserialize)]
    struct WordPieceModel {
        vocab: HashMap<String, u32>,
        #[serde(default)]
        unk_token: Option<String>,
    }
    #[derive(Deserialize)]
    struct AddedToken {
        content: String,
        #[serde(default)]
        special: bool,
    }
    let bytes = std::fs::read(tokenizer_path).map_err(|e| load_error(tokenizer_path, e))?;
    let file: TokenizerFile =
        serde_json::from_slice(&bytes).map_err(|e| load_error(tokenizer_path, e))?;
    let special: std::collections::HashSet<&str> = file
        .added_tokens
        .iter()
        .filter(|t| t.special)
        .map(|t| t.content.as_str())
        .collect();
    let mut by_id: Vec<Option<&str>> = vec![None; file.model.vocab.len()];
    for (piece, &id) in &file.model.vocab {
        let slot = by_id.get_mut(id as usize).ok_or_else(|| {
            load_error(
                tokenizer_path,
                format!("token id {id} outside the vocabulary"),
            )
        })?;
        *slot = Some(piece);
    }
    let mut tokens = Vec::with_capacity(by_id.len());
    let mut types = Vec::with_capacity(by_id.len());
    for (id, piece) in by_id.into_iter().enumerate() {
        let piece =
            piece.ok_or_else(|| load_error(tokenizer_path, format!("no token with id {id}")))?;
        let (text, kind) = if special.contains(piece) {
            let kind = if Some(piece) == file.model.unk_token.as_deref() {
                TOKEN_UNKNOWN
            } else {
                TOKEN_CONTROL
            };
            (piece.to_string(), kind)
        } else if let Some(rest) = piece.strip_prefix("##") {
            (rest.to_string(), TOKEN_NORMAL)
        } else {
            (format!("\u{2581}{piece}"), TOKEN_NORMAL)
        };
        tokens.push(Value::String(text));
        types.push(Value::I32(kind));
    }
    Ok((tokens, types))
}

/// Maps a Hugging Face BERT tensor name to llama.cpp's name; `None` for tensors the
/// graph does not use (the pooler, position ids).
fn gguf_name(hf: &str) -> Option<String> {
    let name = hf.strip_prefix("bert.").unwrap_or(hf);
    let fixed = match name {
        "embeddings.word_embeddings.weight" => Some("token_embd.weight"),
        "embeddings.position_embeddings.weight" => Some("position_embd.weight"),
        "embeddings.token_type_embeddings.weight" => Some("token_types.weight"),
        "embeddings.LayerNorm.weight" => Some("token_embd_norm.weight"),
        "embeddings.LayerNorm.bias" => Some("token_embd_norm.bias"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Some(fixed.to_string());
    }
    let rest = name.strip_prefix("encoder.layer.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    let module = match module {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{module}.{kind}"))
}

/// Writes the GGUF for the model in `dir` (whose `config.json` says `config`) to `out`.
pub(super) fn convert(dir: &Path, config: &BertConfig, out: &Path) -> Result<(), EngineError> {
    let weights_path = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .map_err(|e| load_error(&weights_path, e))?;
    let mut converted: Vec<(String, QTensor)> = Vec::with_capacity(tensors.len());
    for (hf_name, tensor) in &tensors {
        let Some(name) = gguf_name(hf_name) else {
            continue;
        };
        let tensor: Tensor = tensor
            .to_dtype(DType::F32)
            .map_err(|e| load_error(&weights_path, format!("{hf_name}: {e}")))?;
        // Layer matrices go to Q8_0; everything else (embeddings, biases, norms) stays F32.
        let is_matrix =
            name.starts_with("blk.") && name.ends_with(".weight") && !name.contains("norm");
        let dtype = if is_matrix {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        let q = QTensor::quantize(&tensor, dtype)
            .map_err(|e| load_error(&weights_path, format!("{hf_name}: {e}")))?;
        converted.push((name, q));
    }
    let expected = 5 + 16 * config.num_hidden_layers;
    if converted.len() != expected {
        return Err(load_error(
            &weights_path,
            format!(
                "found {} of the {expected} BERT tensors llama.cpp needs",
                converted.len()
            ),
        ));
    }
    converted.sort_by(|a, b| a.0.cmp(&b.0));

    let tokenizer_path = dir.join("tokenizer.json");
    let (tokens, token_types) = vocabulary(&tokenizer_path)?;
    let u32v = |v: usize| Value::U32(v as u32);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("bert".into())),
        (
            "general.name",
            Value::String("basalt-converted-bert".into()),
        ),
        ("general.file_type", Value::U32(7)), // mostly Q8_0
        ("general.quantization_version", Value::U32(2)),
        ("bert.block_count", u32v(config.num_hidden_layers)),
        ("bert.context_length", u32v(config.max_position_embeddings)),
        ("bert.embedding_length", u32v(config.hidden_size)),
        ("bert.feed_forward_length", u32v(config.intermediate_size)),
        (
            "bert.attention.head_count",
            u32v(config.num_attention_heads),
        ),
        (
            "bert.attention.layer_norm_epsilon",
            Value::F32(config.layer_norm_eps as f32),
        ),
        ("bert.attention.causal", Value::Bool(false)),
        ("bert.pooling_type", Value::U32(1)), // mean
        ("tokenizer.ggml.model", Value::String("bert".into())),
        ("tokenizer.ggml.pre", Value::String("jina-v2-en".into())),
        ("tokenizer.ggml.token_type_count", Value::U32(2)),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(token_types)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(true)),
    ];
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        converted.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let file = std::fs::File::create(out).map_err(|e| load_error(out, e))?;
    let mut writer = BufWriter::new(file);
    candle_core::quantized::gguf_file::write(&mut writer, &metadata_refs, &tensor_refs)
        .map_err(|e| load_error(out, e))?;
    std::io::Write::flush(&mut writer).map_err(|e| load_error(out, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn maps_hugging_face_names_to_llama_cpp_names() {
        assert_eq!(
            gguf_name("encoder.layer.3.attention.self.query.weight").as_deref(),
            Some("blk.3.attn_q.weight")
        );
        assert_eq!(
            gguf_name("bert.encoder.layer.0.output.LayerNorm.bias").as_deref(),
            Some("blk.0.layer_output_norm.bias")
        );
        assert_eq!(
            gguf_name("encoder.layer.5.intermediate.dense.weight").as_deref(),
            Some("blk.5.ffn_up.weight")
        );
        assert_eq!(
            gguf_name("embeddings.word_embeddings.weight").as_deref(),
            Some("token_embd.weight")
        );
        assert_eq!(gguf_name("pooler.dense.weight"), None);
        assert_eq!(gguf_name("embeddings.position_ids"), None);
    }
}
