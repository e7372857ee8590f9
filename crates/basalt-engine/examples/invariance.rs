//! Which llama.cpp settings make a token's logits independent of the thread count and
//! of what else shares its decode step. Prints, per setting, whether the logits of
//! one token are bit-identical across: 1 or 2 threads; alone in a step or beside two
//! other sequences' tokens; the last row of a 4-row chunk of its own sequence.
//!
//!     cargo run --release -p basalt-engine --example invariance -- MODEL.gguf

use std::num::NonZeroU32;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

fn logits_of(
    backend: &LlamaBackend,
    model: &LlamaModel,
    prompt: &[LlamaToken],
    threads: i32,
    fa: llama_cpp_sys_2::llama_flash_attn_type,
    case: &str,
) -> Vec<f32> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(4096))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(4)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(fa);
    let mut ctx = model.new_context(backend, params).expect("context");
    let mut batch = LlamaBatch::new(512, 4);
    let head = prompt.len() - 4;
    // Sequences 1 and 2: a short prompt each.
    for seq in 1..3 {
        batch.clear();
        for (i, t) in prompt[..20 + seq as usize].iter().enumerate() {
            batch.add(*t, i as i32, &[seq], false).expect("add");
        }
        ctx.decode(&mut batch).expect("decode");
    }
    // Sequence 0: all but the last 4 tokens, in chunks.
    for start in (0..head).step_by(256) {
        batch.clear();
        for i in start..(start + 256).min(head) {
            batch.add(prompt[i], i as i32, &[0], false).expect("add");
        }
        ctx.decode(&mut batch).expect("decode");
    }
    let last = prompt.len() - 1;
    match case {
        "one-at-a-time" => {
            for i in head..prompt.len() {
                batch.clear();
                batch
                    .add(prompt[i], i as i32, &[0], i == last)
                    .expect("add");
                ctx.decode(&mut batch).expect("decode");
            }
            ctx.get_logits_ith(0).to_vec()
        }
        "beside-others" => {
            for i in head..last {
                batch.clear();
                batch.add(prompt[i], i as i32, &[0], false).expect("add");
                ctx.decode(&mut batch).expect("decode");
            }
            batch.clear();
            batch.add(prompt[5], 21, &[1], true).expect("add");
            batch
                .add(prompt[last], last as i32, &[0], true)
                .expect("add");
            batch.add(prompt[6], 22, &[2], true).expect("add");
            ctx.decode(&mut batch).expect("decode");
            ctx.get_logits_ith(1).to_vec()
        }
        "chunk2" => {
            for i in head..last - 1 {
                batch.clear();
                batch.add(prompt[i], i as i32, &[0], false).expect("add");
                ctx.decode(&mut batch).expect("decode");
            }
            batch.clear();
            batch
                .add(prompt[last - 1], (last - 1) as i32, &[0], false)
                .expect("add");
            batch
                .add(prompt[last], last as i32, &[0], true)
                .expect("add");
            ctx.decode(&mut batch).expect("decode");
            ctx.get_logits_ith(1).to_vec()
        }
        "beside-3-others" => {
            for i in head..last {
                batch.clear();
                batch.add(prompt[i], i as i32, &[0], false).expect("add");
                ctx.decode(&mut batch).expect("decode");
            }
            batch.clear();
            batch.add(prompt[5], 21, &[1], true).expect("add");
            batch.add(prompt[6], 22, &[2], true).expect("add");
            batch.add(prompt[7], 0, &[3], true).expect("add");
            batch
                .add(prompt[last], last as i32, &[0], true)
                .expect("add");
            ctx.decode(&mut batch).expect("decode");
            ctx.get_logits_ith(3).to_vec()
        }
        _ => {
            batch.clear();
            for i in head..prompt.len() {
                batch
                    .add(prompt[i], i as i32, &[0], i == last)
                    .expect("add");
            }
            ctx.decode(&mut batch).expect("decode");
            ctx.get_logits_ith(3).to_vec()
        }
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("MODEL.gguf");
    let words: usize = std::env::args()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or(600);
    let backend = LlamaBackend::init().expect("backend");
    let model =
        LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default()).expect("model");
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").expect("text");
    let text: String = text
        .split_whitespace()
        .take(words)
        .collect::<Vec<_>>()
        .join(" ");
    let prompt: Vec<LlamaToken> = model.vocab().tokenize(text.as_bytes(), true, false);
    println!("prompt: {} tokens", prompt.len());
    for (fa_name, fa) in [
        (
            "flash-attn auto",
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        ),
        (
            "flash-attn off",
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        ),
    ] {
        let reference = logits_of(&backend, &model, &prompt, 2, fa, "one-at-a-time");
        for (threads, case) in [
            (1, "one-at-a-time"),
            (2, "beside-others"),
            (1, "beside-others"),
            (2, "chunk"),
            (1, "chunk"),
            (2, "chunk2"),
            (2, "beside-3-others"),
        ] {
            let other = logits_of(&backend, &model, &prompt, threads, fa, case);
            let differing = reference
                .iter()
                .zip(&other)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            let max = reference
                .iter()
                .zip(&other)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            println!("{fa_name:16} {threads} thread(s) {case:14}: {differing:6} logits differ from 2 threads one-at-a-time (max |d| {max:e})");
        }
    }
}
