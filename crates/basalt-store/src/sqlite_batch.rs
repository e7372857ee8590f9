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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobState, JobStore};

    fn job(id: &str, token: &str) -> BatchJobRecord {
        BatchJobRecord {
            id: id.into(),
            name: "n".into(),
            model_id: "m".into(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            invocation_type: "InvokeModel".into(),
            input_uri: "file:///in".into(),
            output_uri: "file:///out/".into(),
            key_id: None,
            key_name: None,
            client_token: Some(token.into()),
            status: JobState::Submitted,
            message: None,
            timeout_hours: 24,
            submit_time_ms: 1,
            last_modified_ms: 1,
            end_time_ms: None,
            counts: BatchCounts::default(),
        }
    }

    #[test]
    fn status_changes_skip_final_statuses_and_counts_persist() {
        let store = SqliteStore::open_in_memory().expect("open");
        store.insert_batch_job(&job("j1", "t1")).expect("insert");
        assert!(matches!(
            store.insert_batch_job(&job("j2", "t1")),
            Err(StoreError::Duplicate(_))
        ));
        assert!(store
            .set_job_state("j1", None, JobState::InProgress, None, 2, &[])
            .expect("set"));
        assert!(store
            .set_job_state("j1", None, JobState::Completed, Some("done"), 3, &[])
            .expect("set"));
        assert!(
            !store
                .set_job_state("j1", None, JobState::InProgress, None, 4, &[])
                .expect("set"),
            "a final status is kept"
        );
        let counts = BatchCounts {
            total: Some(5),
            processed: 5,
            success: 4,
            error: 1,
            input_tokens: 9,
            output_tokens: 7,
        };
        store.set_batch_counts("j1", &counts, 5).expect("counts");
        let got = store.batch_job("j1").expect("get").expect("exists");
        assert_eq!(
            (
                got.status,
                got.message.as_deref(),
                got.end_time_ms,
                got.last_modified_ms
            ),
            (JobState::Completed, Some("done"), Some(3), 5)
        );
        assert_eq!(got.counts, counts);
        let row = store.job("j1").expect("get").expect("job row");
        assert_eq!(
            (row.kind.as_str(), row.progress.done, row.progress.total),
            ("batch", 5, Some(5))
        );
        assert_eq!(
            store
                .batch_job_by_client_token("t1")
                .expect("get")
                .map(|j| j.id),
            Some("j1".into())
        );
    }

    #[test]
    fn jobs_of_an_older_database_move_to_the_job_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).expect("open");
            for sql in &crate::sqlite::MIGRATIONS[..8] {
                conn.execute_batch(sql).expect("migrate");
            }
            conn.pragma_update(None, "user_version", 8)
                .expect("version");
            conn.execute(
                "INSERT INTO batch_jobs (id, name, model_id, role_arn, invocation_type, input_uri,
                 output_uri, client_token, status, message, timeout_hours, submit_time_ms,
                 last_modified_ms, end_time_ms, total_records, processed_records)
                 VALUES ('old1', 'n', 'm', 'r', 'InvokeModel', 'file:///in', 'file:///out/', NULL,
                 'Stopping', 'stopped by request', 24, 10, 20, NULL, 9, 4)",
                [],
            )
            .expect("insert");
        }
        let store = SqliteStore::open(&path).expect("migrated");
        let job = store.batch_job("old1").expect("get").expect("kept");
        assert_eq!(
            (
                job.status,
                job.message.as_deref(),
                job.last_modified_ms,
                job.counts.processed
            ),
            (JobState::Stopping, Some("stopped by request"), 20, 4)
        );
        let row = store.job("old1").expect("get").expect("job row");
        assert_eq!(
            (
                row.kind.as_str(),
                row.stop_requested,
                row.progress.done,
                row.progress.total
            ),
            ("batch", true, 4, Some(9))
        );
    }
}
