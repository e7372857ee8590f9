//! Resident memory of a base model and N custom models of it (the base plus a LoRA
//! adapter, each engine on a context of its own), as the server holds them.
//! Writes an adapter over every projection (rank 8, untrained: what it computes does
//! not change the memory), loads the base's engine, then N adapter engines, and prints
//! the process's RSS after each.
//! `cargo run --release -p basalt-train --example adapter_memory -- <model.gguf> [N]`
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a command-line measurement
use basalt_engine::chat::{ChatEngine, ChatEngineConfig};
use basalt_train::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn engine(path: &std::path::Path, adapter: Option<std::path::PathBuf>) -> ChatEngine {
    ChatEngine::load(ChatEngineConfig {
        model_path: path.to_path_buf(),
        // A small KV cache (11 MiB for this model), so the weights' share shows.
        slots: 1,
        context_per_slot: 512,
        batch_tokens: 512,
        queue_capacity: 16,
        threads: 2,
        kv_cache_budget_bytes: None,
        shared_step_interval: 1,
        batch_invariant: false,
        lookup_drafts: 0,
        lora_adapter: adapter,
    })
    .unwrap()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

fn main() {
    let path = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let n: usize = std::env::args()
        .nth(2)
        .map(|v| v.parse().unwrap())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("basalt-adapter-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let adapter = dir.join("adapter.gguf");
    {
        let model = LlamaModel::load(&path).unwrap();
        let config = TrainConfig {
            epochs: 1,
            batch_size: 1,
            learning_rate: 1e-3,
            warmup_steps: 0,
            weight_decay: 0.0,
            lora: LoraSpec {
                rank: 8,
                alpha: 16.0,
                targets: Target::ALL.to_vec(),
                top_layers: 0,
            },
            seed: 1,
            shuffle: false,
        };
        let example = Example {
            tokens: vec![1, 2, 3, 4],
            loss_mask: vec![true; 4],
        };
        let trainer = Trainer::new(&model, config, vec![example]).unwrap();
        write_gguf_adapter(&adapter, model.config(), trainer.lora()).unwrap();
    }
    let adapter_mib = std::fs::metadata(&adapter).unwrap().len() as f64 / (1 << 20) as f64;
    let model_mib = std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64;
    println!("model file {model_mib:.1} MiB, adapter file {adapter_mib:.1} MiB");
    let start = rss_mib();
    println!("before any engine: RSS {start:.1} MiB");
    let base = engine(&path, None);
    let after_base = rss_mib();
    println!(
        "base engine: RSS {after_base:.1} MiB (+{:.1})",
        after_base - start
    );
    let mut engines = vec![base];
    let mut last = after_base;
    for i in 1..=n {
        engines.push(engine(&path, Some(adapter.clone())));
        let now = rss_mib();
        println!("custom engine {i}: RSS {now:.1} MiB (+{:.1})", now - last);
        last = now;
    }
    println!(
        "per custom engine: {:.1} MiB on average",
        (last - after_base) / n as f64
    );
    drop(engines);
    std::fs::remove_dir_all(&dir).ok();
}
