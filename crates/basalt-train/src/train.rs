//! The training loop: batches in a seeded order, masked next-token loss, AdamW, and
//! checkpoints from which a run continues exactly where it stopped.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::lora::{LoraLayers, LoraSpec};
use crate::model::{masked_next_token_loss, LlamaModel};
use crate::optim::{AdamW, AdamWConfig};
use crate::TrainError;

/// One tokenized training record: its tokens and which of them the loss counts
/// (completion or assistant tokens for fine-tuning; every token for continued
/// pre-training).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub loss_mask: Vec<bool>,
}

impl Example {
    pub fn targets(&self) -> usize {
        self.loss_mask.iter().skip(1).filter(|m| **m).count()
    }
}

/// How a run trains.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub lora: LoraSpec,
    pub seed: u64,
    /// Visit the records of each epoch in a seeded random order (false: file order).
    pub shuffle: bool,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    /// 0-based.
    pub step: usize,
    /// 1-based, as Bedrock's metrics files count epochs.
    pub epoch: usize,
    /// Mean loss per target token.
    pub loss: f64,
    /// Tokens the step processed (inputs, padding excluded).
    pub tokens: usize,
    pub learning_rate: f64,
}

pub struct Trainer<'m> {
    model: &'m LlamaModel,
    lora: LoraLayers,
    optimizer: AdamW,
    config: TrainConfig,
    examples: Vec<Example>,
    steps_per_epoch: usize,
}

impl<'m> Trainer<'m> {
    pub fn new(
        model: &'m LlamaModel,
        config: TrainConfig,
        examples: Vec<Example>,
    ) -> Result<Self, TrainError> {
        if examples.is_empty() || config.batch_size == 0 || config.epochs == 0 {
            return Err(TrainError::Data(
                "training needs records, a batch size and an epoch count".into(),
            ));
        }
        if let Some(i) = examples.iter().position(|e| e.targets() == 0) {
            return Err(TrainError::Data(format!(
                "record {} has no target tokens",
                i + 1
            )));
        }
        let steps_per_epoch = examples.len().div_ceil(config.batch_size);
        let lora = LoraLayers::new(model.config(), config.lora.clone(), config.seed)?;
        let optimizer = AdamW::new(AdamWConfig {
            learning_rate: config.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: config.weight_decay,
            warmup_steps: config.warmup_steps,
            total_steps: steps_per_epoch * config.epochs,
        });
        Ok(Self {
            model,
            lora,
            optimizer,
            config,
            examples,
            steps_per_epoch,
        })
    }

    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch * self.config.epochs
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    pub fn steps_done(&self) -> usize {
        self.optimizer.steps_taken()
    }

    pub fn lora(&self) -> &LoraLayers {
        &self.lora
    }

    pub fn finished(&self) -> bool {
        self.steps_done() >= self.total_steps()
    }

    /// The records of step `step`: its epoch's records in file order or, with `shuffle`,
    /// in the order a seeded shuffle of the epoch gives.
    fn batch_of(&self, step: usize) -> Vec<&Example> {
        let epoch = step / self.steps_per_epoch;
        let within = step % self.steps_per_epoch;
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        if self.config.shuffle {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                self.config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            order.shuffle(&mut rng);
        }
        order
            .iter()
            .skip(within * self.config.batch_size)
            .take(self.config.batch_size)
            .map(|&i| &self.examples[i])
            .collect()
    }

    /// Trains one step.
    pub fn step(&mut self) -> Result<StepMetrics, TrainError> {
        let step = self.steps_done();
        if step >= self.total_steps() {
            return Err(TrainError::Data("the run has finished".into()));
        }
        let batch = self.batch_of(step);
        let tokens: Vec<Vec<u32>> = batch.iter().map(|e| e.tokens.clone()).collect();
        let masks: Vec<Vec<bool>> = batch.iter().map(|e| e.loss_mask.clone()).collect();
        let processed = tokens.iter().map(Vec::len).sum();
        let (sum, count) = masked_next_token_loss(self.model, Some(&self.lora), &tokens, &masks)?;
        let mean = (sum / count as f64)?;
        let loss = f64::from(mean.to_scalar::<f32>()?);
        if !loss.is_finite() {
            return Err(TrainError::Diverged(step));
        }
        let grads = mean.backward()?;
        let params: Vec<(String, &candle_core::Var)> = self.lora.named_vars();
        let rate = self.optimizer.step(&params, &grads)?;
        Ok(StepMetrics {
            step,
            epoch: step / self.steps_per_epoch + 1,
            loss,
            tokens: processed,
            learning_rate: rate,
        })
    }

    /// Mean loss per target token over `examples`, with the current adapters.
    pub fn evaluate(&self, examples: &[Example]) -> Result<f64, TrainError> {
        evaluate(
            self.model,
            Some(&self.lora),
            examples,
            self.config.batch_size,
        )
    }

    /// Saves the adapters, the optimizer's state and the step reached; written beside
    /// and renamed, so a crash leaves the previous checkpoint whole.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        let (mut tensors, step) = self.optimizer.state();
        for (name, var) in self.lora.named_vars() {
            tensors.insert(name, var.as_tensor().clone());
        }
        tensors.insert(STEP_KEY.into(), Tensor::new(&[step as u32], &Device::Cpu)?);
        let partial = path.with_extension("partial");
        candle_core::safetensors::save(&tensors, &partial)?;
        std::fs::rename(&partial, path)
            .map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
        Ok(())
    }

    /// Continues from a checkpoint written by [`Trainer::save_checkpoint`] for the
    /// same data and settings; returns the step it resumes at.
    pub fn resume(&mut self, path: &Path) -> Result<usize, TrainError> {
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)?;
        let step = tensors
            .get(STEP_KEY)
            .map(|t| t.to_vec1::<u32>())
            .transpose()?
            .and_then(|v| v.first().copied())
            .ok_or_else(|| TrainError::Model("the checkpoint has no step".into()))?
            as usize;
        for (name, var) in self.lora.named_vars() {
            let saved = tensors
                .get(&name)
                .ok_or_else(|| TrainError::Model(format!("the checkpoint has no {name}")))?;
            if saved.dims() != var.as_tensor().dims() {
                return Err(TrainError::Model(format!(
                    "the checkpoint's {name} has shape {:?}, not {:?}",
                    saved.dims(),
                    var.as_tensor().dims()
                )));
            }
            var.set(saved)?;
        }
        self.optimizer.restore(&tensors, step);
        Ok(step)
    }
}

const STEP_KEY: &str = "basalt.step";

/// Mean loss per target token over `examples` (no gradients kept).
pub fn evaluate(
    model: &LlamaModel,
    lora: Option<&LoraLayers>,
    examples: &[Example],
    batch_size: usize,
) -> Result<f64, TrainError> {
    let mut total = 0.0;
    let mut count = 0usize;
    for chunk in examples.chunks(batch_size.max(1)) {
        let tokens: Vec<Vec<u32>> = chunk.iter().map(|e| e.tokens.clone()).collect();
        let masks: Vec<Vec<bool>> = chunk.iter().map(|e| e.loss_mask.clone()).collect();
        let (sum, n) = masked_next_token_loss(model, lora, &tokens, &masks)?;
        total += f64::from(sum.detach().to_scalar::<f32>()?);
        count += n;
    }
    if count == 0 {
        return Err(TrainError::Data("no target tokens to evaluate".into()));
    }
    Ok(total / count as f64)
}
