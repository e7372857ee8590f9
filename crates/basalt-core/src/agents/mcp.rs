//! MCP executors (beyond Bedrock): an action group whose Lambda ARN names an executor
//! with `protocol = "mcp"` runs on a Model Context Protocol server over streamable
//! HTTP, through the official Rust SDK (`rmcp`). Without a schema of its own, the
//! group's functions are the server's `tools/list` (read when the group is created
//! or updated); each action is a `tools/call`. One MCP session per call: simple,
//! and a server restart between calls costs nothing.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::Value;

use super::definition::{Function, FunctionParameter, ParameterType};
use super::executor::ExecutorConfig;

/// Most tools taken from one server.
const MAX_TOOLS: usize = 50;

fn transport_config(
    config: &ExecutorConfig,
) -> Result<StreamableHttpClientTransportConfig, String> {
    let mut settings = StreamableHttpClientTransportConfig::with_uri(config.url.clone());
    let mut headers = HashMap::new();
    for (name, env) in &config.headers_from_env {
        let value = std::env::var(env)
            .map_err(|_| format!("the MCP header {name} needs the environment variable {env}"))?;
        if name.eq_ignore_ascii_case("authorization") {
            settings.auth_header = Some(value.trim_start_matches("Bearer ").to_string());
            continue;
        }
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("the MCP header name {name}: {e}"))?;
        let value = http::HeaderValue::from_str(&value)
            .map_err(|e| format!("the MCP header {name} from {env}: {e}"))?;
        headers.insert(header, value);
    }
    settings.custom_headers = headers;
    Ok(settings)
}

async fn within<T>(
    config: &ExecutorConfig,
    what: &str,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(config.timeout_secs), work)
        .await
        .map_err(|_| {
            format!(
                "the MCP server at {} did not finish {what} within {} s",
                config.url, config.timeout_secs
            )
        })?
}

/// The server's tools as functions: name, description and the top-level
/// properties of the input schema as parameters; the schema itself goes to the
/// model unchanged.
pub async fn list_functions(config: &ExecutorConfig) -> Result<Vec<Function>, String> {
    within(config, "tools/list", async {
        let client = ()
            .serve(StreamableHttpClientTransport::from_config(
                transport_config(config)?,
            ))
            .await
            .map_err(|e| format!("the MCP server at {} could not be reached: {e}", config.url))?;
        let tools = client
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list on {} failed: {e}", config.url));
        let _ = client.cancel().await;
        let tools = tools?;
        if tools.len() > MAX_TOOLS {
            return Err(format!(
                "the MCP server at {} offers {} tools; an action group takes at most {MAX_TOOLS}",
                config.url,
                tools.len()
            ));
        }
        Ok(tools
            .into_iter()
            .map(|tool| {
                let schema = Value::Object((*tool.input_schema).clone());
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let parameters = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|props| {
                        props
                            .iter()
                            .map(|(name, p)| FunctionParameter {
                                name: name.clone(),
                                kind: p
                                    .get("type")
                                    .and_then(Value::as_str)
                                    .and_then(ParameterType::parse)
                                    .unwrap_or(ParameterType::String),
                                description: p
                                    .get("description")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned),
                                required: required.contains(&name.as_str()),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Function {
                    name: tool.name.to_string(),
                    description: tool.description.map(|d| d.to_string()),
                    parameters,
                    require_confirmation: false,
                    input_schema: Some(schema),
                }
            })
            .collect())
    })
    .await
}

/// `tools/call`: the tool's text content, or the failure the model is told.
pub async fn call(
    config: &ExecutorConfig,
    tool: &str,
    arguments: &Value,
) -> Result<String, String> {
    within(config, "tools/call", async {
        let client = ()
            .serve(StreamableHttpClientTransport::from_config(
                transport_config(config)?,
            ))
            .await
            .map_err(|e| format!("the MCP server at {} could not be reached: {e}", config.url))?;
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Some(object) = arguments.as_object() {
            params = params.with_arguments(object.clone());
        }
        let result = client.call_tool(params).await;
        let _ = client.cancel().await;
        let result = result.map_err(|e| format!("tools/call {tool} failed: {e}"))?;
        let mut text: Vec<String> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        if text.is_empty() {
            if let Some(structured) = &result.structured_content {
                text.push(structured.to_string());
            }
        }
        let text = text.join("\n");
        if result.is_error == Some(true) {
            Err(format!("the tool {tool} failed: {text}"))
        } else {
            Ok(text)
        }
    })
    .await
}
