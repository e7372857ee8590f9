//! An agent session as stored: the conversation so far, the action waiting for the
//! caller (return of control or a question to the user), the session attributes
//! and the key that owns it. One record per `(agent, alias, session ID)`, written
//! with a compare-and-swap at the end of each turn; it expires after the agent's
//! idle TTL.

use std::collections::BTreeMap;

use basalt_store::{AgentKind, AgentRecord, AgentStore};
use serde::{Deserialize, Serialize};

use crate::common::{now_ms, store_error};
use crate::types::{ContentBlock, Message, Role, ToolCall};
use crate::CoreError;

/// Where an action goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionTarget {
    Function(String),
    Api { method: String, path: String },
}

/// A named parameter value as Bedrock passes it (`{name, type, value}`, value as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedValue {
    pub name: String,
    pub kind: String,
    pub value: String,
}

/// One action the model asked for, with its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionInput {
    pub action_group: String,
    pub target: ActionTarget,
    /// Function parameters, or an API call's path, query and header parameters.
    pub parameters: Vec<NamedValue>,
    /// An API call's body: its content type and properties.
    pub body: Option<(String, Vec<NamedValue>)>,
    /// The collaborator whose action this is (its agent ID and name), when a
    /// supervisor relays a collaborator's return of control.
    #[serde(default)]
    pub collaborator: Option<(String, String)>,
}

/// A collaborator's turn that returned control through its supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollaboratorWait {
    /// The supervisor's tool call that the collaborator's answer will answer.
    pub tool_use_id: String,
    pub name: String,
    pub alias_arn: String,
    /// The collaborator's agent ID (the results for it carry it as `agentId`).
    pub agent_id: String,
    /// The collaborator session's own invocation.
    pub invocation_id: String,
}

/// A call waiting for the caller's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCall {
    pub tool_use_id: String,
    pub input: ActionInput,
}

/// What the session waits for before the model can go on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// Results of actions returned to the caller (`returnControl`).
    ReturnControl {
        invocation_id: String,
        calls: Vec<PendingCall>,
        /// Results of the same step's other actions, already run.
        done: Vec<(String, String)>,
        /// Collaborators whose actions are part of this return of control.
        #[serde(default)]
        collaborators: Vec<CollaboratorWait>,
    },
    /// The user's answer to `ask_user`, which becomes the tool's result.
    AskUser {
        tool_use_id: String,
        done: Vec<(String, String)>,
    },
}

/// One stored content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
}

impl StoredBlock {
    /// A tool's result (not an error).
    pub fn result((tool_use_id, content): (String, String)) -> Self {
        Self::ToolResult {
            tool_use_id,
            content,
            is_error: false,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub assistant: bool,
    pub blocks: Vec<StoredBlock>,
}

impl StoredMessage {
    pub fn user_text(text: &str) -> Self {
        Self {
            assistant: false,
            blocks: vec![StoredBlock::Text { text: text.into() }],
        }
    }

    pub fn to_message(&self) -> Message {
        Message {
            role: if self.assistant {
                Role::Assistant
            } else {
                Role::User
            },
            content: self
                .blocks
                .iter()
                .map(|b| match b {
                    StoredBlock::Text { text } => ContentBlock::Text(text.clone()),
                    StoredBlock::ToolUse { id, name, input } => ContentBlock::ToolUse(ToolCall {
                        id: id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                    }),
                    StoredBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => ContentBlock::ToolResult {
                        tool_use_id: tool_use_id.clone(),
                        content: content.clone(),
                        is_error: *is_error,
                    },
                })
                .collect(),
        }
    }

    /// Whether this message starts a turn (a user's text, not tool results).
    fn starts_turn(&self) -> bool {
        !self.assistant && matches!(self.blocks.first(), Some(StoredBlock::Text { .. }))
    }
}

/// A session's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// The key that opened the session: only it may continue it.
    pub key_id: Option<String>,
    pub messages: Vec<StoredMessage>,
    pub pending: Option<Pending>,
    /// The input text of the turn in progress (Lambda events carry it).
    pub turn_input: String,
    pub session_attributes: BTreeMap<String, String>,
    pub prompt_session_attributes: BTreeMap<String, String>,
    pub started_ms: i64,
    /// The agent version the session ran on.
    #[serde(default)]
    pub version: String,
    /// The memory the session's summary goes to when it ends (`memoryId`).
    #[serde(default)]
    pub memory_id: Option<String>,
}

/// Which earlier turns a model call sees (`promptCreationConfigurations`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextShape {
    /// At most this many earlier turns (`previousConversationTurnsToInclude`).
    pub previous_turns: Option<usize>,
    /// Earlier turns as their question and answer only, without the tool calls and
    /// results between them (`excludePreviousThinkingSteps`).
    pub exclude_thinking: bool,
}

impl SessionState {
    /// The messages a model call sees: the turn in progress whole, and the earlier
    /// turns as `shape` says. The stored history is unchanged.
    pub fn context(&self, shape: ContextShape) -> Vec<crate::types::Message> {
        let starts: Vec<usize> = self
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.starts_turn())
            .map(|(i, _)| i)
            .collect();
        let current = starts.last().copied().unwrap_or(0);
        let earlier: Vec<(usize, usize)> = starts
            .windows(2)
            .map(|w| (w[0], w[1]))
            .chain(starts.first().filter(|&&f| f > 0).map(|&f| (0, f)))
            .collect();
        let mut earlier = earlier;
        earlier.sort_unstable();
        if let Some(n) = shape.previous_turns {
            let skip = earlier.len().saturating_sub(n);
            earlier.drain(..skip);
        }
        let mut out = Vec::new();
        for (from, to) in earlier {
            let turn = &self.messages[from..to];
            if shape.exclude_thinking {
                let question = turn.first().filter(|m| m.starts_turn());
                let answer = turn.iter().rev().find(|m| {
                    m.assistant
                        && m.blocks.len() == 1
                        && matches!(m.blocks[0], StoredBlock::Text { .. })
                });
                // A turn without a plain answer (stopped, or waiting) is left out
                // whole, so the messages still alternate.
                if let (Some(q), Some(a)) = (question, answer) {
                    out.push(q.to_message());
                    out.push(a.to_message());
                }
            } else {
                out.extend(turn.iter().map(StoredMessage::to_message));
            }
        }
        out.extend(
            self.messages[current..]
                .iter()
                .map(StoredMessage::to_message),
        );
        out
    }

    /// Drops whole turns from the front until at most `max` messages are left.
    pub fn trim(&mut self, max: usize) {
        while self.messages.len() > max {
            let next_turn = self
                .messages
                .iter()
                .enumerate()
                .skip(1)
                .find(|(_, m)| m.starts_turn())
                .map(|(i, _)| i);
            match next_turn {
                Some(i) => {
                    self.messages.drain(..i);
                }
                None => break,
            }
        }
    }
}

/// Where a session is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub agent_id: String,
    pub alias_id: String,
    pub session_id: String,
}

impl SessionKey {
    fn key(&self) -> String {
        format!("{}/{}", self.alias_id, self.session_id)
    }

    /// For the busy set and metering.
    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.agent_id, self.alias_id, self.session_id)
    }
}

/// A loaded session: its state and the revision it was read at (`None`: new).
#[derive(Debug, Clone)]
pub struct LoadedSession {
    pub state: SessionState,
    pub revision: Option<i64>,
    pub created_ms: i64,
    /// The session this ID held before, dropped because it had idled out (its
    /// state and expiry), for its memory summary.
    pub expired: Option<(SessionState, i64)>,
}

/// Reads a session; an expired one is gone and a new one starts.
pub fn load(store: &dyn AgentStore, key: &SessionKey) -> Result<LoadedSession, CoreError> {
    let now = now_ms();
    let record = store
        .agent_record(AgentKind::Session, &key.agent_id, &key.key())
        .map_err(store_error("agent session"))?;
    let mut expired = None;
    if let Some(record) = record {
        let state: SessionState = serde_json::from_str(&record.body).map_err(|e| {
            CoreError::Internal(format!("stored agent session does not parse: {e}"))
        })?;
        match record.expires_ms {
            Some(expiry) if expiry <= now => {
                // Whoever deletes it summarizes it (another node's sweeper may race).
                let deleted = store
                    .delete_agent_record(AgentKind::Session, &key.agent_id, &key.key())
                    .map_err(store_error("agent session"))?;
                if deleted {
                    expired = Some((state, expiry));
                }
            }
            _ => {
                return Ok(LoadedSession {
                    state,
                    revision: Some(record.revision),
                    created_ms: record.created_ms,
                    expired: None,
                })
            }
        }
    }
    Ok(LoadedSession {
        state: SessionState {
            started_ms: now,
            ..SessionState::default()
        },
        revision: None,
        created_ms: now,
        expired,
    })
}

/// Writes a session back; false when another turn wrote it meanwhile.
pub fn save(
    store: &dyn AgentStore,
    key: &SessionKey,
    session: &LoadedSession,
    idle_ttl_secs: u32,
) -> Result<bool, CoreError> {
    let now = now_ms();
    let body = serde_json::to_string(&session.state)
        .map_err(|e| CoreError::Internal(format!("an agent session does not serialize: {e}")))?;
    let record = AgentRecord {
        kind: AgentKind::Session,
        agent_id: key.agent_id.clone(),
        key: key.key(),
        name: None,
        body,
        revision: session.revision.unwrap_or(1),
        created_ms: session.created_ms,
        updated_ms: now,
        expires_ms: Some(now + i64::from(idle_ttl_secs) * 1000),
    };
    match session.revision {
        None => match store.insert_agent_record(&record) {
            Ok(()) => Ok(true),
            Err(basalt_store::StoreError::Duplicate(_)) => Ok(false),
            Err(e) => Err(store_error("agent session")(e)),
        },
        Some(_) => {
            if store
                .update_agent_record(&record)
                .map_err(store_error("agent session"))?
            {
                return Ok(true);
            }
            // Gone meanwhile (the idle sweeper took it as the turn began): this
            // turn's state starts it again; changed by another turn: this one loses.
            let gone = store
                .agent_record(AgentKind::Session, &key.agent_id, &key.key())
                .map_err(store_error("agent session"))?
                .is_none();
            if !gone {
                return Ok(false);
            }
            match store.insert_agent_record(&AgentRecord {
                revision: 1,
                ..record
            }) {
                Ok(()) => Ok(true),
                Err(basalt_store::StoreError::Duplicate(_)) => Ok(false),
                Err(e) => Err(store_error("agent session")(e)),
            }
        }
    }
}

/// Ends a session (endSession); true when this call removed it.
pub fn end(store: &dyn AgentStore, key: &SessionKey) -> Result<bool, CoreError> {
    store
        .delete_agent_record(AgentKind::Session, &key.agent_id, &key.key())
        .map_err(store_error("agent session"))
}

impl SessionKey {
    /// The key of a stored session record (`<alias>/<session>`).
    pub fn of_record(agent_id: &str, record_key: &str) -> Option<Self> {
        let (alias_id, session_id) = record_key.split_once('/')?;
        Some(Self {
            agent_id: agent_id.to_string(),
            alias_id: alias_id.to_string(),
            session_id: session_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(text: &str) -> Vec<StoredMessage> {
        vec![
            StoredMessage::user_text(text),
            StoredMessage {
                assistant: true,
                blocks: vec![StoredBlock::ToolUse {
                    id: "t".into(),
                    name: "g__f".into(),
                    input: serde_json::json!({}),
                }],
            },
            StoredMessage {
                assistant: false,
                blocks: vec![StoredBlock::ToolResult {
                    tool_use_id: "t".into(),
                    content: "r".into(),
                    is_error: false,
                }],
            },
            StoredMessage {
                assistant: true,
                blocks: vec![StoredBlock::Text {
                    text: "done".into(),
                }],
            },
        ]
    }

    #[test]
    fn a_session_round_trips_and_an_idle_one_comes_back_as_expired_once() {
        let store = basalt_store::SqliteStore::open_in_memory().expect("store");
        let key = SessionKey {
            agent_id: "AGENT12345".into(),
            alias_id: "TSTALIASID".into(),
            session_id: "s-1".into(),
        };
        let mut loaded = load(&store, &key).expect("load");
        assert!(loaded.revision.is_none() && loaded.expired.is_none());
        loaded
            .state
            .messages
            .push(StoredMessage::user_text("hello"));
        assert!(save(&store, &key, &loaded, 600).expect("save"));
        let again = load(&store, &key).expect("reload");
        assert_eq!(again.state.messages, loaded.state.messages);
        assert_eq!(again.revision, Some(1));
        // A stale writer (revision 1 was already replaced) loses.
        assert!(save(&store, &key, &again, 600).expect("second save"));
        assert!(!save(&store, &key, &again, 600).expect("stale save"));
        // Make it idle past its TTL: the next load starts a new session and hands
        // back the old one for its summary, once.
        let mut record = store
            .agent_record(AgentKind::Session, &key.agent_id, &key.key())
            .expect("read")
            .expect("present");
        record.expires_ms = Some(1);
        assert!(store.update_agent_record(&record).expect("expire"));
        let fresh = load(&store, &key).expect("load after expiry");
        assert!(fresh.revision.is_none() && fresh.state.messages.is_empty());
        let (ended, expiry) = fresh.expired.expect("the idle session");
        assert_eq!((ended.messages.len(), expiry), (1, 1));
        assert!(load(&store, &key).expect("load again").expired.is_none());
    }

    #[test]
    fn the_context_keeps_the_current_turn_whole_and_shapes_the_earlier_ones() {
        let mut state = SessionState::default();
        for t in ["one", "two"] {
            state.messages.extend(turn(t));
        }
        state.messages.push(StoredMessage::user_text("three"));
        let texts = |shape| {
            state
                .context(shape)
                .iter()
                .map(|m| format!("{}:{}", m.role.as_str(), m.content.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(ContextShape::default()).len(), 9);
        let lean = ContextShape {
            previous_turns: None,
            exclude_thinking: true,
        };
        assert_eq!(
            texts(lean),
            ["user:1", "assistant:1", "user:1", "assistant:1", "user:1"]
        );
        let last_one = ContextShape {
            previous_turns: Some(1),
            exclude_thinking: true,
        };
        assert_eq!(texts(last_one), ["user:1", "assistant:1", "user:1"]);
        let none = ContextShape {
            previous_turns: Some(0),
            exclude_thinking: false,
        };
        assert_eq!(texts(none), ["user:1"]);
    }

    #[test]
    fn trimming_drops_whole_turns_never_a_tool_result_without_its_call() {
        let mut state = SessionState::default();
        for t in ["one", "two", "three"] {
            state.messages.extend(turn(t));
        }
        state.trim(6);
        assert_eq!(state.messages.len(), 4);
        assert_eq!(state.messages[0], StoredMessage::user_text("three"));
        // A single turn longer than the limit is kept whole.
        state.trim(2);
        assert_eq!(state.messages.len(), 4);
    }
}
