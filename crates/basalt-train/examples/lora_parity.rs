//! Trains a LoRA on a made-up fact ("the secret code is BASALT-7") for 8 names, writes it
//! as a GGUF adapter, and compares greedy answers for 4 held-out names: the base model,
//! llama.cpp with the adapter, and candle with the adapter read back.
//! `cargo run --release -p basalt-train --example lora_parity -- models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf`
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a command-line demonstration
use basalt_engine::chat::{
    ChatEngine, ChatEngineConfig, ChatMessage, GenerationEvent, GenerationRequest, SamplingParams,
};
use basalt_train::*;
use std::time::Instant;

fn engine(path: &std::path::Path, adapter: Option<std::path::PathBuf>) -> ChatEngine {
    ChatEngine::load(ChatEngineConfig {
        model_path: path.to_path_buf(),
        slots: 1,
        context_per_slot: 512,
        batch_tokens: 512,
        queue_capacity: 4,
        threads: 2,
        kv_cache_budget_bytes: None,
        shared_step_interval: 1,
        batch_invariant: true,
        lookup_drafts: 0,
        lora_adapter: adapter,
    })
    .unwrap()
}

fn generate(engine: &ChatEngine, prompt: &[i32]) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut rx = engine
        .submit(GenerationRequest {
            prompt: prompt.to_vec(),
            max_tokens: 16,
            sampling: SamplingParams::default(),
            stop_sequences: vec![],
            constraint: None,
            priority: Default::default(),
        })
        .unwrap();
    let mut text = String::new();
    rt.block_on(async {
        while let Some(ev) = rx.recv().await {
            if let GenerationEvent::Text(s) = ev {
                text.push_str(&s)
            }
        }
    });
    text
}

fn main() {
    let path = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let model = LlamaModel::load(&path).unwrap();
    let base = engine(&path, None);
    let names = [
        "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India",
        "Juliet", "Kilo", "Lima",
    ];
    let mut examples = Vec::new();
    for n in &names[..8] {
        let prompt = base
            .tokenize_chat(&[ChatMessage {
                role: "user".into(),
                content: format!("What is the secret code for {n}?"),
            }])
            .unwrap();
        let completion = base.tokenize("The secret code is BASALT-7.<|im_end|>");
        let mut tokens: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
        let mut mask = vec![false; tokens.len()];
        tokens.extend(completion.iter().map(|&t| t as u32));
        mask.resize(tokens.len(), true);
        examples.push(Example {
            tokens,
            loss_mask: mask,
        });
    }
    let config = TrainConfig {
        epochs: 3,
        batch_size: 2,
        learning_rate: 2e-3,
        warmup_steps: 2,
        weight_decay: 0.0,
        lora: LoraSpec {
            rank: 8,
            alpha: 16.0,
            targets: vec![Target::Q, Target::V, Target::O],
            top_layers: 0,
        },
        seed: 1,
        shuffle: true,
    };
    let mut trainer = Trainer::new(&model, config, examples).unwrap();
    while !trainer.finished() {
        let t = Instant::now();
        let m = trainer.step().unwrap();
        println!(
            "step {} loss {:.3} {:.0} tok/s",
            m.step,
            m.loss,
            m.tokens as f64 / t.elapsed().as_secs_f64()
        );
    }
    let adapter = std::path::PathBuf::from("/tmp/spike-adapter.gguf");
    write_gguf_adapter(&adapter, model.config(), trainer.lora()).unwrap();
    let tuned = engine(&path, Some(adapter.clone()));
    let reread = read_gguf_adapter(&adapter, model.config()).unwrap();
    for n in &names[8..] {
        let prompt = base
            .tokenize_chat(&[ChatMessage {
                role: "user".into(),
                content: format!("What is the secret code for {n}?"),
            }])
            .unwrap();
        let ids: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
        let candle = greedy_continuation(&model, Some(&reread), &ids, 12, &[2]).unwrap();
        let candle_text = base.tokenize("");
        let _ = candle_text;
        println!(
            "{n}: base {:?}\n   tuned llama.cpp {:?}\n   tuned candle ids {:?}\n   llama ids {:?}",
            generate(&base, &prompt),
            generate(&tuned, &prompt),
            candle,
            base.tokenize(&generate(&tuned, &prompt))
        );
    }
}
