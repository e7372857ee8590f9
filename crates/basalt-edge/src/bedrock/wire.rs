//! Bedrock runtime JSON shapes and their translation to core types.
//!
//! Parsing is strict about types (a wrong type is a ValidationException naming the
//! field) and about unions (exactly one member, a known one); unknown top-level
//! members are ignored, as Bedrock's own JSON protocol does.

use serde::Deserialize;
use serde_json::{Map, Value};

use basalt_core::types::{ChatRequest, ContentBlock, InferenceParams, Message, Role};

use crate::error::BedrockError;

/// Parses a JSON body into `T`, mapping every failure to a ValidationException.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, BedrockError> {
    if body.is_empty() {
        return Err(BedrockError::validation(
            "the request body is empty; expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
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

impl ConverseBody {
    /// Translates to the core's chat request.
    pub fn into_chat_request(self, model_id: &str) -> Result<ChatRequest, BedrockError> {
        if self.guardrail_config.is_some() {
            return Err(BedrockError::validation(
                "guardrailConfig is not supported by this server yet",
            ));
        }
        if self.output_config.is_some() {
            return Err(BedrockError::validation(
                "outputConfig (structured output) is not supported by this server yet",
            ));
        }
        if self.prompt_variables.is_some() {
            return Err(BedrockError::validation(
                "promptVariables apply to prompt resources, which this server does not have",
            ));
        }
        let mut system = Vec::new();
        for (i, block) in self.system.iter().enumerate() {
            let at = format!("system[{i}]");
            match single_member(block, &at, &["text", "guardContent", "cachePoint"])? {
                ("text", v) => system.push(text_of(v, &at)?),
                ("cachePoint", _) => {} // every prefix is cached; the marker needs no action
                (other, _) => {
                    return Err(BedrockError::validation(format!(
                        "{at}: {other} is not supported by this server yet"
                    )))
                }
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
                    ("text", v) => content.push(ContentBlock::Text(text_of(v, &at)?)),
                    ("cachePoint", _) => {}
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
        if let Some(extra) = &self.additional_model_request_fields {
            apply_additional_fields(extra, &mut params)?;
        }
        Ok(ChatRequest {
            model_id: model_id.to_string(),
            system,
            messages: out,
            params,
            has_tools: self.tool_config.is_some(),
        })
    }
}

/// `additionalModelRequestFields` the local engine understands: `top_k` and `seed`.
fn apply_additional_fields(
    extra: &Map<String, Value>,
    params: &mut InferenceParams,
) -> Result<(), BedrockError> {
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
            other => {
                return Err(BedrockError::validation(format!(
                    "additionalModelRequestFields.{other} is not supported by this model; supported: top_k, seed"
                )))
            }
        }
    }
    Ok(())
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
    fn non_text_blocks_are_carried_for_the_model_to_refuse() {
        let r = converse(r#"{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":""}}}]}]}"#).expect("parses");
        assert_eq!(
            r.messages[0].content,
            vec![ContentBlock::Other {
                kind: "image".into()
            }]
        );
    }
}
