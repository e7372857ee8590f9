//! [`InferenceProfileStore`] on PostgreSQL.

use postgres::Row;

use crate::pg::{pg, unique_violation};
use crate::{InferenceProfileRecord, InferenceProfileStore, PostgresStore, StoreError};

const COLUMNS: &str =
    "id, name, description, model_id, tags_json, client_token, created_ms, updated_ms";

fn from_row(row: &Row) -> InferenceProfileRecord {
    InferenceProfileRecord {
        id: row.get(0),
        name: row.get(1),
        description: row.get(2),
        model_id: row.get(3),
        tags_json: row.get(4),
        client_token: row.get(5),
        created_ms: row.get(6),
        updated_ms: row.get(7),
    }
}

impl InferenceProfileStore for PostgresStore {
    fn insert_inference_profile(&self, r: &InferenceProfileRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO inference_profiles ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &r.id,
                    &r.name,
                    &r.description,
                    &r.model_id,
                    &r.tags_json,
                    &r.client_token,
                    &r.created_ms,
                    &r.updated_ms,
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn inference_profile(&self, id: &str) -> Result<Option<InferenceProfileRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM inference_profiles WHERE id = $1"),
                &[&id],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }

    fn inference_profile_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<InferenceProfileRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM inference_profiles WHERE client_token = $1"),
                &[&token],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }

    fn list_inference_profiles(&self) -> Result<Vec<InferenceProfileRecord>, StoreError> {
        self.with(|c| {
            // `COLLATE "C"`: byte order, as SQLite compares text.
            Ok(c.query(
                &format!(
                    "SELECT {COLUMNS} FROM inference_profiles ORDER BY created_ms, id COLLATE \"C\""
                ),
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(from_row)
            .collect())
        })
    }

    fn delete_inference_profile(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute("DELETE FROM inference_profiles WHERE id = $1", &[&id])
                .map_err(pg)?;
            Ok(n == 1)
        })
    }
}
