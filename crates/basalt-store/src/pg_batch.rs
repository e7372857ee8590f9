//! [`BatchJobStore`] on PostgreSQL: `batch_jobs` holds a job's definition and counts,
//! joined to its row in `jobs` for its state, message and times.

use postgres::Row;

use crate::jobs::NewJob;
use crate::pg::{duplicate, pg};
use crate::pg_jobs::{insert_job_row, state_of, to_i64, to_u64};
use crate::{
    BatchCounts, BatchJobRecord, BatchJobStore, PostgresStore, StoreError, BATCH_JOB_KIND,
};

const INSERT_COLUMNS: &str = "id, name, model_id, role_arn, invocation_type, input_uri, output_uri,
    key_id, key_name, client_token, timeout_hours, submit_time_ms, total_records, processed_records,
    success_records, error_records, input_tokens, output_tokens";

const SELECT: &str = "SELECT b.id, b.name, b.model_id, b.role_arn, b.invocation_type, b.input_uri,
    b.output_uri, b.key_id, b.key_name, b.client_token, j.state, j.message, b.timeout_hours,
    b.submit_time_ms, j.updated_ms, j.end_time_ms, b.total_records, b.processed_records,
    b.success_records, b.error_records, b.input_tokens, b.output_tokens
    FROM batch_jobs b JOIN jobs j ON j.id = b.id";

fn from_row(row: &Row) -> Result<BatchJobRecord, StoreError> {
    let count = |i: usize| to_u64(row.get::<_, i64>(i));
    Ok(BatchJobRecord {
        id: row.get(0),
        name: row.get(1),
        model_id: row.get(2),
        role_arn: row.get(3),
        invocation_type: row.get(4),
        input_uri: row.get(5),
        output_uri: row.get(6),
        key_id: row.get(7),
        key_name: row.get(8),
        client_token: row.get(9),
        status: state_of(row.get(10))?,
        message: row.get(11),
        timeout_hours: row.get(12),
        submit_time_ms: row.get(13),
        last_modified_ms: row.get(14),
        end_time_ms: row.get(15),
        counts: BatchCounts {
            total: row.get::<_, Option<i64>>(16).map(to_u64),
            processed: count(17),
            success: count(18),
            error: count(19),
            input_tokens: count(20),
            output_tokens: count(21),
        },
    })
}

impl BatchJobStore for PostgresStore {
    fn insert_batch_job(&self, j: &BatchJobRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg)?;
            tx.execute(
                &format!(
                    "INSERT INTO batch_jobs ({INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6,
                     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
                ),
                &[
                    &j.id,
                    &j.name,
                    &j.model_id,
                    &j.role_arn,
                    &j.invocation_type,
                    &j.input_uri,
                    &j.output_uri,
                    &j.key_id,
                    &j.key_name,
                    &j.client_token,
                    &j.timeout_hours,
                    &j.submit_time_ms,
                    &j.counts.total.map(to_i64),
                    &to_i64(j.counts.processed),
                    &to_i64(j.counts.success),
                    &to_i64(j.counts.error),
                    &to_i64(j.counts.input_tokens),
                    &to_i64(j.counts.output_tokens),
                ],
            )
            .map_err(duplicate("client token"))?;
            insert_job_row(
                &mut tx,
                &NewJob {
                    id: &j.id,
                    kind: BATCH_JOB_KIND,
                    payload: "{}",
                    at_ms: j.submit_time_ms,
                },
            )?;
            tx.commit().map_err(pg)
        })
    }

    fn batch_job(&self, id: &str) -> Result<Option<BatchJobRecord>, StoreError> {
        self.with(|c| {
            c.query_opt(&format!("{SELECT} WHERE b.id = $1"), &[&id])
                .map_err(pg)?
                .as_ref()
                .map(from_row)
                .transpose()
        })
    }

    fn batch_job_by_client_token(&self, token: &str) -> Result<Option<BatchJobRecord>, StoreError> {
        self.with(|c| {
            c.query_opt(&format!("{SELECT} WHERE b.client_token = $1"), &[&token])
                .map_err(pg)?
                .as_ref()
                .map(from_row)
                .transpose()
        })
    }

    fn list_batch_jobs(&self) -> Result<Vec<BatchJobRecord>, StoreError> {
        self.with(|c| {
            c.query(&format!("{SELECT} ORDER BY b.submit_time_ms, b.id"), &[])
                .map_err(pg)?
                .iter()
                .map(from_row)
                .collect()
        })
    }

    fn set_batch_counts(&self, id: &str, c: &BatchCounts, at_ms: i64) -> Result<(), StoreError> {
        self.with(|conn| {
            let mut tx = conn.transaction().map_err(pg)?;
            tx.execute(
                "UPDATE batch_jobs SET total_records = $2, processed_records = $3, success_records = $4,
                 error_records = $5, input_tokens = $6, output_tokens = $7 WHERE id = $1",
                &[
                    &id,
                    &c.total.map(to_i64),
                    &to_i64(c.processed),
                    &to_i64(c.success),
                    &to_i64(c.error),
                    &to_i64(c.input_tokens),
                    &to_i64(c.output_tokens),
                ],
            )
            .map_err(pg)?;
            tx.execute(
                "UPDATE jobs SET progress_done = $2, progress_total = $3, updated_ms = $4 WHERE id = $1",
                &[&id, &to_i64(c.processed), &c.total.map(to_i64), &at_ms],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)
        })
    }
}
