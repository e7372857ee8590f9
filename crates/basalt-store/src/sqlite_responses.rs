//! [`ResponseStore`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::sqlite::{db, unique_violation};
use crate::{ResponseStore, SqliteStore, StoreError, StoredResponseRecord};

const COLUMNS: &str = "id, key_id, created_ms, model_id, response, conversation";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredResponseRecord> {
    Ok(StoredResponseRecord {
        id: row.get(0)?,
        key_id: row.get(1)?,
        created_ms: row.get(2)?,
        model_id: row.get(3)?,
        response_json: row.get(4)?,
        conversation_json: row.get(5)?,
    })
}

impl ResponseStore for SqliteStore {
    fn insert_response(&self, r: &StoredResponseRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO stored_responses ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    r.id,
                    r.key_id,
                    r.created_ms,
                    r.model_id,
                    r.response_json,
                    r.conversation_json
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn response(&self, id: &str) -> Result<Option<StoredResponseRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM stored_responses WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn delete_response(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute("DELETE FROM stored_responses WHERE id = ?1", [id])
                .map_err(db)?;
            Ok(n == 1)
        })
    }

    fn prune_responses(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM stored_responses WHERE created_ms < ?1",
                [before_ms],
            )
            .map_err(db)
        })
    }
}
