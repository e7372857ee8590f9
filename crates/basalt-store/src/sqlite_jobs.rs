//! [`JobStore`] on SQLite. A claim is one immediate transaction, so two runners on
//! the same database file (two processes) never take the same job.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::jobs::{Claim, JobProgress, JobRecord, JobState, JobStore, NewJob};
use crate::sqlite::db;
use crate::{SqliteStore, StoreError};

pub(crate) const JOB_COLUMNS: &str = "id, kind, state, message, payload, checkpoint, progress_done,
    progress_total, owner, lease_until_ms, claims, stop_requested, created_ms, updated_ms, end_time_ms";

pub(crate) fn state_of(text: String) -> rusqlite::Result<JobState> {
    text.parse().map_err(|e: crate::jobs::UnknownJobState| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        state: state_of(row.get(2)?)?,
        message: row.get(3)?,
        payload: row.get(4)?,
        checkpoint: row.get(5)?,
        progress: JobProgress {
            done: row.get::<_, i64>(6)?.max(0) as u64,
            total: row.get::<_, Option<i64>>(7)?.map(|v| v.max(0) as u64),
        },
        owner: row.get(8)?,
        lease_until_ms: row.get(9)?,
        claims: row.get::<_, i64>(10)?.clamp(0, u32::MAX as i64) as u32,
        stop_requested: row.get(11)?,
        created_ms: row.get(12)?,
        updated_ms: row.get(13)?,
        end_time_ms: row.get(14)?,
    })
}

pub(crate) fn insert_job_row(
    conn: &rusqlite::Connection,
    job: &NewJob<'_>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO jobs (id, kind, state, payload, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![job.id, job.kind, JobState::Submitted.as_str(), job.payload, job.at_ms],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Duplicate("job ID")
        }
        other => db(other),
    })?;
    Ok(())
}

/// A job's state and lease holder, read inside a transaction.
fn state_and_owner(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
) -> Result<Option<(JobState, Option<String>)>, StoreError> {
    tx.query_row("SELECT state, owner FROM jobs WHERE id = ?1", [id], |r| {
        Ok((state_of(r.get(0)?)?, r.get(1)?))
    })
    .optional()
    .map_err(db)
}

impl JobStore for SqliteStore {
    fn insert_job(&self, job: &NewJob<'_>) -> Result<(), StoreError> {
        self.with(|conn| insert_job_row(conn, job))
    }

    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn list_jobs(&self, kind: Option<&str>) -> Result<Vec<JobRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE ?1 IS NULL OR kind = ?1
                     ORDER BY created_ms, rowid"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([kind], from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn claim_job(&self, claim: &Claim<'_>) -> Result<Option<JobRecord>, StoreError> {
        if claim.kinds.is_empty() {
            return Ok(None);
        }
        self.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let candidates: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id, kind FROM jobs
                         WHERE end_time_ms IS NULL
                           AND (owner IS NULL OR owner = ?1 OR lease_until_ms < ?2)
                         ORDER BY created_ms, rowid",
                    )
                    .map_err(db)?;
                let rows = stmt
                    .query_map(params![claim.owner, claim.now_ms], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            let Some((id, _)) = candidates.into_iter().find(|(id, kind)| {
                claim.kinds.contains(&kind.as_str()) && !claim.running.contains(id)
            }) else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE jobs SET owner = ?2, lease_until_ms = ?3, claims = claims + 1 WHERE id = ?1",
                params![id, claim.owner, claim.now_ms + claim.lease_ms],
            )
            .map_err(db)?;
            let job = tx
                .query_row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                    [&id],
                    from_row,
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(job))
        })
    }

    fn renew_job_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE jobs SET lease_until_ms = ?3
                     WHERE id = ?1 AND owner = ?2 AND end_time_ms IS NULL",
                    params![id, owner, now_ms + lease_ms],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
    }

    fn release_job(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE jobs SET owner = NULL, lease_until_ms = NULL WHERE id = ?1 AND owner = ?2",
                params![id, owner],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn set_job_state(
        &self,
        id: &str,
        owner: Option<&str>,
        state: JobState,
        message: Option<&str>,
        at_ms: i64,
        unless: &[JobState],
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let current = state_and_owner(&tx, id)?;
            let Some((current, holder)) = current else {
                return Ok(false);
            };
            if current.is_final()
                || unless.contains(&current)
                || owner.is_some_and(|o| holder.as_deref() != Some(o))
            {
                return Ok(false);
            }
            let end = state.is_final().then_some(at_ms);
            tx.execute(
                "UPDATE jobs SET state = ?2, message = COALESCE(?3, message),
                 end_time_ms = ?4, updated_ms = ?5,
                 owner = CASE WHEN ?4 IS NULL THEN owner END,
                 lease_until_ms = CASE WHEN ?4 IS NULL THEN lease_until_ms END
                 WHERE id = ?1",
                params![id, state.as_str(), message, end, at_ms],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(true)
        })
    }

    fn request_job_stop(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        self.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let current = state_and_owner(&tx, id)?;
            let Some((current, owner)) = current else {
                return Ok(false);
            };
            if current.is_final() {
                return Ok(false);
            }
            let message = "stopped by request";
            if owner.is_none() {
                tx.execute(
                    "UPDATE jobs SET state = ?2, message = ?3, stop_requested = 1,
                     end_time_ms = ?4, updated_ms = ?4 WHERE id = ?1",
                    params![id, JobState::Stopped.as_str(), message, at_ms],
                )
                .map_err(db)?;
            } else {
                tx.execute(
                    "UPDATE jobs SET state = ?2, message = ?3, stop_requested = 1, updated_ms = ?4
                     WHERE id = ?1",
                    params![id, JobState::Stopping.as_str(), message, at_ms],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(true)
        })
    }

    fn save_job_progress(
        &self,
        id: &str,
        owner: &str,
        progress: JobProgress,
        checkpoint: Option<&str>,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE jobs SET progress_done = ?3, progress_total = ?4,
                     checkpoint = COALESCE(?5, checkpoint), updated_ms = ?6
                     WHERE id = ?1 AND owner = ?2 AND end_time_ms IS NULL",
                    params![
                        id,
                        owner,
                        progress.done as i64,
                        progress.total.map(|t| t as i64),
                        checkpoint,
                        at_ms
                    ],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
    }
}
