//! [`JobStore`] on PostgreSQL. A claim is one transaction that locks the oldest
//! claimable row with `FOR UPDATE SKIP LOCKED`, so any number of nodes sharing the
//! database never take the same job (and never wait on each other's claims).

use postgres::{GenericClient, Row};

use crate::jobs::{Claim, JobProgress, JobRecord, JobState, JobStore, NewJob};
use crate::pg::{duplicate, pg};
use crate::{PostgresStore, StoreError};

pub(crate) const JOB_COLUMNS: &str = "id, kind, state, message, payload, checkpoint, progress_done,
    progress_total, owner, lease_until_ms, claims, stop_requested, created_ms, updated_ms, end_time_ms";

/// A stored state name as a [`JobState`]; one this Basalt does not know is a
/// database error.
pub(crate) fn state_of(text: &str) -> Result<JobState, StoreError> {
    text.parse()
        .map_err(|e: crate::jobs::UnknownJobState| StoreError::Database(format!("jobs.state: {e}")))
}

/// A count as stored (BIGINT): clamped, never wrapped.
pub(crate) fn to_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// A stored count as a `u64`: a negative one (never written) reads as 0.
pub(crate) fn to_u64(v: i64) -> u64 {
    v.max(0) as u64
}

fn from_row(row: &Row) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        id: row.get(0),
        kind: row.get(1),
        state: state_of(row.get(2))?,
        message: row.get(3),
        payload: row.get(4),
        checkpoint: row.get(5),
        progress: JobProgress {
            done: to_u64(row.get(6)),
            total: row.get::<_, Option<i64>>(7).map(to_u64),
        },
        owner: row.get(8),
        lease_until_ms: row.get(9),
        claims: row.get::<_, i64>(10).clamp(0, u32::MAX as i64) as u32,
        stop_requested: row.get(11),
        created_ms: row.get(12),
        updated_ms: row.get(13),
        end_time_ms: row.get(14),
    })
}

/// Inserts a job's `Submitted` row; any unique violation is `Duplicate("job ID")`.
pub(crate) fn insert_job_row(
    c: &mut impl GenericClient,
    job: &NewJob<'_>,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO jobs (id, kind, state, payload, created_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[
            &job.id,
            &job.kind,
            &JobState::Submitted.as_str(),
            &job.payload,
            &job.at_ms,
        ],
    )
    .map_err(duplicate("job ID"))?;
    Ok(())
}

/// A job's state and lease holder, read and locked inside a transaction.
fn state_and_owner(
    tx: &mut postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<(JobState, Option<String>)>, StoreError> {
    let Some(row) = tx
        .query_opt(
            "SELECT state, owner FROM jobs WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .map_err(pg)?
    else {
        return Ok(None);
    };
    Ok(Some((state_of(row.get(0))?, row.get(1))))
}

impl JobStore for PostgresStore {
    fn insert_job(&self, job: &NewJob<'_>) -> Result<(), StoreError> {
        self.with(|c| insert_job_row(c, job))
    }

    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                &[&id],
            )
            .map_err(pg)?
            .as_ref()
            .map(from_row)
            .transpose()
        })
    }

    fn list_jobs(&self, kind: Option<&str>) -> Result<Vec<JobRecord>, StoreError> {
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE $1::TEXT IS NULL OR kind = $1
                     ORDER BY created_ms, seq"
                ),
                &[&kind],
            )
            .map_err(pg)?
            .iter()
            .map(from_row)
            .collect()
        })
    }

    fn claim_job(&self, claim: &Claim<'_>) -> Result<Option<JobRecord>, StoreError> {
        if claim.kinds.is_empty() {
            return Ok(None);
        }
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg)?;
            let Some(candidate) = tx
                .query_opt(
                    "SELECT id FROM jobs
                     WHERE end_time_ms IS NULL
                       AND (owner IS NULL OR owner = $1 OR lease_until_ms < $2)
                       AND kind = ANY($3)
                       AND NOT (id = ANY($4))
                     ORDER BY created_ms, seq
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED",
                    &[&claim.owner, &claim.now_ms, &claim.kinds, &claim.running],
                )
                .map_err(pg)?
            else {
                return Ok(None);
            };
            let id: String = candidate.get(0);
            let row = tx
                .query_one(
                    &format!(
                        "UPDATE jobs SET owner = $2, lease_until_ms = $3, claims = claims + 1
                         WHERE id = $1 RETURNING {JOB_COLUMNS}"
                    ),
                    &[
                        &id,
                        &claim.owner,
                        &claim.now_ms.saturating_add(claim.lease_ms),
                    ],
                )
                .map_err(pg)?;
            let job = from_row(&row)?;
            tx.commit().map_err(pg)?;
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
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE jobs SET lease_until_ms = $3
                     WHERE id = $1 AND owner = $2 AND end_time_ms IS NULL",
                    &[&id, &owner, &now_ms.saturating_add(lease_ms)],
                )
                .map_err(pg)?;
            Ok(changed == 1)
        })
    }

    fn release_job(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET owner = NULL, lease_until_ms = NULL WHERE id = $1 AND owner = $2",
                &[&id, &owner],
            )
            .map_err(pg)?;
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
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg)?;
            let current = state_and_owner(&mut tx, id)?;
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
                "UPDATE jobs SET state = $2, message = COALESCE($3::TEXT, message),
                 end_time_ms = $4::BIGINT, updated_ms = $5,
                 owner = CASE WHEN $4::BIGINT IS NULL THEN owner END,
                 lease_until_ms = CASE WHEN $4::BIGINT IS NULL THEN lease_until_ms END
                 WHERE id = $1",
                &[&id, &state.as_str(), &message, &end, &at_ms],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)?;
            Ok(true)
        })
    }

    fn request_job_stop(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg)?;
            let current = state_and_owner(&mut tx, id)?;
            let Some((current, owner)) = current else {
                return Ok(false);
            };
            if current.is_final() {
                return Ok(false);
            }
            let message = "stopped by request";
            if owner.is_none() {
                tx.execute(
                    "UPDATE jobs SET state = $2, message = $3, stop_requested = TRUE,
                     end_time_ms = $4, updated_ms = $4 WHERE id = $1",
                    &[&id, &JobState::Stopped.as_str(), &message, &at_ms],
                )
                .map_err(pg)?;
            } else {
                tx.execute(
                    "UPDATE jobs SET state = $2, message = $3, stop_requested = TRUE, updated_ms = $4
                     WHERE id = $1",
                    &[&id, &JobState::Stopping.as_str(), &message, &at_ms],
                )
                .map_err(pg)?;
            }
            tx.commit().map_err(pg)?;
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
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE jobs SET progress_done = $3, progress_total = $4,
                     checkpoint = COALESCE($5::TEXT, checkpoint), updated_ms = $6
                     WHERE id = $1 AND owner = $2 AND end_time_ms IS NULL",
                    &[
                        &id,
                        &owner,
                        &to_i64(progress.done),
                        &progress.total.map(to_i64),
                        &checkpoint,
                        &at_ms,
                    ],
                )
                .map_err(pg)?;
            Ok(changed == 1)
        })
    }
}
