//! The engines on the real pinned models (fetched by `basalt models fetch` into
//! `BASALT_MODELS_DIR`, default `./models` at the repository root).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use basalt_engine::chat::{
    ChatEngine, ChatEngineConfig, ChatMessage, FinishReason, GenerationEvent, GenerationRequest,
    Priority, SamplingParams,
};
use basalt_engine::embed::{EmbeddingEngine, EmbeddingEngineConfig};

fn models_dir() -> PathBuf {
    std::env::var_os("BASALT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn engine_config(slots: u32, queue_capacity: usize) -> ChatEngineConfig {
    ChatEngineConfig {
        model_path: models_dir().join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"),
        slots,
        context_per_slot: 1024,
        batch_tokens: 256,
        queue_capacity,
        threads: 2,
        kv_cache_budget_bytes: None,
        shared_step_interval: 1,
        batch_invariant: true,
        lookup_drafts: 0,
        lora_adapter: None,
    }
}

fn chat() -> &'static ChatEngine {
    static ENGINE: OnceLock<ChatEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        ChatEngine::load(engine_config(4, 16))
            .expect("the SmolLM2 GGUF loads (run `basalt models fetch` first)")
    })
}

fn prompt(question: &str) -> Vec<i32> {
    prompt_for(chat(), question)
}

fn prompt_for(engine: &ChatEngine, question: &str) -> Vec<i32> {
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

/// The tokens of a system prompt and one user question, as the template renders them.
fn system_prompt_for(engine: &ChatEngine, system: &str, question: &str) -> Vec<i32> {
    let text = engine
        .render(
            &[
                ChatMessage {
                    role: "system".into(),
                    content: system.into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: question.into(),
                },
            ],
            true,
        )
        .expect("renders");
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
            priority: Priority::Standard,
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
        ("Name a fruit.", 16),
        ("What is 2+2?", 5),
        ("Say hello in French.", 24),
        ("Name a planet.", 9),
        ("What color is the sky?", 31),
        ("Name a dog breed.", 12),
        ("Write a haiku about rain.", 40),
        ("What is the capital of Japan?", 7),
    ];
    let solo: Vec<(String, u32)> = questions
        .iter()
        .map(|(q, n)| {
            let (text, s) = generate(q, *n, &[]);
            (text, s.completion_tokens)
        })
        .collect();
    let handles: Vec<_> = questions
        .iter()
        .map(|(q, n)| {
            let (q, n) = (q.to_string(), *n);
            std::thread::spawn(move || {
                let (text, s) = generate(&q, n, &[]);
                (text, s.completion_tokens)
            })
        })
        .collect();
    let together: Vec<(String, u32)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(
        solo, together,
        "batched decoding changed a greedy answer or its token count"
    );
    for ((_, n), (_, got)) in questions.iter().zip(&solo) {
        assert!(got <= n, "more tokens than maxTokens");
    }
}

#[test]
fn embeddings_are_normalised_and_meaningful() {
    let engine = embedding_engine(1, 512);
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
    // The same text embedded in a call of three and alone gives the same vector.
    let single = engine.embed(&inputs[2..3]).expect("embeds one");
    let agreement = cos(&single[0].vector, &out[2].vector);
    assert!(
        agreement > 0.99999,
        "in a call vs alone: cosine {agreement}"
    );
    // Several inputs padded into one pass agree with each alone (padding must not
    // leak into attention or the mean). Not bit for bit: int8 activation scales are
    // taken over the pass. A padding leak would be far below this (0.91 measured
    // with the mask removed).
    let padded = embedding_engine(8, 512);
    let together = padded.embed(&inputs).expect("embeds");
    for (i, (a, b)) in together.iter().zip(&out).enumerate() {
        let agreement = cos(&a.vector, &b.vector);
        assert!(
            agreement > 0.99,
            "input {i} in a padded pass vs alone: cosine {agreement}"
        );
    }
}

fn embedding_engine(batch_size: usize, batch_tokens: usize) -> EmbeddingEngine {
    EmbeddingEngine::load(EmbeddingEngineConfig {
        model_dir: models_dir().join("all-minilm-l6-v2"),
        max_tokens: 256,
        batch_size,
        batch_tokens,
        threads: 2,
        runtime_library: models_dir().join("onnxruntime/libonnxruntime.so.1.31.1"),
    })
    .expect("the MiniLM graph builds and ONNX Runtime loads it")
}

/// Vectors sentence-transformers computed for the same model files
/// (`tests/fixtures/minilm-reference-embeddings.json` says how).
#[test]
fn embeddings_match_sentence_transformers() {
    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/minilm-reference-embeddings.json"
    ))
    .expect("fixture parses");
    let sentences: Vec<String> = fixture["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s.as_str().expect("a sentence").to_string())
        .collect();
    let reference: Vec<Vec<f32>> = fixture["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| {
            v.as_array()
                .expect("a vector")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect()
        })
        .collect();
    // Passes of two inputs: the long (truncated) sentence is encoded alone (256
    // padded tokens at most) and the short ones two by two.
    let engine = embedding_engine(2, 256);
    let ours = engine.embed(&sentences).expect("embeds");
    for ((sentence, got), want) in sentences.iter().zip(&ours).zip(&reference) {
        assert_eq!(got.vector.len(), want.len());
        let cos: f32 = got.vector.iter().zip(want).map(|(a, b)| a * b).sum();
        assert!(
            cos >= 0.99,
            "cosine {cos} with sentence-transformers for {:?}",
            &sentence[..sentence.len().min(40)]
        );
    }
    // The long sentence is truncated to 256 tokens, as sentence-transformers does.
    assert_eq!(ours[3].tokens, 256);
}

#[test]
fn concurrent_embedding_calls_are_batched_and_answer_each_caller() {
    let engine = Arc::new(embedding_engine(1, 2048));
    let texts: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "Sentence number {i} talks about {}.",
                ["rivers", "engines", "music"][i % 3]
            )
        })
        .collect();
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| {
            engine.embed(std::slice::from_ref(t)).expect("embeds")[0]
                .vector
                .clone()
        })
        .collect();
    let handles: Vec<_> = texts
        .chunks(3)
        .map(|chunk| {
            let engine = Arc::clone(&engine);
            let chunk = chunk.to_vec();
            std::thread::spawn(move || engine.embed(&chunk).expect("embeds"))
        })
        .collect();
    let together: Vec<Vec<f32>> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .map(|e| e.vector)
        .collect();
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        // Every input runs alone (batch_size 1), so which call and which worker
        // took it changes nothing.
        assert!(
            cos > 0.99999,
            "input {i}: batched vector differs from its solo vector ({cos})"
        );
    }
    assert!(engine.embed(&[]).expect("no inputs").is_empty());
}

fn small_engine(queue_capacity: usize) -> ChatEngine {
    ChatEngine::load(engine_config(1, queue_capacity)).expect("the SmolLM2 GGUF loads")
}

fn request(engine: &ChatEngine, question: &str, max_tokens: u32) -> GenerationRequest {
    GenerationRequest {
        prompt: prompt_for(engine, question),
        max_tokens,
        sampling: SamplingParams::default(),
        stop_sequences: vec![],
        constraint: None,
        priority: Priority::Standard,
    }
}

fn drain(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>,
) -> basalt_engine::chat::GenerationSummary {
    loop {
        match rx
            .blocking_recv()
            .expect("stream ends with Finished or Failed")
        {
            GenerationEvent::Text(_) => {}
            GenerationEvent::Finished(s) => return s,
            GenerationEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
}

#[test]
fn a_full_queue_refuses_new_requests_and_keeps_accepted_ones() {
    let engine = small_engine(2);
    // One request runs in the only slot; wait until it is admitted so the queue is empty.
    let mut running = engine
        .submit(request(&engine, "Write a story.", 48))
        .expect("accepted");
    match running.blocking_recv() {
        Some(GenerationEvent::Text(_)) => {}
        other => panic!("expected text first, got {other:?}"),
    }
    let mut queued: Vec<_> = (0..2)
        .map(|i| {
            engine
                .submit(request(&engine, &format!("Question {i}?"), 4))
                .expect("queued")
        })
        .collect();
    let refused = engine.submit(request(&engine, "One too many?", 4));
    assert!(
        matches!(
            refused,
            Err(basalt_engine::EngineError::Overloaded { capacity: 2 })
        ),
        "{refused:?}"
    );
    assert!(drain(&mut running).completion_tokens > 0);
    for rx in &mut queued {
        assert_eq!(
            drain(rx).completion_tokens,
            4,
            "an accepted request was dropped or cut"
        );
    }
    engine
        .submit(request(&engine, "Room again?", 2))
        .expect("the queue has room once it drains");
}

#[test]
fn a_waiting_foreground_request_goes_before_waiting_background_work() {
    let engine = small_engine(8);
    // The only slot is busy, so both of the next requests wait.
    let mut running = engine
        .submit(request(&engine, "Name a colour.", 24))
        .expect("accepted");
    match running.blocking_recv() {
        Some(GenerationEvent::Text(_)) => {}
        other => panic!("expected text first, got {other:?}"),
    }
    // The foreground prompt extends the background one, so whichever of the two runs
    // second reuses the other's prompt from the slot's KV cache: the order they ran
    // in shows in their cached-prompt counts, whatever the timing.
    let story = "Write a long story about a lighthouse keeper and the ships she guides.";
    let mut background = engine
        .submit(GenerationRequest {
            priority: Priority::Background,
            ..request(&engine, story, 8)
        })
        .expect("queued");
    let mut foreground = engine
        .submit(request(
            &engine,
            &format!("{story} No, wait: what is 2 + 2?"),
            8,
        ))
        .expect("queued");
    drain(&mut running);
    let foreground = drain(&mut foreground);
    let background = drain(&mut background);
    assert!(
        background.completion_tokens > 0,
        "background work still runs"
    );
    assert!(
        foreground.cached_prompt_tokens < background.cached_prompt_tokens,
        "the background request (queued first) ran before the foreground one: cached prompt \
         tokens foreground {} vs background {}",
        foreground.cached_prompt_tokens,
        background.cached_prompt_tokens
    );
}

fn collect_text(rx: &mut tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>) -> (String, u32) {
    let mut text = String::new();
    loop {
        match rx
            .blocking_recv()
            .expect("stream ends with Finished or Failed")
        {
            GenerationEvent::Text(t) => text.push_str(&t),
            GenerationEvent::Finished(s) => return (text, s.completion_tokens),
            GenerationEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
}

#[test]
fn sequences_held_out_of_reserved_steps_still_answer_exactly_as_alone() {
    // While the reserved request decodes, the standard ones join one step in three:
    // their pending tokens must carry over the skipped steps unchanged.
    let engine = ChatEngine::load(ChatEngineConfig {
        shared_step_interval: 3,
        lora_adapter: None,
        ..engine_config(3, 8)
    })
    .expect("the SmolLM2 GGUF loads");
    let standard = ["Describe a forest in spring.", "List three uses of copper."];
    let reserved_question = "Explain why the sky is blue.";
    let solo = |question: &str, priority: Priority| {
        let mut rx = engine
            .submit(GenerationRequest {
                priority,
                ..request(&engine, question, 24)
            })
            .expect("accepted");
        collect_text(&mut rx)
    };
    let expected: Vec<(String, u32)> = standard
        .iter()
        .map(|q| solo(q, Priority::Standard))
        .collect();
    let expected_reserved = solo(reserved_question, Priority::Reserved);
    let mut running: Vec<_> = standard
        .iter()
        .map(|q| engine.submit(request(&engine, q, 24)).expect("accepted"))
        .collect();
    let mut reserved = engine
        .submit(GenerationRequest {
            priority: Priority::Reserved,
            ..request(&engine, reserved_question, 24)
        })
        .expect("accepted");
    assert_eq!(collect_text(&mut reserved), expected_reserved);
    for (rx, want) in running.iter_mut().zip(&expected) {
        assert_eq!(
            &collect_text(rx),
            want,
            "a standard request's answer changed"
        );
    }
}

#[test]
fn dropping_the_receiver_frees_the_slot() {
    let engine = small_engine(4);
    let before = engine
        .counters()
        .tokens_generated
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut abandoned = engine
        .submit(request(
            &engine,
            "Write a very long story about the sea.",
            900,
        ))
        .expect("accepted");
    match abandoned.blocking_recv() {
        Some(GenerationEvent::Text(_)) => {}
        other => panic!("expected text, got {other:?}"),
    }
    drop(abandoned);
    let mut next = engine
        .submit(request(&engine, "Say hi.", 3))
        .expect("accepted");
    assert_eq!(drain(&mut next).completion_tokens, 3);
    let generated = engine
        .counters()
        .tokens_generated
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(
        generated < 100,
        "the abandoned request kept decoding: {generated} tokens generated"
    );
}

#[test]
fn a_shared_system_prompt_is_not_recomputed() {
    let engine = small_engine(4);
    let system = "You are a meticulous assistant for a shipping company. ".repeat(12);
    let ask = |question: &str| {
        let mut rx = engine
            .submit(GenerationRequest {
                prompt: system_prompt_for(&engine, &system, question),
                max_tokens: 2,
                sampling: SamplingParams::default(),
                stop_sequences: vec![],
                constraint: None,
                priority: Priority::Standard,
            })
            .expect("accepted");
        drain(&mut rx)
    };
    let first = ask("Where is my parcel?");
    let processed_before = engine
        .counters()
        .prompt_tokens_processed
        .load(std::sync::atomic::Ordering::Relaxed);
    let second = ask("How much does express shipping cost?");
    let processed = engine
        .counters()
        .prompt_tokens_processed
        .load(std::sync::atomic::Ordering::Relaxed)
        - processed_before;
    assert_eq!(first.cached_prompt_tokens, 0);
    assert!(
        second.cached_prompt_tokens > 100,
        "shared prefix not reused: {second:?}"
    );
    assert_eq!(
        processed,
        (second.prompt_tokens - second.cached_prompt_tokens) as u64,
        "only the new suffix is computed"
    );
}

#[test]
fn a_json_schema_grammar_constrains_the_output() {
    let schema = serde_json::json!({"type":"object","properties":{"answer":{"type":"integer"},"unit":{"type":"string","enum":["m","km"]}},"required":["answer","unit"]});
    let grammar = basalt_engine::chat::json_schema_grammar(&schema).expect("compiles");
    let engine = chat();
    let mut req = request(engine, "How far is the moon?", 64);
    req.constraint = Some(basalt_engine::chat::OutputConstraint::Grammar(grammar));
    let mut rx = engine.submit(req).expect("accepted");
    let mut text = String::new();
    loop {
        match rx.blocking_recv().expect("events") {
            GenerationEvent::Text(t) => text.push_str(&t),
            GenerationEvent::Finished(s) => {
                assert_eq!(s.finish_reason, FinishReason::EndOfTurn, "{text}");
                break;
            }
            GenerationEvent::Failed(e) => panic!("{e}"),
        }
    }
    let value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {text:?}: {e}"));
    assert!(
        value["answer"].is_i64() && ["m", "km"].contains(&value["unit"].as_str().unwrap_or("")),
        "{value}"
    );
    assert!(basalt_engine::chat::json_schema_grammar(
        &serde_json::json!({"type":"object","properties":{"a":{"$ref":"#/nope"}}})
    )
    .is_err());
}

#[test]
fn slots_are_sized_to_the_kv_cache_budget() {
    let load = |budget: u64| {
        ChatEngine::load(ChatEngineConfig {
            slots: 8,
            kv_cache_budget_bytes: Some(budget),
            ..engine_config(8, 4)
        })
    };
    // SmolLM2-135M: 30 layers x 3 KV heads x 64 dims x 2 (K and V) x 2 bytes = 23,040 bytes a token.
    let per_slot = 23_040 * 1024;
    let engine = load(3 * per_slot + 1).expect("fits three slots");
    assert_eq!(engine.config().slots, 3);
    let err = load(per_slot - 1).expect_err("not even one slot fits");
    assert!(err.to_string().contains("KV-cache budget"), "{err}");
}

/// A prompt answered on a slot that caches it (only its last token is computed) gets
/// the same greedy answer as on a fresh slot, with and without a grammar: the last
/// prompt token's logits come from a one-token step either way. Before that rule,
/// 3 of 32 such pairs through the server took another path after a few tokens.
#[test]
fn a_cached_prompt_gets_the_same_answer_as_a_fresh_one() {
    let engine = small_engine(4);
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "origin": {"type": "string"},
            "destination": {"type": "string"},
            "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
            "cabin": {"type": "string", "enum": ["economy", "business", "first"]},
            "extras": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["origin", "destination", "passengers", "cabin"],
    });
    let grammar = basalt_engine::chat::json_schema_grammar(&schema).expect("compiles");
    // A system prompt the length of a tool description (the case seen: ~190 tokens).
    let system = format!(
        "You can call one tool, book_flight. Its input follows this JSON schema: {schema}. \
         Answer with only a JSON object: {{\"name\": \"book_flight\", \"arguments\": {{...}}}}."
    );
    let run = |question: &str, constrained: bool| {
        let mut req = request(&engine, question, 60);
        req.prompt = system_prompt_for(&engine, &system, question);
        if constrained {
            req.constraint = Some(basalt_engine::chat::OutputConstraint::Grammar(
                grammar.clone(),
            ));
        }
        let mut rx = engine.submit(req).expect("accepted");
        collect_text(&mut rx)
    };
    let topics = ["rivers", "bread", "gardens", "glass", "maps", "ink"];
    for (i, topic) in topics.iter().enumerate() {
        for constrained in [false, true] {
            let question = format!("Case {i}: book {} seats from Oslo to {topic}.", i % 4 + 1);
            let fresh = run(&question, constrained);
            let warm = run(&question, constrained);
            assert_eq!(
                fresh, warm,
                "{question:?} (grammar: {constrained}): the cached prompt answered differently"
            );
        }
    }
}

#[test]
fn a_chat_engine_gives_cores_to_a_running_embedding_pass() {
    // The engine is sized to every core (at least two), so the budget has a core to
    // take from it; the permit stands for an ingestion's embedding pass.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let configured = cores.max(2);
    let engine = ChatEngine::load(ChatEngineConfig {
        threads: configured as i32,
        ..engine_config(1, 4)
    })
    .expect("the SmolLM2 GGUF loads");
    let threads = |engine: &ChatEngine| {
        engine
            .counters()
            .threads
            .load(std::sync::atomic::Ordering::Relaxed) as usize
    };
    let permit = basalt_engine::cpu::budget().embedding_pass();
    let mut rx = engine
        .submit(request(&engine, "Name three colours.", 8))
        .expect("accepted");
    drain(&mut rx);
    let during = threads(&engine);
    drop(permit);
    assert!(
        (1..configured).contains(&during),
        "while an embedding pass runs, chat decodes on fewer than its {configured} threads \
         (it used {during}; {configured} means llama.cpp's thread count could not be changed)"
    );
}

/// A small deterministic generator (the test needs no random crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

#[test]
fn greedy_answers_do_not_depend_on_arrival_batching_or_threads() {
    // Property: for any arrival order and timing (so any mix of decode steps and
    // prompt chunks), with the thread count changing under it (an embedding pass
    // takes a core now and then), every greedy answer equals its answer alone on an
    // idle engine. Two of the prompts fill more than 512 KV cells, where llama.cpp's
    // flash attention would split its sums by thread count. (With
    // `batch_invariant: false` this fails within the first seeds.)
    let engine = Arc::new(
        ChatEngine::load(ChatEngineConfig {
            slots: 3,
            batch_tokens: 128,
            ..engine_config(3, 16)
        })
        .expect("the SmolLM2 GGUF loads"),
    );
    let licence = "Permission is hereby granted, free of charge, to any person obtaining a copy \
        of this software and associated documentation files, to deal in the Software without \
        restriction, including without limitation the rights to use, copy, modify, merge, \
        publish, distribute, sublicense, and sell copies of the Software. ";
    let long_a = format!(
        "{}\nSummarise the text above in one sentence.",
        licence.repeat(9)
    );
    let long_b = format!(
        "{}\nWhat may a person do with the software?",
        licence.repeat(8)
    );
    let questions: Vec<String> = vec![
        long_a,
        "Write a short poem about the sea.".into(),
        long_b,
        "List four metals and one use of each.".into(),
        "Explain how a bicycle gear works.".into(),
    ];
    let ask = |engine: &ChatEngine, question: &str| {
        let mut rx = engine
            .submit(request(engine, question, 40))
            .expect("accepted");
        collect_text(&mut rx)
    };
    assert!(
        prompt_for(&engine, &questions[0]).len() > 512,
        "the long prompt must fill more than 512 KV cells"
    );
    let solo: Vec<(String, u32)> = questions.iter().map(|q| ask(&engine, q)).collect();
    for seed in 1..=6u64 {
        let mut rng = Lcg(seed);
        let mut order: Vec<usize> = (0..questions.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.next(i as u64 + 1) as usize);
        }
        let delays: Vec<u64> = order.iter().map(|_| rng.next(40)).collect();
        let squeeze_at = rng.next(200);
        let squeezer = std::thread::spawn(move || {
            // An embedding pass for a while: the chat engine drops to fewer threads.
            std::thread::sleep(std::time::Duration::from_millis(squeeze_at));
            let permit = basalt_engine::cpu::budget().embedding_pass();
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(permit);
        });
        let handles: Vec<_> = order
            .iter()
            .zip(&delays)
            .map(|(&i, &delay)| {
                let engine = Arc::clone(&engine);
                let question = questions[i].clone();
                std::thread::sleep(std::time::Duration::from_millis(delay));
                std::thread::spawn(move || (i, ask(&engine, &question)))
            })
            .collect();
        for handle in handles {
            let (i, answer) = handle.join().expect("request thread");
            assert_eq!(
                answer, solo[i],
                "seed {seed}: {:?} answered differently beside other requests (order {order:?}, delays {delays:?} ms)",
                &questions[i][..40.min(questions[i].len())]
            );
        }
        squeezer.join().expect("squeezer");
    }
}

#[test]
fn prompt_lookup_gives_the_answer_plain_decoding_gives() {
    let plain = small_engine(4);
    let lookup = ChatEngine::load(ChatEngineConfig {
        lookup_drafts: 4,
        ..engine_config(1, 4)
    })
    .expect("the SmolLM2 GGUF loads");
    let passage = "The lighthouse at Cape Verity was built in 1871 from granite quarried on \
        the island, and its lamp was first lit on the night of the great autumn storm.";
    let questions = [
        format!("Repeat this sentence exactly: {passage}"),
        format!("Context: {passage}\nQuestion: When was the lighthouse built and from what?"),
        "Write a short poem about bread.".to_string(),
    ];
    let run = |engine: &ChatEngine, question: &str, sampling: SamplingParams| {
        let mut req = request(engine, question, 60);
        req.sampling = sampling;
        let mut rx = engine.submit(req).expect("accepted");
        collect_text(&mut rx)
    };
    let seeded = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 40,
        seed: 7,
    };
    for question in &questions {
        for sampling in [SamplingParams::default(), seeded.clone()] {
            assert_eq!(
                run(&lookup, question, sampling.clone()),
                run(&plain, question, sampling.clone()),
                "prompt lookup changed the answer to {question:?} ({sampling:?})"
            );
        }
    }
    let accepted = lookup
        .counters()
        .lookup_accepted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        accepted > 0,
        "copying a sentence from the prompt must confirm some drafted tokens"
    );
    assert_eq!(
        plain
            .counters()
            .lookup_drafted
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "lookup_drafts = 0 drafts nothing"
    );
}
