//! Low-rank adapters: `y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ` on chosen projections, with `W`
//! frozen, `A` `[rank, in]` initialised uniformly in ±1/√in and `B` `[out, rank]` at
//! zero (so training starts from the base model exactly), `s = alpha / rank`.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use rand::{Rng, SeedableRng};

use crate::model::LlamaConfig;
use crate::TrainError;

/// A projection an adapter may target, by its Hugging Face (PEFT) module name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// The PEFT `target_modules` name.
    pub fn module_name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// The GGUF tensor name inside a block (`blk.N.<name>.weight`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Q => "attn_q",
            Self::K => "attn_k",
            Self::V => "attn_v",
            Self::O => "attn_output",
            Self::Gate => "ffn_gate",
            Self::Up => "ffn_up",
            Self::Down => "ffn_down",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.module_name() == name)
    }
}

/// One adapter on one projection.
pub struct LoraAdapter {
    /// `[rank, in]`.
    pub a: Var,
    /// `[out, rank]`.
    pub b: Var,
    pub scale: f64,
}

impl LoraAdapter {
    /// `s·(x·Aᵀ)·Bᵀ` for `x` `[..., in]`.
    pub fn delta(&self, x: &Tensor) -> Result<Tensor, TrainError> {
        let down = x.broadcast_matmul(&self.a.as_tensor().t()?)?;
        // Scaling B (rank × out) rather than the product saves an activation.
        Ok(down.broadcast_matmul(&(self.b.as_tensor().t()? * self.scale)?)?)
    }
}

/// Where adapters go and how large they are.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f32,
    pub targets: Vec<Target>,
    /// Adapt only the last this many layers (0: every layer).
    pub top_layers: usize,
}

/// Every adapter of a model, by layer and target.
pub struct LoraLayers {
    spec: LoraSpec,
    adapters: BTreeMap<(usize, Target), LoraAdapter>,
}

impl LoraLayers {
    /// Fresh adapters for `config`, drawn from `seed`.
    pub fn new(config: &LlamaConfig, spec: LoraSpec, seed: u64) -> Result<Self, TrainError> {
        if spec.rank == 0 || spec.targets.is_empty() {
            return Err(TrainError::Data("a LoRA needs a rank and a target".into()));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let first = first_layer(config.layers, spec.top_layers);
        let device = candle_core::Device::Cpu;
        let mut adapters = BTreeMap::new();
        for layer in first..config.layers {
            for &target in &spec.targets {
                let (n_in, n_out) = config.target_shape(target);
                let bound = 1.0 / (n_in as f32).sqrt();
                let a: Vec<f32> = (0..spec.rank * n_in)
                    .map(|_| rng.gen_range(-bound..bound))
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (spec.rank, n_in), &device)?)?;
                let b = Var::zeros((n_out, spec.rank), candle_core::DType::F32, &device)?;
                adapters.insert(
                    (layer, target),
                    LoraAdapter {
                        a,
                        b,
                        scale: f64::from(spec.alpha) / spec.rank as f64,
                    },
                );
            }
        }
        Ok(Self { spec, adapters })
    }

    pub(crate) fn from_parts(
        spec: LoraSpec,
        adapters: BTreeMap<(usize, Target), LoraAdapter>,
    ) -> Self {
        Self { spec, adapters }
    }

    pub fn spec(&self) -> &LoraSpec {
        &self.spec
    }

    pub fn get(&self, layer: usize, target: Target) -> Option<&LoraAdapter> {
        self.adapters.get(&(layer, target))
    }

    /// Every trainable tensor with its stable name (`blk.N.attn_q.weight.lora_a`:
    /// the GGUF adapter's names).
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::with_capacity(self.adapters.len() * 2);
        for ((layer, target), adapter) in &self.adapters {
            let base = format!("blk.{layer}.{}.weight", target.gguf_name());
            out.push((format!("{base}.lora_a"), &adapter.a));
            out.push((format!("{base}.lora_b"), &adapter.b));
        }
        out
    }

    /// Trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.named_vars()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum()
    }
}

/// The first adapted layer when only the top `top` of `layers` are adapted.
pub fn first_layer(layers: usize, top: usize) -> usize {
    if top == 0 || top >= layers {
        0
    } else {
        layers - top
    }
}
