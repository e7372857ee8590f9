//! Upstream answers: bytes as each provider's stream (OpenAI, Anthropic, Gemini and
//! Cohere server-sent events; Bedrock's event-stream frames), fed in pieces through the
//! live parsers and translators (`basalt_providers::replay`). Whatever the bytes, the
//! answer ends — its last delta is an `End` or an `Error` — and nothing panics.
#![no_main]

use arbitrary::Arbitrary;
use basalt_providers::replay::{replay, Wire};
use basalt_types::GenerationDelta;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    wire: u8,
    split: u16,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let wire = match input.wire % 5 {
        0 => Wire::OpenAi,
        1 => Wire::Anthropic,
        2 => Wire::Gemini,
        3 => Wire::Cohere,
        _ => Wire::Bedrock,
    };
    let deltas = replay(wire, &input.body, usize::from(input.split).max(1));
    assert!(
        matches!(
            deltas.last(),
            Some(GenerationDelta::End { .. } | GenerationDelta::Error(_))
        ),
        "{wire:?}: an answer that does not end: {deltas:?}"
    );
});
