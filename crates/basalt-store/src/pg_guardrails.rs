//! [`GuardrailStore`] on PostgreSQL.

use postgres::Row;

use crate::pg::{pg, unique_violation};
use crate::{GuardrailRecord, GuardrailStore, PostgresStore, StoreError, DRAFT};

const COLUMNS: &str = "id, version, name, description, policy_json, blocked_input_messaging,
    blocked_outputs_messaging, kms_key_id, tags_json, client_token, created_at_ms, updated_at_ms";

/// A numbered version as a number, for ordering and for the next version: only
/// versions made of digits are cast (SQLite's CAST yields 0 for anything else, where
/// PostgreSQL's would fail the statement).
const VERSION_NUMBER: &str =
    "CASE WHEN version ~ '^[0-9]{1,18}$' THEN CAST(version AS BIGINT) ELSE 0 END";

fn from_row(row: &Row) -> GuardrailRecord {
    GuardrailRecord {
        id: row.get(0),
        version: row.get(1),
        name: row.get(2),
        description: row.get(3),
        policy_json: row.get(4),
        blocked_input_messaging: row.get(5),
        blocked_outputs_messaging: row.get(6),
        kms_key_id: row.get(7),
        tags_json: row.get(8),
        client_token: row.get(9),
        created_at_ms: row.get(10),
        updated_at_ms: row.get(11),
    }
}

/// Maps a unique-index violation to the field it guards, as SQLite's store does:
/// `client token`, `name`, else `guardrail id`.
fn constraint(e: postgres::Error) -> StoreError {
    match unique_violation(e) {
        StoreError::Duplicate("id") => StoreError::Duplicate("guardrail id"),
        other => other,
    }
}

impl GuardrailStore for PostgresStore {
    fn create_guardrail(&self, r: &GuardrailRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO guardrails ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ),
                &[
                    &r.id,
                    &DRAFT,
                    &r.name,
                    &r.description,
                    &r.policy_json,
                    &r.blocked_input_messaging,
                    &r.blocked_outputs_messaging,
                    &r.kms_key_id,
                    &r.tags_json,
                    &r.client_token,
                    &r.created_at_ms,
                    &r.updated_at_ms,
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
    }

    fn guardrail(&self, id: &str, version: &str) -> Result<Option<GuardrailRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM guardrails WHERE id = $1 AND version = $2"),
                &[&id, &version],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }

    fn guardrail_by_client_token(
        &self,
        token: &str,
    ) -> Result<Option<GuardrailRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM guardrails WHERE client_token = $1"),
                &[&token],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row))
        })
    }

    fn update_guardrail_draft(&self, r: &GuardrailRecord) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE guardrails SET name = $2, description = $3, policy_json = $4,
                     blocked_input_messaging = $5, blocked_outputs_messaging = $6,
                     kms_key_id = $7, updated_at_ms = $8
                     WHERE id = $1 AND version = 'DRAFT'",
                    &[
                        &r.id,
                        &r.name,
                        &r.description,
                        &r.policy_json,
                        &r.blocked_input_messaging,
                        &r.blocked_outputs_messaging,
                        &r.kms_key_id,
                        &r.updated_at_ms,
                    ],
                )
                .map_err(constraint)?;
            Ok(changed > 0)
        })
    }

    /// The DRAFT row is locked (`FOR UPDATE`) before the next number is computed, so
    /// two nodes snapshotting one guardrail at once take turns: the second reads the
    /// first's version once it commits (each statement of a READ COMMITTED
    /// transaction sees what committed before it began).
    fn create_guardrail_version(
        &self,
        id: &str,
        description: Option<&str>,
        client_token: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg)?;
            let draft = tx
                .query_opt(
                    "SELECT 1 FROM guardrails WHERE id = $1 AND version = 'DRAFT' FOR UPDATE",
                    &[&id],
                )
                .map_err(pg)?;
            if draft.is_none() {
                tx.rollback().map_err(pg)?;
                return Ok(None);
            }
            let next: i64 = tx
                .query_one(
                    &format!(
                        "SELECT COALESCE(MAX({VERSION_NUMBER}), 0) + 1 FROM guardrails
                         WHERE id = $1 AND version <> 'DRAFT'"
                    ),
                    &[&id],
                )
                .map_err(pg)?
                .get(0);
            let version = next.to_string();
            tx.execute(
                "INSERT INTO guardrails (id, version, name, description, policy_json,
                     blocked_input_messaging, blocked_outputs_messaging, kms_key_id, tags_json,
                     client_token, created_at_ms, updated_at_ms)
                 SELECT id, $2::TEXT, name, COALESCE($3::TEXT, description), policy_json,
                     blocked_input_messaging, blocked_outputs_messaging, kms_key_id, tags_json,
                     $4::TEXT, $5::BIGINT, $5::BIGINT
                 FROM guardrails WHERE id = $1 AND version = 'DRAFT'",
                &[&id, &version, &description, &client_token, &at_ms],
            )
            .map_err(constraint)?;
            tx.commit().map_err(pg)?;
            Ok(Some(version))
        })
    }

    fn list_guardrails(&self, id: Option<&str>) -> Result<Vec<GuardrailRecord>, StoreError> {
        self.with(|c| {
            let rows = match id {
                // `COLLATE "C"`: byte order, as SQLite compares text.
                None => c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM guardrails WHERE version = 'DRAFT'
                         ORDER BY created_at_ms, id COLLATE \"C\""
                    ),
                    &[],
                ),
                Some(id) => c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM guardrails WHERE id = $1
                         ORDER BY CASE WHEN version = 'DRAFT' THEN 0 ELSE {VERSION_NUMBER} END"
                    ),
                    &[&id],
                ),
            }
            .map_err(pg)?;
            Ok(rows.iter().map(from_row).collect())
        })
    }

    /// Deleting a whole guardrail locks its DRAFT first, so it waits for a version
    /// being snapshotted on another node and then deletes that version too.
    fn delete_guardrail(&self, id: &str, version: Option<&str>) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = match version {
                None => {
                    let mut tx = c.transaction().map_err(pg)?;
                    tx.query_opt(
                        "SELECT 1 FROM guardrails WHERE id = $1 AND version = 'DRAFT' FOR UPDATE",
                        &[&id],
                    )
                    .map_err(pg)?;
                    let changed = tx
                        .execute("DELETE FROM guardrails WHERE id = $1", &[&id])
                        .map_err(pg)?;
                    tx.commit().map_err(pg)?;
                    changed
                }
                Some(v) => c
                    .execute(
                        "DELETE FROM guardrails
                         WHERE id = $1 AND version = $2 AND version <> 'DRAFT'",
                        &[&id, &v],
                    )
                    .map_err(pg)?,
            };
            Ok(changed > 0)
        })
    }
}
