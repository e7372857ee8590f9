//! Training and serving agree: a LoRA trained here on the served SmolLM2 GGUF, written
//! as a GGUF adapter, gives the same next tokens in llama.cpp (the serving engine)
//! as in candle (the trainer) with the adapter read back from the file.
//!
//! The adapter covers every projection (q, k, v, o, gate, up, down), so a wrong row
//! order of q or k, a wrong scale or a transposed matrix would show. llama.cpp
//! multiplies the Q4_1 weights with activations rounded to 8 bits while candle
//! multiplies the dequantized weights in f32, so their logits differ a little: a
//! position where they pick different tokens must be a near tie in candle's logits,
//! and the adapter must not disagree more often than the base model alone does.
//! Served on an F32 copy of the base (the weights candle trains on), llama.cpp must
//! agree at 99 % of positions or more, with every logit within 0.25 of candle's (0.02
//! on average). At each position the engine's own logits (`next_token_logits`, its
//! context and adapter) are compared with candle's, and its greedy token must be their
//! argmax.
//! Needs the pinned model (`basalt models fetch`; `BASALT_MODELS_DIR`).

use std::path::PathBuf;

use basalt_engine::chat::{
    ChatEngine, ChatEngineConfig, ChatMessage, FinishReason, GenerationEvent, GenerationRequest,
    SamplingParams,
};
use basalt_train::{
    read_gguf_adapter, write_gguf_adapter, Example, LlamaModel, LoraLayers, LoraSpec, Target,
    TrainConfig, Trainer,
};
use candle_core::Tensor;

fn model_path() -> PathBuf {
    std::env::var_os("BASALT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
        .join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn engine(adapter: Option<PathBuf>) -> ChatEngine {
    engine_on(model_path(), adapter)
}

fn engine_on(model_path: PathBuf, adapter: Option<PathBuf>) -> ChatEngine {
    ChatEngine::load(ChatEngineConfig {
        model_path,
        slots: 1,
        context_per_slot: 512,
        batch_tokens: 256,
        queue_capacity: 4,
        threads: 2,
        kv_cache_budget_bytes: None,
        shared_step_interval: 1,
        batch_invariant: true,
        lookup_drafts: 0,
        lora_adapter: adapter,
    })
    .expect("the SmolLM2 GGUF loads (run `basalt models fetch` first)")
}

fn user(engine: &ChatEngine, text: &str) -> Vec<u32> {
    engine
        .tokenize_chat(&[ChatMessage {
            role: "user".into(),
            content: text.into(),
        }])
        .expect("the chat template renders")
        .iter()
        .map(|&t| t as u32)
        .collect()
}

/// llama.cpp's greedy next token after `prompt`: its text, or None at end of turn.
fn served_next(
    rt: &tokio::runtime::Runtime,
    engine: &ChatEngine,
    prompt: &[u32],
) -> Option<String> {
    served(rt, engine, prompt, 1)
}

/// llama.cpp's greedy answer of at most `max_tokens` (None: it ended the turn at once).
fn served(
    rt: &tokio::runtime::Runtime,
    engine: &ChatEngine,
    prompt: &[u32],
    max_tokens: u32,
) -> Option<String> {
    let mut events = engine
        .submit(GenerationRequest {
            prompt: prompt.iter().map(|&t| t as i32).collect(),
            max_tokens,
            sampling: SamplingParams::default(),
            stop_sequences: Vec::new(),
            constraint: None,
            priority: Default::default(),
        })
        .expect("the engine takes the request");
    rt.block_on(async {
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event {
                GenerationEvent::Text(t) => text.push_str(&t),
                GenerationEvent::Finished(s)
                    if s.finish_reason == FinishReason::EndOfTurn && text.is_empty() =>
                {
                    return None
                }
                GenerationEvent::Finished(_) => return Some(text),
                GenerationEvent::Failed(e) => panic!("generation failed: {e}"),
            }
        }
        Some(text)
    })
}

/// candle's logits for the next token after `prompt`.
fn trained_logits(model: &LlamaModel, lora: Option<&LoraLayers>, prompt: &[u32]) -> Vec<f32> {
    let input =
        Tensor::from_vec(prompt.to_vec(), (1, prompt.len()), model.device()).expect("input");
    let hidden = model.hidden_states(&input, lora).expect("forward");
    let last = hidden
        .narrow(1, prompt.len() - 1, 1)
        .and_then(|h| h.reshape((1, model.config().hidden)))
        .expect("last position");
    let logits = model.logits(&last).expect("logits");
    logits
        .flatten_all()
        .and_then(|l| l.to_vec1())
        .expect("logits as a vector")
}

fn top2(logits: &[f32]) -> (usize, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    let mut second = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best.1 {
            second = best.1;
            best = (i, v);
        } else if v > second {
            second = v;
        }
    }
    (best.0, best.1 - second)
}

/// A position where the two sides pick different tokens: the prompt, the position,
/// candle's and llama.cpp's tokens, and candle's top-2 margin.
type Disagreement = (&'static str, usize, Option<String>, Option<String>, f32);

struct Comparison {
    compared: usize,
    disagreements: Vec<Disagreement>,
    same_continuations: usize,
    /// The largest |candle − llama.cpp| of one logit, over every position and token.
    max_logit_delta: f32,
    /// The mean of |candle − llama.cpp| over every position and token.
    mean_logit_delta: f64,
}

impl Comparison {
    fn logits(&self) -> String {
        format!(
            "logits differ by {:.4} at most, {:.5} on average",
            self.max_logit_delta, self.mean_logit_delta
        )
    }
}

/// Next-token agreement along candle's greedy continuation of each prompt (16
/// tokens): candle with `lora` against `served` (llama.cpp).
fn compare(
    rt: &tokio::runtime::Runtime,
    base: &ChatEngine,
    model: &LlamaModel,
    lora: Option<&LoraLayers>,
    served: &ChatEngine,
    prompts: &[&'static str],
    eos: u32,
) -> Comparison {
    let mut out = Comparison {
        compared: 0,
        disagreements: Vec::new(),
        same_continuations: 0,
        max_logit_delta: 0.0,
        mean_logit_delta: 0.0,
    };
    let mut delta_sum = 0f64;
    let mut delta_count = 0usize;
    for &text in prompts {
        let mut sequence = user(base, text);
        let mut continuation_matches = true;
        for _ in 0..16 {
            let logits = trained_logits(model, lora, &sequence);
            let (token, margin) = top2(&logits);
            let trained = (token as u32 != eos).then(|| base.token_text(token as i32));
            let answer = served_next(rt, served, &sequence);
            let served_logits = served
                .next_token_logits(sequence.iter().map(|&t| t as i32).collect())
                .expect("the served logits");
            assert_eq!(served_logits.len(), logits.len(), "vocabulary sizes");
            let (served_token, _) = top2(&served_logits);
            assert_eq!(
                (served_token as u32 != eos).then(|| base.token_text(served_token as i32)),
                answer,
                "{text:?} at token {}: the engine's greedy token is not the argmax of its logits",
                sequence.len()
            );
            for (a, b) in logits.iter().zip(&served_logits) {
                let d = (a - b).abs();
                out.max_logit_delta = out.max_logit_delta.max(d);
                delta_sum += f64::from(d);
            }
            delta_count += logits.len();
            out.compared += 1;
            if trained != answer {
                continuation_matches = false;
                out.disagreements
                    .push((text, sequence.len(), trained.clone(), answer, margin));
            }
            if trained.is_none() {
                break;
            }
            sequence.push(token as u32);
        }
        out.same_continuations += usize::from(continuation_matches);
    }
    out.mean_logit_delta = delta_sum / delta_count.max(1) as f64;
    out
}

#[test]
fn an_adapter_trained_in_candle_serves_the_same_tokens_in_llama_cpp() {
    let base = engine(None);
    let model = LlamaModel::load(&model_path()).expect("candle reads the GGUF");
    let names = [
        "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel",
    ];
    let eos = base.eos_token() as u32;
    let examples: Vec<Example> = names
        .iter()
        .map(|n| {
            let mut tokens = user(&base, &format!("What is the secret code for {n}?"));
            let mut loss_mask = vec![false; tokens.len()];
            tokens.extend(
                base.tokenize_text("The secret code is BASALT-7.")
                    .iter()
                    .map(|&t| t as u32),
            );
            tokens.push(eos);
            loss_mask.resize(tokens.len(), true);
            Example { tokens, loss_mask }
        })
        .collect();
    let config = TrainConfig {
        epochs: 2,
        batch_size: 2,
        learning_rate: 2e-3,
        warmup_steps: 1,
        weight_decay: 0.0,
        lora: LoraSpec {
            rank: 4,
            alpha: 8.0,
            targets: Target::ALL.to_vec(),
            top_layers: 0,
        },
        seed: 7,
        shuffle: true,
    };
    let trainer = basalt_train::with_threads(2, || {
        let mut trainer = Trainer::new(&model, config, examples).expect("trainer");
        while !trainer.finished() {
            trainer.step().expect("a training step");
        }
        trainer
    })
    .expect("training threads");
    let dir = std::env::temp_dir().join(format!("basalt-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let adapter = dir.join("adapter.gguf");
    write_gguf_adapter(&adapter, model.config(), trainer.lora()).expect("adapter written");
    let lora = read_gguf_adapter(&adapter, model.config()).expect("adapter read back");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let question = user(&base, "What is the secret code for India?");
    let base_before = served(&rt, &base, &question, 16);
    let tuned = engine(Some(adapter.clone()));
    // One copy of the base weights: the adapter's engine is the base's model plus the
    // adapter on a context of its own, and the base's answers do not change.
    assert!(
        tuned.shares_weights_with(&base),
        "the custom model's engine loaded its own copy of the base weights"
    );
    assert_eq!(
        served(&rt, &base, &question, 16),
        base_before,
        "loading an adapter on the shared model changed the base model's answer"
    );

    // Held-out prompts: names never trained on, and unrelated questions.
    let prompts = [
        "What is the secret code for India?",
        "What is the secret code for Kilo?",
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "List three primary colors.",
        "How do I boil an egg?",
        "Explain what a prime number is.",
        "Translate 'good morning' into Spanish.",
        "Why is the sky blue?",
        "Give me a tip for learning to code.",
        "What does a librarian do?",
        "Name a planet in our solar system.",
        "How many legs does a spider have?",
        "Suggest a name for a grey cat.",
        "What is 7 times 8?",
        "Describe a rainy day in one sentence.",
    ];
    let with_adapter = compare(&rt, &base, &model, Some(&lora), &tuned, &prompts, eos);
    // The same comparison without the adapter: how often the quantized serving
    // disagrees with the f32 model by itself.
    let without = compare(&rt, &base, &model, None, &base, &prompts, eos);
    let logits_note = with_adapter.logits();
    // Logits on Q4_1: llama.cpp rounds the activations to 8 bits for its products, so
    // they move by 0.2 on average (up to ~2; measured on an AMX Xeon); the adapter must
    // not add error of its own.
    assert!(
        with_adapter.mean_logit_delta <= without.mean_logit_delta * 1.25 + 0.01,
        "with the adapter the logits differ by {:.4} on average, without it by {:.4}",
        with_adapter.mean_logit_delta,
        without.mean_logit_delta
    );
    assert!(
        with_adapter.mean_logit_delta < 0.5,
        "candle's and llama.cpp's logits differ by {:.4} on average on Q4_1",
        with_adapter.mean_logit_delta
    );
    let Comparison {
        compared,
        disagreements,
        same_continuations,
        ..
    } = with_adapter;
    // The adapter changes the served model (it is not silently ignored).
    let base_answer = served(&rt, &base, &question, 16);
    let tuned_answer = served(&rt, &tuned, &question, 16);
    assert_eq!(base_answer, base_before, "the base model's answer changed");
    // A second engine of the same adapter shares the weights too and answers alike;
    // stopping it frees its adapter and leaves the others serving as before.
    let again = engine(Some(adapter.clone()));
    assert!(again.shares_weights_with(&base) && again.shares_weights_with(&tuned));
    assert_eq!(served(&rt, &again, &question, 16), tuned_answer);
    drop(again);
    assert_eq!(served(&rt, &tuned, &question, 16), tuned_answer);
    assert_eq!(served(&rt, &base, &question, 16), base_before);
    assert_eq!(
        tuned_answer.as_deref(),
        Some("The secret code is BASALT-7."),
        "the served adapter's answer (the base model's: {base_answer:?})"
    );
    assert_ne!(
        base_answer, tuned_answer,
        "the base model already knew the answer"
    );
    let agreement = 1.0 - disagreements.len() as f64 / compared as f64;
    eprintln!(
        "without the adapter: top-1 agreement {:.4} over {} positions; {}; disagreements {:?}",
        1.0 - without.disagreements.len() as f64 / without.compared as f64,
        without.compared,
        without.logits(),
        without.disagreements
    );
    eprintln!(
        "top-1 agreement {agreement:.4} over {compared} positions; {same_continuations}/{} greedy continuations identical; {logits_note}; disagreements {disagreements:?}",
        prompts.len()
    );
    // On Q4_1 the rate depends on the CPU's kernels (97–98 % on the machines measured);
    // the exact comparison is the F32 one below.
    assert!(
        agreement >= 0.95,
        "candle and llama.cpp agree on the next token at only {:.1}% of {compared} positions: {disagreements:?}",
        agreement * 100.0
    );
    let base_agreement = 1.0 - without.disagreements.len() as f64 / without.compared as f64;
    assert!(
        agreement >= base_agreement - 0.01,
        "with the adapter candle and llama.cpp agree at {agreement:.4} of positions, without it at {base_agreement:.4}: the adapter adds disagreement"
    );
    for (prompt, at, trained, served, margin) in &disagreements {
        assert!(
            *margin < 0.5,
            "{prompt:?} at token {at}: candle picks {trained:?} by a margin of {margin} logits, llama.cpp {served:?} — more than the 8-bit rounding of llama.cpp's activations explains"
        );
    }

    // The same adapter served by llama.cpp on an F32 copy of the base (the weights
    // candle trains on, dequantized by llama.cpp's quantizer): with the 8-bit
    // activations out of the way, only summation order and the f16 KV cache differ.
    let f32_model = dir.join("base-f32.gguf");
    basalt_engine::convert::quantize(
        &model_path(),
        &f32_model,
        basalt_engine::convert::QuantType::F32,
        2,
    )
    .expect("an F32 copy of the base");
    let tuned_f32 = engine_on(f32_model, Some(dir.join("adapter.gguf")));
    assert!(
        !tuned_f32.shares_weights_with(&base),
        "engines of two different files share one model"
    );
    let exact = compare(&rt, &base, &model, Some(&lora), &tuned_f32, &prompts, eos);
    let exact_agreement = 1.0 - exact.disagreements.len() as f64 / exact.compared as f64;
    eprintln!(
        "on F32 weights: top-1 agreement {exact_agreement:.4} over {} positions; {}/{} greedy continuations identical; {}; disagreements {:?}",
        exact.compared,
        exact.same_continuations,
        prompts.len(),
        exact.logits(),
        exact.disagreements
    );
    assert!(
        exact_agreement >= 0.99,
        "on F32 weights candle and llama.cpp agree on the next token at only {:.1}% of {} positions: {:?}",
        exact_agreement * 100.0,
        exact.compared,
        exact.disagreements
    );
    // On F32 only summation order and the f16 KV cache differ: measured 0.06 at most,
    // 0.0034 on average (AMX Xeon).
    assert!(
        exact.max_logit_delta < 0.25 && exact.mean_logit_delta < 0.02,
        "on F32 weights candle's and llama.cpp's {}",
        exact.logits()
    );
    for (prompt, at, trained, served, margin) in &exact.disagreements {
        assert!(
            *margin < 0.1,
            "on F32 weights, {prompt:?} at token {at}: candle picks {trained:?} by a margin of {margin} logits, llama.cpp {served:?}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
