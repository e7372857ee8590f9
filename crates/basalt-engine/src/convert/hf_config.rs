//! A Hugging Face `config.json` of a Llama-family model: what llama.cpp needs to know
//! of it (GGUF metadata), and every tensor it implies with its shape.

use serde_json::Value;

use super::gguf_write::MetaValue;
use super::ConvertError;

/// Bounds on what `config.json` may declare (far above any real model's; they keep a
/// hostile file from sizing allocations).
const MAX_LAYERS: usize = 1024;
const MAX_WIDTH: usize = 1 << 18;
const MAX_HEADS: usize = 4096;
const MAX_VOCAB: usize = 1 << 20;

/// The architectures converted, as llama.cpp names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama, Mistral, SmolLM and other `LlamaForCausalLM` layouts: rotary rows permuted.
    Llama,
    /// Qwen2: biases on the query, key and value projections; rotary in NeoX order (no
    /// permutation).
    Qwen2,
}

impl Architecture {
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }
}

/// How positions are scaled beyond the trained context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear(f32),
    /// Llama 3.1's frequency-dependent scaling, written as `rope_freqs.weight`.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: f32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    pub architecture: Architecture,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab_size: usize,
    pub context: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    pub tied_embeddings: bool,
    /// Llama checkpoints with `attention_bias`.
    pub attention_bias: bool,
}

/// One tensor a model of this configuration has.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTensor {
    pub hf_name: String,
    pub gguf_name: String,
    /// Hugging Face order (`[out, in]`).
    pub shape: Vec<u64>,
    /// May be absent (`lm_head` of a tied model).
    pub optional: bool,
    /// Present but not written (`lm_head` equal to the tied embedding).
    pub skip: bool,
    /// Rotary rows to permute, in this many heads.
    pub rotary_heads: Option<usize>,
}

impl HfConfig {
    pub fn parse(config: &Value) -> Result<Self, ConvertError> {
        let refuse = |why: String| ConvertError::Refused(format!("config.json: {why}"));
        let declared = config
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .or_else(|| config.get("model_type").and_then(Value::as_str))
            .unwrap_or("");
        let architecture = match declared {
            "LlamaForCausalLM" | "MistralForCausalLM" | "llama" | "mistral" => Architecture::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Architecture::Qwen2,
            other => {
                return Err(refuse(format!(
                    "architecture {other:?} is not converted here (Llama, Mistral and Qwen2 layouts are); import a GGUF file of this model"
                )))
            }
        };
        let count = |key: &str, max: usize| -> Result<usize, ConvertError> {
            let v = config
                .get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| refuse(format!("{key} is missing or not a positive integer")))?;
            usize::try_from(v)
                .ok()
                .filter(|v| (1..=max).contains(v))
                .ok_or_else(|| refuse(format!("{key} = {v} is outside 1..={max}")))
        };
        let number = |key: &str, default: f64| -> Result<f32, ConvertError> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(default as f32),
                Some(v) => v
                    .as_f64()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .map(|v| v as f32)
                    .ok_or_else(|| refuse(format!("{key} = {v} is not a positive number"))),
            }
        };
        let hidden = count("hidden_size", MAX_WIDTH)?;
        let layers = count("num_hidden_layers", MAX_LAYERS)?;
        let heads = count("num_attention_heads", MAX_HEADS)?;
        let kv_heads = match config.get("num_key_value_heads") {
            None | Some(Value::Null) => heads,
            Some(_) => count("num_key_value_heads", MAX_HEADS)?,
        };
        if heads % kv_heads != 0 {
            return Err(refuse(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            )));
        }
        let head_dim = match config.get("head_dim") {
            None | Some(Value::Null) => {
                if hidden % heads != 0 {
                    return Err(refuse(format!(
                        "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
                    )));
                }
                hidden / heads
            }
            Some(_) => count("head_dim", MAX_WIDTH)?,
        };
        if head_dim % 2 != 0 {
            return Err(refuse(format!(
                "head_dim {head_dim} is odd; rotary embeddings need pairs"
            )));
        }
        let ffn = count("intermediate_size", MAX_WIDTH)?;
        let vocab_size = count("vocab_size", MAX_VOCAB)?;
        let context = match config.get("max_position_embeddings") {
            None | Some(Value::Null) => 4096,
            Some(_) => count("max_position_embeddings", 1 << 24)?,
        };
        let rms_eps = number("rms_norm_eps", 1e-6)?;
        // transformers 5 writes `rope_parameters` (theta and scaling together) where
        // earlier versions wrote `rope_theta` and `rope_scaling`.
        let rope_parameters = config.get("rope_parameters").filter(|v| v.is_object());
        let rope_theta = match rope_parameters.and_then(|p| p.get("rope_theta")) {
            Some(theta) => theta
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0)
                .map(|v| v as f32)
                .ok_or_else(|| {
                    refuse(format!(
                        "rope_parameters.rope_theta = {theta} is not a positive number"
                    ))
                })?,
            None => number("rope_theta", 10_000.0)?,
        };
        let rope_scaling =
            rope_scaling(rope_parameters.or_else(|| config.get("rope_scaling"))).map_err(refuse)?;
        if architecture == Architecture::Qwen2 && rope_scaling != RopeScaling::None {
            return Err(refuse(
                "rope_scaling on a Qwen2 model is not converted here".into(),
            ));
        }
        let tied_embeddings = config
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let attention_bias = architecture == Architecture::Llama
            && config.get("attention_bias").and_then(Value::as_bool) == Some(true);
        Ok(Self {
            architecture,
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
            ffn,
            vocab_size,
            context,
            rms_eps,
            rope_theta,
            rope_scaling,
            tied_embeddings,
            attention_bias,
        })
    }

    /// `<arch>.*` metadata.
    pub fn gguf_metadata(&self) -> Vec<(String, MetaValue)> {
        let arch = self.architecture.gguf_name();
        let key = |k: &str| format!("{arch}.{k}");
        let n = |v: usize| MetaValue::U32(v as u32);
        let mut out = vec![
            (key("vocab_size"), n(self.vocab_size)),
            (key("context_length"), n(self.context)),
            (key("embedding_length"), n(self.hidden)),
            (key("block_count"), n(self.layers)),
            (key("feed_forward_length"), n(self.ffn)),
            (key("rope.dimension_count"), n(self.head_dim)),
            (key("attention.head_count"), n(self.heads)),
            (key("attention.head_count_kv"), n(self.kv_heads)),
            (
                key("attention.layer_norm_rms_epsilon"),
                MetaValue::F32(self.rms_eps),
            ),
            (key("rope.freq_base"), MetaValue::F32(self.rope_theta)),
        ];
        // Written always, as llama.cpp's converter does (needed when heads × head_dim
        // is not the hidden size).
        out.push((key("attention.key_length"), n(self.head_dim)));
        out.push((key("attention.value_length"), n(self.head_dim)));
        if let RopeScaling::Linear(factor) = self.rope_scaling {
            out.push((key("rope.scaling.type"), MetaValue::Text("linear".into())));
            out.push((key("rope.scaling.factor"), MetaValue::F32(factor)));
        }
        out
    }

    /// Every tensor of the model, in the order llama.cpp's converter writes them.
    pub fn expected_tensors(&self) -> Vec<ExpectedTensor> {
        let h = self.hidden as u64;
        let q = (self.heads * self.head_dim) as u64;
        let kv = (self.kv_heads * self.head_dim) as u64;
        let f = self.ffn as u64;
        let v = self.vocab_size as u64;
        let llama = self.architecture == Architecture::Llama;
        let tensor = |hf: String, gguf: String, shape: Vec<u64>| ExpectedTensor {
            hf_name: hf,
            gguf_name: gguf,
            shape,
            optional: false,
            skip: false,
            rotary_heads: None,
        };
        let mut out = vec![tensor(
            "model.embed_tokens.weight".into(),
            "token_embd.weight".into(),
            vec![v, h],
        )];
        for i in 0..self.layers {
            let hf = |s: &str| format!("model.layers.{i}.{s}");
            let gg = |s: &str| format!("blk.{i}.{s}");
            out.push(tensor(
                hf("input_layernorm.weight"),
                gg("attn_norm.weight"),
                vec![h],
            ));
            let mut q_proj = tensor(
                hf("self_attn.q_proj.weight"),
                gg("attn_q.weight"),
                vec![q, h],
            );
            let mut k_proj = tensor(
                hf("self_attn.k_proj.weight"),
                gg("attn_k.weight"),
                vec![kv, h],
            );
            if llama {
                q_proj.rotary_heads = Some(self.heads);
                k_proj.rotary_heads = Some(self.kv_heads);
            }
            out.push(q_proj);
            out.push(k_proj);
            out.push(tensor(
                hf("self_attn.v_proj.weight"),
                gg("attn_v.weight"),
                vec![kv, h],
            ));
            if !llama || self.attention_bias {
                let mut q_bias = tensor(hf("self_attn.q_proj.bias"), gg("attn_q.bias"), vec![q]);
                let mut k_bias = tensor(hf("self_attn.k_proj.bias"), gg("attn_k.bias"), vec![kv]);
                if llama {
                    q_bias.rotary_heads = Some(self.heads);
                    k_bias.rotary_heads = Some(self.kv_heads);
                }
                out.push(q_bias);
                out.push(k_bias);
                out.push(tensor(
                    hf("self_attn.v_proj.bias"),
                    gg("attn_v.bias"),
                    vec![kv],
                ));
            }
            out.push(tensor(
                hf("self_attn.o_proj.weight"),
                gg("attn_output.weight"),
                vec![h, q],
            ));
            if self.attention_bias {
                out.push(tensor(
                    hf("self_attn.o_proj.bias"),
                    gg("attn_output.bias"),
                    vec![h],
                ));
            }
            out.push(tensor(
                hf("post_attention_layernorm.weight"),
                gg("ffn_norm.weight"),
                vec![h],
            ));
            out.push(tensor(
                hf("mlp.gate_proj.weight"),
                gg("ffn_gate.weight"),
                vec![f, h],
            ));
            out.push(tensor(
                hf("mlp.up_proj.weight"),
                gg("ffn_up.weight"),
                vec![f, h],
            ));
            out.push(tensor(
                hf("mlp.down_proj.weight"),
                gg("ffn_down.weight"),
                vec![h, f],
            ));
        }
        out.push(tensor(
            "model.norm.weight".into(),
            "output_norm.weight".into(),
            vec![h],
        ));
        let mut head = tensor("lm_head.weight".into(), "output.weight".into(), vec![v, h]);
        // A tied model reads its output projection from the embedding: lm_head, when a
        // checkpoint carries it anyway, is the same matrix and is not written twice.
        head.optional = self.tied_embeddings;
        head.skip = self.tied_embeddings;
        out.push(head);
        out
    }

    /// Llama 3.1's per-frequency rope factors, when its scaling is used.
    pub fn rope_factors(&self) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } = self.rope_scaling
        else {
            return None;
        };
        let dim = self.head_dim as f64;
        let low_wavelen = f64::from(original_context / low_freq_factor);
        let high_wavelen = f64::from(original_context / high_freq_factor);
        let factors = (0..self.head_dim / 2)
            .map(|i| {
                let freq = 1.0 / f64::from(self.rope_theta).powf((2 * i) as f64 / dim);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (f64::from(original_context) / wavelen
                        - f64::from(low_freq_factor))
                        / f64::from(high_freq_factor - low_freq_factor);
                    (1.0 / ((1.0 - smooth) / f64::from(factor) + smooth)) as f32
                }
            })
            .collect();
        Some(factors)
    }
}

fn rope_scaling(value: Option<&Value>) -> Result<RopeScaling, String> {
    let Some(scaling) = value.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let number = |key: &str, default: Option<f64>| -> Result<f32, String> {
        match (scaling.get(key).and_then(Value::as_f64), default) {
            (Some(v), _) | (None, Some(v)) if v.is_finite() && v > 0.0 => Ok(v as f32),
            _ => Err(format!(
                "rope_scaling.{key} is missing or not a positive number"
            )),
        }
    };
    match kind {
        "default" | "" if scaling.get("factor").is_none() => Ok(RopeScaling::None),
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear(number("factor", None)?)),
        "llama3" => {
            let low = number("low_freq_factor", Some(1.0))?;
            let high = number("high_freq_factor", Some(4.0))?;
            if high <= low {
                return Err("rope_scaling.high_freq_factor must exceed low_freq_factor".into());
            }
            Ok(RopeScaling::Llama3 {
                factor: number("factor", Some(8.0))?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_context: number("original_max_position_embeddings", Some(8192.0))?,
            })
        }
        other => Err(format!(
            "rope_scaling type {other:?} is not converted here (linear and llama3 are)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smollm2() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 576, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
            "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
            "rope_theta": 100000, "tie_word_embeddings": true, "rope_scaling": null,
        })
    }

    #[test]
    fn a_llama_config_gives_its_metadata_and_tensors() -> Result<(), ConvertError> {
        let config = HfConfig::parse(&smollm2())?;
        assert_eq!((config.head_dim, config.kv_heads), (64, 3));
        let meta = config.gguf_metadata();
        assert!(meta.contains(&("llama.attention.head_count_kv".into(), MetaValue::U32(3))));
        assert!(meta.contains(&("llama.rope.freq_base".into(), MetaValue::F32(100_000.0))));
        let tensors = config.expected_tensors();
        assert_eq!(tensors.len(), 1 + 30 * 9 + 2);
        let k = tensors
            .iter()
            .find(|t| t.gguf_name == "blk.3.attn_k.weight")
            .ok_or_else(|| ConvertError::Refused("no attn_k".into()))?;
        assert_eq!((k.shape.clone(), k.rotary_heads), (vec![192, 576], Some(3)));
        let head = tensors
            .last()
            .ok_or_else(|| ConvertError::Refused("none".into()))?;
        assert!(head.optional && head.skip, "a tied lm_head is written");
        Ok(())
    }

    #[test]
    fn transformers_5_rope_parameters_are_read() -> Result<(), ConvertError> {
        let mut value = smollm2();
        value.as_object_mut().map(|o| o.remove("rope_theta"));
        value["rope_parameters"] = json!({"rope_theta": 100000.0, "rope_type": "default"});
        let config = HfConfig::parse(&value)?;
        assert_eq!(
            (config.rope_theta, config.rope_scaling.clone()),
            (100_000.0, RopeScaling::None)
        );
        value["rope_parameters"] = json!({"rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let config = HfConfig::parse(&value)?;
        assert_eq!(config.rope_theta, 500_000.0);
        assert!(
            matches!(config.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 32.0)
        );
        value["rope_parameters"] = json!({"rope_theta": -1});
        assert!(
            HfConfig::parse(&value).is_err(),
            "a negative rope_theta was read"
        );
        Ok(())
    }

    #[test]
    fn qwen2_has_biases_and_no_permutation() -> Result<(), ConvertError> {
        let mut value = smollm2();
        value["architectures"] = json!(["Qwen2ForCausalLM"]);
        let config = HfConfig::parse(&value)?;
        let tensors = config.expected_tensors();
        assert!(tensors.iter().any(|t| t.gguf_name == "blk.0.attn_q.bias"));
        assert!(tensors.iter().all(|t| t.rotary_heads.is_none()));
        Ok(())
    }

    #[test]
    fn bad_configs_are_refused_with_the_field() {
        let cases = [
            (
                json!({"architectures": ["GPT2LMHeadModel"]}),
                "not converted",
            ),
            (json!({"hidden_size": 0}), "hidden_size = 0"),
            (json!({"num_hidden_layers": 100000}), "num_hidden_layers"),
            (json!({"num_key_value_heads": 2}), "not a multiple"),
            (json!({"rms_norm_eps": -1}), "rms_norm_eps"),
            (
                json!({"rope_scaling": {"rope_type": "yarn", "factor": 4}}),
                "yarn",
            ),
            (json!({"vocab_size": "many"}), "vocab_size"),
        ];
        for (change, expect) in cases {
            let mut value = smollm2();
            for (k, v) in change.as_object().into_iter().flatten() {
                value[k] = v.clone();
            }
            let err = HfConfig::parse(&value)
                .map(|_| ())
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(expect)),
                "{change}: expected {expect:?}, got {err:?}"
            );
        }
    }

    #[test]
    fn llama3_rope_factors_run_from_one_to_the_factor() -> Result<(), ConvertError> {
        let mut value = smollm2();
        value["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        value["rope_theta"] = json!(500000.0);
        let factors = HfConfig::parse(&value)?
            .rope_factors()
            .ok_or_else(|| ConvertError::Refused("no factors".into()))?;
        assert_eq!(factors.len(), 32);
        assert_eq!(factors[0], 1.0);
        assert_eq!(factors[31], 8.0);
        assert!(factors.windows(2).all(|w| w[0] <= w[1]), "{factors:?}");
        Ok(())
    }
}
