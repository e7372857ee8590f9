//! The request Basalt sends to an OpenAI-compatible `chat/completions`, as typed
//! structs that borrow from the [`ChatRequest`] and are serialised straight to bytes.
//!
//! Building a `serde_json::Value` tree first (and cloning every tool's schema into it)
//! was about 6 % of an agent turn's CPU in a profile of the build without LTO; this
//! writes the same members, in the same order.

use std::borrow::Cow;

use basalt_types::{ChatRequest, ContentBlock, CoreError, Role, ToolChoice};
use serde::Serialize;
use serde_json::Value;

use super::{mistral_tool_id, Flavor};

/// A `chat/completions` request body.
#[derive(Debug, Serialize)]
pub(super) struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    /// Not in OpenAI's API; vLLM, llama-server and Basalt take it as an extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
    /// Mistral's name for `seed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    random_seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<WireTool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'a, str>>,
    content: WireContent<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(Cow<'a, str>),
    /// A user turn with images: its parts in their order.
    Parts(Vec<WirePart<'a>>),
    /// An assistant turn of tool calls only.
    Null,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, Serialize)]
struct ImageUrl {
    url: String,
}

#[derive(Debug, Serialize)]
struct WireCall<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: CalledFunction<'a>,
}

#[derive(Debug, Serialize)]
struct CalledFunction<'a> {
    name: &'a str,
    /// The arguments as JSON text, as OpenAI sends and takes them.
    arguments: String,
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: DeclaredFunction<'a>,
}

#[derive(Debug, Serialize)]
struct DeclaredFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: &'a Value,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireToolChoice<'a> {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedFunction<'a>,
    },
}

#[derive(Debug, Serialize)]
struct NamedFunction<'a> {
    name: &'a str,
}

#[derive(Debug, Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchemaFormat<'a>,
}

#[derive(Debug, Serialize)]
struct JsonSchemaFormat<'a> {
    name: &'static str,
    schema: &'a Value,
    strict: bool,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> ChatBody<'a> {
    /// The body for `request` to `model` (the upstream's name for it).
    pub(super) fn new(
        model: &'a str,
        request: &'a ChatRequest,
        max_tokens: u32,
        flavor: Flavor,
        label: &str,
    ) -> Result<Self, CoreError> {
        let params = &request.params;
        if params.top_k.is_some() && flavor == Flavor::Mistral {
            return Err(CoreError::Validation(format!(
                "{label}: Mistral's API has no top_k; use topP"
            )));
        }
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        match request.system.as_slice() {
            [] => {}
            [one] => messages.push(WireMessage::plain("system", Cow::Borrowed(one))),
            many => messages.push(WireMessage::plain("system", Cow::Owned(many.join("\n")))),
        }
        for message in &request.messages {
            push_message(&mut messages, message.role, &message.content, flavor)?;
        }
        let (tools, tool_choice) = match &request.tools {
            Some(config) => (
                Some(
                    config
                        .tools
                        .iter()
                        .map(|t| WireTool {
                            kind: "function",
                            function: DeclaredFunction {
                                name: &t.name,
                                description: t.description.as_deref(),
                                parameters: &t.input_schema,
                            },
                        })
                        .collect(),
                ),
                Some(match &config.choice {
                    ToolChoice::Auto => WireToolChoice::Mode("auto"),
                    ToolChoice::Any if flavor == Flavor::Mistral => WireToolChoice::Mode("any"),
                    ToolChoice::Any => WireToolChoice::Mode("required"),
                    ToolChoice::Tool(name) => WireToolChoice::Function {
                        kind: "function",
                        function: NamedFunction { name },
                    },
                }),
            ),
            None => (None, None),
        };
        Ok(Self {
            model,
            messages,
            max_tokens,
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            stop: &params.stop_sequences,
            seed: params.seed.filter(|_| flavor == Flavor::OpenAi),
            random_seed: params.seed.filter(|_| flavor == Flavor::Mistral),
            tools,
            tool_choice,
            response_format: request
                .response_schema
                .as_ref()
                .map(|schema| ResponseFormat {
                    kind: "json_schema",
                    json_schema: JsonSchemaFormat {
                        name: "response",
                        schema,
                        strict: true,
                    },
                }),
            stream: request.stream,
            // Mistral sends usage in its last chunk unasked and refuses the member.
            stream_options: (request.stream && flavor == Flavor::OpenAi).then_some(StreamOptions {
                include_usage: true,
            }),
        })
    }
}

impl<'a> WireMessage<'a> {
    fn plain(role: &'static str, text: Cow<'a, str>) -> Self {
        Self {
            role,
            tool_call_id: None,
            content: WireContent::Text(text),
            tool_calls: Vec::new(),
        }
    }
}

/// Appends the OpenAI messages of one Basalt message: a user turn's tool results
/// become `tool` messages ahead of its text; an assistant turn's tool calls go in
/// `tool_calls`.
fn push_message<'a>(
    out: &mut Vec<WireMessage<'a>>,
    role: Role,
    content: &'a [ContentBlock],
    flavor: Flavor,
) -> Result<(), CoreError> {
    let tool_id = |id: &'a str| -> Cow<'a, str> {
        match flavor {
            Flavor::OpenAi => Cow::Borrowed(id),
            Flavor::Mistral => Cow::Owned(mistral_tool_id(id)),
        }
    };
    let mut texts: Vec<&'a str> = Vec::new();
    let mut calls = Vec::new();
    // With images, a user turn's content is a list of parts in their order.
    let mut parts = Vec::new();
    let mut has_image = false;
    for block in content {
        match block {
            ContentBlock::Text(t) => {
                texts.push(t);
                parts.push(WirePart::Text { text: t });
            }
            ContentBlock::Image(image) => {
                if role == Role::Assistant {
                    return Err(CoreError::Validation(
                        "images are accepted in user turns only".into(),
                    ));
                }
                has_image = true;
                parts.push(WirePart::ImageUrl {
                    image_url: ImageUrl {
                        url: image.data_url(),
                    },
                });
            }
            ContentBlock::ToolUse(call) => calls.push(WireCall {
                id: tool_id(&call.id),
                kind: "function",
                function: CalledFunction {
                    name: &call.name,
                    arguments: call.input.to_string(),
                },
            }),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let content = crate::tool_result_text(content, *is_error);
                if role == Role::User {
                    out.push(WireMessage {
                        role: "tool",
                        tool_call_id: Some(tool_id(tool_use_id)),
                        content: WireContent::Text(content),
                        tool_calls: Vec::new(),
                    });
                }
            }
            ContentBlock::Other { kind } => {
                return Err(CoreError::Validation(format!(
                    "this model does not accept {kind} content blocks"
                )))
            }
        }
    }
    let text = match texts.as_slice() {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.concat()),
    };
    match role {
        Role::Assistant => out.push(WireMessage {
            role: "assistant",
            tool_call_id: None,
            content: if text.is_empty() && !calls.is_empty() {
                WireContent::Null
            } else {
                WireContent::Text(text)
            },
            tool_calls: calls,
        }),
        Role::User if has_image => out.push(WireMessage {
            role: "user",
            tool_call_id: None,
            content: WireContent::Parts(parts),
            tool_calls: Vec::new(),
        }),
        Role::User if !text.is_empty() => out.push(WireMessage::plain("user", text)),
        Role::User => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use basalt_types::{InferenceParams, Message, ToolCall, ToolConfig, ToolSpec};
    use serde_json::json;

    use super::*;

    /// The bytes on the wire: members in OpenAI's documented order, floats as written
    /// (a `Value` built from an `f32` sent 0.699999988079071), absent members left out.
    #[test]
    fn the_body_is_written_member_by_member_with_floats_as_given() {
        let request = ChatRequest {
            model_id: "catalog-id".into(),
            system: vec!["Be brief.".into(), "Use tools.".into()],
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::Text("Weather?".into())],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::ToolUse(ToolCall {
                        id: "call_1".into(),
                        name: "weather".into(),
                        input: json!({"city": "Paris"}),
                    })],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        ContentBlock::ToolResult {
                            tool_use_id: "call_1".into(),
                            content: "down".into(),
                            is_error: true,
                        },
                        ContentBlock::Text("And now?".into()),
                    ],
                },
            ],
            params: InferenceParams {
                temperature: Some(0.7),
                seed: Some(7),
                ..Default::default()
            },
            tools: Some(ToolConfig {
                tools: vec![ToolSpec {
                    name: "weather".into(),
                    description: None,
                    input_schema: json!({"type": "object"}),
                }],
                choice: ToolChoice::Tool("weather".into()),
            }),
            response_schema: None,
            stream: true,
        };
        let body = ChatBody::new("up", &request, 32, Flavor::OpenAi, "test").expect("body");
        let text = serde_json::to_string(&body).expect("serialises");
        assert_eq!(
            text,
            concat!(
                r#"{"model":"up","messages":["#,
                r#"{"role":"system","content":"Be brief.\nUse tools."},"#,
                r#"{"role":"user","content":"Weather?"},"#,
                r#"{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}}]},"#,
                r#"{"role":"tool","tool_call_id":"call_1","content":"Error: down"},"#,
                r#"{"role":"user","content":"And now?"}],"#,
                r#""max_tokens":32,"temperature":0.7,"seed":7,"#,
                r#""tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}],"#,
                r#""tool_choice":{"type":"function","function":{"name":"weather"}},"#,
                r#""stream":true,"stream_options":{"include_usage":true}}"#
            )
        );
        let mistral = ChatBody::new("up", &request, 32, Flavor::Mistral, "test").expect("body");
        let value = serde_json::to_value(&mistral).expect("serialises");
        assert_eq!(value["random_seed"], 7, "Mistral's name for the seed");
        assert!(value.get("seed").is_none() && value.get("stream_options").is_none());
        assert_eq!(
            value["messages"][3]["tool_call_id"].as_str().map(str::len),
            Some(9)
        );
    }
}
