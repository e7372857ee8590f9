//! Parsing and validation of model-customization training data (JSON Lines),
//! following the record formats accepted by Bedrock's `CreateModelCustomizationJob`.

use serde_json::{Map, Value};
use std::fmt;

/// The accepted conversation schema version.
pub const CONVERSATION_SCHEMA: &str = "bedrock-conversation-2024";
/// A misspelling that appears in Bedrock's own documentation; accepted as well.
const CONVERSATION_SCHEMA_MISSPELLED: &str = "bedrock-conversion-2024";

/// Which customization type the data is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    FineTuning,
    ContinuedPreTraining,
}

impl DataKind {
    /// The Bedrock `customizationType` name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::FineTuning => "FINE_TUNING",
            DataKind::ContinuedPreTraining => "CONTINUED_PRE_TRAINING",
        }
    }
}

/// Speaker of a conversation turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    /// The role as written in the data: `"user"` or `"assistant"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One validated training record.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingRecord {
    /// `{"prompt": "...", "completion": "..."}`
    PromptCompletion { prompt: String, completion: String },
    /// `{"input": "..."}` (continued pre-training only)
    Text { input: String },
    /// A `bedrock-conversation-2024` record; text blocks joined with `"\n"`.
    Conversation {
        system: Option<String>,
        messages: Vec<(Role, String)>,
    },
}

/// Size limits applied while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLimits {
    pub max_records: usize,
    pub max_line_bytes: usize,
    pub max_text_chars: usize,
    pub max_errors_reported: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            max_records: 10_000,
            max_line_bytes: 1024 * 1024,
            max_text_chars: 100_000,
            max_errors_reported: 20,
        }
    }
}

/// Validation errors, each `"line N: reason"`; `more` counts errors beyond the reporting cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataErrors {
    pub errors: Vec<String>,
    pub more: usize,
}

impl DataErrors {
    /// Records `line N: reason`, or just counts it once `cap` errors are kept.
    fn push(&mut self, cap: usize, line: usize, reason: &str) {
        if self.errors.len() < cap {
            self.errors.push(format!("line {line}: {reason}"));
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.more == 0
    }
}

impl fmt::Display for DataErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.errors.join("; "))?;
        if self.more > 0 {
            let sep = if self.errors.is_empty() {
                ""
            } else {
                "; … and "
            };
            let noun = if self.more == 1 { "error" } else { "errors" };
            write!(f, "{sep}{} more {noun}", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for DataErrors {}

/// Parses and validates a JSONL training file.
///
/// # Errors
/// Every bad line (up to `max_errors_reported`, the rest counted in `more`), invalid UTF-8
/// (first bad line only), more than `max_records` records, or a file with no records.
pub fn parse_jsonl(
    bytes: &[u8],
    kind: DataKind,
    limits: &DataLimits,
) -> Result<Vec<TrainingRecord>, DataErrors> {
    let cap = limits.max_errors_reported;
    let mut errors = DataErrors::default();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            errors.push(cap, line, "not valid UTF-8 (the file must be UTF-8 text)");
            return Err(errors);
        }
    };

    let mut records = Vec::new();
    let mut non_blank = 0usize;
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        non_blank += 1;
        if non_blank > limits.max_records {
            let reason = format!("more than {} records (the limit)", limits.max_records);
            errors.push(cap, line_no, &reason);
            break;
        }
        if line.len() > limits.max_line_bytes {
            let reason = format!("longer than {} bytes (the limit)", limits.max_line_bytes);
            errors.push(cap, line_no, &reason);
            continue;
        }
        match parse_line(line, kind, limits) {
            Ok(record) => records.push(record),
            Err(reason) => errors.push(cap, line_no, &reason),
        }
    }

    if errors.is_empty() && records.is_empty() {
        errors.errors.push("the file has no records".to_string());
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(errors)
    }
}

/// Parses one non-blank line into a record of the kind the job expects.
fn parse_line(line: &str, kind: DataKind, limits: &DataLimits) -> Result<TrainingRecord, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // Each line is parsed alone, so serde_json's "line 1" is noise.
        let message = e.to_string().replace(" at line 1 column ", " at column ");
        format!("not JSON ({message})")
    })?;
    let Value::Object(obj) = value else {
        return Err(format!("expected a JSON object, got {}", type_name(&value)));
    };
    let has = |key: &str| obj.contains_key(key);
    match kind {
        DataKind::ContinuedPreTraining if has("input") => parse_text(&obj, limits),
        DataKind::ContinuedPreTraining => {
            Err(r#"CONTINUED_PRE_TRAINING expects {"input": "..."}"#.to_string())
        }
        DataKind::FineTuning if has("schemaVersion") || has("messages") || has("system") => {
            parse_conversation(&obj, limits)
        }
        DataKind::FineTuning if has("prompt") || has("completion") => {
            parse_prompt_completion(&obj, limits)
        }
        DataKind::FineTuning => Err(
            "FINE_TUNING expects prompt/completion or bedrock-conversation-2024 records"
                .to_string(),
        ),
    }
}

fn parse_prompt_completion(
    obj: &Map<String, Value>,
    limits: &DataLimits,
) -> Result<TrainingRecord, String> {
    check_keys(obj, &["prompt", "completion"], "")?;
    let prompt = required_string(obj, "prompt", limits)?;
    let completion = required_string(obj, "completion", limits)?;
    if completion.trim().is_empty() {
        return Err(r#""completion" must not be empty"#.to_string());
    }
    Ok(TrainingRecord::PromptCompletion { prompt, completion })
}

fn parse_text(obj: &Map<String, Value>, limits: &DataLimits) -> Result<TrainingRecord, String> {
    check_keys(obj, &["input"], "")?;
    let input = required_string(obj, "input", limits)?;
    if input.trim().is_empty() {
        return Err(r#""input" must not be empty"#.to_string());
    }
    Ok(TrainingRecord::Text { input })
}

fn parse_conversation(
    obj: &Map<String, Value>,
    limits: &DataLimits,
) -> Result<TrainingRecord, String> {
    check_keys(obj, &["schemaVersion", "system", "messages"], "")?;
    match obj.get("schemaVersion") {
        Some(Value::String(v)) if v == CONVERSATION_SCHEMA => {}
        Some(Value::String(v)) if v == CONVERSATION_SCHEMA_MISSPELLED => {}
        Some(v) => {
            return Err(format!(
                r#""schemaVersion" must be "{CONVERSATION_SCHEMA}" (got {v})"#
            ))
        }
        None => {
            return Err(format!(
                r#"missing "schemaVersion" ("{CONVERSATION_SCHEMA}")"#
            ))
        }
    }
    let system = match obj.get("system") {
        Some(value) => text_blocks(value, "system", limits)?,
        None => None,
    };
    let items = match obj.get("messages") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(r#""messages" must not be empty"#.to_string()),
        Some(_) => return Err(r#""messages" must be an array"#.to_string()),
        None => return Err(r#"missing "messages""#.to_string()),
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("messages[{i}]");
        let item = item
            .as_object()
            .ok_or_else(|| format!("{path} must be an object"))?;
        check_keys(item, &["role", "content"], &path)?;
        let role = match item.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => return Err(format!(r#"{path}.role must be "user" or "assistant""#)),
        };
        let expected = [Role::User, Role::Assistant][i % 2];
        if role != expected {
            let name = expected.as_str();
            return Err(format!(
                r#"{path}.role must be "{name}" (roles alternate, starting with user)"#
            ));
        }
        let content = item
            .get("content")
            .ok_or_else(|| format!(r#"{path}: missing "content""#))?;
        let text = text_blocks(content, &format!("{path}.content"), limits)?
            .ok_or_else(|| format!("{path}.content must not be empty"))?;
        messages.push((role, text));
    }
    // The final assistant reply is what the model learns to produce.
    let last = messages.len().saturating_sub(1);
    match messages.last() {
        Some((Role::Assistant, text)) if !text.trim().is_empty() => {
            Ok(TrainingRecord::Conversation { system, messages })
        }
        Some((Role::Assistant, _)) => {
            Err(format!("messages[{last}] (the final reply) has no text"))
        }
        _ => Err(format!(
            r#"messages[{last}].role must be "assistant" (the last message is the one learned)"#
        )),
    }
}

/// Reads an array of `{"text": "..."}` blocks joined with `"\n"`; `None` for an empty array.
fn text_blocks(value: &Value, path: &str, limits: &DataLimits) -> Result<Option<String>, String> {
    let blocks = value
        .as_array()
        .ok_or_else(|| format!(r#"{path} must be an array of {{"text": "..."}} blocks"#))?;
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.iter().enumerate() {
        let not_text = || format!(r#"{path}[{j}] must be {{"text": "..."}}"#);
        let block = block.as_object().ok_or_else(not_text)?;
        if let Some(other) = block.keys().find(|k| k.as_str() != "text") {
            let reason = "only text content is supported";
            return Err(format!(r#"{path}[{j}]: {reason} (got "{other}")"#));
        }
        match block.get("text") {
            Some(Value::String(text)) => parts.push(text.as_str()),
            Some(_) => return Err(format!("{path}[{j}].text must be a string")),
            None => return Err(not_text()),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let joined = parts.join("\n");
    check_length(path, &joined, limits)?;
    Ok(Some(joined))
}

/// Rejects keys outside `allowed`; a non-empty `path` prefixes the message.
fn check_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), String> {
    let Some(key) = obj.keys().find(|k| !allowed.contains(&k.as_str())) else {
        return Ok(());
    };
    let expected: Vec<String> = allowed.iter().map(|k| format!("\"{k}\"")).collect();
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    Err(format!(
        r#"{prefix}unknown key "{key}" (expected {})"#,
        expected.join(", ")
    ))
}

fn required_string(
    obj: &Map<String, Value>,
    key: &str,
    limits: &DataLimits,
) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => {
            check_length(&format!("\"{key}\""), s, limits)?;
            Ok(s.clone())
        }
        Some(_) => Err(format!(r#""{key}" must be a string"#)),
        None => Err(format!(r#"missing "{key}""#)),
    }
}

/// Rejects text longer than `max_text_chars` characters.
fn check_length(name: &str, text: &str, limits: &DataLimits) -> Result<(), String> {
    let max = limits.max_text_chars;
    // The byte length bounds the char count, so count chars only when it could matter.
    if text.len() > max && text.chars().count() > max {
        return Err(format!(
            "{name} is longer than {max} characters (the limit)"
        ));
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FT: DataKind = DataKind::FineTuning;
    const CPT: DataKind = DataKind::ContinuedPreTraining;
    const PC: &str = r#"{"prompt":"p","completion":"c"}"#;

    fn run(text: &str, kind: DataKind) -> Result<Vec<TrainingRecord>, DataErrors> {
        parse_jsonl(text.as_bytes(), kind, &DataLimits::default())
    }

    fn errors(text: &str, kind: DataKind) -> Vec<String> {
        run(text, kind).expect_err("an error").errors
    }

    /// Checks a table of one-line files: each input line is followed by `=> expected error`.
    fn check_table(kind: DataKind, table: &str) {
        let lines: Vec<&str> = table.lines().filter(|l| !l.trim().is_empty()).collect();
        for pair in lines.chunks(2) {
            let expected = pair[1].strip_prefix("=> ").expect("a value");
            assert_eq!(errors(pair[0], kind), vec![expected], "input: {}", pair[0]);
        }
    }

    #[test]
    fn valid_records_of_each_kind() {
        let conversation = r#"{"schemaVersion":"bedrock-conversation-2024","system":[{"text":"s1"},{"text":"s2"}],"messages":[{"role":"user","content":[{"text":"a"},{"text":"b"}]},{"role":"assistant","content":[{"text":"c"}]},{"role":"user","content":[{"text":"d"}]},{"role":"assistant","content":[{"text":"e"}]}]}"#;
        let misspelled = r#"{"schemaVersion":"bedrock-conversion-2024","system":[],"messages":[{"role":"user","content":[{"text":"q"}]},{"role":"assistant","content":[{"text":"r"}]}]}"#;
        let empty_prompt = r#"{"prompt":"","completion":"x"}"#;
        let text = format!("{empty_prompt}\n{conversation}\n{misspelled}\n");
        let records = run(&text, FT).expect("a value");
        let pc = |prompt: &str, completion: &str| TrainingRecord::PromptCompletion {
            prompt: prompt.into(),
            completion: completion.into(),
        };
        let conv = |system: Option<&str>, messages: &[(Role, &str)]| TrainingRecord::Conversation {
            system: system.map(String::from),
            messages: messages.iter().map(|(r, t)| (*r, t.to_string())).collect(),
        };
        let (u, a) = (Role::User, Role::Assistant);
        let expected = vec![
            pc("", "x"),
            conv(Some("s1\ns2"), &[(u, "a\nb"), (a, "c"), (u, "d"), (a, "e")]),
            conv(None, &[(u, "q"), (a, "r")]),
        ];
        assert_eq!(records, expected);
        let input = TrainingRecord::Text {
            input: "some text".into(),
        };
        assert_eq!(
            run(r#"{"input":"some text"}"#, CPT).expect("a value"),
            vec![input]
        );
    }

    #[test]
    fn continued_pre_training_errors() {
        check_table(
            CPT,
            r#"
{"prompt":"p","completion":"c"}
=> line 1: CONTINUED_PRE_TRAINING expects {"input": "..."}
{"schemaVersion":"bedrock-conversation-2024","messages":[]}
=> line 1: CONTINUED_PRE_TRAINING expects {"input": "..."}
{}
=> line 1: CONTINUED_PRE_TRAINING expects {"input": "..."}
{"input":"x","meta":1}
=> line 1: unknown key "meta" (expected "input")
{"input":" "}
=> line 1: "input" must not be empty
{"input":5}
=> line 1: "input" must be a string
"text"
=> line 1: expected a JSON object, got a string
"#,
        );
    }

    #[test]
    fn prompt_completion_errors() {
        check_table(
            FT,
            r#"
{"input":"x"}
=> line 1: FINE_TUNING expects prompt/completion or bedrock-conversation-2024 records
{"prompt":"p","completion":"c","id":1}
=> line 1: unknown key "id" (expected "prompt", "completion")
{"prompt":"p"}
=> line 1: missing "completion"
{"completion":"c"}
=> line 1: missing "prompt"
{"prompt":1,"completion":"c"}
=> line 1: "prompt" must be a string
{"prompt":"p","completion":" \n"}
=> line 1: "completion" must not be empty
not json
=> line 1: not JSON (expected ident at column 2)
{"prompt":"p","completion":"c"} x
=> line 1: not JSON (trailing characters at column 33)
[1,2]
=> line 1: expected a JSON object, got an array
null
=> line 1: expected a JSON object, got null
"#,
        );
    }

    #[test]
    fn conversation_shape_errors() {
        check_table(
            FT,
            r#"
{"schemaVersion":"v1","messages":[]}
=> line 1: "schemaVersion" must be "bedrock-conversation-2024" (got "v1")
{"messages":[]}
=> line 1: missing "schemaVersion" ("bedrock-conversation-2024")
{"schemaVersion":"bedrock-conversation-2024","extra":1,"messages":[]}
=> line 1: unknown key "extra" (expected "schemaVersion", "system", "messages")
{"schemaVersion":"bedrock-conversation-2024","system":"s","messages":[]}
=> line 1: system must be an array of {"text": "..."} blocks
{"schemaVersion":"bedrock-conversation-2024","system":[{"text":1}],"messages":[]}
=> line 1: system[0].text must be a string
{"schemaVersion":"bedrock-conversation-2024","messages":[]}
=> line 1: "messages" must not be empty
{"schemaVersion":"bedrock-conversation-2024","messages":{}}
=> line 1: "messages" must be an array
{"schemaVersion":"bedrock-conversation-2024"}
=> line 1: missing "messages"
{"schemaVersion":"bedrock-conversation-2024","messages":[5]}
=> line 1: messages[0] must be an object
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","name":"x","content":[]}]}
=> line 1: messages[0]: unknown key "name" (expected "role", "content")
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"system","content":[]}]}
=> line 1: messages[0].role must be "user" or "assistant"
{"schemaVersion":"bedrock-conversation-2024","messages":[{"content":[]}]}
=> line 1: messages[0].role must be "user" or "assistant"
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user"}]}
=> line 1: messages[0]: missing "content"
"#,
        );
    }

    #[test]
    fn conversation_content_errors() {
        check_table(
            FT,
            r#"
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{"text":"a"},{"image":{"format":"png"}}]}]}
=> line 1: messages[0].content[1]: only text content is supported (got "image")
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[]}]}
=> line 1: messages[0].content must not be empty
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":"hi"}]}
=> line 1: messages[0].content must be an array of {"text": "..."} blocks
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{"text":1}]}]}
=> line 1: messages[0].content[0].text must be a string
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{}]}]}
=> line 1: messages[0].content[0] must be {"text": "..."}
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":["hi"]}]}
=> line 1: messages[0].content[0] must be {"text": "..."}
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{"text":"q"}]},{"role":"assistant","content":[{"text":" "}]}]}
=> line 1: messages[1] (the final reply) has no text
"#,
        );
    }

    #[test]
    fn conversation_role_order() {
        check_table(
            FT,
            r#"
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"assistant","content":[{"text":"a"}]}]}
=> line 1: messages[0].role must be "user" (roles alternate, starting with user)
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{"text":"q"}]},{"role":"user","content":[{"text":"q"}]}]}
=> line 1: messages[1].role must be "assistant" (roles alternate, starting with user)
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{"text":"q"}]},{"role":"assistant","content":[{"text":"a"}]},{"role":"assistant","content":[{"text":"a"}]}]}
=> line 1: messages[2].role must be "user" (roles alternate, starting with user)
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{"text":"q"}]}]}
=> line 1: messages[0].role must be "assistant" (the last message is the one learned)
{"schemaVersion":"bedrock-conversation-2024","messages":[{"role":"user","content":[{"text":"q"}]},{"role":"assistant","content":[{"text":"a"}]},{"role":"user","content":[{"text":"q"}]}]}
=> line 1: messages[2].role must be "assistant" (the last message is the one learned)
"#,
        );
    }

    #[test]
    fn bom_crlf_blank_lines_and_line_numbers() {
        let text = format!("\u{feff}{PC}\r\n\r\n   \n\t\n{PC}\r\n");
        assert_eq!(run(&text, FT).expect("a value").len(), 2);
        // Blank lines still count; a BOM is skipped only at the start of the file.
        let text = format!("\n{PC}\r\n\n{{\"prompt\":\"p\"}}\r\n{PC}\n\u{feff}{PC}\n");
        let expected = [
            r#"line 4: missing "completion""#,
            "line 6: not JSON (expected value at column 1)",
        ];
        assert_eq!(errors(&text, FT), expected);
    }

    #[test]
    fn invalid_utf8_reports_first_bad_line() {
        let bytes = b"{\"input\":\"a\"}\n{\"input\":\"\xff\"}\n{\"input\":\"\xfe\"}\n";
        let found = parse_jsonl(bytes, CPT, &DataLimits::default()).expect_err("an error");
        let expected = "line 2: not valid UTF-8 (the file must be UTF-8 text)";
        assert_eq!((found.errors, found.more), (vec![expected.to_string()], 0));
    }

    #[test]
    fn every_bad_line_reported_up_to_the_cap() {
        let text = format!("{PC}\nbad\n{}", "{\"prompt\":\"p\"}\n".repeat(30));
        let found = run(&text, FT).expect_err("an error");
        assert_eq!((found.errors.len(), found.more), (20, 11));
        assert!(found.errors[0].starts_with("line 2: not JSON"));
        let tail = r#"line 21: missing "completion"; … and 11 more errors"#;
        assert!(found.to_string().ends_with(tail), "{found}");
    }

    #[test]
    fn display_and_names() {
        let two = vec!["line 3: a".to_string(), "line 7: b".to_string()];
        let found = DataErrors {
            errors: two,
            more: 1,
        };
        assert_eq!(
            found.to_string(),
            "line 3: a; line 7: b; … and 1 more error"
        );
        let only_more = DataErrors {
            errors: vec![],
            more: 2,
        };
        assert_eq!(only_more.to_string(), "2 more errors");
        assert_eq!(
            DataKind::ContinuedPreTraining.as_str(),
            "CONTINUED_PRE_TRAINING"
        );
        assert_eq!(Role::Assistant.as_str(), "assistant");
    }

    #[test]
    fn limits() {
        let limits = DataLimits {
            max_records: 2,
            max_line_bytes: 40,
            max_text_chars: 5,
            max_errors_reported: 20,
        };
        let parse = |text: &str| parse_jsonl(text.as_bytes(), CPT, &limits);
        // Five characters but ten bytes: within the limit.
        assert!(parse(r#"{"input":"ééééé"}"#).is_ok());
        let found = parse(r#"{"input":"abcdef"}"#).expect_err("an error").errors;
        assert_eq!(
            found,
            [r#"line 1: "input" is longer than 5 characters (the limit)"#]
        );
        let wide = format!("{{\"input\":\"{}\"}}", "a".repeat(40));
        let found = parse(&wide).expect_err("an error").errors;
        assert_eq!(found, ["line 1: longer than 40 bytes (the limit)"]);
        let four = "{\"input\":\"a\"}\n\n{\"input\":\"b\"}\n{\"input\":\"c\"}\n{\"input\":\"d\"}";
        let found = parse(four).expect_err("an error").errors;
        assert_eq!(found, ["line 4: more than 2 records (the limit)"]);
        // Conversation limits apply to the joined text ("abc\nde" is six characters).
        let limits = DataLimits {
            max_text_chars: 5,
            ..DataLimits::default()
        };
        let blocks = r#"[{"text":"abc"},{"text":"de"}]"#;
        let reply = r#"{"role":"assistant","content":[{"text":"a"}]}"#;
        let text = format!(
            r#"{{"schemaVersion":"bedrock-conversion-2024","messages":[{{"role":"user","content":{blocks}}},{reply}]}}
{{"schemaVersion":"bedrock-conversion-2024","system":{blocks},"messages":[{{"role":"user","content":[]}}]}}"#
        );
        let found = parse_jsonl(text.as_bytes(), FT, &limits)
            .expect_err("an error")
            .errors;
        let expected = [
            "line 1: messages[0].content is longer than 5 characters (the limit)",
            "line 2: system is longer than 5 characters (the limit)",
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn files_without_records() {
        for text in ["", "\n\n", "\u{feff}", " \r\n\t\n"] {
            assert_eq!(errors(text, FT), ["the file has no records"]);
        }
    }
}
