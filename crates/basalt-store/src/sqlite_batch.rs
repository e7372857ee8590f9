//! [`BatchJobStore`] on SQLite: `batch_jobs` holds a job's definition and counts,
//! joined to its row in `jobs` for its state, message and times.

use rusqlite::{params, OptionalExtension};

use crate::jobs::NewJob;
use crate::sqlite::db;
use crate::sqlite_jobs::{insert_job_row, state_of};
use crate::{BatchCounts, BatchJobRecord, BatchJobStore, SqliteStore, StoreError, BATCH_JOB_KIND};

const INSERT_COLUMNS: &str = "id, name, model_id, role_arn, invocation_type, input_uri, output_uri,
    key_id, key_name, client_token, timeout_hours, submit_time_ms, total_records, processed_records,
    success_records, error_records, input_tokens, output_tokens";

const SELECT: &str = "SELECT b.id, b.name, b.model_id, b.role_arn, b.invocation_type, b.input_uri,
    b.output_uri, b.key_id, b.key_name, b.client_token, j.state, j.message, b.timeout_hours,
    b.submit_time_ms, j.updated_ms, j.end_time_ms, b.total_records, b.processed_records,
    b.success_records, b.error_records, b.input_tokens, b.output_tokens
    FROM batch_jobs b JOIN jobs j ON j.id = b.id";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<BatchJobRecord> {
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    Ok(BatchJobRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        model_id: row.get(2)?,
        role_arn: row.get(3)?,
        invocation_type: row.get(4)?,
        input_uri: row.get(5)?,
        output_uri: row.get(6)?,
        key_id: row.get(7)?,
        key_name: row.get(8)?,
        client_token: row.get(9)?,
        status: state_of(row.get(10)?)?,
        message: row.get(11)?,
        timeout_hours: row.get(12)?,
        submit_time_ms: row.get(13)?,
        last_modified_ms: row.get(14)?,
        end_time_ms: row.get(15)?,
        counts: BatchCounts {
            total: row.get::<_, Option<i64>>(16)?.map(|v| v.max(0) as u64),
            processed: count(17)?,
            success: count(18)?,
            error: count(19)?,
            input_tokens: count(20)?,
            output_tokens: count(21)?,
        },
    })
}

impl BatchJobStore for SqliteStore {
    fn insert_batch_job(&self, j: &BatchJobRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db)?;
            tx.execute(
                &format!("INSERT INTO batch_jobs ({INSERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
                params![
                    j.id, j.name, j.model_id, j.role_arn, j.invocation_type, j.input_uri, j.output_uri,
                    j.key_id, j.key_name, j.client_token, j.timeout_hours, j.submit_time_ms,
                    j.counts.total.map(|v| v as i64), j.counts.processed as i64, j.counts.success as i64,
                    j.counts.error as i64, j.counts.input_tokens as i64, j.counts.output_tokens as i64
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Duplicate("client token")
                }
                other => db(other),
            })?;
            insert_job_row(
                &tx,
                &NewJob {
                    id: &j.id,
                    kind: BATCH_JOB_KIND,
                    payload: "{}",
                    at_ms: j.submit_time_ms,
                },
            )?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }

    fn batch_job(&self, id: &str) -> Result<Option<BatchJobRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(&format!("{SELECT} WHERE b.id = ?1"), [id], from_row)
                .optional()
                .map_err(db)
        })
    }

    fn batch_job_by_client_token(&self, token: &str) -> Result<Option<BatchJobRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("{SELECT} WHERE b.client_token = ?1"),
                [token],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn list_batch_jobs(&self) -> Result<Vec<BatchJobRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!("{SELECT} ORDER BY b.submit_time_ms, b.id"))
                .map_err(db)?;
            let rows = stmt.query_map([], from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn set_batch_counts(&self, id: &str, c: &BatchCounts, at_ms: i64) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db)?;
            tx.execute(
                "UPDATE batch_jobs SET total_records = ?2, processed_records = ?3, success_records = ?4,
                 error_records = ?5, input_tokens = ?6, output_tokens = ?7 WHERE id = ?1",
                params![
                    id,
                    c.total.map(|v| v as i64),
                    c.processed as i64,
                    c.success as i64,
                    c.error as i64,
                    c.input_tokens as i64,
                    c.output_tokens as i64,
                ],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE jobs SET progress_done = ?2, progress_total = ?3, updated_ms = ?4 WHERE id = ?1",
                params![id, c.processed as i64, c.total.map(|v| v as i64), at_ms],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }
}
