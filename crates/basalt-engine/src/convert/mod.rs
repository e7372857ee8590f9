//! Hugging Face model folders to GGUF: `config.json`, the tokenizer files and
//! `*.safetensors` (F32, F16 or BF16) of a Llama-family model (Llama, Mistral, SmolLM,
//! Qwen2) become one GGUF file llama.cpp serves, then llama.cpp's own quantizer
//! (`llama_model_quantize`) brings it to the type asked for.
//!
//! The conversion streams: one tensor is in memory at a time. Matrices keep their
//! source type (norms and biases become F32, as llama.cpp's converter writes them);
//! Llama's query and key rows are permuted from Hugging Face's rotary layout (halves)
//! to llama.cpp's (interleaved pairs). Every shape is checked against `config.json`
//! before anything is written, so a folder that does not describe one model is refused
//! with what is wrong, never handed to llama.cpp.

mod gguf_write;
mod hf_config;
mod quantize;
mod safetensors_files;
mod sentencepiece;
mod vocab;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub use quantize::{quantize, QuantType};

use gguf_write::{MetaValue, TensorEntry, TensorType};
use hf_config::HfConfig;
use safetensors_files::{Dtype, TensorSource};

/// Why a folder was not converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The folder does not hold a model this converter reads (the caller's input).
    #[error("{0}")]
    Refused(String),
    /// Reading or writing files failed.
    #[error("{0}")]
    Io(String),
    /// llama.cpp's quantizer failed.
    #[error("quantization failed: {0}")]
    Quantize(String),
}

/// What a converted model is.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedModel {
    /// `general.architecture`: `llama` or `qwen2`.
    pub architecture: String,
    /// Whether it carries a chat template (Converse works).
    pub chat_template: bool,
    /// Weights, counted.
    pub parameters: u64,
    pub layers: usize,
    pub vocab_size: usize,
}

/// Converts the Hugging Face model in `dir` (whose files are `names`) to a GGUF file at
/// `out`, named `name`. The file appears whole or not at all.
pub fn convert_hf_model(
    dir: &Path,
    names: &[String],
    out: &Path,
    name: &str,
) -> Result<ConvertedModel, ConvertError> {
    let read_json = |file: &str| -> Result<Option<serde_json::Value>, ConvertError> {
        if !names.iter().any(|n| n == file) {
            return Ok(None);
        }
        let text = std::fs::read_to_string(dir.join(file))
            .map_err(|e| ConvertError::Refused(format!("{file}: {e}")))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ConvertError::Refused(format!("{file} is not JSON: {e}")))
    };
    let config_json = read_json("config.json")?
        .ok_or_else(|| ConvertError::Refused("config.json is missing".into()))?;
    let config = HfConfig::parse(&config_json)?;
    let sentencepiece = if names.iter().any(|n| n == "tokenizer.model") {
        let path = dir.join("tokenizer.model");
        let len = std::fs::metadata(&path)
            .map_err(|e| ConvertError::Refused(format!("tokenizer.model: {e}")))?
            .len();
        if len > sentencepiece::MAX_MODEL_BYTES {
            return Err(ConvertError::Refused(format!(
                "tokenizer.model is {len} bytes (at most {})",
                sentencepiece::MAX_MODEL_BYTES
            )));
        }
        Some(
            std::fs::read(&path)
                .map_err(|e| ConvertError::Refused(format!("tokenizer.model: {e}")))?,
        )
    } else {
        None
    };
    let tokenizer = read_json("tokenizer.json")?.unwrap_or_default();
    let added_tokens_file = read_json("added_tokens.json")?.unwrap_or_default();
    let tokenizer_config = read_json("tokenizer_config.json")?.unwrap_or_default();
    let chat_template_file = if names.iter().any(|n| n == "chat_template.jinja") {
        Some(
            std::fs::read_to_string(dir.join("chat_template.jinja"))
                .map_err(|e| ConvertError::Refused(format!("chat_template.jinja: {e}")))?,
        )
    } else {
        None
    };
    let vocab = vocab::gguf_vocab(
        &vocab::TokenizerFiles {
            tokenizer: &tokenizer,
            tokenizer_config: &tokenizer_config,
            model_config: &config_json,
            chat_template_file,
            sentencepiece,
            added_tokens_file: &added_tokens_file,
        },
        config.vocab_size,
    )?;

    let mut weight_files: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.ends_with(".safetensors"))
        .map(|n| dir.join(n))
        .collect();
    weight_files.sort();
    if weight_files.is_empty() {
        return Err(ConvertError::Refused(
            "no *.safetensors file (PyTorch .bin weights are not read)".into(),
        ));
    }
    let sources = safetensors_files::read_tensor_table(&weight_files)?;
    let plan = plan_tensors(&config, &sources)?;

    let mut metadata = vec![
        (
            "general.architecture".to_owned(),
            MetaValue::Text(config.architecture.gguf_name().into()),
        ),
        ("general.type".to_owned(), MetaValue::Text("model".into())),
        ("general.name".to_owned(), MetaValue::Text(name.into())),
        (
            "general.file_type".to_owned(),
            MetaValue::U32(plan.file_type()),
        ),
    ];
    metadata.extend(config.gguf_metadata());
    metadata.extend(vocab.metadata);

    let entries: Vec<TensorEntry> = plan.tensors.iter().map(|t| t.entry.clone()).collect();
    let partial = out.with_extension("gguf.partial");
    let io = |e: std::io::Error| ConvertError::Io(format!("{}: {e}", partial.display()));
    let result = (|| {
        let file = File::create(&partial).map_err(io)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        let mut failure: Option<ConvertError> = None;
        let written = gguf_write::write_gguf(&mut writer, &metadata, &entries, |i, sink| {
            let bytes = match plan.tensors[i].bytes() {
                Ok(bytes) => bytes,
                Err(e) => {
                    let shown = e.to_string();
                    failure = Some(e);
                    return Err(std::io::Error::other(shown));
                }
            };
            sink.write_all(&bytes)
        });
        if let Some(e) = failure {
            return Err(e);
        }
        written.map_err(io)?;
        let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&partial, out).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    Ok(ConvertedModel {
        architecture: config.architecture.gguf_name().into(),
        chat_template: vocab.chat_template,
        parameters: plan.parameters,
        layers: config.layers,
        vocab_size: vocab.size,
    })
}

/// How one GGUF tensor is made.
struct PlannedTensor {
    entry: TensorEntry,
    make: Make,
}

enum Make {
    /// From a safetensors tensor, converted to the entry's type, its rows permuted for
    /// rotary embeddings in llama.cpp's order when `rotary_heads` is set.
    Copy {
        source: TensorSource,
        rotary_heads: Option<usize>,
    },
    /// Computed values (Llama 3's rope frequency factors).
    Values(Vec<f32>),
}

impl PlannedTensor {
    fn bytes(&self) -> Result<Vec<u8>, ConvertError> {
        match &self.make {
            Make::Values(values) => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            Make::Copy {
                source,
                rotary_heads,
            } => {
                let raw = source.read()?;
                let raw = match rotary_heads {
                    Some(heads) => permute_rotary_rows(&raw, source.shape[0] as usize, *heads),
                    None => raw,
                };
                Ok(convert_elements(raw, source.dtype, self.entry.kind))
            }
        }
    }
}

struct Plan {
    tensors: Vec<PlannedTensor>,
    parameters: u64,
}

impl Plan {
    /// `general.file_type`: the matrices' type (llama_ftype numbering).
    fn file_type(&self) -> u32 {
        let matrix = self
            .tensors
            .iter()
            .find(|t| t.entry.dims.len() == 2)
            .map(|t| t.entry.kind);
        match matrix {
            Some(TensorType::F16) => 1,
            Some(TensorType::Bf16) => 32,
            _ => 0,
        }
    }
}

/// Maps every safetensors tensor to its GGUF tensor, checking each shape against the
/// configuration; a tensor the architecture does not have, or one it needs that is
/// missing, is refused by name.
fn plan_tensors(
    config: &HfConfig,
    sources: &BTreeMap<String, TensorSource>,
) -> Result<Plan, ConvertError> {
    let expected = config.expected_tensors();
    let mut tensors = Vec::new();
    let mut parameters = 0u64;
    for want in &expected {
        let Some(source) = sources.get(&want.hf_name) else {
            if want.optional {
                continue;
            }
            return Err(ConvertError::Refused(format!(
                "tensor {} is missing from the safetensors files",
                want.hf_name
            )));
        };
        if source.shape != want.shape {
            return Err(ConvertError::Refused(format!(
                "tensor {} has shape {:?}; config.json makes it {:?}",
                want.hf_name, source.shape, want.shape
            )));
        }
        if want.skip {
            continue;
        }
        parameters += source.shape.iter().product::<u64>();
        let kind = if source.shape.len() == 1 {
            TensorType::F32
        } else {
            match source.dtype {
                Dtype::F32 => TensorType::F32,
                Dtype::F16 => TensorType::F16,
                Dtype::Bf16 => TensorType::Bf16,
            }
        };
        tensors.push(PlannedTensor {
            entry: TensorEntry {
                name: want.gguf_name.clone(),
                dims: source.shape.iter().rev().copied().collect(),
                kind,
            },
            make: Make::Copy {
                source: source.clone(),
                rotary_heads: want.rotary_heads,
            },
        });
    }
    let known: std::collections::BTreeSet<&str> =
        expected.iter().map(|w| w.hf_name.as_str()).collect();
    if let Some(unknown) = sources
        .keys()
        .find(|n| !known.contains(n.as_str()) && !n.ends_with("rotary_emb.inv_freq"))
    {
        return Err(ConvertError::Refused(format!(
            "tensor {unknown} is not part of a {} model as config.json describes it",
            config.architecture.gguf_name()
        )));
    }
    if let Some(factors) = config.rope_factors() {
        tensors.push(PlannedTensor {
            entry: TensorEntry {
                name: "rope_freqs.weight".into(),
                dims: vec![factors.len() as u64],
                kind: TensorType::F32,
            },
            make: Make::Values(factors),
        });
    }
    Ok(Plan {
        tensors,
        parameters,
    })
}

/// Hugging Face orders each head's rotary rows as two halves; llama.cpp's Llama
/// kernels (`rope` in normal mode) rotate adjacent pairs: row `h·d + 2i + j` of the
/// result is row `h·d + j·d/2 + i` of the source.
fn permute_rotary_rows(raw: &[u8], rows: usize, heads: usize) -> Vec<u8> {
    if rows == 0 || heads == 0 || !rows.is_multiple_of(2 * heads) {
        return raw.to_vec();
    }
    let width = raw.len() / rows;
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(raw.len());
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = h * head_dim + j * half + i;
                out.extend_from_slice(&raw[from * width..(from + 1) * width]);
            }
        }
    }
    out
}

/// Source elements as `to` (little-endian throughout).
fn convert_elements(raw: Vec<u8>, from: Dtype, to: TensorType) -> Vec<u8> {
    let same = matches!(
        (from, to),
        (Dtype::F32, TensorType::F32)
            | (Dtype::F16, TensorType::F16)
            | (Dtype::Bf16, TensorType::Bf16)
    );
    if same {
        return raw;
    }
    let values: Vec<f32> = match from {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::Bf16 => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    };
    match to {
        TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorType::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        TensorType::Bf16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_rows_interleave_each_heads_halves() {
        // 2 heads of dimension 4, one byte per row: rows 0..8.
        let raw: Vec<u8> = (0..8).collect();
        assert_eq!(
            permute_rotary_rows(&raw, 8, 2),
            vec![0, 2, 1, 3, 4, 6, 5, 7]
        );
        // Two bytes per row move together.
        let wide: Vec<u8> = (0..8).flat_map(|r| [r, r]).collect();
        assert_eq!(
            permute_rotary_rows(&wide, 8, 1),
            vec![0, 0, 4, 4, 1, 1, 5, 5, 2, 2, 6, 6, 3, 3, 7, 7]
        );
    }

    #[test]
    fn elements_convert_between_float_types() {
        let f32s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f16s = convert_elements(f32s.clone(), Dtype::F32, TensorType::F16);
        assert_eq!(f16s.len(), 4);
        assert_eq!(convert_elements(f16s, Dtype::F16, TensorType::F32), f32s);
        let bf16s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(convert_elements(bf16s, Dtype::Bf16, TensorType::F32), f32s);
    }
}
