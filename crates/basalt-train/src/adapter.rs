//! LoRA adapters as GGUF files in the layout llama.cpp loads
//! (`llama_adapter_lora_init`): `general.type = "adapter"`, `adapter.type = "lora"`,
//! `adapter.lora.alpha`, and for each adapted weight `<name>.lora_a` (ggml shape
//! `[in, rank]`) and `<name>.lora_b` (`[rank, out]`), in f32.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor, Var};

use crate::lora::{LoraAdapter, LoraLayers, LoraSpec, Target};
use crate::model::{metadata_text, open_gguf, LlamaConfig};
use crate::TrainError;

/// Writes `lora` as a GGUF LoRA adapter for a base of `config`'s architecture.
/// The file appears whole or not at all (written beside, then renamed).
pub fn write_gguf_adapter(
    path: &Path,
    config: &LlamaConfig,
    lora: &LoraLayers,
) -> Result<(), TrainError> {
    let tensors = lora
        .named_vars()
        .into_iter()
        .map(|(name, var)| Ok((name, QTensor::quantize(var.as_tensor(), GgmlDType::F32)?)))
        .collect::<Result<Vec<_>, TrainError>>()?;
    write_tensors(path, config, lora.spec().alpha, &tensors)
}

/// Writes already-named adapter tensors (`blk.N.<weight>.lora_a|b`, candle shapes
/// `[rank, in]` and `[out, rank]`) as a GGUF LoRA adapter.
pub fn write_named_adapter(
    path: &Path,
    config: &LlamaConfig,
    alpha: f32,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<(), TrainError> {
    let tensors = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), QTensor::quantize(t, GgmlDType::F32)?)))
        .collect::<Result<Vec<_>, TrainError>>()?;
    write_tensors(path, config, alpha, &tensors)
}

fn write_tensors(
    path: &Path,
    config: &LlamaConfig,
    alpha: f32,
    tensors: &[(String, QTensor)],
) -> Result<(), TrainError> {
    let metadata = [
        ("general.type", gguf_file::Value::String("adapter".into())),
        (
            "general.architecture",
            gguf_file::Value::String(config.architecture.clone()),
        ),
        ("adapter.type", gguf_file::Value::String("lora".into())),
        ("adapter.lora.alpha", gguf_file::Value::F32(alpha)),
    ];
    let metadata: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let partial = path.with_extension("gguf.partial");
    let io = |e: std::io::Error| TrainError::Io(format!("{}: {e}", partial.display()));
    let mut out = BufWriter::new(File::create(&partial).map_err(io)?);
    gguf_file::write(&mut out, &metadata, &tensors)?;
    out.flush().map_err(io)?;
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)?;
    Ok(())
}

/// Reads a GGUF LoRA adapter back into trainable adapters (for resuming, and for the
/// parity checks against llama.cpp).
pub fn read_gguf_adapter(path: &Path, config: &LlamaConfig) -> Result<LoraLayers, TrainError> {
    let (content, mut reader) = open_gguf(path)?;
    let text = |key: &str| metadata_text(&content, key);
    if text("general.type").as_deref() != Some("adapter")
        || text("adapter.type").as_deref() != Some("lora")
    {
        return Err(TrainError::Model(format!(
            "{} is not a LoRA adapter",
            path.display()
        )));
    }
    if text("general.architecture").as_deref() != Some(config.architecture.as_str()) {
        return Err(TrainError::Model(format!(
            "the adapter's architecture is {:?}, the model's {:?}",
            text("general.architecture"),
            config.architecture
        )));
    }
    let alpha = content
        .metadata
        .get("adapter.lora.alpha")
        .and_then(|v| v.to_f32().ok())
        .unwrap_or(0.0);
    let device = Device::Cpu;
    let mut pairs: BTreeMap<(usize, Target), (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    for name in names {
        let (base, is_a) = match (name.strip_suffix(".lora_a"), name.strip_suffix(".lora_b")) {
            (Some(base), _) => (base, true),
            (_, Some(base)) => (base, false),
            _ => continue,
        };
        let key = parse_weight_name(base, config.layers).ok_or_else(|| {
            TrainError::Model(format!("adapter tensor {name} is not a llama projection"))
        })?;
        let tensor = content
            .tensor(&mut reader, &name, &device)?
            .dequantize(&device)?;
        let entry = pairs.entry(key).or_default();
        if is_a {
            entry.0 = Some(tensor);
        } else {
            entry.1 = Some(tensor);
        }
    }
    let mut adapters = BTreeMap::new();
    let mut rank = 0;
    for ((layer, target), pair) in pairs {
        let (Some(a), Some(b)) = pair else {
            return Err(TrainError::Model(format!(
                "layer {layer} {} has only one of lora_a and lora_b",
                target.gguf_name()
            )));
        };
        let (n_in, n_out) = config.target_shape(target);
        let r = a.dims().first().copied().unwrap_or(0);
        if a.dims() != [r, n_in] || b.dims() != [n_out, r] || r == 0 {
            return Err(TrainError::Model(format!(
                "layer {layer} {}: shapes {:?} and {:?} do not fit [{n_out}, {n_in}]",
                target.gguf_name(),
                a.dims(),
                b.dims()
            )));
        }
        rank = r;
        let scale = if alpha == 0.0 {
            1.0
        } else {
            f64::from(alpha) / r as f64
        };
        adapters.insert(
            (layer, target),
            LoraAdapter {
                a: Var::from_tensor(&a)?,
                b: Var::from_tensor(&b)?,
                scale,
            },
        );
    }
    let mut targets: Vec<Target> = adapters.keys().map(|(_, t)| *t).collect();
    targets.sort();
    targets.dedup();
    let first = adapters.keys().map(|(l, _)| *l).min().unwrap_or(0);
    let spec = LoraSpec {
        rank,
        alpha,
        targets,
        top_layers: config.layers - first,
    };
    Ok(LoraLayers::from_parts(spec, adapters))
}

/// `blk.N.<gguf name>.weight` → (N, target).
pub fn parse_weight_name(name: &str, layers: usize) -> Option<(usize, Target)> {
    let rest = name.strip_prefix("blk.")?.strip_suffix(".weight")?;
    let (layer, module) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let target = Target::ALL.into_iter().find(|t| t.gguf_name() == module)?;
    (layer < layers).then_some((layer, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LlamaConfig {
        LlamaConfig {
            architecture: "llama".into(),
            hidden: 8,
            layers: 3,
            heads: 2,
            kv_heads: 1,
            ffn: 12,
            vocab: 16,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
        }
    }

    #[test]
    fn an_adapter_reads_back_as_written() -> Result<(), TrainError> {
        let config = tiny();
        let spec = LoraSpec {
            rank: 2,
            alpha: 4.0,
            targets: vec![Target::Q, Target::K, Target::Down],
            top_layers: 2,
        };
        let lora = LoraLayers::new(&config, spec, 7)?;
        for (_, var) in lora.named_vars() {
            // Give B non-zero values so the comparison means something.
            var.set(&(var.as_tensor().ones_like()? * 0.5)?)?;
        }
        let dir = std::env::temp_dir().join(format!("basalt-train-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::Io(e.to_string()))?;
        let path = dir.join("adapter.gguf");
        write_gguf_adapter(&path, &config, &lora)?;
        let back = read_gguf_adapter(&path, &config)?;
        assert_eq!(back.spec(), lora.spec());
        let written = lora.named_vars();
        let read = back.named_vars();
        assert_eq!(written.len(), 2 * 2 * 3);
        assert_eq!(
            written.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            read.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        );
        for ((name, a), (_, b)) in written.iter().zip(&read) {
            let diff = (a.as_tensor() - b.as_tensor())?
                .abs()?
                .sum_all()?
                .to_scalar::<f32>()?;
            assert_eq!(diff, 0.0, "{name} changed on the round trip");
        }
        assert!(written
            .iter()
            .any(|(n, _)| n == "blk.1.attn_k.weight.lora_a"));
        assert!(
            !written.iter().any(|(n, _)| n.starts_with("blk.0.")),
            "layer 0 is below the top 2"
        );
        let other = LlamaConfig {
            architecture: "qwen2".into(),
            ..config
        };
        assert!(
            read_gguf_adapter(&path, &other).is_err(),
            "an adapter for another architecture loads"
        );
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::Io(e.to_string()))?;
        Ok(())
    }

    #[test]
    fn weight_names_parse_to_layer_and_target() {
        assert_eq!(
            parse_weight_name("blk.12.attn_v.weight", 30),
            Some((12, Target::V))
        );
        assert_eq!(parse_weight_name("blk.30.attn_v.weight", 30), None);
        assert_eq!(parse_weight_name("blk.1.attn_norm.weight", 30), None);
        assert_eq!(parse_weight_name("token_embd.weight", 30), None);
    }
}
