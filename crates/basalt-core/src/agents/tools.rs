//! The tools an agent's model sees: one per enabled function and API operation
//! (`<action group>__<function or operation>`), one search per enabled knowledge base
//! (`GET__x_amz_knowledgebase_<ID>__Search`, Bedrock's own name for it) and `ask_user`
//! with an `AMAZON.UserInput` group; and what each name means when the model calls it.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::definition::{ActionSchema, AgentVersion, BuiltIn, Executor, Function, ParameterType};
use super::openapi::ApiOperation;
use crate::types::ToolSpec;
use crate::CoreError;

/// The user-input tool's name.
pub const ASK_USER: &str = "ask_user";
/// Longest tool name the model APIs accept.
const MAX_TOOL_NAME: usize = 64;

/// `^[a-zA-Z0-9_-]{1,64}$`: a function, parameter or tool-name part.
pub fn is_tool_part(text: &str) -> bool {
    (1..=MAX_TOOL_NAME).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The search tool of a knowledge base.
pub fn knowledge_base_tool(knowledge_base_id: &str) -> String {
    format!("GET__x_amz_knowledgebase_{knowledge_base_id}__Search")
}

/// What a tool call does.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolAction {
    Function {
        action_group: String,
        executor: Executor,
        function: Function,
    },
    Api {
        action_group: String,
        executor: Executor,
        operation: ApiOperation,
    },
    KnowledgeBase {
        knowledge_base_id: String,
    },
    AskUser,
    /// Hand the work to a collaborator agent (supervisors).
    Collaborator {
        name: String,
        alias_arn: String,
        relay_history: bool,
    },
}

/// The tool of a collaborator.
pub fn collaborator_tool(name: &str) -> String {
    format!("collaborator__{name}")
}

/// An agent version's tools.
#[derive(Debug, Clone, Default)]
pub struct ToolSet {
    pub specs: Vec<ToolSpec>,
    actions: HashMap<String, ToolAction>,
}

fn function_schema(function: &Function) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for p in &function.parameters {
        let mut schema = json!({"type": p.kind.as_str()});
        if p.kind == ParameterType::Array {
            schema["items"] = json!({"type": "string"});
        }
        if let Some(d) = &p.description {
            schema["description"] = json!(d);
        }
        properties.insert(p.name.clone(), schema);
        if p.required {
            required.push(json!(p.name));
        }
    }
    json!({"type": "object", "properties": properties, "required": required})
}

impl ToolSet {
    /// The tools of `version` (enabled groups and knowledge bases only).
    pub fn of(version: &AgentVersion) -> Result<Self, CoreError> {
        let mut set = Self::default();
        for group in version.action_groups.iter().filter(|g| g.enabled) {
            if group.built_in == Some(BuiltIn::UserInput) {
                set.add(
                    ASK_USER.into(),
                    Some("Ask the user a question when information needed to complete the task is missing. The user's reply comes back as this tool's result.".into()),
                    json!({"type": "object", "properties": {"question": {"type": "string", "description": "The question to ask the user"}}, "required": ["question"]}),
                    ToolAction::AskUser,
                )?;
                continue;
            }
            match &group.schema {
                ActionSchema::Functions(functions) => {
                    for f in functions {
                        set.add(
                            format!("{}__{}", group.name, f.name),
                            f.description.clone().or_else(|| group.description.clone()),
                            f.input_schema.clone().unwrap_or_else(|| function_schema(f)),
                            ToolAction::Function {
                                action_group: group.name.clone(),
                                executor: group.executor.clone(),
                                function: f.clone(),
                            },
                        )?;
                    }
                }
                ActionSchema::Api { operations, .. } => {
                    for op in operations {
                        set.add(
                            format!("{}__{}", group.name, op.name()),
                            op.description.clone().or_else(|| group.description.clone()),
                            op.tool_input_schema(),
                            ToolAction::Api {
                                action_group: group.name.clone(),
                                executor: group.executor.clone(),
                                operation: op.clone(),
                            },
                        )?;
                    }
                }
                ActionSchema::None => {}
            }
        }
        for kb in version.knowledge_bases.iter().filter(|k| k.enabled) {
            set.add(
                knowledge_base_tool(&kb.knowledge_base_id),
                Some(format!(
                    "Search the knowledge base: {}. Returns passages relevant to the search query.",
                    kb.description
                )),
                json!({"type": "object", "properties": {"searchQuery": {"type": "string", "description": "What to search for"}}, "required": ["searchQuery"]}),
                ToolAction::KnowledgeBase {
                    knowledge_base_id: kb.knowledge_base_id.clone(),
                },
            )?;
        }
        if version.settings.collaboration != super::definition::Collaboration::Disabled {
            for c in &version.collaborators {
                set.add(
                    collaborator_tool(&c.name),
                    Some(format!("Send a request to the collaborator agent {}: {}", c.name, c.instruction)),
                    json!({"type": "object", "properties": {"input": {"type": "string", "description": "What to ask the collaborator, with everything it needs to know"}}, "required": ["input"]}),
                    ToolAction::Collaborator {
                        name: c.name.clone(),
                        alias_arn: c.alias_arn.clone(),
                        relay_history: c.relay_history,
                    },
                )?;
            }
        }
        Ok(set)
    }

    /// Only the collaborators' tools (a router's choice).
    pub fn collaborators_only(&self) -> Vec<ToolSpec> {
        self.specs
            .iter()
            .filter(|s| {
                matches!(
                    self.actions.get(&s.name),
                    Some(ToolAction::Collaborator { .. })
                )
            })
            .cloned()
            .collect()
    }

    fn add(
        &mut self,
        name: String,
        description: Option<String>,
        input_schema: Value,
        action: ToolAction,
    ) -> Result<(), CoreError> {
        if !is_tool_part(&name) {
            return Err(CoreError::Validation(format!(
                "tool name {name} is longer than {MAX_TOOL_NAME} characters or holds other characters than letters, digits, _ and -; shorten the action group or function name"
            )));
        }
        if self.actions.insert(name.clone(), action).is_some() {
            return Err(CoreError::Validation(format!(
                "two actions are both named {name}"
            )));
        }
        self.specs.push(ToolSpec {
            name,
            description,
            input_schema,
        });
        Ok(())
    }

    pub fn action(&self, tool_name: &str) -> Option<&ToolAction> {
        self.actions.get(tool_name)
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}
