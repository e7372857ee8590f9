//! Batch jobs: their definition and counts, their state through the job row.

use crate::testing::{on_both_backends, Backend};
use crate::{BatchCounts, BatchJobRecord, JobState, StoreError};

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

fn status_changes_skip_final_statuses_and_counts_persist(backend: &Backend) {
    let store = backend.open();
    store.insert_batch_job(&job("j1", "t1")).expect("insert");
    assert!(
        matches!(
            store.insert_batch_job(&job("j2", "t1")),
            Err(StoreError::Duplicate(_))
        ),
        "a client token is used once"
    );
    assert!(
        store.job("j2").expect("get").is_none(),
        "the refused job left no job row"
    );
    assert!(
        store
            .set_job_state("j1", None, JobState::InProgress, None, 2, &[])
            .expect("set"),
        "an open job moves"
    );
    assert!(
        store
            .set_job_state("j1", None, JobState::Completed, Some("done"), 3, &[])
            .expect("set"),
        "an open job ends"
    );
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
        (JobState::Completed, Some("done"), Some(3), 5),
        "the batch job reads its state, message and times from its job row"
    );
    assert_eq!(got.counts, counts, "the counts persist");
    let row = store.job("j1").expect("get").expect("job row");
    assert_eq!(
        (row.kind.as_str(), row.progress.done, row.progress.total),
        ("batch", 5, Some(5)),
        "the counts are the job row's progress"
    );
    assert_eq!(
        store
            .batch_job_by_client_token("t1")
            .expect("get")
            .map(|j| j.id),
        Some("j1".into()),
        "found by its client token"
    );
}

fn batch_jobs_round_trip_and_list_oldest_first(backend: &Backend) {
    let store = backend.open();
    let mut late = job("late", "t-late");
    late.submit_time_ms = 20;
    late.last_modified_ms = 20;
    late.key_id = Some("k1".into());
    late.key_name = Some("key one".into());
    late.counts = BatchCounts {
        total: Some(7),
        processed: 3,
        success: 2,
        error: 1,
        input_tokens: 40,
        output_tokens: 50,
    };
    let mut early = job("early", "t-early");
    early.client_token = None;
    early.submit_time_ms = 10;
    early.last_modified_ms = 10;
    store.insert_batch_job(&late).expect("insert");
    store.insert_batch_job(&early).expect("insert");
    let listed = store.list_batch_jobs().expect("list");
    assert_eq!(
        listed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec!["early", "late"],
        "oldest first"
    );
    assert_eq!(
        listed,
        vec![early, late],
        "a batch job comes back as stored"
    );
    assert!(store.batch_job("nope").expect("get").is_none());
    assert!(store
        .batch_job_by_client_token("nope")
        .expect("get")
        .is_none());
}

on_both_backends!(
    status_changes_skip_final_statuses_and_counts_persist,
    batch_jobs_round_trip_and_list_oldest_first,
);

/// SQLite only: a database from before the job table (PostgreSQL's schema starts
/// with it).
mod sqlite_only {
    use crate::testing::Backend;
    use crate::JobState;

    #[test]
    fn jobs_of_an_older_database_move_to_the_job_table() {
        let backend = Backend::sqlite();
        let Backend::Sqlite(dir) = &backend else {
            unreachable!("Backend::sqlite() is SQLite")
        };
        // The file Backend::open opens.
        let path = dir.path().join("basalt.db");
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
        let store = backend.open();
        let job = store.batch_job("old1").expect("get").expect("kept");
        assert_eq!(
            (
                job.status,
                job.message.as_deref(),
                job.last_modified_ms,
                job.counts.processed
            ),
            (JobState::Stopping, Some("stopped by request"), 20, 4),
            "the batch job keeps its state, message, time and counts"
        );
        let row = store.job("old1").expect("get").expect("job row");
        assert_eq!(
            (
                row.kind.as_str(),
                row.stop_requested,
                row.progress.done,
                row.progress.total
            ),
            ("batch", true, 4, Some(9)),
            "the moved job row is a stopping batch job with its progress"
        );
    }
}
