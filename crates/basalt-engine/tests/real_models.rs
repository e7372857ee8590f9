//! The engines on the real pinned models (fetched by `basalt models fetch` into
//! `BASALT_MODELS_DIR`, default `./models` at the repository root).

use std::path::PathBuf;
use std::sync::OnceLock;

use basalt_engine::chat::{
    ChatEngine, ChatEngineConfig, ChatMessage, FinishReason, GenerationEvent, GenerationRequest,
    SamplingParams,
};
use basalt_engine::embed::{EmbeddingEngine, EmbeddingEngineConfig};

fn models_dir() -> PathBuf {
    std::env::var_os("BASALT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn chat() -> &'static ChatEngine {
    static ENGINE: OnceLock<ChatEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        ChatEngine::load(ChatEngineConfig {
            model_path: models_dir()
                .join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"),
            slots: 4,
            context_per_slot: 1024,
            batch_tokens: 256,
            queue_capacity: 16,
            threads: 2,
        })
        .expect("the SmolLM2 GGUF loads (run `basalt models fetch` first)")
    })
}

fn prompt(question: &str) -> Vec<i32> {
    let engine = chat();
    let text = engine
        .render(
            &[ChatMessage {
                role: "user".into(),
                content: question.into(),
            }],
            true,
        )
        .expect("template renders");
    engine.tokenize(&text)
}

fn generate(
    question: &str,
    max_tokens: u32,
    stops: &[&str],
) -> (String, basalt_engine::chat::GenerationSummary) {
    let mut rx = chat()
        .submit(GenerationRequest {
            prompt: prompt(question),
            max_tokens,
            sampling: SamplingParams::default(),
            stop_sequences: stops.iter().map(|s| s.to_string()).collect(),
            constraint: None,
        })
        .expect("accepted");
    let mut text = String::new();
    loop {
        match rx
            .blocking_recv()
            .expect("the engine ends every stream with Finished or Failed")
        {
            GenerationEvent::Text(t) => text.push_str(&t),
            GenerationEvent::Finished(summary) => return (text, summary),
            GenerationEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
}

#[test]
fn greedy_generation_is_deterministic_and_counts_tokens() {
    let (a, sa) = generate("What is the capital of France?", 24, &[]);
    let (b, sb) = generate("What is the capital of France?", 24, &[]);
    assert!(!a.is_empty(), "the model produced no text");
    assert_eq!(a, b, "greedy decoding must repeat exactly");
    assert_eq!(sa.completion_tokens, sb.completion_tokens);
    assert_eq!(
        sa.prompt_tokens as usize,
        prompt("What is the capital of France?").len()
    );
    assert!(
        sb.cached_prompt_tokens > 0,
        "the second identical prompt must reuse the cached prefix"
    );
}

#[test]
fn max_tokens_stops_generation_exactly() {
    let (_, summary) = generate("Write a long story about a dragon.", 5, &[]);
    assert_eq!(summary.finish_reason, FinishReason::MaxTokens);
    assert_eq!(summary.completion_tokens, 5);
}

#[test]
fn stop_sequence_cuts_the_output_before_it() {
    let (full, _) = generate("List three colors.", 32, &[]);
    let word = full
        .split_whitespace()
        .nth(2)
        .expect("at least three words")
        .to_string();
    let (cut, summary) = generate("List three colors.", 32, &[&word]);
    assert_eq!(
        summary.finish_reason,
        FinishReason::StopSequence,
        "full: {full:?} stop: {word:?}"
    );
    assert!(
        full.starts_with(&cut) && !cut.contains(&word),
        "cut {cut:?} of {full:?} at {word:?}"
    );
}

#[test]
fn concurrent_requests_match_their_solo_answers() {
    let questions = [
        "Name a fruit.",
        "What is 2+2?",
        "Say hello in French.",
        "Name a planet.",
        "What color is the sky?",
        "Name a dog breed.",
    ];
    let solo: Vec<String> = questions.iter().map(|q| generate(q, 16, &[]).0).collect();
    let handles: Vec<_> = questions
        .iter()
        .map(|q| {
            let q = q.to_string();
            std::thread::spawn(move || generate(&q, 16, &[]).0)
        })
        .collect();
    let together: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(solo, together, "batched decoding changed a greedy answer");
}

#[test]
fn embeddings_are_normalised_and_meaningful() {
    let engine = EmbeddingEngine::load(EmbeddingEngineConfig {
        model_dir: models_dir().join("all-minilm-l6-v2"),
        max_tokens: 256,
        batch_size: 8,
    })
    .expect("the MiniLM model loads");
    let inputs: Vec<String> = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Stock markets fell sharply today.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = engine.embed(&inputs).expect("embeds");
    assert_eq!(out.len(), 3);
    for e in &out {
        assert_eq!(e.vector.len(), 384);
        let norm: f32 = e.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cos(&out[0].vector, &out[1].vector) > cos(&out[0].vector, &out[2].vector) + 0.2);
    // Batched and single embedding agree (padding must not leak into the mean).
    let single = engine.embed(&inputs[2..3]).expect("embeds one");
    assert!(cos(&single[0].vector, &out[2].vector) > 0.9999);
}
