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

#[cfg(test)]
mod tests {
    use super::*;

    fn new_job<'a>(id: &'a str, kind: &'a str, at_ms: i64) -> NewJob<'a> {
        NewJob {
            id,
            kind,
            payload: "{}",
            at_ms,
        }
    }

    fn claim<'a>(
        owner: &'a str,
        kinds: &'a [&'a str],
        running: &'a [String],
        now_ms: i64,
    ) -> Claim<'a> {
        Claim {
            owner,
            kinds,
            running,
            now_ms,
            lease_ms: 1_000,
        }
    }

    #[test]
    fn two_stores_on_one_file_never_claim_the_same_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let a = SqliteStore::open(&path).expect("open a");
        let b = SqliteStore::open(&path).expect("open b");
        for i in 0..40 {
            a.insert_job(&new_job(&format!("j{i:02}"), "batch", i))
                .expect("insert");
        }
        let a = std::sync::Arc::new(a);
        let b = std::sync::Arc::new(b);
        let take = |store: std::sync::Arc<SqliteStore>, owner: &'static str| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut running: Vec<String> = Vec::new();
                while let Some(job) = store
                    .claim_job(&claim(owner, &["batch"], &running, 10))
                    .expect("claim")
                {
                    assert_eq!(job.owner.as_deref(), Some(owner));
                    running.push(job.id.clone());
                    got.push(job.id);
                }
                got
            })
        };
        let (ta, tb) = (take(a, "node-a"), take(b, "node-b"));
        let mut all = ta.join().expect("a");
        let from_b = tb.join().expect("b");
        all.extend(from_b);
        all.sort();
        let expected: Vec<String> = (0..40).map(|i| format!("j{i:02}")).collect();
        assert_eq!(
            all, expected,
            "each job claimed exactly once across both runners"
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_fences_the_old_owner() {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .insert_job(&new_job("j1", "batch", 1))
            .expect("insert");
        let first = store
            .claim_job(&claim("a", &["batch"], &[], 100))
            .expect("claim")
            .expect("a job");
        assert_eq!((first.claims, first.lease_until_ms), (1, Some(1_100)));
        assert!(
            store
                .claim_job(&claim("b", &["batch"], &[], 500))
                .expect("claim")
                .is_none(),
            "a live lease is not taken"
        );
        assert!(store
            .save_job_progress(
                "j1",
                "a",
                JobProgress {
                    done: 3,
                    total: Some(9)
                },
                Some("{\"at\":3}"),
                600
            )
            .expect("progress"));
        let taken = store
            .claim_job(&claim("b", &["batch"], &[], 1_200))
            .expect("claim")
            .expect("the expired lease is taken over");
        assert_eq!(taken.claims, 2);
        assert_eq!(
            taken.checkpoint.as_deref(),
            Some("{\"at\":3}"),
            "the checkpoint carries over"
        );
        assert_eq!(
            taken.progress,
            JobProgress {
                done: 3,
                total: Some(9)
            }
        );
        assert!(
            !store
                .renew_job_lease("j1", "a", 1_300, 1_000)
                .expect("renew"),
            "a lost its lease"
        );
        assert!(
            !store
                .save_job_progress(
                    "j1",
                    "a",
                    JobProgress {
                        done: 4,
                        total: None
                    },
                    None,
                    1_300
                )
                .expect("progress"),
            "the old owner's writes are refused"
        );
        assert!(!store
            .set_job_state("j1", Some("a"), JobState::Completed, None, 1_300, &[])
            .expect("state"));
        assert!(store
            .renew_job_lease("j1", "b", 1_300, 1_000)
            .expect("renew"));
        assert!(store
            .set_job_state(
                "j1",
                Some("b"),
                JobState::Completed,
                Some("done"),
                1_400,
                &[]
            )
            .expect("state"));
        let done = store.job("j1").expect("get").expect("exists");
        assert_eq!(
            (
                done.state,
                done.end_time_ms,
                done.owner,
                done.message.as_deref()
            ),
            (JobState::Completed, Some(1_400), None, Some("done"))
        );
        assert!(
            store
                .claim_job(&claim("c", &["batch"], &[], 99_999))
                .expect("claim")
                .is_none(),
            "an ended job is never claimed"
        );
        assert!(
            !store
                .set_job_state("j1", None, JobState::InProgress, None, 1_500, &[])
                .expect("state"),
            "a final state is kept"
        );
    }

    #[test]
    fn a_restarted_owner_takes_its_own_jobs_back_at_once_and_kinds_filter() {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .insert_job(&new_job("b1", "batch", 1))
            .expect("insert");
        store
            .insert_job(&new_job("i1", "ingestion", 2))
            .expect("insert");
        let got = store
            .claim_job(&claim("node", &["ingestion"], &[], 10))
            .expect("claim");
        assert_eq!(got.map(|j| j.id), Some("i1".into()));
        let running = vec!["i1".to_string()];
        assert!(store
            .claim_job(&claim("node", &["ingestion"], &running, 20))
            .expect("claim")
            .is_none());
        // The same owner after a restart (nothing running) gets i1 again before its lease ends.
        let again = store
            .claim_job(&claim("node", &["ingestion"], &[], 30))
            .expect("claim");
        assert_eq!(again.map(|j| (j.id, j.claims)), Some(("i1".into(), 2)));
    }

    #[test]
    fn stop_requests_end_unclaimed_jobs_and_mark_running_ones() {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .insert_job(&new_job("idle", "batch", 1))
            .expect("insert");
        store
            .insert_job(&new_job("busy", "batch", 2))
            .expect("insert");
        let running = vec!["idle".to_string()];
        let busy = store
            .claim_job(&claim("a", &["batch"], &running, 10))
            .expect("claim");
        assert_eq!(busy.map(|j| j.id), Some("busy".into()));
        assert!(store.request_job_stop("idle", 20).expect("stop"));
        assert!(store.request_job_stop("busy", 20).expect("stop"));
        let idle = store.job("idle").expect("get").expect("exists");
        assert_eq!(
            (idle.state, idle.end_time_ms),
            (JobState::Stopped, Some(20))
        );
        let busy = store.job("busy").expect("get").expect("exists");
        assert_eq!(
            (busy.state, busy.stop_requested, busy.end_time_ms),
            (JobState::Stopping, true, None)
        );
        assert!(
            !store.request_job_stop("idle", 30).expect("stop"),
            "an ended job stays ended"
        );
        assert!(
            !store
                .set_job_state(
                    "busy",
                    Some("a"),
                    JobState::InProgress,
                    None,
                    40,
                    &[JobState::Stopping]
                )
                .expect("state"),
            "a stopping job does not go back to running"
        );
    }

    #[test]
    fn states_round_trip_by_name() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("Running".parse::<JobState>().is_err());
        assert_eq!(JobState::finals().count(), 5);
    }
}
