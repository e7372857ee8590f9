//! Tools and structured output on local models: how tool definitions are put in the
//! prompt, the JSON schema (compiled to a llama.cpp grammar) that a tool call must
//! follow, and how the output is read back as a tool call.
//!
//! A tool call is the JSON object `{"name": <tool>, "arguments": <input>}`. With
//! `toolChoice` any/tool the whole output is constrained to it; with auto the output
//! is free unless it starts with `{`, from which point the grammar applies (a lazy
//! grammar), so a call the model starts is always well-formed.

use serde_json::{json, Value};

use crate::types::{ChatRequest, ToolCall, ToolChoice, ToolConfig};
use crate::CoreError;

/// Checks tool definitions and the choice.
pub fn validate(config: &ToolConfig) -> Result<(), CoreError> {
    if config.tools.is_empty() {
        return Err(CoreError::Validation(
            "toolConfig.tools must contain at least one tool".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for tool in &config.tools {
        let valid_name = !tool.name.is_empty()
            && tool.name.len() <= 64
            && tool
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(CoreError::Validation(format!(
                "tool name {:?} must be 1-64 characters of letters, digits, _ and -",
                tool.name
            )));
        }
        if !seen.insert(tool.name.as_str()) {
            return Err(CoreError::Validation(format!(
                "tool {} is defined twice",
                tool.name
            )));
        }
        if !tool.input_schema.is_object() {
            return Err(CoreError::Validation(format!(
                "the input schema of tool {} must be a JSON object",
                tool.name
            )));
        }
    }
    if let ToolChoice::Tool(name) = &config.choice {
        if !seen.contains(name.as_str()) {
            return Err(CoreError::Validation(format!(
                "toolChoice names tool {name}, which is not in toolConfig.tools"
            )));
        }
    }
    Ok(())
}

/// The system-prompt section that describes the tools.
pub fn instructions(config: &ToolConfig) -> String {
    let mut text = String::from(
        "You can call tools. To call a tool, answer with only a JSON object of the form \
         {\"name\": \"<tool name>\", \"arguments\": {...}} whose arguments follow the tool's schema.\nTools:\n",
    );
    for tool in &config.tools {
        text.push_str(&format!(
            "- {}: {} Arguments schema: {}\n",
            tool.name,
            tool.description.as_deref().unwrap_or(""),
            tool.input_schema
        ));
    }
    match &config.choice {
        ToolChoice::Auto => {
            text.push_str("Call a tool when it helps; otherwise answer in plain text.")
        }
        ToolChoice::Any => text.push_str("You must call one of the tools now."),
        ToolChoice::Tool(name) => text.push_str(&format!("You must call the tool {name} now.")),
    }
    text
}

/// The JSON schema every tool call of this request must validate against.
pub fn call_schema(config: &ToolConfig) -> Value {
    let variants: Vec<Value> = config
        .tools
        .iter()
        .filter(|t| match &config.choice {
            ToolChoice::Tool(name) => &t.name == name,
            ToolChoice::Auto | ToolChoice::Any => true,
        })
        .map(|t| {
            json!({
                "type": "object",
                "properties": { "name": { "const": t.name }, "arguments": t.input_schema },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    match variants.len() {
        1 => variants.into_iter().next().unwrap_or(Value::Null),
        _ => json!({ "anyOf": variants }),
    }
}

/// How a tool call is written in an earlier assistant turn.
pub fn render_call(call: &ToolCall) -> String {
    json!({ "name": call.name, "arguments": call.input }).to_string()
}

/// Reads the model's output as a tool call, when it is one.
pub fn parse_call(output: &str, request: &ChatRequest) -> Option<ToolCall> {
    let config = request.tools.as_ref()?;
    let value: Value = serde_json::from_str(output.trim()).ok()?;
    let name = value.get("name")?.as_str()?;
    if !config.tools.iter().any(|t| t.name == name) {
        return None;
    }
    let input = value.get("arguments")?.clone();
    Some(ToolCall {
        id: new_tool_use_id(),
        name: name.to_string(),
        input,
    })
}

fn new_tool_use_id() -> String {
    format!(
        "tooluse_{}",
        crate::common::random_id(22, crate::common::ALNUM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{InferenceParams, ToolSpec};

    fn config(choice: ToolChoice) -> ToolConfig {
        ToolConfig {
            tools: vec![
                ToolSpec {
                    name: "get_weather".into(),
                    description: Some("Weather.".into()),
                    input_schema: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
                },
                ToolSpec {
                    name: "add".into(),
                    description: None,
                    input_schema: json!({"type":"object","properties":{"a":{"type":"number"}}}),
                },
            ],
            choice,
        }
    }

    #[test]
    fn a_named_tool_choice_constrains_to_that_tool_only() {
        let schema = call_schema(&config(ToolChoice::Tool("add".into())));
        assert_eq!(schema["properties"]["name"]["const"], "add");
        let any = call_schema(&config(ToolChoice::Any));
        assert_eq!(any["anyOf"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn invalid_definitions_are_refused() {
        let mut c = config(ToolChoice::Tool("missing".into()));
        assert!(validate(&c).is_err());
        c.choice = ToolChoice::Auto;
        c.tools[1].name = "get_weather".into();
        assert!(validate(&c)
            .expect_err("duplicate")
            .to_string()
            .contains("twice"));
        c.tools[1].name = "bad name!".into();
        assert!(validate(&c).is_err());
    }

    #[test]
    fn output_is_read_back_as_a_call_of_a_known_tool_only() {
        let request = ChatRequest {
            model_id: "m".into(),
            system: vec![],
            messages: vec![],
            params: InferenceParams::default(),
            tools: Some(config(ToolChoice::Any)),
            response_schema: None,
            stream: false,
        };
        let call = parse_call(
            r#" {"name": "get_weather", "arguments": {"city": "Paris"}} "#,
            &request,
        )
        .expect("a call");
        assert_eq!(
            (call.name.as_str(), call.input["city"].as_str()),
            ("get_weather", Some("Paris"))
        );
        assert!(call.id.starts_with("tooluse_"));
        assert!(parse_call(r#"{"name": "nope", "arguments": {}}"#, &request).is_none());
        assert!(parse_call("Paris is sunny.", &request).is_none());
    }
}
