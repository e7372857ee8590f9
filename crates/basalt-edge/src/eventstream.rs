//! AWS event-stream frames (`application/vnd.amazon.eventstream`), as Bedrock's
//! streaming operations send them, encoded with `aws-smithy-eventstream`.

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

use crate::error::BedrockError;

/// The content type of an event-stream response.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

fn frame(headers: Vec<Header>, payload: Vec<u8>) -> Bytes {
    let message = Message::new_from_parts(headers, payload);
    let mut out = Vec::new();
    match aws_smithy_eventstream::frame::write_message_to(&message, &mut out) {
        Ok(()) => Bytes::from(out),
        Err(e) => {
            // Only oversized headers or payloads fail; ours are bounded, so this is a bug.
            tracing::error!(error = %e, "cannot encode an event-stream frame");
            Bytes::new()
        }
    }
}

fn header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// An `event` frame whose payload is the union member's JSON.
pub fn event(event_type: &'static str, payload: &serde_json::Value) -> Bytes {
    frame(
        vec![
            header(":event-type", event_type),
            header(":content-type", "application/json"),
            header(":message-type", "event"),
        ],
        serde_json::to_vec(payload).unwrap_or_default(),
    )
}

/// An `exception` frame (`:exception-type` is the modelled member, e.g. `throttlingException`).
pub fn exception(error: &BedrockError) -> Bytes {
    exception_member(error.code.stream_member(), &error.message)
}

/// An `exception` frame of the stream member `member` (`dependencyFailedException`).
pub fn exception_member(member: &'static str, message: &str) -> Bytes {
    frame(
        vec![
            header(":exception-type", member),
            header(":content-type", "application/json"),
            header(":message-type", "exception"),
        ],
        serde_json::to_vec(&serde_json::json!({ "message": message })).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    fn header_value<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str())
    }

    #[test]
    fn event_frames_round_trip_through_the_reference_decoder() {
        let bytes = event(
            "contentBlockDelta",
            &serde_json::json!({"contentBlockIndex": 0, "delta": {"text": "hi"}}),
        );
        let message = read_message_from(bytes).expect("valid frame with correct CRCs");
        assert_eq!(
            header_value(&message, ":event-type"),
            Some("contentBlockDelta")
        );
        assert_eq!(header_value(&message, ":message-type"), Some("event"));
        let payload: serde_json::Value = serde_json::from_slice(message.payload()).expect("json");
        assert_eq!(payload["delta"]["text"], "hi");
    }

    #[test]
    fn exception_frames_name_the_modelled_member() {
        let error = BedrockError {
            code: crate::BedrockErrorCode::Throttling,
            message: "slow down".into(),
        };
        let message = read_message_from(exception(&error)).expect("valid frame");
        assert_eq!(
            header_value(&message, ":exception-type"),
            Some("throttlingException")
        );
        assert_eq!(header_value(&message, ":message-type"), Some("exception"));
    }
}
