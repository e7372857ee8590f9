//! Stored responses: what OpenAI's Responses API keeps when a request has `store`
//! (its default), so a later request can continue with `previous_response_id` and a
//! client can read or delete it. The documents are the dialect's own JSON, kept
//! opaque here; this service owns who may see them (the key that made them), how
//! large they may be and how long they are kept.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use basalt_store::{ResponseStore, StoreError, StoredResponseRecord};
use serde::Deserialize;

use crate::common::now_ms;
use crate::keys::Principal;
use crate::CoreError;

/// `[responses]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesConfig {
    /// Stored responses older than this are deleted.
    pub retention_days: u64,
    /// The largest conversation one stored response may hold (bytes of JSON); a
    /// longer one is refused, so a chain of responses cannot grow without bound.
    pub max_conversation_bytes: usize,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        Self {
            retention_days: 30,
            max_conversation_bytes: 8 << 20,
        }
    }
}

/// A stored response as its maker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub id: String,
    pub model_id: String,
    pub created_ms: i64,
    pub response_json: String,
    pub conversation_json: String,
}

fn store_err(e: StoreError) -> CoreError {
    crate::common::store_error("response")(e)
}

/// How often expired responses are swept.
const PRUNE_INTERVAL_MS: i64 = 3_600_000;

pub struct ResponseService {
    store: Arc<dyn ResponseStore>,
    config: ResponsesConfig,
    last_prune_ms: AtomicI64,
}

impl std::fmt::Debug for ResponseService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseService").finish_non_exhaustive()
    }
}

impl ResponseService {
    pub fn new(store: Arc<dyn ResponseStore>, config: ResponsesConfig) -> Self {
        Self {
            store,
            config,
            last_prune_ms: AtomicI64::new(0),
        }
    }

    pub fn config(&self) -> &ResponsesConfig {
        &self.config
    }

    fn prune_if_due(&self, now: i64) {
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now - last < PRUNE_INTERVAL_MS
            || self
                .last_prune_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let before = now - (self.config.retention_days as i64) * 86_400_000;
        match self.store.prune_responses(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired stored responses deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired stored responses"),
        }
    }

    /// Keeps a response for its maker. Blocking (the store): call it off the runtime.
    pub fn save(
        &self,
        principal: Option<&Principal>,
        response: StoredResponse,
    ) -> Result<(), CoreError> {
        if response.conversation_json.len() > self.config.max_conversation_bytes {
            return Err(CoreError::Validation(format!(
                "the conversation would be {} bytes, over the limit of {} for a stored response; start a new conversation or send store: false",
                response.conversation_json.len(),
                self.config.max_conversation_bytes
            )));
        }
        let now = now_ms();
        self.prune_if_due(now);
        self.store
            .insert_response(&StoredResponseRecord {
                id: response.id,
                key_id: principal.map(|p| p.key_id.clone()),
                created_ms: response.created_ms,
                model_id: response.model_id,
                response_json: response.response_json,
                conversation_json: response.conversation_json,
            })
            .map_err(store_err)
    }

    /// A stored response, if `principal` made it (others get NotFound, as for a
    /// missing one). Blocking.
    pub fn get(
        &self,
        principal: Option<&Principal>,
        id: &str,
    ) -> Result<StoredResponse, CoreError> {
        let missing = || CoreError::NotFound(format!("Response with id '{id}' not found."));
        let record = self
            .store
            .response(id)
            .map_err(store_err)?
            .ok_or_else(missing)?;
        let expired =
            record.created_ms < now_ms() - (self.config.retention_days as i64) * 86_400_000;
        if record.key_id.as_deref() != principal.map(|p| p.key_id.as_str()) || expired {
            return Err(missing());
        }
        Ok(StoredResponse {
            id: record.id,
            model_id: record.model_id,
            created_ms: record.created_ms,
            response_json: record.response_json,
            conversation_json: record.conversation_json,
        })
    }

    /// Deletes a stored response its maker names. Blocking.
    pub fn delete(&self, principal: Option<&Principal>, id: &str) -> Result<(), CoreError> {
        self.get(principal, id)?;
        self.store.delete_response(id).map_err(store_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_store::SqliteStore;

    fn principal(id: &str) -> Principal {
        Principal {
            key_id: id.into(),
            key_name: id.into(),
            is_admin: false,
            limits: Default::default(),
            retrieval_filter: None,
            policy: None,
        }
    }

    fn response(id: &str, conversation: &str) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            model_id: "m".into(),
            created_ms: now_ms(),
            response_json: "{}".into(),
            conversation_json: conversation.into(),
        }
    }

    #[test]
    fn only_the_maker_reads_or_deletes_and_size_is_bounded() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let service = ResponseService::new(
            store,
            ResponsesConfig {
                retention_days: 30,
                max_conversation_bytes: 16,
            },
        );
        let (a, b) = (principal("key-a"), principal("key-b"));
        service
            .save(Some(&a), response("resp_1", "[]"))
            .expect("save");
        assert!(service.get(Some(&a), "resp_1").is_ok());
        assert!(matches!(
            service.get(Some(&b), "resp_1"),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            service.delete(Some(&b), "resp_1"),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            service.save(Some(&a), response("resp_2", &"x".repeat(17))),
            Err(CoreError::Validation(_))
        ));
        service.delete(Some(&a), "resp_1").expect("delete");
        assert!(matches!(
            service.get(Some(&a), "resp_1"),
            Err(CoreError::NotFound(_))
        ));
    }
}
