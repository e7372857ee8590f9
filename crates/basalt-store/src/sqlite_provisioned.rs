//! [`ProvisionedStore`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::sqlite::{db, unique_violation};
use crate::{ProvisionedRecord, ProvisionedStore, SqliteStore, StoreError};

const COLUMNS: &str = "id, name, model_id, desired_model_id, model_units, status, failure_message,
    commitment, commitment_expires_ms, client_token, created_ms, updated_ms";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ProvisionedRecord> {
    Ok(ProvisionedRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        model_id: row.get(2)?,
        desired_model_id: row.get(3)?,
        model_units: row.get::<_, i64>(4)?.clamp(0, i64::from(u32::MAX)) as u32,
        status: row.get(5)?,
        failure_message: row.get(6)?,
        commitment: row.get(7)?,
        commitment_expires_ms: row.get(8)?,
        client_token: row.get(9)?,
        created_ms: row.get(10)?,
        updated_ms: row.get(11)?,
    })
}

impl ProvisionedStore for SqliteStore {
    fn insert_provisioned(&self, r: &ProvisionedRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                &format!("INSERT INTO provisioned_models ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
                params![
                    r.id, r.name, r.model_id, r.desired_model_id, i64::from(r.model_units), r.status,
                    r.failure_message, r.commitment, r.commitment_expires_ms, r.client_token, r.created_ms, r.updated_ms
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn provisioned(&self, id_or_name: &str) -> Result<Option<ProvisionedRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM provisioned_models WHERE id = ?1 OR name = ?1"),
                [id_or_name],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn provisioned_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<ProvisionedRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM provisioned_models WHERE client_token = ?1"),
                [token],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn list_provisioned(&self) -> Result<Vec<ProvisionedRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM provisioned_models ORDER BY created_ms, id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn update_provisioned(&self, r: &ProvisionedRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE provisioned_models SET name = ?2, model_id = ?3, desired_model_id = ?4, status = ?5,
                 failure_message = ?6, updated_ms = ?7 WHERE id = ?1",
                params![r.id, r.name, r.model_id, r.desired_model_id, r.status, r.failure_message, r.updated_ms],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn delete_provisioned(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            Ok(conn
                .execute("DELETE FROM provisioned_models WHERE id = ?1", [id])
                .map_err(db)?
                > 0)
        })
    }
}
