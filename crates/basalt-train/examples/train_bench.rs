//! Basalt's side of the LoRA training benchmark (`benches/customization.sh`): trains
//! on a `{"prompt","completion"}` JSONL file exactly as a customization job does (the
//! serving engine's chat template and tokenizer, loss on the completion and its
//! end-of-turn token) and prints tokens/s and peak RSS as JSON.
//!
//! `cargo run --release -p basalt-train --example train_bench -- --model M.gguf
//!  --data train.jsonl --rank 8 --alpha 16 --targets q_proj,v_proj --seq-len 256
//!  --batch 4 --steps 20 --lr 1e-4 --threads 2`
//!
//! Batches are taken in file order, cycling; the first two steps are warm-up and
//! not timed; tokens are the non-padding input tokens of the timed steps.
//!
//! Records with `{"input": ...}` are continued-pre-training text (the loss on every
//! token). `--eval FILE` reports the mean loss and perplexity on FILE's records
//! before and after training (held-out data).
#![allow(clippy::print_stdout)] // a command-line tool: its report is its output

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use basalt_engine::chat::{ChatEngine, ChatEngineConfig, ChatMessage};
use basalt_train::{Example, LlamaModel, LoraSpec, Target, TrainConfig, Trainer};

const WARMUP_STEPS: usize = 2;

/// The `basalt` binary's allocator, so memory is measured as the server would use it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn args() -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.insert(name.to_owned(), value);
    }
    Ok(out)
}

fn get<T: std::str::FromStr>(
    args: &HashMap<String, String>,
    name: &str,
    default: &str,
) -> Result<T, String> {
    args.get(name)
        .map_or(default, String::as_str)
        .parse()
        .map_err(|_| format!("--{name} is not valid"))
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn tokenize(model: &PathBuf, data: &PathBuf, seq_len: usize) -> Result<Vec<Example>, String> {
    let engine = ChatEngine::load(ChatEngineConfig {
        model_path: model.clone(),
        slots: 1,
        context_per_slot: 64,
        batch_tokens: 64,
        queue_capacity: 1,
        threads: 1,
        kv_cache_budget_bytes: None,
        shared_step_interval: 1,
        batch_invariant: true,
        lookup_drafts: 0,
        lora_adapter: None,
    })
    .map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(data).map_err(|e| e.to_string())?;
    let eos = engine.eos_token() as u32;
    let mut examples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let field = |k: &str| {
            record
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        if record.get("input").is_some() {
            let mut tokens: Vec<u32> = engine.bos_token().into_iter().map(|t| t as u32).collect();
            tokens.extend(
                engine
                    .tokenize_text(&field("input"))
                    .iter()
                    .map(|&t| t as u32),
            );
            tokens.push(eos);
            tokens.truncate(seq_len);
            let loss_mask = vec![true; tokens.len()];
            examples.push(Example { tokens, loss_mask });
            continue;
        }
        let prompt = engine
            .tokenize_chat(&[ChatMessage {
                role: "user".into(),
                content: field("prompt"),
            }])
            .map_err(|e| e.to_string())?;
        let mut tokens: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
        let mut loss_mask = vec![false; tokens.len()];
        tokens.extend(
            engine
                .tokenize_text(&field("completion"))
                .iter()
                .map(|&t| t as u32),
        );
        tokens.push(eos);
        loss_mask.resize(tokens.len(), true);
        tokens.truncate(seq_len);
        loss_mask.truncate(seq_len);
        examples.push(Example { tokens, loss_mask });
    }
    Ok(examples)
}

fn run() -> Result<(), String> {
    let args = args()?;
    let model_path: PathBuf = get(&args, "model", "")?;
    let data: PathBuf = get(&args, "data", "")?;
    let rank: usize = get(&args, "rank", "8")?;
    let alpha: f32 = get(&args, "alpha", "16")?;
    let seq_len: usize = get(&args, "seq-len", "256")?;
    let batch: usize = get(&args, "batch", "4")?;
    let steps: usize = get(&args, "steps", "20")?;
    let lr: f64 = get(&args, "lr", "1e-4")?;
    let threads: usize = get(&args, "threads", "2")?;
    let targets = get::<String>(&args, "targets", "q_proj,v_proj")?
        .split(',')
        .map(|t| Target::parse(t.trim()).ok_or_else(|| format!("unknown target {t}")))
        .collect::<Result<Vec<_>, _>>()?;
    let examples = tokenize(&model_path, &data, seq_len)?;
    let held_out = match args.get("eval") {
        Some(path) => tokenize(&model_path, &PathBuf::from(path), seq_len)?,
        None => Vec::new(),
    };
    let records = examples.len();
    let epochs = (steps * batch).div_ceil(records.max(1)).max(1);
    basalt_train::with_threads(threads, || -> Result<(), String> {
        let model = LlamaModel::load(&model_path).map_err(|e| e.to_string())?;
        let config = TrainConfig {
            epochs,
            batch_size: batch,
            learning_rate: lr,
            warmup_steps: 0,
            weight_decay: 0.0,
            lora: LoraSpec {
                rank,
                alpha,
                targets: targets.clone(),
                top_layers: 0,
            },
            seed: 1,
            shuffle: false,
        };
        let mut trainer = Trainer::new(&model, config, examples).map_err(|e| e.to_string())?;
        let eval = |trainer: &Trainer| -> Result<Option<f64>, String> {
            if held_out.is_empty() {
                return Ok(None);
            }
            trainer
                .evaluate(&held_out)
                .map(Some)
                .map_err(|e| e.to_string())
        };
        let before = eval(&trainer)?;
        let mut tokens = 0usize;
        let mut started = None;
        let mut last_loss = 0.0;
        for step in 0..steps {
            if step == WARMUP_STEPS {
                started = Some(Instant::now());
            }
            let m = trainer.step().map_err(|e| e.to_string())?;
            if step >= WARMUP_STEPS {
                tokens += m.tokens;
            }
            last_loss = m.loss;
        }
        let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let after = eval(&trainer)?;
        let report = serde_json::json!({
            "eval_loss_before": before,
            "eval_loss_after": after,
            "eval_perplexity_before": before.map(f64::exp),
            "eval_perplexity_after": after.map(f64::exp),
            "tokens_per_s": tokens as f64 / seconds.max(1e-9),
            "steps": steps.saturating_sub(WARMUP_STEPS),
            "tokens": tokens,
            "seconds": seconds,
            "peak_rss_mib": peak_rss_mib(),
            "final_loss": last_loss,
            "threads": threads,
            "trainable_parameters": trainer.lora().parameter_count(),
        });
        println!("{report}");
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

fn main() {
    if let Err(e) = run() {
        eprintln!("train_bench: {e}");
        std::process::exit(1);
    }
}
