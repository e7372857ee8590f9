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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> CustomModelRecord {
        CustomModelRecord {
            id: id.into(),
            name: name.into(),
            key_id: Some("k1".into()),
            base_model_id: "base".into(),
            job_id: "job".into(),
            customization_type: "FINE_TUNING".into(),
            adapter_path: "/tmp/a.gguf".into(),
            adapter_sha256: "00".into(),
            details_json: "{}".into(),
            created_ms: 5,
        }
    }

    #[test]
    fn custom_models_insert_find_list_and_delete() -> Result<(), StoreError> {
        let store = SqliteStore::open_in_memory()?;
        store.insert_custom_model(&record("aaaaaaaaaaaa", "one"))?;
        assert!(matches!(
            store.insert_custom_model(&record("bbbbbbbbbbbb", "one")),
            Err(StoreError::Duplicate(_))
        ));
        store.insert_custom_model(&record("cccccccccccc", "two"))?;
        assert_eq!(
            store.custom_model("aaaaaaaaaaaa")?,
            Some(record("aaaaaaaaaaaa", "one"))
        );
        assert_eq!(
            store.custom_model_by_name("two")?.map(|r| r.id),
            Some("cccccccccccc".into())
        );
        assert_eq!(store.list_custom_models()?.len(), 2);
        assert!(store.delete_custom_model("aaaaaaaaaaaa")?);
        assert!(!store.delete_custom_model("aaaaaaaaaaaa")?);
        assert_eq!(store.custom_model_by_name("one")?, None);
        Ok(())
    }

    #[test]
    fn deployments_are_found_by_id_name_or_token_and_repointed() -> Result<(), StoreError> {
        let store = SqliteStore::open_in_memory()?;
        let mut d = DeploymentRecord {
            id: "dddddddddddd".into(),
            name: "dep".into(),
            key_id: None,
            model_id: "aaaaaaaaaaaa".into(),
            description: Some("x".into()),
            client_token: Some("tok".into()),
            created_ms: 1,
            updated_ms: 1,
        };
        store.insert_deployment(&d)?;
        assert!(matches!(
            store.insert_deployment(&d),
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(store.deployment("dddddddddddd")?.as_ref(), Some(&d));
        assert_eq!(store.deployment("dep")?.as_ref(), Some(&d));
        assert_eq!(store.deployment_by_client_token("tok")?.as_ref(), Some(&d));
        d.model_id = "bbbbbbbbbbbb".into();
        d.updated_ms = 2;
        assert!(store.update_deployment(&d)?);
        assert_eq!(store.list_deployments()?, vec![d.clone()]);
        assert!(store.delete_deployment(&d.id)?);
        assert_eq!(store.deployment("dep")?, None);
        Ok(())
    }
}
