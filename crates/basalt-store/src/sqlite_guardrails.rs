//! [`GuardrailStore`] on SQLite.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::sqlite::db;
use crate::{GuardrailRecord, GuardrailStore, SqliteStore, StoreError, DRAFT};

const COLUMNS: &str = "id, version, name, description, policy_json, blocked_input_messaging,
    blocked_outputs_messaging, kms_key_id, tags_json, client_token, created_at_ms, updated_at_ms";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GuardrailRecord> {
    Ok(GuardrailRecord {
        id: row.get(0)?,
        version: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        policy_json: row.get(4)?,
        blocked_input_messaging: row.get(5)?,
        blocked_outputs_messaging: row.get(6)?,
        kms_key_id: row.get(7)?,
        tags_json: row.get(8)?,
        client_token: row.get(9)?,
        created_at_ms: row.get(10)?,
        updated_at_ms: row.get(11)?,
    })
}

/// Maps a unique-index violation to the field it guards.
fn constraint(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, Some(message))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            if message.contains("client_token") {
                StoreError::Duplicate("client token")
            } else if message.contains("name") {
                StoreError::Duplicate("name")
            } else {
                StoreError::Duplicate("guardrail id")
            }
        }
        _ => db(e),
    }
}

impl GuardrailStore for SqliteStore {
    fn create_guardrail(&self, r: &GuardrailRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                &format!("INSERT INTO guardrails ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
                params![
                    r.id,
                    DRAFT,
                    r.name,
                    r.description,
                    r.policy_json,
                    r.blocked_input_messaging,
                    r.blocked_outputs_messaging,
                    r.kms_key_id,
                    r.tags_json,
                    r.client_token,
                    r.created_at_ms,
                    r.updated_at_ms
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
    }

    fn guardrail(&self, id: &str, version: &str) -> Result<Option<GuardrailRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM guardrails WHERE id = ?1 AND version = ?2"),
                params![id, version],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn guardrail_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<GuardrailRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM guardrails WHERE client_token = ?1"),
                [token],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn update_guardrail_draft(&self, r: &GuardrailRecord) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE guardrails SET name = ?2, description = ?3, policy_json = ?4,
                     blocked_input_messaging = ?5, blocked_outputs_messaging = ?6,
                     kms_key_id = ?7, updated_at_ms = ?8
                     WHERE id = ?1 AND version = 'DRAFT'",
                    params![
                        r.id,
                        r.name,
                        r.description,
                        r.policy_json,
                        r.blocked_input_messaging,
                        r.blocked_outputs_messaging,
                        r.kms_key_id,
                        r.updated_at_ms
                    ],
                )
                .map_err(constraint)?;
            Ok(changed > 0)
        })
    }

    fn create_guardrail_version(
        &self,
        id: &str,
        description: Option<&str>,
        client_token: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let exists: bool = tx
                .query_row(
                    "SELECT COUNT(*) FROM guardrails WHERE id = ?1 AND version = 'DRAFT'",
                    [id],
                    |row| row.get::<_, i64>(0),
                )
                .map_err(db)?
                > 0;
            if !exists {
                return Ok(None);
            }
            let next: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(CAST(version AS INTEGER)), 0) + 1 FROM guardrails
                     WHERE id = ?1 AND version <> 'DRAFT'",
                    [id],
                    |row| row.get(0),
                )
                .map_err(db)?;
            let version = next.to_string();
            tx.execute(
                "INSERT INTO guardrails (id, version, name, description, policy_json,
                     blocked_input_messaging, blocked_outputs_messaging, kms_key_id, tags_json,
                     client_token, created_at_ms, updated_at_ms)
                 SELECT id, ?2, name, COALESCE(?3, description), policy_json,
                     blocked_input_messaging, blocked_outputs_messaging, kms_key_id, tags_json,
                     ?4, ?5, ?5
                 FROM guardrails WHERE id = ?1 AND version = 'DRAFT'",
                params![id, version, description, client_token, at_ms],
            )
            .map_err(constraint)?;
            tx.commit().map_err(db)?;
            Ok(Some(version))
        })
    }

    fn list_guardrails(&self, id: Option<&str>) -> Result<Vec<GuardrailRecord>, StoreError> {
        self.with(|conn| {
            let (sql, arg) = match id {
                None => (
                    format!("SELECT {COLUMNS} FROM guardrails WHERE version = 'DRAFT' ORDER BY created_at_ms, id"),
                    None,
                ),
                Some(id) => (
                    format!("SELECT {COLUMNS} FROM guardrails WHERE id = ?1
                             ORDER BY CASE WHEN version = 'DRAFT' THEN 0 ELSE CAST(version AS INTEGER) END"),
                    Some(id),
                ),
            };
            let mut stmt = conn.prepare(&sql).map_err(db)?;
            let rows = match arg {
                None => stmt.query_map([], from_row),
                Some(id) => stmt.query_map([id], from_row),
            }
            .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn delete_guardrail(&self, id: &str, version: Option<&str>) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = match version {
                None => conn.execute("DELETE FROM guardrails WHERE id = ?1", [id]),
                Some(v) => conn.execute(
                    "DELETE FROM guardrails WHERE id = ?1 AND version = ?2 AND version <> 'DRAFT'",
                    params![id, v],
                ),
            }
            .map_err(db)?;
            Ok(changed > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(id: &str, name: &str, token: &str) -> GuardrailRecord {
        GuardrailRecord {
            id: id.into(),
            version: DRAFT.into(),
            name: name.into(),
            description: Some("d".into()),
            policy_json: "{}".into(),
            blocked_input_messaging: "no".into(),
            blocked_outputs_messaging: "no".into(),
            kms_key_id: None,
            tags_json: None,
            client_token: Some(token.into()),
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    #[test]
    fn versions_snapshot_the_draft_and_number_upwards() {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .create_guardrail(&draft("g1", "first", "t1"))
            .expect("create");
        assert_eq!(
            store
                .create_guardrail_version("g1", Some("v1"), Some("t2"), 5)
                .expect("v1"),
            Some("1".into())
        );
        let mut edited = draft("g1", "first", "t1");
        edited.policy_json = r#"{"words":[]}"#.into();
        assert!(store.update_guardrail_draft(&edited).expect("update"));
        assert_eq!(
            store
                .create_guardrail_version("g1", None, None, 6)
                .expect("v2"),
            Some("2".into())
        );
        let v1 = store.guardrail("g1", "1").expect("get").expect("v1 exists");
        assert_eq!(
            (v1.policy_json.as_str(), v1.description.as_deref()),
            ("{}", Some("v1"))
        );
        let v2 = store.guardrail("g1", "2").expect("get").expect("v2 exists");
        assert_eq!(v2.policy_json, r#"{"words":[]}"#);
        let versions: Vec<String> = store
            .list_guardrails(Some("g1"))
            .expect("list")
            .into_iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, vec!["DRAFT", "1", "2"]);
        assert_eq!(
            store
                .create_guardrail_version("nope", None, None, 7)
                .expect("none"),
            None
        );
    }

    #[test]
    fn names_and_tokens_are_unique_and_deletes_are_scoped() {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .create_guardrail(&draft("g1", "same", "t1"))
            .expect("create");
        assert!(matches!(
            store.create_guardrail(&draft("g2", "same", "t2")),
            Err(StoreError::Duplicate("name"))
        ));
        assert!(matches!(
            store.create_guardrail(&draft("g3", "other", "t1")),
            Err(StoreError::Duplicate("client token"))
        ));
        store
            .create_guardrail_version("g1", None, None, 2)
            .expect("v1");
        assert!(!store
            .delete_guardrail("g1", Some("DRAFT"))
            .expect("draft is not deletable alone"));
        assert!(store.delete_guardrail("g1", Some("1")).expect("delete v1"));
        assert!(store.guardrail("g1", DRAFT).expect("get").is_some());
        assert!(store.delete_guardrail("g1", None).expect("delete all"));
        assert!(store.list_guardrails(None).expect("list").is_empty());
    }
}
