//! SESSION_SUMMARY memory. When a session of an agent with memory ends (endSession,
//! or its idle TTL passes) and it was opened with a `memoryId`, the agent's model
//! summarizes it through the calling path, and the summary is kept for the agent's
//! `storageDays`; the most recent `maxRecentSessions` summaries of a memory go into
//! the system prompt of its next sessions. Whoever deletes an ended session from the
//! store writes its summary, so two nodes never write it twice.

use std::sync::Arc;
use std::time::Duration;

use basalt_store::{AgentKind, AgentRecord};
use serde::{Deserialize, Serialize};

use super::definition::{is_session_id, AgentVersion, DRAFT};
use super::run::INLINE_AGENT;
use super::session::{SessionKey, SessionState, StoredBlock};
use super::AgentService;
use crate::common::{now_ms, store_error};
use crate::keys::Principal;
use crate::service::CallContext;
use crate::types::{ChatRequest, ContentBlock, Message, Role};
use crate::CoreError;

/// One session's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub memory_id: String,
    pub session_id: String,
    pub session_start_ms: i64,
    pub session_expiry_ms: i64,
    pub summary_text: String,
    /// The key whose session it summarizes: a tenant key sees only its own.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// Longest transcript given to the summarizer, in characters (the most recent part).
const MAX_TRANSCRIPT_CHARS: usize = 40_000;
/// How often idle sessions are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);
/// Idle sessions handled per sweep.
const SWEEP_BATCH: usize = 50;

const DAY_MS: i64 = 86_400_000;

/// `memoryId` and its `[0-9a-zA-Z._:-]{2,100}` pattern.
pub fn check_memory_id(memory_id: &str) -> Result<(), CoreError> {
    if is_session_id(memory_id) {
        Ok(())
    } else {
        Err(CoreError::Validation(format!(
            "memoryId {memory_id:?} must match [0-9a-zA-Z._:-]{{2,100}}"
        )))
    }
}

fn transcript(state: &SessionState) -> String {
    let mut lines = Vec::new();
    for message in &state.messages {
        for block in &message.blocks {
            let line = match block {
                StoredBlock::Text { text } if message.assistant => format!("Assistant: {text}"),
                StoredBlock::Text { text } => format!("User: {text}"),
                StoredBlock::ToolUse { name, input, .. } => {
                    format!("Assistant used {name} with {input}")
                }
                StoredBlock::ToolResult { content, .. } => format!("Result: {content}"),
            };
            lines.push(line);
        }
    }
    let text = lines.join("\n");
    let chars = text.chars().count();
    if chars <= MAX_TRANSCRIPT_CHARS {
        text
    } else {
        text.chars().skip(chars - MAX_TRANSCRIPT_CHARS).collect()
    }
}

impl AgentService {
    /// GetAgentMemory: the memory's summaries, newest first.
    pub fn memories(
        &self,
        caller: Option<&Principal>,
        agent_id: &str,
        alias_id: &str,
        memory_id: &str,
    ) -> Result<Vec<SessionSummary>, CoreError> {
        check_memory_id(memory_id)?;
        self.alias(agent_id, alias_id)?;
        self.summaries(caller, agent_id, memory_id)
    }

    /// The memory's summaries the caller may read, newest first.
    fn summaries(
        &self,
        caller: Option<&Principal>,
        agent_id: &str,
        memory_id: &str,
    ) -> Result<Vec<SessionSummary>, CoreError> {
        let now = now_ms();
        let prefix = format!("{memory_id}/");
        let mut found: Vec<SessionSummary> = self
            .store
            .list_agent_records(AgentKind::Memory, Some(agent_id))
            .map_err(store_error("agent memory"))?
            .iter()
            .filter(|r| r.key.starts_with(&prefix) && r.expires_ms.is_none_or(|e| e > now))
            .filter_map(|r| serde_json::from_str::<SessionSummary>(&r.body).ok())
            .filter(|s| caller.is_none_or(|p| p.may_act_on(s.key_id.as_deref())))
            .collect();
        found.sort_by(|a: &SessionSummary, b| b.session_expiry_ms.cmp(&a.session_expiry_ms));
        Ok(found)
    }

    /// DeleteAgentMemory: one session's summary, or the whole memory.
    pub fn delete_memory(
        &self,
        caller: Option<&Principal>,
        agent_id: &str,
        alias_id: &str,
        memory_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<(), CoreError> {
        self.alias(agent_id, alias_id)?;
        let records = self
            .store
            .list_agent_records(AgentKind::Memory, Some(agent_id))
            .map_err(store_error("agent memory"))?;
        for record in records {
            // `<memory>/<owner>/<session>`.
            let mut parts = record.key.splitn(3, '/');
            let (Some(memory), Some(_owner), Some(session)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if memory_id.is_some_and(|m| m != memory) || session_id.is_some_and(|s| s != session) {
                continue;
            }
            let owner = serde_json::from_str::<SessionSummary>(&record.body)
                .ok()
                .and_then(|s| s.key_id);
            if caller.is_some_and(|p| !p.may_act_on(owner.as_deref())) {
                continue;
            }
            self.store
                .delete_agent_record(AgentKind::Memory, agent_id, &record.key)
                .map_err(store_error("agent memory"))?;
        }
        Ok(())
    }

    /// The summaries that go into a session's prompt.
    pub(crate) fn recent_summaries(
        &self,
        caller: Option<&Principal>,
        version: &AgentVersion,
        memory_id: &str,
    ) -> Vec<String> {
        let Some(memory) = &version.settings.memory else {
            return Vec::new();
        };
        self.summaries(caller, &version.agent_id, memory_id)
            .unwrap_or_default()
            .into_iter()
            .take(memory.max_recent_sessions as usize)
            .map(|s| s.summary_text)
            .collect()
    }

    /// Summarizes an ended session into its memory, when the agent has memory and
    /// the session a memory ID. Failures are logged: the session is over either way.
    pub(crate) async fn summarize(
        self: &Arc<Self>,
        principal: Option<Principal>,
        key: &SessionKey,
        state: SessionState,
        expiry_ms: i64,
    ) {
        let Some(memory_id) = state.memory_id.clone() else {
            return;
        };
        if key.agent_id == INLINE_AGENT || state.messages.is_empty() {
            return;
        }
        let version = match self.version(
            &key.agent_id,
            if state.version.is_empty() {
                DRAFT
            } else {
                &state.version
            },
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(session = %key.label(), error = %e, "no summary for an agent session whose agent version is gone");
                return;
            }
        };
        let Some(memory) = version.settings.memory.clone() else {
            return;
        };
        if memory.storage_days == 0 {
            return;
        }
        let Some(model) = version.settings.foundation_model.clone() else {
            return;
        };
        let request = ChatRequest {
            model_id: model,
            system: vec![super::prompts::template(&version, "MEMORY_SUMMARIZATION").to_string()],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::Text(transcript(&state))],
            }],
            params: super::prompts::params(&version, "MEMORY_SUMMARIZATION"),
            tools: None,
            response_schema: None,
            stream: false,
        };
        let mut ctx = CallContext::new(
            principal,
            format!("memory-{}", key.session_id),
            "InvokeAgent",
        );
        ctx.agent_session = Some(format!("{}/{}", key.agent_id, key.session_id));
        let summary = match self.core.chat(ctx, request).await {
            Ok(g) => g.text.trim().to_string(),
            Err(e) => {
                tracing::warn!(session = %key.label(), error = %e, "summarizing an agent session failed");
                return;
            }
        };
        let now = now_ms();
        let body = SessionSummary {
            memory_id: memory_id.clone(),
            session_id: key.session_id.clone(),
            session_start_ms: state.started_ms,
            session_expiry_ms: expiry_ms,
            summary_text: summary,
            key_id: state.key_id.clone(),
        };
        let Ok(body) = serde_json::to_string(&body) else {
            return;
        };
        let record = AgentRecord {
            kind: AgentKind::Memory,
            agent_id: key.agent_id.clone(),
            // One summary per memory, owner and session: a key never replaces
            // another key's summary.
            key: format!(
                "{memory_id}/{}/{}",
                state.key_id.as_deref().unwrap_or("-"),
                key.session_id
            ),
            name: None,
            body,
            revision: 1,
            created_ms: now,
            updated_ms: now,
            expires_ms: Some(now + i64::from(memory.storage_days) * DAY_MS),
        };
        let store = Arc::clone(&self.store);
        let written = tokio::task::spawn_blocking(move || {
            // A session ID used again for a new session replaces the old summary.
            let _ = store.delete_agent_record(AgentKind::Memory, &record.agent_id, &record.key);
            store.insert_agent_record(&record)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(session = %key.label(), "writing an agent session summary failed");
        }
    }

    /// Ends idle sessions: each found past its TTL is deleted and, when its agent
    /// has memory, summarized. Runs until the runtime stops.
    pub fn start_idle_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                let store = Arc::clone(&service.store);
                let busy: std::collections::HashSet<String> =
                    service.busy.lock().map(|b| b.clone()).unwrap_or_default();
                let found = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    let expired =
                        store.expired_agent_records(AgentKind::Session, now, SWEEP_BATCH)?;
                    let mut mine = Vec::new();
                    for record in expired {
                        // A session with a turn running now is not idle.
                        let running = SessionKey::of_record(&record.agent_id, &record.key)
                            .is_some_and(|k| busy.contains(&k.label()));
                        if running {
                            continue;
                        }
                        if store.delete_agent_record(
                            AgentKind::Session,
                            &record.agent_id,
                            &record.key,
                        )? {
                            mine.push(record);
                        }
                    }
                    // Summaries past their storage days go too.
                    for memory in
                        store.expired_agent_records(AgentKind::Memory, now, SWEEP_BATCH)?
                    {
                        store.delete_agent_record(
                            AgentKind::Memory,
                            &memory.agent_id,
                            &memory.key,
                        )?;
                    }
                    Ok::<_, basalt_store::StoreError>(mine)
                })
                .await;
                let records = match found {
                    Ok(Ok(records)) => records,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "looking for idle agent sessions failed");
                        continue;
                    }
                    Err(_) => continue,
                };
                for record in records {
                    let (Some(key), Ok(state)) = (
                        SessionKey::of_record(&record.agent_id, &record.key),
                        serde_json::from_str::<SessionState>(&record.body),
                    ) else {
                        continue;
                    };
                    let expiry = record.expires_ms.unwrap_or_else(now_ms);
                    service.summarize(None, &key, state, expiry).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::session::StoredMessage;

    #[test]
    fn the_transcript_names_who_said_what_and_keeps_the_end_of_long_sessions() {
        let mut state = SessionState::default();
        state
            .messages
            .push(StoredMessage::user_text("I live in Oslo"));
        state.messages.push(StoredMessage {
            assistant: true,
            blocks: vec![StoredBlock::Text {
                text: "Noted.".into(),
            }],
        });
        assert_eq!(
            transcript(&state),
            "User: I live in Oslo\nAssistant: Noted."
        );
        state
            .messages
            .push(StoredMessage::user_text(&"x".repeat(MAX_TRANSCRIPT_CHARS)));
        let long = transcript(&state);
        assert_eq!(long.chars().count(), MAX_TRANSCRIPT_CHARS);
        assert!(long.ends_with('x'));
    }
}
