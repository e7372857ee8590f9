//! [`InferenceProfileStore`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::sqlite::{db, unique_violation};
use crate::{InferenceProfileRecord, InferenceProfileStore, SqliteStore, StoreError};

const COLUMNS: &str =
    "id, name, description, model_id, tags_json, client_token, created_ms, updated_ms";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<InferenceProfileRecord> {
    Ok(InferenceProfileRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        model_id: row.get(3)?,
        tags_json: row.get(4)?,
        client_token: row.get(5)?,
        created_ms: row.get(6)?,
        updated_ms: row.get(7)?,
    })
}

impl InferenceProfileStore for SqliteStore {
    fn insert_inference_profile(&self, r: &InferenceProfileRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                &format!("INSERT INTO inference_profiles ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    r.id, r.name, r.description, r.model_id, r.tags_json, r.client_token,
                    r.created_ms, r.updated_ms
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn inference_profile(&self, id: &str) -> Result<Option<InferenceProfileRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM inference_profiles WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn inference_profile_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<InferenceProfileRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM inference_profiles WHERE client_token = ?1"),
                [token],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn list_inference_profiles(&self) -> Result<Vec<InferenceProfileRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM inference_profiles ORDER BY created_ms, id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn delete_inference_profile(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute("DELETE FROM inference_profiles WHERE id = ?1", [id])
                .map_err(db)?;
            Ok(n == 1)
        })
    }
}
