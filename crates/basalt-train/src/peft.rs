//! Hugging Face PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`)
//! converted to GGUF LoRA adapters for a llama-architecture base.
//!
//! Names: `…layers.{i}.self_attn.q_proj.lora_A.weight` → `blk.{i}.attn_q.weight.lora_a`
//! (and `k/v/o_proj`, `mlp.gate/up/down_proj`). llama.cpp's GGUF stores the rows of q
//! and k permuted for its pair RoPE (each head's two halves interleaved), so `lora_B`
//! of q and k — whose rows are the projection's outputs — get the same permutation;
//! `lora_A` is unchanged. The scale is `alpha / r`, or `alpha / √r` with rsLoRA
//! (written as alpha·√r, since llama.cpp divides by r). DoRA, adapters on the
//! embeddings or the output, per-layer ranks or alphas, extra trained modules, biases
//! and Conv1D (`fan_in_fan_out`) adapters are refused with the reason.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::adapter::write_named_adapter;
use crate::lora::Target;
use crate::model::LlamaConfig;
use crate::TrainError;

/// What a converted adapter holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftAdapter {
    pub rank: usize,
    /// The alpha written to the GGUF (scale = alpha / rank).
    pub alpha: f32,
    pub targets: Vec<Target>,
    pub layers: usize,
    /// `base_model_name_or_path`, as given.
    pub base_model: Option<String>,
}

fn refuse(reason: impl Into<String>) -> TrainError {
    TrainError::Data(reason.into())
}

fn non_empty(config: &serde_json::Value, key: &str) -> bool {
    match config.get(key) {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Object(m)) => !m.is_empty(),
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => true,
    }
}

/// The permutation llama.cpp's converter applies to the rows of q (`heads` = query
/// heads) and k (`heads` = key/value heads): row `(h, j, i)` of the Hugging Face
/// layout (`j` the half, `i` within it) becomes row `(h, i, j)`.
pub fn permute_rows_for_rope(t: &Tensor, heads: usize) -> Result<Tensor, TrainError> {
    let (rows, cols) = t.dims2()?;
    if heads == 0 || rows % heads != 0 || (rows / heads) % 2 == 1 {
        return Err(refuse(format!(
            "cannot permute {rows} rows for {heads} heads (not whole, even-sized heads)"
        )));
    }
    let head_dim = rows / heads;
    Ok(t.reshape((heads, 2, head_dim / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// `model.layers.{i}.self_attn.q_proj` (any prefix) → (i, target).
fn parse_module(name: &str) -> Option<(usize, Target)> {
    let (_, rest) = name.split_once("layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let module = rest.rsplit('.').next()?;
    let target = Target::parse(module)?;
    let parent_ok = matches!(
        (target, rest.split('.').next()),
        (
            Target::Q | Target::K | Target::V | Target::O,
            Some("self_attn")
        ) | (Target::Gate | Target::Up | Target::Down, Some("mlp"))
    );
    parent_ok.then_some((layer, target))
}

/// Converts the PEFT adapter in `dir` for a base of `config` and writes it to `out`.
pub fn convert_peft_adapter(
    dir: &Path,
    config: &LlamaConfig,
    out: &Path,
) -> Result<PeftAdapter, TrainError> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| refuse(format!("{}: {e}", config_path.display())))?;
    let peft: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| refuse(format!("adapter_config.json is not JSON: {e}")))?;
    let text_of = |key: &str| peft.get(key).and_then(|v| v.as_str());
    if let Some(kind) = text_of("peft_type") {
        if kind != "LORA" {
            return Err(refuse(format!(
                "peft_type {kind} is not supported (LORA only)"
            )));
        }
    }
    if non_empty(&peft, "use_dora") {
        return Err(refuse(
            "DoRA adapters (use_dora) are not supported: llama.cpp applies plain LoRA",
        ));
    }
    if non_empty(&peft, "fan_in_fan_out") {
        return Err(refuse(
            "fan_in_fan_out (Conv1D) adapters are not for llama-architecture models",
        ));
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if non_empty(&peft, key) {
            return Err(refuse(format!(
                "{key} (a rank or alpha per layer) is not supported: one rank and alpha for every module"
            )));
        }
    }
    if non_empty(&peft, "modules_to_save") {
        return Err(refuse(
            "modules_to_save (fully trained modules beside the LoRA) is not supported",
        ));
    }
    if text_of("bias").is_some_and(|b| b != "none") {
        return Err(refuse(
            "LoRA biases (bias other than \"none\") are not supported",
        ));
    }
    let rank = peft
        .get("r")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| refuse("adapter_config.json has no rank r"))? as usize;
    let alpha = peft
        .get("lora_alpha")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(rank as f64);
    let rslora = non_empty(&peft, "use_rslora");
    let gguf_alpha = if rslora {
        alpha * (rank as f64).sqrt()
    } else {
        alpha
    } as f32;

    let weights_path = dir.join("adapter_model.safetensors");
    if !weights_path.is_file() {
        return Err(refuse(
            "adapter_model.safetensors is missing (a .bin adapter is not read)",
        ));
    }
    let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .map_err(|e| refuse(format!("adapter_model.safetensors: {e}")))?;
    let mut out_tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut targets = Vec::new();
    let mut layers = std::collections::BTreeSet::new();
    for (name, tensor) in &tensors {
        let stem = name.strip_suffix(".weight").unwrap_or(name);
        let stem = stem.strip_suffix(".default").unwrap_or(stem);
        let (module, is_a) = match (stem.strip_suffix(".lora_A"), stem.strip_suffix(".lora_B")) {
            (Some(m), _) => (m, true),
            (_, Some(m)) => (m, false),
            _ if name.contains("embed_tokens") || name.contains("lm_head") => {
                return Err(refuse(format!(
                    "{name}: adapters on the embeddings or the output layer are not supported"
                )))
            }
            _ => return Err(refuse(format!("{name} is not a LoRA tensor"))),
        };
        if module.contains("embed_tokens") || module.contains("lm_head") {
            return Err(refuse(format!(
                "{name}: adapters on the embeddings or the output layer are not supported"
            )));
        }
        let (layer, target) = parse_module(module).ok_or_else(|| {
            refuse(format!(
                "{name} is not on a llama attention or MLP projection"
            ))
        })?;
        if layer >= config.layers {
            return Err(refuse(format!(
                "{name}: layer {layer} does not exist (the base has {} layers)",
                config.layers
            )));
        }
        let (n_in, n_out) = config.target_shape(target);
        let tensor = tensor.to_dtype(candle_core::DType::F32)?;
        let expected = if is_a { [rank, n_in] } else { [n_out, rank] };
        if tensor.dims() != expected {
            return Err(refuse(format!(
                "{name} has shape {:?}, expected {expected:?} for rank {rank} on this base",
                tensor.dims()
            )));
        }
        let tensor = match (is_a, target) {
            (false, Target::Q) => permute_rows_for_rope(&tensor, config.heads)?,
            (false, Target::K) => permute_rows_for_rope(&tensor, config.kv_heads)?,
            _ => tensor,
        };
        let key = format!(
            "blk.{layer}.{}.weight.lora_{}",
            target.gguf_name(),
            if is_a { "a" } else { "b" }
        );
        out_tensors.insert(key, tensor);
        targets.push(target);
        layers.insert(layer);
    }
    if out_tensors.is_empty() {
        return Err(refuse("adapter_model.safetensors holds no LoRA tensors"));
    }
    for name in out_tensors.keys() {
        let other = match name.strip_suffix("lora_a") {
            Some(stem) => format!("{stem}lora_b"),
            None => format!("{}lora_a", name.trim_end_matches("lora_b")),
        };
        if !out_tensors.contains_key(&other) {
            return Err(refuse(format!("{name} has no matching {other}")));
        }
    }
    targets.sort();
    targets.dedup();
    write_named_adapter(out, config, gguf_alpha, &out_tensors)?;
    Ok(PeftAdapter {
        rank,
        alpha: gguf_alpha,
        targets,
        layers: layers.len(),
        base_model: text_of("base_model_name_or_path").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_permutation_interleaves_each_heads_halves() -> Result<(), TrainError> {
        // 2 heads of 4 rows: HF rows (h, half, i) → GGUF rows (h, i, half).
        let t = Tensor::arange(0f32, 8.0, &Device::Cpu)?.reshape((8, 1))?;
        let p = permute_rows_for_rope(&t, 2)?;
        let rows: Vec<f32> = p.flatten_all()?.to_vec1()?;
        assert_eq!(rows, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert!(permute_rows_for_rope(&t, 3).is_err());
        Ok(())
    }

    #[test]
    fn module_names_map_to_projections() {
        assert_eq!(
            parse_module("base_model.model.model.layers.3.self_attn.k_proj"),
            Some((3, Target::K))
        );
        assert_eq!(
            parse_module("base_model.model.model.layers.12.mlp.down_proj"),
            Some((12, Target::Down))
        );
        assert_eq!(
            parse_module("base_model.model.model.layers.1.mlp.q_proj"),
            None
        );
        assert_eq!(parse_module("base_model.model.lm_head"), None);
    }
}
