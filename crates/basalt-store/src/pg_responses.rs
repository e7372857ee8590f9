//! [`ResponseStore`] on PostgreSQL.

use postgres::Row;

use crate::pg::{pg, unique_violation};
use crate::{PostgresStore, ResponseStore, StoreError, StoredResponseRecord};

const COLUMNS: &str = "id, key_id, created_ms, model_id, response, conversation";

fn from_row(row: &Row) -> StoredResponseRecord {
    StoredResponseRecord {
        id: row.get(0),
        key_id: row.get(1),
        created_ms: row.get(2),
        model_id: row.get(3),
        response_json: row.get(4),
        conversation_json: row.get(5),
    }
}

impl ResponseStore for PostgresStore {
    fn insert_response(&self, r: &StoredResponseRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO stored_responses ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                &[
                    &r.id,
                    &r.key_id,
                    &r.created_ms,
                    &r.model_id,
                    &r.response_json,
                    &r.conversation_json,
                ],
            )
            .map_err(unique_violation)?;
            Ok(())
        })
    }

    fn response(&self, id: &str) -> Result<Option<StoredResponseRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM stored_responses WHERE id = $1"),
                &[&id],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }

    fn delete_response(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute("DELETE FROM stored_responses WHERE id = $1", &[&id])
                .map_err(pg)?;
            Ok(n == 1)
        })
    }

    fn prune_responses(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM stored_responses WHERE created_ms < $1",
                    &[&before_ms],
                )
                .map_err(pg)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
