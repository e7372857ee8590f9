//! Converse `document` blocks, read into text before the request is translated:
//! each `{"document": {format, name, source}}` in a user message becomes a `text`
//! block with the document's name and text (`basalt_core::documents`). Formats,
//! names, sizes and count are checked first, in Bedrock's terms; the parsing (PDF,
//! DOCX, ...) runs on the blocking pool, off the serving thread. As text, a document
//! is checked by the guardrails like any other user text.

use basalt_core::documents::{self, DocumentFormat, MAX_DOCUMENTS, MAX_DOCUMENT_BYTES};
use basalt_core::CoreError;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::wire::ConverseBody;
use crate::error::BedrockError;

/// A document found in a request: where it is, and what to read.
struct Found {
    message: usize,
    block: usize,
    format: DocumentFormat,
    name: String,
    bytes: Vec<u8>,
}

/// Replaces every document block of `body` with its text.
pub(crate) async fn inline_documents(body: &mut ConverseBody) -> Result<(), BedrockError> {
    let Some(messages) = body.messages.as_mut() else {
        return Ok(());
    };
    let mut found = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        for (j, block) in message.content.iter().enumerate() {
            let Some(document) = block.get("document") else {
                continue;
            };
            let at = format!("messages[{i}].content[{j}].document");
            if message.role != "user" {
                return Err(invalid(&at, "documents go in user messages"));
            }
            found.push(read_block(document, &at, i, j)?);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    if found.len() > MAX_DOCUMENTS {
        return Err(BedrockError::validation(format!(
            "the request has {} documents; at most {MAX_DOCUMENTS} are accepted",
            found.len()
        )));
    }
    let texts = tokio::task::spawn_blocking(move || {
        found
            .into_iter()
            .map(|d| {
                documents::as_text(d.format, &d.name, &d.bytes).map(|t| (d.message, d.block, t))
            })
            .collect::<Result<Vec<_>, CoreError>>()
    })
    .await
    .map_err(|e| BedrockError::from(CoreError::Internal(format!("reading documents: {e}"))))??;
    for (i, j, text) in texts {
        let mut block = Map::new();
        block.insert("text".into(), Value::String(text));
        messages[i].content[j] = block;
    }
    Ok(())
}

fn invalid(at: &str, what: &str) -> BedrockError {
    BedrockError::validation(format!("{at}: {what}"))
}

/// A document block's format, name and bytes, checked.
fn read_block(
    document: &Value,
    at: &str,
    message: usize,
    block: usize,
) -> Result<Found, BedrockError> {
    let format = document
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(at, "needs a format"))?;
    let name = document
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(at, "needs a name"))?;
    let parser = documents::check(format, name).map_err(BedrockError::from)?;
    let source = document
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(at, "needs a source"))?;
    let bytes = match (source.get("bytes"), source.get("text")) {
        (Some(Value::String(b)), None) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| invalid(at, "source.bytes is not base64"))?,
        (None, Some(Value::String(t))) => t.as_bytes().to_vec(),
        _ if source.contains_key("s3Location") => {
            return Err(invalid(
                at,
                "s3Location document sources are not supported; send the bytes",
            ))
        }
        _ => return Err(invalid(at, "source needs exactly one of bytes, text")),
    };
    if bytes.is_empty() {
        return Err(invalid(at, "the document is empty"));
    }
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(invalid(
            at,
            &format!(
                "the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted",
                bytes.len()
            ),
        ));
    }
    Ok(Found {
        message,
        block,
        format: parser,
        name: name.to_string(),
        bytes,
    })
}
