//! [`ProvisionedStore`] on PostgreSQL.

use postgres::Row;

use crate::pg::{pg, unique_violation};
use crate::{PostgresStore, ProvisionedRecord, ProvisionedStore, StoreError};

const COLUMNS: &str = "id, name, model_id, desired_model_id, model_units, status, failure_message,
    commitment, commitment_expires_ms, client_token, created_ms, updated_ms";

fn from_row(row: &Row) -> ProvisionedRecord {
    ProvisionedRecord {
        id: row.get(0),
        name: row.get(1),
        model_id: row.get(2),
        desired_model_id: row.get(3),
        model_units: row.get::<_, i64>(4).clamp(0, i64::from(u32::MAX)) as u32,
        status: row.get(5),
        failure_message: row.get(6),
        commitment: row.get(7),
        commitment_expires_ms: row.get(8),
        client_token: row.get(9),
        created_ms: row.get(10),
        updated_ms: row.get(11),
    }
}

impl ProvisionedStore for PostgresStore {
    fn insert_provisioned(&self, r: &ProvisionedRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO provisioned_models ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ),
                &[
                    &r.id,
                    &r.name,
                    &r.model_id,
                    &r.desired_model_id,
                    &i64::from(r.model_units),
                    &r.status,
                    &r.failure_message,
                    &r.commitment,
                    &r.commitment_expires_ms,
                    &r.client_token,
                    &r.created_ms,
                    &r.updated_ms,
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    /// By ID or name; when one record's ID is another's name, the ID wins (SQLite
    /// answers from its ID index first).
    fn provisioned(&self, id_or_name: &str) -> Result<Option<ProvisionedRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM provisioned_models WHERE id = $1 OR name = $1
                     ORDER BY id = $1 DESC LIMIT 1"
                ),
                &[&id_or_name],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }

    fn provisioned_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<ProvisionedRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM provisioned_models WHERE client_token = $1"),
                &[&token],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }

    fn list_provisioned(&self) -> Result<Vec<ProvisionedRecord>, StoreError> {
        self.with(|c| {
            // `COLLATE "C"`: byte order, as SQLite compares text.
            Ok(c.query(
                &format!(
                    "SELECT {COLUMNS} FROM provisioned_models ORDER BY created_ms, id COLLATE \"C\""
                ),
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(from_row)
            .collect())
        })
    }

    fn update_provisioned(&self, r: &ProvisionedRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE provisioned_models SET name = $2, model_id = $3, desired_model_id = $4,
                 status = $5, failure_message = $6, updated_ms = $7 WHERE id = $1",
                &[
                    &r.id,
                    &r.name,
                    &r.model_id,
                    &r.desired_model_id,
                    &r.status,
                    &r.failure_message,
                    &r.updated_ms,
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn delete_provisioned(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(
                c.execute("DELETE FROM provisioned_models WHERE id = $1", &[&id])
                    .map_err(pg)?
                    > 0,
            )
        })
    }
}
