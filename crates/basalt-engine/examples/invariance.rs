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
    let last = prompt.len() - 1;
    // A row of a step: (token, position, sequence, logits wanted).
    type Row = (LlamaToken, i32, i32, bool);
    let own = |i: usize| -> Row { (prompt[i], i as i32, 0, i == last) };
    let singles = |upto: usize| (head..upto).map(|i| vec![own(i)]).collect::<Vec<_>>();
    let other = |at: usize, pos: i32, seq: i32| -> Row { (prompt[at], pos, seq, true) };
    // Sequences 1 and 2 get a short prompt each, sequence 0 all but its last 4 tokens
    // in chunks; then the case's steps, the last of which holds sequence 0's last token.
    let mut steps: Vec<Vec<Row>> = (1..3)
        .map(|seq| {
            (0..20 + seq as usize)
                .map(|i| (prompt[i], i as i32, seq, false))
                .collect()
        })
        .collect();
    steps.extend((0..head).step_by(256).map(|start| {
        (start..(start + 256).min(head))
            .map(|i| (prompt[i], i as i32, 0, false))
            .collect::<Vec<Row>>()
    }));
    steps.extend(match case {
        "one-at-a-time" => singles(prompt.len()),
        "beside-others" => {
            let mut s = singles(last);
            s.push(vec![other(5, 21, 1), own(last), other(6, 22, 2)]);
            s
        }
        "beside-3-others" => {
            let mut s = singles(last);
            s.push(vec![
                other(5, 21, 1),
                other(6, 22, 2),
                other(7, 0, 3),
                own(last),
            ]);
            s
        }
        "chunk2" => {
            let mut s = singles(last - 1);
            s.push(vec![own(last - 1), own(last)]);
            s
        }
        _ => vec![(head..prompt.len()).map(own).collect()],
    });
    for rows in &steps {
        batch.clear();
        for &(token, pos, seq, logits) in rows {
            batch.add(token, pos, &[seq], logits).expect("add");
        }
        ctx.decode(&mut batch).expect("decode");
    }
    let final_step = steps.last().expect("steps");
    let at = final_step
        .iter()
        .position(|&(_, pos, seq, _)| seq == 0 && pos == last as i32)
        .expect("the last token is in the last step");
    ctx.get_logits_ith(at as i32).to_vec()
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
