//! AdamW with a linear warm-up and linear decay, its state kept in plain tensors so a
//! checkpoint can hold it and a resumed run continues exactly.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::TrainError;

/// AdamW settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Steps over which the rate rises linearly from 0 to `learning_rate`.
    pub warmup_steps: usize,
    /// Steps of the whole run; after the warm-up the rate falls linearly to 0 at the
    /// last step.
    pub total_steps: usize,
}

impl AdamWConfig {
    /// The rate at `step` (0-based).
    pub fn rate_at(&self, step: usize) -> f64 {
        if self.warmup_steps > 0 && step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let into = step.saturating_sub(self.warmup_steps);
        self.learning_rate * (1.0 - into as f64 / decay_steps as f64).max(0.0)
    }
}

/// First and second moments of one parameter.
struct Moments {
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    config: AdamWConfig,
    /// Steps taken.
    step: usize,
    moments: HashMap<String, Moments>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            moments: HashMap::new(),
        }
    }

    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// One update of every named parameter that has a gradient.
    pub fn step(
        &mut self,
        params: &[(String, &Var)],
        grads: &GradStore,
    ) -> Result<f64, TrainError> {
        let c = &self.config;
        let rate = c.rate_at(self.step);
        self.step += 1;
        let t = self.step as i32;
        let correction1 = 1.0 - c.beta1.powi(t);
        let correction2 = 1.0 - c.beta2.powi(t);
        for (name, var) in params {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let moments = match self.moments.remove(name) {
                Some(m) => m,
                None => Moments {
                    m: grad.zeros_like()?,
                    v: grad.zeros_like()?,
                },
            };
            let m = ((moments.m * c.beta1)? + (grad * (1.0 - c.beta1))?)?;
            let v = ((moments.v * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&m / correction1)?;
            let v_hat = (&v / correction2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - rate * c.weight_decay))?;
            var.set(&(decayed - (update * rate)?)?)?;
            self.moments.insert(name.clone(), Moments { m, v });
        }
        Ok(rate)
    }

    /// The state as named tensors (`<param>.adam_m`, `<param>.adam_v`) and the step.
    pub fn state(&self) -> (HashMap<String, Tensor>, usize) {
        let mut out = HashMap::new();
        for (name, m) in &self.moments {
            out.insert(format!("{name}.adam_m"), m.m.clone());
            out.insert(format!("{name}.adam_v"), m.v.clone());
        }
        (out, self.step)
    }

    /// Restores a state written by [`AdamW::state`].
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, step: usize) {
        self.step = step;
        self.moments.clear();
        for (key, m) in tensors {
            let Some(name) = key.strip_suffix(".adam_m") else {
                continue;
            };
            if let Some(v) = tensors.get(&format!("{name}.adam_v")) {
                self.moments.insert(
                    name.to_owned(),
                    Moments {
                        m: m.clone(),
                        v: v.clone(),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_zero() {
        let c = AdamWConfig {
            learning_rate: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 4,
            total_steps: 14,
        };
        assert_eq!(c.rate_at(0), 0.25);
        assert_eq!(c.rate_at(3), 1.0);
        assert_eq!(c.rate_at(4), 1.0);
        assert!((c.rate_at(9) - 0.5).abs() < 1e-12);
        assert_eq!(c.rate_at(14), 0.0);
    }

    #[test]
    fn minimises_a_quadratic() -> Result<(), TrainError> {
        let device = candle_core::Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, -2.0], &device)?)?;
        let mut opt = AdamW::new(AdamWConfig {
            learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            total_steps: 10_000,
        });
        for _ in 0..500 {
            let loss = x.as_tensor().sqr()?.sum_all()?;
            let grads = loss.backward()?;
            opt.step(&[("x".to_owned(), &x)], &grads)?;
        }
        let v: Vec<f32> = x.as_tensor().to_vec1()?;
        assert!(v.iter().all(|v| v.abs() < 0.05), "not minimised: {v:?}");
        Ok(())
    }
}
