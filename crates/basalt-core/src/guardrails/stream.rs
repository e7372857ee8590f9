//! A streamed chat generation checked by a guardrail, in Bedrock's two modes.
//!
//! - **sync**: text is held and checked in chunks (cut at a sentence end once a
//!   chunk has [`CHUNK_MIN_CHARS`], or at a space past [`CHUNK_MAX_CHARS`]); a chunk
//!   is released as it is, masked, or replaced by the blocked message, which ends
//!   the stream. A guardrail with contextual grounding holds the whole answer, since
//!   grounding is a property of the whole answer.
//! - **async**: text is released at once and checked behind in the same chunks; a
//!   block ends the stream. Masking cannot apply to text already sent (as on
//!   Bedrock): findings are reported in the trace only.
//!
//! A blocked input never starts the model. Dropping the stream (a client that went
//! away) drops the model's stream, which cancels the generation.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use basalt_guardrails::{CompiledGuardrail, Segment, Source, Verdict};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::{GuardrailService, GuardrailUse, TextLocation};
use crate::types::{ChatRequest, GenerationDelta, StopReason, TokenUsage};
use crate::{CallContext, CoreError};

/// A chunk is released at a sentence end once it has this many characters.
pub const CHUNK_MIN_CHARS: usize = 120;
/// A chunk is cut at a space once it has this many characters, sentence end or not.
pub const CHUNK_MAX_CHARS: usize = 1000;

/// What the guardrail found, filled in as the stream runs (complete at `End`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuardTrace {
    pub guardrail_id: String,
    pub input: Option<Verdict>,
    /// One verdict per checked output chunk.
    pub outputs: Vec<Verdict>,
    /// The model's text as generated, when the guardrail changed what was sent.
    pub model_output: Option<String>,
}

impl GuardTrace {
    pub fn intervened(&self) -> bool {
        self.input.as_ref().is_some_and(Verdict::intervened)
            || self.outputs.iter().any(Verdict::intervened)
    }

    /// The verdict that decided the outcome (the first intervention), if any.
    pub fn deciding(&self) -> Option<&Verdict> {
        self.input
            .iter()
            .chain(self.outputs.iter())
            .find(|v| v.intervened())
    }
}

/// The deltas of a guarded generation; [`GuardedChatStream::trace`] is complete when
/// the `End` delta arrives.
pub struct GuardedChatStream {
    deltas: tokio_stream::wrappers::ReceiverStream<GenerationDelta>,
    trace: Arc<Mutex<GuardTrace>>,
    model_id: String,
}

impl GuardedChatStream {
    /// The model that answers (or would have, when the input was blocked).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// A snapshot of the guardrail's findings so far.
    pub fn trace(&self) -> Arc<Mutex<GuardTrace>> {
        Arc::clone(&self.trace)
    }
}

impl Stream for GuardedChatStream {
    type Item = GenerationDelta;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deltas.poll_next_unpin(cx)
    }
}

/// Where the next chunk ends in `buffer`, if one is ready.
fn release_point(buffer: &str) -> Option<usize> {
    if buffer.len() >= CHUNK_MIN_CHARS {
        let bytes = buffer.as_bytes();
        let sentence_end = buffer
            .char_indices()
            .filter(|&(i, c)| {
                (matches!(c, '.' | '!' | '?')
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace))
                    || c == '\n'
            })
            .map(|(i, c)| i + c.len_utf8())
            .rfind(|&end| end >= CHUNK_MIN_CHARS.min(buffer.len()));
        if sentence_end.is_some() {
            return sentence_end;
        }
    }
    if buffer.len() >= CHUNK_MAX_CHARS {
        let limit = buffer.floor_char_boundary_compat(CHUNK_MAX_CHARS);
        return buffer[..limit]
            .rfind(' ')
            .map(|i| i + 1)
            .or(Some(limit).filter(|&l| l > 0));
    }
    None
}

/// `str::floor_char_boundary` for older compilers.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        index = index.min(self.len());
        while !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

struct Guard {
    service: Arc<GuardrailService>,
    compiled: Arc<CompiledGuardrail>,
    /// Grounding sources and the query from the input, for the output checks.
    context: Vec<Segment>,
    blocked_outputs_messaging: String,
    trace: Arc<Mutex<GuardTrace>>,
    asynchronous: bool,
}

enum ChunkOutcome {
    /// Send this text (the chunk, or its masked form).
    Release(String),
    /// The chunk was blocked: send the blocked message and end.
    Blocked,
}

impl Guard {
    async fn check(&self, chunk: &str) -> Result<ChunkOutcome, CoreError> {
        let mut segments = vec![Segment::guarded(chunk)];
        segments.extend(self.context.iter().cloned());
        let verdict = self
            .service
            .evaluate(&self.compiled, Source::Output, &segments)
            .await?;
        let outcome = if verdict.blocked {
            ChunkOutcome::Blocked
        } else if verdict.anonymized && !self.asynchronous {
            ChunkOutcome::Release(verdict.masked[0].clone())
        } else {
            ChunkOutcome::Release(chunk.to_string())
        };
        if let Ok(mut trace) = self.trace.lock() {
            trace.outputs.push(verdict);
        }
        Ok(outcome)
    }
}

fn end(stop_reason: StopReason, usage: TokenUsage) -> GenerationDelta {
    GenerationDelta::End {
        stop_reason,
        usage,
        latency_ms: 0,
        first_token_ms: None,
    }
}

impl GuardrailService {
    /// ConverseStream with a guardrail (see the module documentation for the modes).
    pub async fn chat_stream_guarded(
        self: &Arc<Self>,
        ctx: CallContext,
        mut request: ChatRequest,
        guard: GuardrailUse,
        asynchronous: bool,
    ) -> Result<GuardedChatStream, CoreError> {
        let (record, compiled) = self
            .compiled_guardrail(&guard.identifier, &guard.version)
            .await?;
        let input_segments: Vec<Segment> = guard.input.iter().map(|(_, s)| s.clone()).collect();
        let input = self
            .evaluate(&compiled, Source::Input, &input_segments)
            .await?;
        let trace = Arc::new(Mutex::new(GuardTrace {
            guardrail_id: record.id.clone(),
            input: Some(input.clone()),
            ..GuardTrace::default()
        }));
        let (tx, rx) = mpsc::channel::<GenerationDelta>(32);
        let model_id = request.model_id.clone();
        if input.blocked {
            let message = record.blocked_input_messaging.clone();
            tokio::spawn(async move {
                let _ = tx.send(GenerationDelta::Text(message)).await;
                let _ = tx
                    .send(end(StopReason::GuardrailIntervened, TokenUsage::default()))
                    .await;
            });
            return Ok(GuardedChatStream {
                deltas: tokio_stream::wrappers::ReceiverStream::new(rx),
                trace,
                model_id,
            });
        }
        if input.anonymized {
            for ((location, _), masked) in guard.input.iter().zip(&input.masked) {
                if *location != TextLocation::Detached {
                    super::write_back(&mut request, *location, masked);
                }
            }
        }
        let holds_whole_answer = !compiled.policy().grounding_filters.is_empty() && !asynchronous;
        let guard = Guard {
            service: Arc::clone(self),
            context: input_segments
                .into_iter()
                .filter(|s| !s.is_guarded())
                .collect(),
            compiled,
            blocked_outputs_messaging: record.blocked_outputs_messaging.clone(),
            trace: Arc::clone(&trace),
            asynchronous,
        };
        let mut model = self.core.chat_stream(ctx, request).await?;
        let model_id = model.model_id().to_string();
        tokio::spawn(async move {
            let mut buffer = String::new();
            let mut generated = String::new();
            let mut changed = false;
            // Sends a delta; false when the client has gone (dropping `model` then
            // cancels the generation).
            macro_rules! send {
                ($delta:expr) => {
                    if tx.send($delta).await.is_err() {
                        return;
                    }
                };
            }
            while let Some(delta) = model.next().await {
                match delta {
                    GenerationDelta::Text(text) => {
                        generated.push_str(&text);
                        if guard.asynchronous {
                            send!(GenerationDelta::Text(text.clone()));
                        }
                        buffer.push_str(&text);
                        while !holds_whole_answer {
                            let Some(cut) = release_point(&buffer) else {
                                break;
                            };
                            let chunk: String = buffer.drain(..cut).collect();
                            match guard.check(&chunk).await {
                                Ok(ChunkOutcome::Release(out)) => {
                                    changed |= out != chunk;
                                    if !guard.asynchronous {
                                        send!(GenerationDelta::Text(out));
                                    }
                                }
                                Ok(ChunkOutcome::Blocked) => {
                                    finish_blocked(&guard, &tx, generated).await;
                                    return;
                                }
                                Err(e) => {
                                    send!(GenerationDelta::Error(e));
                                    return;
                                }
                            }
                        }
                    }
                    GenerationDelta::End {
                        stop_reason,
                        usage,
                        latency_ms,
                        first_token_ms,
                    } => {
                        let mut stop_reason = stop_reason;
                        if !buffer.is_empty() {
                            match guard.check(&buffer).await {
                                Ok(ChunkOutcome::Release(out)) => {
                                    changed |= out != buffer;
                                    if !guard.asynchronous {
                                        send!(GenerationDelta::Text(out));
                                    }
                                }
                                Ok(ChunkOutcome::Blocked) => {
                                    finish_blocked(&guard, &tx, generated).await;
                                    return;
                                }
                                Err(e) => {
                                    send!(GenerationDelta::Error(e));
                                    return;
                                }
                            }
                        }
                        if changed {
                            stop_reason = StopReason::GuardrailIntervened;
                            if let Ok(mut trace) = guard.trace.lock() {
                                trace.model_output = Some(generated.clone());
                            }
                        }
                        send!(GenerationDelta::End {
                            stop_reason,
                            usage,
                            latency_ms,
                            first_token_ms,
                        });
                        return;
                    }
                    other => send!(other),
                }
            }
        });
        Ok(GuardedChatStream {
            deltas: tokio_stream::wrappers::ReceiverStream::new(rx),
            trace,
            model_id,
        })
    }
}

/// Ends a stream whose output was blocked: the blocked message (sync mode; in async
/// mode the text already went out and the stream just ends), then `End`.
async fn finish_blocked(guard: &Guard, tx: &mpsc::Sender<GenerationDelta>, generated: String) {
    if let Ok(mut trace) = guard.trace.lock() {
        trace.model_output = Some(generated);
    }
    if !guard.asynchronous {
        let _ = tx
            .send(GenerationDelta::Text(
                guard.blocked_outputs_messaging.clone(),
            ))
            .await;
    }
    let _ = tx
        .send(end(StopReason::GuardrailIntervened, TokenUsage::default()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_at_sentences_past_the_minimum() {
        let short = "One. Two.";
        assert_eq!(release_point(short), None);
        let text = format!("{} end. And more", "word ".repeat(30));
        let cut = release_point(&text).expect("a sentence ended past the minimum");
        assert!(text[..cut].ends_with("end."), "{:?}", &text[..cut]);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let text = format!("a{}", "é".repeat(700));
        let cut = release_point(&text).expect("past the maximum");
        assert!(text.is_char_boundary(cut) && cut > 0);
    }

    #[test]
    fn long_text_without_sentences_is_cut_at_a_space() {
        let text = "word ".repeat(300);
        let cut = release_point(&text).expect("past the maximum");
        assert!(cut <= CHUNK_MAX_CHARS && text[..cut].ends_with(' '));
    }
}
