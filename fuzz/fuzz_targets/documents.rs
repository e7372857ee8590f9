//! Knowledge-base documents: bytes as each format ingestion reads (text, Markdown,
//! HTML, CSV, PDF, DOCX), then the text cut by each chunking strategy with a
//! configuration from the bytes. Parsing returns text or an error, chunking returns
//! chunks; no panic, no unbounded time or memory.
#![no_main]

use arbitrary::Arbitrary;
use basalt_kb::chunking::Chunking;
use basalt_kb::parse::{extract_text, Format};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    format: u8,
    strategy: u8,
    a: u16,
    b: u16,
    c: u16,
    bytes: Vec<u8>,
}

/// Whitespace-separated words as token spans (byte ranges), as a tokenizer gives them.
fn spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in text.char_indices() {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

fuzz_target!(|input: Input| {
    let format = match input.format % 6 {
        0 => Format::Text,
        1 => Format::Markdown,
        2 => Format::Html,
        3 => Format::Csv,
        4 => Format::Pdf,
        _ => Format::Docx,
    };
    let Ok(text) = extract_text(format, &input.bytes) else {
        return;
    };
    let (a, b, c) = (
        usize::from(input.a),
        usize::from(input.b),
        usize::from(input.c),
    );
    let chunking = match input.strategy % 3 {
        0 => Chunking::FixedSize {
            max_tokens: a,
            overlap_percentage: b % 100,
        },
        1 => Chunking::Hierarchical {
            parent_max_tokens: a,
            child_max_tokens: b,
            overlap_tokens: c,
        },
        _ => Chunking::None,
    };
    if chunking.validate().is_err() {
        return;
    }
    let spans = spans(&text);
    let chunks = chunking.chunk(&text, &spans);
    for chunk in &chunks {
        assert!(
            chunk.text.len() <= text.len() + 1,
            "a chunk longer than its document"
        );
    }
});
