//! [`CustomModelStore`] on PostgreSQL.

use postgres::types::ToSql;
use postgres::{Client, Row};

use crate::pg::{pg, unique_violation};
use crate::{CustomModelRecord, CustomModelStore, DeploymentRecord, PostgresStore, StoreError};

const DEPLOYMENT_COLUMNS: &str =
    "id, name, key_id, model_id, description, client_token, created_ms, updated_ms";

fn deployment_from_row(row: &Row) -> DeploymentRecord {
    DeploymentRecord {
        id: row.get(0),
        name: row.get(1),
        key_id: row.get(2),
        model_id: row.get(3),
        description: row.get(4),
        client_token: row.get(5),
        created_ms: row.get(6),
        updated_ms: row.get(7),
    }
}

const COLUMNS: &str = "id, name, key_id, base_model_id, job_id, customization_type, adapter_path, adapter_sha256, details_json, created_ms";

fn from_row(row: &Row) -> CustomModelRecord {
    CustomModelRecord {
        id: row.get(0),
        name: row.get(1),
        key_id: row.get(2),
        base_model_id: row.get(3),
        job_id: row.get(4),
        customization_type: row.get(5),
        adapter_path: row.get(6),
        adapter_sha256: row.get(7),
        details_json: row.get(8),
        created_ms: row.get(9),
    }
}

/// A failed insert as SQLite reports it. When a row clashes on several unique
/// columns, SQLite names the one declared last (it checks its indexes newest first)
/// and PostgreSQL the primary key (it checks them oldest first). `checks` are the
/// unique columns other than the ID in SQLite's order, each as the duplicate it is
/// and a query for a row holding the inserted value: the first that clashes is the
/// duplicate, else the one PostgreSQL named.
fn insert_failure(
    c: &mut Client,
    e: postgres::Error,
    checks: &[(&'static str, &str, &(dyn ToSql + Sync))],
) -> StoreError {
    let named = match unique_violation(e) {
        StoreError::Duplicate(named) => named,
        other => return other,
    };
    for &(what, sql, value) in checks {
        if what == named {
            break;
        }
        match c.query_opt(sql, &[value]) {
            Ok(Some(_)) => return StoreError::Duplicate(what),
            Ok(None) => {}
            Err(e) => return pg(e),
        }
    }
    StoreError::Duplicate(named)
}

impl PostgresStore {
    fn custom_model_where(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Option<CustomModelRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM custom_models WHERE {column} = $1"),
                &[&value],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }
}

impl CustomModelStore for PostgresStore {
    fn insert_custom_model(&self, r: &CustomModelRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let inserted = c.execute(
                &format!(
                    "INSERT INTO custom_models ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &[
                    &r.id,
                    &r.name,
                    &r.key_id,
                    &r.base_model_id,
                    &r.job_id,
                    &r.customization_type,
                    &r.adapter_path,
                    &r.adapter_sha256,
                    &r.details_json,
                    &r.created_ms,
                ],
            );
            match inserted {
                Ok(_) => Ok(()),
                Err(e) => Err(insert_failure(
                    c,
                    e,
                    &[(
                        "name",
                        "SELECT 1 FROM custom_models WHERE name = $1",
                        &r.name,
                    )],
                )),
            }
        })
    }

    fn custom_model(&self, id: &str) -> Result<Option<CustomModelRecord>, StoreError> {
        self.custom_model_where("id", id)
    }

    fn custom_model_by_name(&self, name: &str) -> Result<Option<CustomModelRecord>, StoreError> {
        self.custom_model_where("name", name)
    }

    fn list_custom_models(&self) -> Result<Vec<CustomModelRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT {COLUMNS} FROM custom_models ORDER BY created_ms, id"),
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(from_row)
            .collect())
        })
    }

    fn delete_custom_model(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute("DELETE FROM custom_models WHERE id = $1", &[&id])
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn insert_deployment(&self, r: &DeploymentRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let inserted = c.execute(
                &format!(
                    "INSERT INTO custom_model_deployments ({DEPLOYMENT_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &r.id,
                    &r.name,
                    &r.key_id,
                    &r.model_id,
                    &r.description,
                    &r.client_token,
                    &r.created_ms,
                    &r.updated_ms,
                ],
            );
            match inserted {
                Ok(_) => Ok(()),
                Err(e) => Err(insert_failure(
                    c,
                    e,
                    &[
                        (
                            "client token",
                            "SELECT 1 FROM custom_model_deployments WHERE client_token = $1",
                            &r.client_token,
                        ),
                        (
                            "name",
                            "SELECT 1 FROM custom_model_deployments WHERE name = $1",
                            &r.name,
                        ),
                    ],
                )),
            }
        })
    }

    fn deployment(&self, id_or_name: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM custom_model_deployments
                     WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1"
                ),
                &[&id_or_name],
            )
            .map_err(pg)?
            .as_ref()
            .map(deployment_from_row))
        })
    }

    fn deployment_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM custom_model_deployments
                     WHERE client_token = $1"
                ),
                &[&token],
            )
            .map_err(pg)?
            .as_ref()
            .map(deployment_from_row))
        })
    }

    fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM custom_model_deployments
                     ORDER BY created_ms, id"
                ),
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(deployment_from_row)
            .collect())
        })
    }

    fn update_deployment(&self, r: &DeploymentRecord) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE custom_model_deployments SET model_id = $2, updated_ms = $3
                     WHERE id = $1",
                    &[&r.id, &r.model_id, &r.updated_ms],
                )
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn delete_deployment(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute("DELETE FROM custom_model_deployments WHERE id = $1", &[&id])
                .map_err(pg)?;
            Ok(n > 0)
        })
    }
}
