//! Reading AWS event-stream frames (what the streaming API routes answer) back into
//! `(message type, event type, JSON payload)`.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use serde_json::Value;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `event` or `exception`.
    pub kind: String,
    /// The event's or exception's type (`contentBlockDelta`, `ValidationException`, …).
    pub name: String,
    pub payload: Value,
}

fn header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str().to_string())
}

/// Decodes frames as their bytes arrive.
#[derive(Debug, Default)]
pub struct FrameReader {
    decoder: MessageFrameDecoder,
    buffer: BytesMut,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, None until one is in; an error for a corrupt stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        match self.decoder.decode_frame(&mut self.buffer) {
            Ok(DecodedFrame::Complete(message)) => {
                let payload = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
                let kind = header(&message, ":message-type").unwrap_or_default();
                let name = if kind == "event" {
                    header(&message, ":event-type")
                } else {
                    header(&message, ":exception-type")
                }
                .unwrap_or_default();
                Ok(Some(Frame {
                    kind,
                    name,
                    payload,
                }))
            }
            Ok(DecodedFrame::Incomplete) => Ok(None),
            Err(e) => Err(format!("bad event-stream frame: {e}")),
        }
    }
}

/// Every frame of a whole stream.
pub fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, String> {
    let mut reader = FrameReader::default();
    reader.push(bytes);
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame()? {
        out.push(frame);
    }
    Ok(out)
}
