//! An incremental parser for server-sent events (the WHATWG `text/event-stream`
//! format): bytes in, whole events out, across arbitrary chunk boundaries.

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Buffers partial lines between chunks.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buffer: Vec<u8>,
    name: Option<String>,
    data: Vec<String>,
}

/// Longest line we buffer; a longer one means the upstream is not speaking SSE.
const MAX_LINE: usize = 16 * 1024 * 1024;

impl Parser {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[start..].iter().position(|&b| b == b'\n') {
            let end = start + offset;
            let mut line = &self.buffer[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..start);
        if self.buffer.len() > MAX_LINE {
            return Err("an event-stream line is longer than 16 MiB".into());
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if self.data.is_empty() && self.name.is_none() {
                return None;
            }
            let event = Event {
                name: self.name.take(),
                data: std::mem::take(&mut self.data).join("\n"),
            };
            return Some(event);
        }
        if line.starts_with(':') {
            return None; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.name = Some(value.to_string()),
            _ => {} // id, retry: not needed by any provider we speak
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_chunking() {
        let stream = b": keep-alive\r\nevent: message\r\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
        let want = vec![
            Event {
                name: Some("message".into()),
                data: "{\"a\":1}".into(),
            },
            Event {
                name: None,
                data: "line1\nline2".into(),
            },
            Event {
                name: None,
                data: "[DONE]".into(),
            },
        ];
        for size in 1..stream.len() {
            let mut parser = Parser::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(size) {
                got.extend(parser.push(chunk).expect("parses"));
            }
            assert_eq!(got, want, "chunk size {size}");
        }
    }
}
