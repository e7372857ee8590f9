//! [`CustomModelStore`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::sqlite::{db, unique_violation};
use crate::{CustomModelRecord, CustomModelStore, DeploymentRecord, SqliteStore, StoreError};

const DEPLOYMENT_COLUMNS: &str =
    "id, name, key_id, model_id, description, client_token, created_ms, updated_ms";

fn deployment_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRecord> {
    Ok(DeploymentRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        key_id: row.get(2)?,
        model_id: row.get(3)?,
        description: row.get(4)?,
        client_token: row.get(5)?,
        created_ms: row.get(6)?,
        updated_ms: row.get(7)?,
    })
}

const COLUMNS: &str = "id, name, key_id, base_model_id, job_id, customization_type, adapter_path, adapter_sha256, details_json, created_ms";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CustomModelRecord> {
    Ok(CustomModelRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        key_id: row.get(2)?,
        base_model_id: row.get(3)?,
        job_id: row.get(4)?,
        customization_type: row.get(5)?,
        adapter_path: row.get(6)?,
        adapter_sha256: row.get(7)?,
        details_json: row.get(8)?,
        created_ms: row.get(9)?,
    })
}

impl SqliteStore {
    fn custom_model_where(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Option<CustomModelRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM custom_models WHERE {column} = ?1"),
                [value],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }
}

impl CustomModelStore for SqliteStore {
    fn insert_custom_model(&self, r: &CustomModelRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO custom_models ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    r.id,
                    r.name,
                    r.key_id,
                    r.base_model_id,
                    r.job_id,
                    r.customization_type,
                    r.adapter_path,
                    r.adapter_sha256,
                    r.details_json,
                    r.created_ms
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn custom_model(&self, id: &str) -> Result<Option<CustomModelRecord>, StoreError> {
        self.custom_model_where("id", id)
    }

    fn custom_model_by_name(&self, name: &str) -> Result<Option<CustomModelRecord>, StoreError> {
        self.custom_model_where("name", name)
    }

    fn list_custom_models(&self) -> Result<Vec<CustomModelRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM custom_models ORDER BY created_ms, id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn delete_custom_model(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute("DELETE FROM custom_models WHERE id = ?1", [id])
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn insert_deployment(&self, r: &DeploymentRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO custom_model_deployments ({DEPLOYMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    r.id,
                    r.name,
                    r.key_id,
                    r.model_id,
                    r.description,
                    r.client_token,
                    r.created_ms,
                    r.updated_ms
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn deployment(&self, id_or_name: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM custom_model_deployments WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1"
                ),
                [id_or_name],
                deployment_from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn deployment_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM custom_model_deployments WHERE client_token = ?1"
                ),
                [token],
                deployment_from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM custom_model_deployments ORDER BY created_ms, id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], deployment_from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn update_deployment(&self, r: &DeploymentRecord) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute(
                    "UPDATE custom_model_deployments SET model_id = ?2, updated_ms = ?3 WHERE id = ?1",
                    params![r.id, r.model_id, r.updated_ms],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn delete_deployment(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute("DELETE FROM custom_model_deployments WHERE id = ?1", [id])
                .map_err(db)?;
            Ok(n > 0)
        })
    }
}
