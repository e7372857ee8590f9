//! The HTTP executor of Lambda action groups: a Lambda ARN's function name selects
//! `[agents.executors.<name>]`, whose URL receives Bedrock's Lambda input event as
//! JSON and answers Bedrock's Lambda response JSON, so an existing handler runs
//! behind a small HTTP wrapper.

use std::collections::BTreeMap;
use std::time::Duration;

use basalt_providers::reqwest;
use serde::Deserialize;
use serde_json::Value;

use crate::CoreError;

/// How an executor is spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorProtocol {
    /// Bedrock's Lambda event POSTed as JSON, Bedrock's Lambda response back.
    #[default]
    Lambda,
    /// A Model Context Protocol server over streamable HTTP (`tools/list`, `tools/call`).
    Mcp,
}

/// `[agents.executors.<Lambda function name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// Where the Lambda input event is POSTed (or the MCP server's endpoint).
    pub url: String,
    #[serde(default)]
    pub protocol: ExecutorProtocol,
    /// Longest wait for the answer.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Header name → the environment variable holding its value (read at each call).
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
}

fn default_timeout() -> u64 {
    30
}

/// Largest executor answer read.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` → `<name>`.
pub fn lambda_function_name(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    let fixed = [parts.next()?, parts.next()?, parts.next()?];
    if fixed != ["arn", "aws", "lambda"] {
        return None;
    }
    let _region = parts.next()?;
    let _account = parts.next()?;
    if parts.next()? != "function" {
        return None;
    }
    let name = parts.next()?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(name)
}

/// The configured executors and their HTTP client.
pub struct Executors {
    client: reqwest::Client,
    configs: BTreeMap<String, ExecutorConfig>,
    /// Each executor's URL, parsed once (not on every call).
    urls: BTreeMap<String, reqwest::Url>,
}

impl Executors {
    pub fn new(configs: &BTreeMap<String, ExecutorConfig>) -> Result<Self, CoreError> {
        let mut urls = BTreeMap::new();
        for (name, config) in configs {
            let url = reqwest::Url::parse(&config.url).map_err(|e| {
                CoreError::Validation(format!("[agents.executors.{name}] url: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(CoreError::Validation(format!(
                    "[agents.executors.{name}] url must be http or https"
                )));
            }
            urls.insert(name.clone(), url);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CoreError::Internal(format!("the executor HTTP client: {e}")))?;
        Ok(Self {
            client,
            configs: configs.clone(),
            urls,
        })
    }

    /// The executor of `function_name` when it is an MCP server.
    pub fn mcp(&self, function_name: &str) -> Option<&ExecutorConfig> {
        self.configs
            .get(function_name)
            .filter(|c| c.protocol == ExecutorProtocol::Mcp)
    }

    /// Runs one action: POSTs `event` to the executor of `function_name` and reads
    /// its JSON answer. The error is the observation the model gets.
    pub async fn call(&self, function_name: &str, event: &Value) -> Result<Value, String> {
        let (Some(config), Some(url)) = (
            self.configs.get(function_name),
            self.urls.get(function_name),
        ) else {
            return Err(format!(
                "no executor is configured for Lambda function {function_name}"
            ));
        };
        let mut request = self
            .client
            .post(url.clone())
            .timeout(Duration::from_secs(config.timeout_secs))
            .json(event);
        for (header, env) in &config.headers_from_env {
            let value = std::env::var(env).map_err(|_| {
                format!("the executor header {header} needs the environment variable {env}")
            })?;
            request = request.header(header.as_str(), value);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                format!(
                    "the executor of {function_name} did not answer within {} s",
                    config.timeout_secs
                )
            } else {
                format!(
                    "the executor of {function_name} could not be reached: {}",
                    e.without_url()
                )
            }
        })?;
        let status = response.status();
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            format!(
                "the executor of {function_name} broke off its answer: {}",
                e.without_url()
            )
        })? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "the executor of {function_name} answered more than {MAX_ANSWER_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(format!(
                "the executor of {function_name} answered HTTP {}",
                status.as_u16()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            format!("the executor of {function_name} answered something other than JSON: {e}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_arns_name_their_function() {
        assert_eq!(
            lambda_function_name("arn:aws:lambda:us-east-1:123456789012:function:order-lookup"),
            Some("order-lookup")
        );
        assert_eq!(
            lambda_function_name("arn:aws:lambda:us-east-1:123456789012:function:f_1:live"),
            Some("f_1")
        );
        assert_eq!(
            lambda_function_name("arn:aws:lambda:us-east-1:1:layer:x"),
            None
        );
        assert_eq!(lambda_function_name("arn:aws:s3:::bucket"), None);
        assert_eq!(lambda_function_name("order-lookup"), None);
        assert_eq!(
            lambda_function_name("arn:aws:lambda:us-east-1:1:function:../x"),
            None
        );
    }
}
