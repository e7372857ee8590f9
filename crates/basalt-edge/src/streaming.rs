//! Streaming responses: one task per response forwards a generation's deltas, each
//! encoded into the dialect's frames (event-stream messages or SSE lines), into the
//! response body. When the client goes away the send fails, the task ends, and
//! dropping the generation stream frees the engine slot.

use axum::body::{Body, Bytes};
use basalt_core::types::GenerationDelta;
use futures::{Stream, StreamExt};

/// Streams `prelude`, then `encode(delta)` for `first` and every following delta.
pub fn forward<S, F>(
    prelude: Vec<Bytes>,
    first: Option<GenerationDelta>,
    mut stream: S,
    mut encode: F,
) -> Body
where
    S: Stream<Item = GenerationDelta> + Send + Unpin + 'static,
    F: FnMut(GenerationDelta) -> Vec<Bytes> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for frame in prelude {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        let mut next = first;
        while let Some(delta) = next {
            for frame in encode(delta) {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
            next = stream.next().await;
        }
    });
    Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>),
    )
}
