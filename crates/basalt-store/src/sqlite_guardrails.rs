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
