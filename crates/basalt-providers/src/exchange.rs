//! One request/answer exchange with an upstream, the same for every adapter: send the
//! request, turn a non-2xx answer into the matching [`CoreError`], and relay the answer
//! — one JSON body, or a server-sent-event stream, told apart by `content-type` — through
//! the adapter's [`Translator`], which knows that provider's wire format.

use std::collections::VecDeque;

use basalt_types::{CoreError, GenerationDelta};
use futures::StreamExt;

use crate::{error_for_status, error_for_transport, sse, DeltaStream};

/// Most bytes of an upstream error body we read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Deltas a translator has produced and not yet handed on, and whether it is done.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queued: VecDeque<GenerationDelta>,
    finished: bool,
}

impl Outbox {
    pub fn push(&mut self, delta: GenerationDelta) {
        self.queued.push_back(delta);
    }

    /// Ends the answer with `error`.
    pub fn fail(&mut self, error: CoreError) {
        self.queued.push_back(GenerationDelta::Error(error));
        self.finished = true;
    }

    /// Ends the answer after `delta`.
    pub fn finish(&mut self, delta: GenerationDelta) {
        self.queued.push_back(delta);
        self.finished = true;
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next delta to hand on.
    pub fn pop(&mut self) -> Option<GenerationDelta> {
        self.queued.pop_front()
    }

    /// Every delta produced so far.
    pub fn take_queued(&mut self) -> Vec<GenerationDelta> {
        self.queued.drain(..).collect()
    }

    #[cfg(test)]
    pub fn drain(&mut self) -> Vec<GenerationDelta> {
        self.queued.drain(..).collect()
    }
}

/// A provider's answer format, read into deltas.
pub(crate) trait Translator: Send + 'static {
    fn outbox(&mut self) -> &mut Outbox;
    /// A whole (non-streamed) JSON answer.
    fn whole(&mut self, body: &[u8]);
    /// The data of one streamed event.
    fn event(&mut self, data: &str);
    /// The upstream closed the stream; called only if the translator had not finished.
    fn closed(&mut self);
}

/// Sends `request`; a non-2xx answer becomes the `CoreError` its status means, with
/// the provider's error text and `retry-after`. Returns the response and whether it
/// is one JSON body.
pub(crate) async fn send_checked(
    request: reqwest::RequestBuilder,
    label: &str,
) -> Result<(reqwest::Response, bool), CoreError> {
    let response = request
        .send()
        .await
        .map_err(|e| error_for_transport(label, &e))?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let is_json = header("content-type").is_some_and(|v| v.starts_with("application/json"));
    if !status.is_success() {
        let retry_after = header("retry-after");
        let message = error_text(response).await;
        return Err(error_for_status(
            label,
            status.as_u16(),
            &message,
            retry_after.as_deref(),
        ));
    }
    Ok((response, is_json))
}

/// Sends `request` and parses its JSON answer.
pub(crate) async fn exchange_json(
    request: reqwest::RequestBuilder,
    label: &str,
) -> Result<serde_json::Value, CoreError> {
    let (response, _) = send_checked(request, label).await?;
    let body = response
        .bytes()
        .await
        .map_err(|e| error_for_transport(label, &e))?;
    serde_json::from_slice(&body).map_err(|e| {
        CoreError::ModelError(format!(
            "{label} answered with JSON that does not parse: {e}"
        ))
    })
}

/// Sends `request` and relays its answer through `translator`. `label` names the
/// upstream in error messages.
pub(crate) async fn exchange<T: Translator>(
    request: reqwest::RequestBuilder,
    label: String,
    mut translator: T,
) -> Result<DeltaStream, CoreError> {
    let (response, is_json) = send_checked(request, &label).await?;
    if is_json {
        let body = response
            .bytes()
            .await
            .map_err(|e| error_for_transport(&label, &e))?;
        translator.whole(&body);
        let queued = std::mem::take(&mut translator.outbox().queued);
        return Ok(Box::pin(futures::stream::iter(queued)));
    }
    let state = (
        translator,
        response.bytes_stream(),
        sse::Parser::default(),
        label,
    );
    Ok(Box::pin(futures::stream::unfold(
        state,
        |(mut translator, mut bytes, mut parser, label)| async move {
            loop {
                if let Some(delta) = translator.outbox().queued.pop_front() {
                    return Some((delta, (translator, bytes, parser, label)));
                }
                if translator.outbox().finished {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => match parser.push(&chunk) {
                        Ok(events) => {
                            for event in events {
                                translator.event(&event.data);
                                if translator.outbox().finished {
                                    break;
                                }
                            }
                        }
                        Err(e) => translator
                            .outbox()
                            .fail(CoreError::ModelError(format!("{label}: {e}"))),
                    },
                    Some(Err(e)) => translator.outbox().fail(error_for_transport(&label, &e)),
                    None => {
                        translator.closed();
                        // A translator that still has not finished is cut short.
                        if !translator.outbox().finished {
                            translator.outbox().fail(CoreError::ModelError(format!(
                                "{label} ended the stream before finishing the answer"
                            )));
                        }
                    }
                }
            }
        },
    )))
}

/// The upstream's error text: `{"error": {"message"}}` (OpenAI, Anthropic), a top-level
/// `message`, or the body itself.
async fn error_text(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .unwrap_or(text),
        Err(_) => text.trim().to_string(),
    }
}
