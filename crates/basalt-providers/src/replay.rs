//! Upstream answers replayed from bytes: what a streamed answer of each provider's
//! wire format becomes, fed `split` bytes at a time through the same parser and
//! translator as a live stream, without a network. For tests and the fuzz targets
//! (`fuzz/fuzz_targets/upstream_streams.rs`): whatever the bytes, a replay ends, every
//! answer ends in an `End` or an `Error` delta, and nothing panics.

use std::time::Instant;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use basalt_types::{CoreError, GenerationDelta};

use crate::exchange::Translator;

/// Which wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI-compatible `chat.completion.chunk` server-sent events (OpenAI, Mistral, vLLM, ...).
    OpenAi,
    /// Anthropic Messages server-sent events.
    Anthropic,
    /// Gemini `streamGenerateContent?alt=sse` events.
    Gemini,
    /// Cohere v2 chat server-sent events.
    Cohere,
    /// Bedrock ConverseStream (AWS event-stream frames).
    Bedrock,
}

/// The deltas `body` becomes when it arrives `split` bytes at a time (at least 1).
pub fn replay(wire: Wire, body: &[u8], split: usize) -> Vec<GenerationDelta> {
    let label = String::from("replay");
    let started = Instant::now();
    match wire {
        Wire::OpenAi => sse(crate::openai::stream_state(label, started), body, split),
        Wire::Anthropic => sse(
            crate::anthropic::message_reader(label, started),
            body,
            split,
        ),
        Wire::Gemini => sse(crate::gemini::response_reader(label, started), body, split),
        Wire::Cohere => sse(crate::cohere::chat_reader(label, started), body, split),
        Wire::Bedrock => crate::bedrock::replay_event_stream(body, split),
    }
}

/// The streaming loop of [`crate::exchange::exchange`], over bytes already here.
fn sse<T: Translator>(mut translator: T, body: &[u8], split: usize) -> Vec<GenerationDelta> {
    let mut parser = crate::sse::Parser::default();
    let mut out = Vec::new();
    let mut chunks = body.chunks(split.max(1));
    loop {
        out.extend(translator.outbox().take_queued());
        if translator.outbox().is_finished() {
            return out;
        }
        match chunks.next() {
            Some(chunk) => match parser.push(chunk) {
                Ok(events) => {
                    for event in events {
                        translator.event(&event.data);
                        if translator.outbox().is_finished() {
                            break;
                        }
                    }
                }
                Err(e) => translator
                    .outbox()
                    .fail(CoreError::ModelError(format!("replay: {e}"))),
            },
            None => {
                translator.closed();
                if !translator.outbox().is_finished() {
                    translator.outbox().fail(CoreError::ModelError(
                        "replay ended the stream before finishing the answer".into(),
                    ));
                }
            }
        }
    }
}

/// The frames loop of Bedrock's streaming path, over bytes already here.
pub(crate) fn event_stream(
    mut frame: impl FnMut(&aws_smithy_types::event_stream::Message),
    mut outbox: impl FnMut() -> (Vec<GenerationDelta>, bool),
    mut closed: impl FnMut(),
    mut fail: impl FnMut(CoreError),
    body: &[u8],
    split: usize,
) -> Vec<GenerationDelta> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = bytes::BytesMut::new();
    let mut chunks = body.chunks(split.max(1));
    let mut out = Vec::new();
    loop {
        let (queued, finished) = outbox();
        out.extend(queued);
        if finished {
            return out;
        }
        match decoder.decode_frame(&mut buffer) {
            Ok(DecodedFrame::Complete(message)) => {
                frame(&message);
                continue;
            }
            Ok(DecodedFrame::Incomplete) => {}
            Err(e) => {
                fail(CoreError::ModelError(format!(
                    "replay sent an event-stream frame that does not decode: {e}"
                )));
                continue;
            }
        }
        match chunks.next() {
            Some(chunk) => buffer.extend_from_slice(chunk),
            None => {
                closed();
                let (queued, finished) = outbox();
                out.extend(queued);
                if finished {
                    return out;
                }
                fail(CoreError::ModelError(
                    "replay ended the stream before finishing the answer".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openai_stream_replays_to_its_deltas_at_any_split() {
        let body = concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in [1, 5, 64, body.len()] {
            let deltas = replay(Wire::OpenAi, body.as_bytes(), split);
            let text: String = deltas
                .iter()
                .filter_map(|d| match d {
                    GenerationDelta::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(text, "Hello", "split {split}: {deltas:?}");
            assert!(
                matches!(deltas.last(), Some(GenerationDelta::End { .. })),
                "split {split}: the answer must end: {deltas:?}"
            );
        }
    }

    #[test]
    fn garbage_and_cut_streams_end_in_an_error_for_every_wire() {
        for wire in [
            Wire::OpenAi,
            Wire::Anthropic,
            Wire::Gemini,
            Wire::Cohere,
            Wire::Bedrock,
        ] {
            for body in [
                &b""[..],
                b"data: {not json\n\n",
                b"\x00\x00\x00\x10garbage-frame",
                b"data: {}\n\n",
            ] {
                let deltas = replay(wire, body, 3);
                assert!(
                    matches!(
                        deltas.last(),
                        Some(GenerationDelta::Error(_) | GenerationDelta::End { .. })
                    ),
                    "{wire:?} on {body:?} must end the answer: {deltas:?}"
                );
            }
        }
    }
}
