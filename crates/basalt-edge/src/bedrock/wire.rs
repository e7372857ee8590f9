//! Bedrock runtime JSON shapes and their translation to core types.
//!
//! Parsing is strict about types (a wrong type is a ValidationException naming the
//! field) and about unions (exactly one member, a known one); unknown top-level
//! members are ignored, as Bedrock's own JSON protocol does.

use serde::Deserialize;
use serde_json::{Map, Value};

use basalt_core::types::{
    ChatRequest, ContentBlock, InferenceParams, Message, Role, ToolCall, ToolChoice, ToolConfig,
    ToolSpec,
};

use basalt_core::guardrail_policy::{Qualifier, Segment};
use basalt_core::guardrails::{GuardrailUse, TextLocation};

use crate::error::BedrockError;

/// A required member of a request body, or a ValidationException naming it.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, BedrockError> {
    value.ok_or_else(|| BedrockError::validation(format!("{name} is required")))
}

/// Parses a JSON body into `T`, mapping every failure to a ValidationException.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, BedrockError> {
    if body.is_empty() {
        return Err(BedrockError::validation(
            "the request body is empty; expected a JSON object",
        ));
    }
    crate::json_body::parse(body).map_err(|e| {
        let (path, inner) = (e.path, e.error);
        if inner.is_syntax() || inner.is_eof() || path == "." {
            BedrockError::validation(format!("malformed request body: {inner}"))
        } else {
            BedrockError::validation(format!("malformed request body at {path}: {inner}"))
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseBody {
    pub messages: Option<Vec<WireMessage>>,
    #[serde(default)]
    pub system: Vec<Map<String, Value>>,
    pub inference_config: Option<WireInferenceConfig>,
    pub tool_config: Option<Value>,
    pub guardrail_config: Option<Value>,
    pub additional_model_request_fields: Option<Map<String, Value>>,
    pub additional_model_response_field_paths: Option<Vec<String>>,
    pub prompt_variables: Option<Map<String, Value>>,
    pub request_metadata: Option<Map<String, Value>>,
    pub performance_config: Option<Value>,
    pub service_tier: Option<Value>,
    pub output_config: Option<Value>,
}

impl ConverseBody {
    /// Whether the request marks a `cachePoint` (in `system`, a message or
    /// `toolConfig.tools`): Bedrock then reports the prompt cache in `usage`.
    pub fn names_cache_points(&self) -> bool {
        let marks = |block: &Map<String, Value>| block.contains_key("cachePoint");
        self.system.iter().any(marks)
            || self
                .messages
                .iter()
                .flatten()
                .any(|m| m.content.iter().any(marks))
            || self
                .tool_config
                .as_ref()
                .and_then(|t| t.get("tools"))
                .and_then(Value::as_array)
                .is_some_and(|tools| {
                    tools
                        .iter()
                        .any(|t| t.as_object().is_some_and(|o| o.contains_key("cachePoint")))
                })
    }
}

#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: String,
    pub content: Vec<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WireInferenceConfig {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop_sequences: Option<Vec<String>>,
}

const CONTENT_MEMBERS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "audio",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
    "searchResult",
    "toolAddition",
    "toolRemoval",
];

fn single_member<'a>(
    map: &'a Map<String, Value>,
    at: &str,
    members: &[&str],
) -> Result<(&'a str, &'a Value), BedrockError> {
    let mut iter = map.iter();
    let (Some((key, value)), None) = (iter.next(), iter.next()) else {
        return Err(BedrockError::validation(format!(
            "{at} must set exactly one member"
        )));
    };
    if !members.contains(&key.as_str()) {
        return Err(BedrockError::validation(format!(
            "{at} has unknown member {key:?}; expected one of {}",
            members.join(", ")
        )));
    }
    Ok((key.as_str(), value))
}

fn text_of(value: &Value, at: &str) -> Result<String, BedrockError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| BedrockError::validation(format!("{at}.text must be a string")))
}

/// `guardrailConfig` of Converse / ConverseStream.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailCall {
    pub guard: GuardrailUse,
    /// `trace` is `enabled` or `enabled_full`.
    pub trace: bool,
    /// ConverseStream's `streamProcessingMode` is `async`.
    pub asynchronous: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireGuardrailConfig {
    guardrail_identifier: Option<String>,
    guardrail_version: Option<String>,
    trace: Option<String>,
    stream_processing_mode: Option<String>,
}

pub(crate) fn guardrail_config(
    value: &Value,
    streaming: bool,
) -> Result<GuardrailCall, BedrockError> {
    let config: WireGuardrailConfig = serde_json::from_value(value.clone())
        .map_err(|e| BedrockError::validation(format!("guardrailConfig: {e}")))?;
    let identifier = config.guardrail_identifier.ok_or_else(|| {
        BedrockError::validation("guardrailConfig.guardrailIdentifier is required")
    })?;
    let version = config
        .guardrail_version
        .ok_or_else(|| BedrockError::validation("guardrailConfig.guardrailVersion is required"))?;
    let trace = match config.trace.as_deref() {
        None | Some("disabled") => false,
        Some("enabled") | Some("enabled_full") => true,
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "guardrailConfig.trace {other:?} is not one of enabled, disabled, enabled_full"
            )))
        }
    };
    let asynchronous = match config.stream_processing_mode.as_deref() {
        None | Some("sync") => false,
        Some("async") if streaming => true,
        Some("async") => {
            return Err(BedrockError::validation(
                "guardrailConfig.streamProcessingMode applies to ConverseStream only",
            ))
        }
        Some(other) => {
            return Err(BedrockError::validation(format!(
                "guardrailConfig.streamProcessingMode {other:?} is not one of sync, async"
            )))
        }
    };
    Ok(GuardrailCall {
        guard: GuardrailUse {
            identifier,
            version,
            input: Vec::new(),
        },
        trace,
        asynchronous,
    })
}

/// A `guardContent` block: its text and qualifiers.
fn guard_content(value: &Value, at: &str) -> Result<Segment, BedrockError> {
    let at = format!("{at}.guardContent");
    let Some(map) = value.as_object() else {
        return Err(invalid(&at, "must be an object"));
    };
    match single_member(map, &at, &["text", "image"])? {
        ("text", block) => {
            let text = string_field(block, &format!("{at}.text"), "text")?;
            let mut qualifiers = Vec::new();
            if let Some(list) = block.get("qualifiers") {
                let list = list
                    .as_array()
                    .ok_or_else(|| invalid(&at, "text.qualifiers must be a list"))?;
                for q in list {
                    qualifiers.push(match q.as_str() {
                        Some("guard_content") => Qualifier::GuardContent,
                        Some("grounding_source") => Qualifier::GroundingSource,
                        Some("query") => Qualifier::Query,
                        _ => {
                            return Err(invalid(
                                &at,
                                "text.qualifiers must be guard_content, grounding_source or query",
                            ))
                        }
                    });
                }
            }
            Ok(Segment { text, qualifiers })
        }
        _ => Err(invalid(
            &at,
            "image guard content is not supported by this server",
        )),
    }
}

impl ConverseBody {
    /// Translates to the core's chat request; a guardrail is refused (CountTokens).
    pub fn into_chat_request(self, model_id: &str) -> Result<ChatRequest, BedrockError> {
        if self.guardrail_config.is_some() {
            return Err(BedrockError::validation(
                "guardrailConfig is not accepted by this operation",
            ));
        }
        Ok(self.into_guarded_request(model_id, false)?.0)
    }

    /// Translates to the core's chat request and the guardrail it names, with the
    /// guarded input: the `guardContent` blocks when there are any, otherwise every
    /// text block of the messages.
    pub fn into_guarded_request(
        self,
        model_id: &str,
        streaming: bool,
    ) -> Result<(ChatRequest, Option<GuardrailCall>), BedrockError> {
        let mut guardrail = match &self.guardrail_config {
            Some(config) => Some(guardrail_config(config, streaming)?),
            None => None,
        };
        if self.prompt_variables.is_some() {
            return Err(BedrockError::validation(
                "promptVariables apply to prompt resources, which this server does not have",
            ));
        }
        let mut guarded: Vec<(TextLocation, Segment)> = Vec::new();
        let mut plain: Vec<(TextLocation, Segment)> = Vec::new();
        let mut system = Vec::new();
        for (i, block) in self.system.iter().enumerate() {
            let at = format!("system[{i}]");
            match single_member(block, &at, &["text", "guardContent", "cachePoint"])? {
                ("text", v) => system.push(text_of(v, &at)?),
                ("guardContent", v) => {
                    let segment = guard_content(v, &at)?;
                    guarded.push((TextLocation::System(system.len()), segment.clone()));
                    system.push(segment.text);
                }
                _ => {} // cachePoint: every prefix is cached; the marker needs no action
            }
        }
        let messages = self
            .messages
            .ok_or_else(|| BedrockError::validation("messages is required"))?;
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(BedrockError::validation(format!(
                        "messages[{i}].role {other:?} is not valid; use user or assistant"
                    )))
                }
            };
            let mut content = Vec::with_capacity(m.content.len());
            for (j, block) in m.content.iter().enumerate() {
                let at = format!("messages[{i}].content[{j}]");
                match single_member(block, &at, CONTENT_MEMBERS)? {
                    ("text", v) => {
                        let text = text_of(v, &at)?;
                        plain.push((
                            TextLocation::Message(i, content.len()),
                            Segment::guarded(text.clone()),
                        ));
                        content.push(ContentBlock::Text(text));
                    }
                    ("guardContent", v) => {
                        let segment = guard_content(v, &at)?;
                        guarded.push((TextLocation::Message(i, content.len()), segment.clone()));
                        content.push(ContentBlock::Text(segment.text));
                    }
                    ("cachePoint", _) => {}
                    ("toolUse", v) => content.push(ContentBlock::ToolUse(tool_use(v, &at)?)),
                    ("toolResult", v) => content.push(tool_result(v, &at)?),
                    ("image", v) => content.push(image(v, &at)?),
                    (kind, _) => content.push(ContentBlock::Other {
                        kind: kind.to_string(),
                    }),
                }
            }
            out.push(Message { role, content });
        }
        let mut params = InferenceParams::default();
        if let Some(c) = self.inference_config {
            if let Some(t) = c.temperature {
                if !(0.0..=1.0).contains(&t) {
                    return Err(BedrockError::validation(format!(
                        "inferenceConfig.temperature {t} must be between 0 and 1"
                    )));
                }
            }
            if let Some(p) = c.top_p {
                if !(0.0..=1.0).contains(&p) {
                    return Err(BedrockError::validation(format!(
                        "inferenceConfig.topP {p} must be between 0 and 1"
                    )));
                }
            }
            if c.stop_sequences
                .as_ref()
                .is_some_and(|s| s.iter().any(String::is_empty))
            {
                return Err(BedrockError::validation(
                    "inferenceConfig.stopSequences must not contain empty strings",
                ));
            }
            params.max_tokens = c.max_tokens;
            params.temperature = c.temperature;
            params.top_p = c.top_p;
            params.stop_sequences = c.stop_sequences.unwrap_or_default();
        }
        let mut response_schema = match &self.output_config {
            Some(config) => Some(output_config_schema(config)?),
            None => None,
        };
        if let Some(extra) = &self.additional_model_request_fields {
            if let Some(schema) = apply_additional_fields(extra, &mut params)? {
                if response_schema.is_some() {
                    return Err(BedrockError::validation(
                        "give the response schema in outputConfig or in additionalModelRequestFields.response_format, not both",
                    ));
                }
                response_schema = Some(schema);
            }
        }
        let tools = match &self.tool_config {
            Some(config) => Some(tool_config(config)?),
            None => None,
        };
        if let Some(call) = &mut guardrail {
            call.guard.input = if guarded.is_empty() { plain } else { guarded };
        }
        let request = ChatRequest {
            model_id: model_id.to_string(),
            system,
            messages: out,
            params,
            tools,
            response_schema,
            stream: streaming,
        };
        Ok((request, guardrail))
    }
}

fn invalid(at: &str, what: &str) -> BedrockError {
    BedrockError::validation(format!("{at} {what}"))
}

fn string_field(value: &Value, at: &str, key: &str) -> Result<String, BedrockError> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| invalid(at, &format!("needs a string {key}")))
}

fn tool_use(value: &Value, at: &str) -> Result<ToolCall, BedrockError> {
    let at = format!("{at}.toolUse");
    Ok(ToolCall {
        id: string_field(value, &at, "toolUseId")?,
        name: string_field(value, &at, "name")?,
        input: value
            .get("input")
            .cloned()
            .ok_or_else(|| invalid(&at, "needs input"))?,
    })
}

/// `{"format": "png|jpeg|gif|webp", "source": {"bytes": <base64>}}`.
fn image(value: &Value, at: &str) -> Result<ContentBlock, BedrockError> {
    use base64::Engine;
    let at = format!("{at}.image");
    let format = value
        .get("format")
        .and_then(Value::as_str)
        .and_then(basalt_core::types::ImageFormat::from_name)
        .ok_or_else(|| invalid(&at, "format must be one of png, jpeg, gif, webp"))?;
    let source = value
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(&at, "needs a source"))?;
    let bytes = match source.get("bytes") {
        Some(Value::String(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| invalid(&at, "source.bytes is not base64"))?,
        Some(_) => return Err(invalid(&at, "source.bytes must be base64 text")),
        None if source.contains_key("s3Location") => {
            return Err(invalid(
                &at,
                "s3Location image sources are not supported; send the bytes",
            ))
        }
        None => return Err(invalid(&at, "source needs bytes")),
    };
    if bytes.is_empty() {
        return Err(invalid(&at, "source.bytes is empty"));
    }
    Ok(ContentBlock::Image(basalt_core::types::Image {
        format,
        data: bytes,
    }))
}

fn tool_result(value: &Value, at: &str) -> Result<ContentBlock, BedrockError> {
    let at = format!("{at}.toolResult");
    let tool_use_id = string_field(value, &at, "toolUseId")?;
    let parts = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(&at, "needs a content list"))?;
    let mut content = String::new();
    for (k, part) in parts.iter().enumerate() {
        let part = part
            .as_object()
            .ok_or_else(|| invalid(&at, "content items must be objects"))?;
        match single_member(
            part,
            &format!("{at}.content[{k}]"),
            &["text", "json", "image", "document", "video", "searchResult"],
        )? {
            ("text", v) => content.push_str(&text_of(v, &at)?),
            ("json", v) => content.push_str(&v.to_string()),
            (kind, _) => {
                return Err(invalid(
                    &at,
                    &format!("content {kind} is not supported by this model; send text or json"),
                ))
            }
        }
    }
    let is_error = match value.get("status").map(|v| v.as_str()) {
        None => false,
        Some(Some("success")) => false,
        Some(Some("error")) => true,
        Some(_) => return Err(invalid(&at, "status must be success or error")),
    };
    Ok(ContentBlock::ToolResult {
        tool_use_id,
        content,
        is_error,
    })
}

fn tool_config(value: &Value) -> Result<ToolConfig, BedrockError> {
    let at = "toolConfig";
    let list = value
        .get("tools")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(at, "needs a tools list"))?;
    let mut tools = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let at = format!("toolConfig.tools[{i}]");
        let entry = entry
            .as_object()
            .ok_or_else(|| invalid(&at, "must be an object"))?;
        match single_member(entry, &at, &["toolSpec", "systemTool", "cachePoint"])? {
            ("toolSpec", spec) => {
                let at = format!("{at}.toolSpec");
                let schema = spec
                    .get("inputSchema")
                    .and_then(|s| s.get("json"))
                    .cloned()
                    .ok_or_else(|| invalid(&at, "needs inputSchema.json"))?;
                tools.push(ToolSpec {
                    name: string_field(spec, &at, "name")?,
                    description: spec
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    input_schema: schema,
                });
            }
            ("cachePoint", _) => {}
            (kind, _) => {
                return Err(invalid(
                    &at,
                    &format!("{kind} is not supported by this server"),
                ))
            }
        }
    }
    let choice = match value.get("toolChoice") {
        None => ToolChoice::Auto,
        Some(Value::Object(c)) => {
            match single_member(c, "toolConfig.toolChoice", &["auto", "any", "tool"])? {
                ("auto", _) => ToolChoice::Auto,
                ("any", _) => ToolChoice::Any,
                (_, t) => ToolChoice::Tool(string_field(t, "toolConfig.toolChoice.tool", "name")?),
            }
        }
        Some(_) => return Err(invalid("toolConfig.toolChoice", "must be an object")),
    };
    Ok(ToolConfig { tools, choice })
}

/// A JSON schema given as an object or as JSON text.
fn schema_value(value: &Value, at: &str) -> Result<Value, BedrockError> {
    let schema = match value {
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| invalid(at, &format!("is not valid JSON: {e}")))?,
        other => other.clone(),
    };
    if !schema.is_object() {
        return Err(invalid(at, "must be a JSON schema object"));
    }
    Ok(schema)
}

/// `outputConfig.textFormat {type: json_schema, structure: {jsonSchema: {schema}}}`.
fn output_config_schema(config: &Value) -> Result<Value, BedrockError> {
    let format = config
        .get("textFormat")
        .ok_or_else(|| invalid("outputConfig", "needs textFormat"))?;
    if format.get("type").and_then(Value::as_str) != Some("json_schema") {
        return Err(invalid(
            "outputConfig.textFormat.type",
            "must be json_schema",
        ));
    }
    let schema = format
        .get("structure")
        .and_then(|s| s.get("jsonSchema"))
        .and_then(|s| s.get("schema"))
        .ok_or_else(|| {
            invalid(
                "outputConfig.textFormat",
                "needs structure.jsonSchema.schema",
            )
        })?;
    schema_value(
        schema,
        "outputConfig.textFormat.structure.jsonSchema.schema",
    )
}

/// `additionalModelRequestFields` the local engine understands: `top_k`, `seed` and
/// `response_format` (`{"type": "json_schema", "json_schema": {"schema": {...}}}`, as
/// in OpenAI's API); returns the response schema when one is given.
fn apply_additional_fields(
    extra: &Map<String, Value>,
    params: &mut InferenceParams,
) -> Result<Option<Value>, BedrockError> {
    let mut schema = None;
    for (key, value) in extra {
        match key.as_str() {
            "top_k" | "topK" => {
                let k = value
                    .as_u64()
                    .filter(|&k| k <= 1000)
                    .ok_or_else(|| BedrockError::validation("additionalModelRequestFields.top_k must be an integer 0..1000"))?;
                params.top_k = Some(k as u32);
            }
            "seed" => {
                let s = value
                    .as_u64()
                    .and_then(|s| u32::try_from(s).ok())
                    .ok_or_else(|| BedrockError::validation("additionalModelRequestFields.seed must be an unsigned 32-bit integer"))?;
                params.seed = Some(s);
            }
            "response_format" => {
                let at = "additionalModelRequestFields.response_format";
                if value.get("type").and_then(Value::as_str) != Some("json_schema") {
                    return Err(invalid(at, "type must be json_schema"));
                }
                let s = value
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .ok_or_else(|| invalid(at, "needs json_schema.schema"))?;
                schema = Some(schema_value(s, &format!("{at}.json_schema.schema"))?);
            }
            other => {
                return Err(BedrockError::validation(format!(
                    "additionalModelRequestFields.{other} is not supported by this model; supported: top_k, seed, response_format"
                )))
            }
        }
    }
    Ok(schema)
}

/// Meta Llama's native InvokeModel body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaBody {
    pub prompt: String,
    pub max_gen_len: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
}

impl LlamaBody {
    pub fn params(&self) -> Result<InferenceParams, BedrockError> {
        if let Some(t) = self.temperature {
            if !(0.0..=1.0).contains(&t) {
                return Err(BedrockError::validation(format!(
                    "temperature {t} must be between 0 and 1"
                )));
            }
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(BedrockError::validation(format!(
                    "top_p {p} must be between 0 and 1"
                )));
            }
        }
        Ok(InferenceParams {
            max_tokens: self.max_gen_len,
            temperature: self.temperature,
            top_p: self.top_p,
            ..InferenceParams::default()
        })
    }
}

/// Amazon Titan Text Embeddings' native body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TitanEmbedBody {
    pub input_text: String,
    pub dimensions: Option<u32>,
    pub normalize: Option<bool>,
    pub embedding_types: Option<Vec<String>>,
}

/// CountTokens' input union.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountTokensBody {
    pub input: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converse(json: &str) -> Result<ChatRequest, BedrockError> {
        parse_json::<ConverseBody>(json.as_bytes())?.into_chat_request("m")
    }

    #[test]
    fn translates_system_messages_and_inference_config() {
        let r = converse(r#"{"system":[{"text":"Be brief."}],"messages":[{"role":"user","content":[{"text":"Hi"}]}],
            "inferenceConfig":{"maxTokens":5,"temperature":0.5,"topP":0.9,"stopSequences":["x"]},
            "additionalModelRequestFields":{"top_k":40}}"#)
        .expect("valid");
        assert_eq!(r.system, vec!["Be brief.".to_string()]);
        assert_eq!(r.messages[0].content, vec![ContentBlock::Text("Hi".into())]);
        assert_eq!((r.params.max_tokens, r.params.top_k), (Some(5), Some(40)));
        assert_eq!(r.params.stop_sequences, vec!["x".to_string()]);
    }

    #[test]
    fn wrong_types_unknown_members_and_bad_roles_are_validation_errors() {
        for (body, expect) in [
            (
                r#"{"messages":[{"role":"user","content":[{"text":"a"}]}],"inferenceConfig":{"maxTokens":"ten"}}"#,
                "maxTokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"bogus":{}}]}]}"#,
                "bogus",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"text":"a","image":{}}]}]}"#,
                "exactly one",
            ),
            (
                r#"{"messages":[{"role":"robot","content":[{"text":"a"}]}]}"#,
                "robot",
            ),
            (r#"{"messages":"hello"}"#, "invalid type"),
            (r#"{not json"#, "malformed"),
            (
                r#"{"messages":[{"role":"user","content":[{"text":"a"}]}],"additionalModelRequestFields":{"mirostat":1}}"#,
                "mirostat",
            ),
        ] {
            let err = converse(body).expect_err(body);
            assert_eq!(err.code, crate::BedrockErrorCode::Validation, "{body}");
            assert!(err.message.contains(expect), "{body}: {}", err.message);
        }
    }

    #[test]
    fn images_are_decoded_and_other_blocks_carried_for_the_model_to_refuse() {
        let r = converse(r#"{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"iVBORw=="}}}]}]}"#).expect("parses");
        assert_eq!(
            r.messages[0].content,
            vec![ContentBlock::Image(basalt_core::types::Image {
                format: basalt_core::types::ImageFormat::Png,
                data: vec![0x89, 0x50, 0x4e, 0x47],
            })]
        );
        for (body, expect) in [
            (
                r#"{"messages":[{"role":"user","content":[{"image":{"format":"bmp","source":{"bytes":"iVBORw=="}}}]}]}"#,
                "format",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"!!"}}}]}]}"#,
                "base64",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"s3Location":{"uri":"s3://b/k"}}}}]}]}"#,
                "s3Location",
            ),
        ] {
            let err = converse(body).expect_err(body);
            assert!(err.message.contains(expect), "{body}: {}", err.message);
        }
        let r = converse(r#"{"messages":[{"role":"user","content":[{"document":{"format":"pdf","name":"d","source":{"bytes":""}}}]}]}"#).expect("parses");
        assert_eq!(
            r.messages[0].content,
            vec![ContentBlock::Other {
                kind: "document".into()
            }]
        );
    }
}
