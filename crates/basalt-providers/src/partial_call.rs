//! A tool call assembled from an upstream's streamed fragments (its ID and name first,
//! then pieces of the JSON arguments), the same for every provider that streams calls
//! that way (OpenAI and Mistral, Cohere, Bedrock).

use std::collections::BTreeMap;

use basalt_types::{CoreError, GenerationDelta, ToolCall};
use serde_json::{json, Value};

use crate::exchange::Outbox;

/// Pushes the finished calls onto `outbox` in index order; false (the outbox then
/// ends with the error) when one's arguments are not JSON.
pub(crate) fn push_all(
    outbox: &mut Outbox,
    calls: BTreeMap<u64, PartialCall>,
    label: &str,
) -> bool {
    for (index, call) in calls {
        match call.finish(index, label) {
            Ok(call) => outbox.push(GenerationDelta::ToolCall(call)),
            Err(e) => {
                outbox.fail(e);
                return false;
            }
        }
    }
    true
}

/// A tool call being assembled.
#[derive(Debug, Default)]
pub(crate) struct PartialCall {
    pub id: String,
    pub name: String,
    /// The JSON arguments as received so far.
    pub arguments: String,
}

impl PartialCall {
    /// The finished call: arguments parsed (empty means `{}`), and an ID made from
    /// `index` when the upstream gave none. `label` names the upstream in the error
    /// when the arguments are not JSON.
    pub fn finish(self, index: u64, label: &str) -> Result<ToolCall, CoreError> {
        let input = if self.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(&self.arguments).map_err(|e| {
                CoreError::ModelError(format!(
                    "{label} returned arguments for tool {} that are not JSON: {e}",
                    self.name
                ))
            })?
        };
        let id = if self.id.is_empty() {
            format!("call_{index}")
        } else {
            self.id
        };
        Ok(ToolCall {
            id,
            name: self.name,
            input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_finish_with_parsed_arguments_or_say_why_not() {
        let call = PartialCall {
            id: String::new(),
            name: "f".into(),
            arguments: "{\"a\":1}".into(),
        };
        assert_eq!(
            call.finish(2, "up").expect("finishes"),
            ToolCall {
                id: "call_2".into(),
                name: "f".into(),
                input: json!({"a": 1})
            }
        );
        let empty = PartialCall {
            id: "x".into(),
            name: "g".into(),
            arguments: " ".into(),
        };
        assert_eq!(empty.finish(0, "up").expect("finishes").input, json!({}));
        let bad = PartialCall {
            id: "x".into(),
            name: "g".into(),
            arguments: "{".into(),
        };
        assert!(
            matches!(bad.finish(0, "up"), Err(CoreError::ModelError(m)) if m.contains("tool g"))
        );
    }
}
