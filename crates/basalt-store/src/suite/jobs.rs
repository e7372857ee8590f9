//! Jobs: claims under leases, fencing by owner, stop requests.

use crate::testing::{on_both_backends, Backend};
use crate::{Claim, JobProgress, JobState, NewJob, ServerStore};

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

/// Claims `batch` jobs as `owner` until none is left for it.
fn claim_all(store: &dyn ServerStore, owner: &str) -> Vec<String> {
    let mut got = Vec::new();
    let mut running: Vec<String> = Vec::new();
    while let Some(job) = store
        .claim_job(&claim(owner, &["batch"], &running, 10))
        .expect("claim")
    {
        assert_eq!(
            job.owner.as_deref(),
            Some(owner),
            "a claimed job names its claimant"
        );
        running.push(job.id.clone());
        got.push(job.id);
    }
    got
}

fn two_stores_on_one_file_never_claim_the_same_job(backend: &Backend) {
    let a = backend.open();
    let b = backend.open();
    for i in 0..40 {
        a.insert_job(&new_job(&format!("j{i:02}"), "batch", i))
            .expect("insert");
    }
    let (from_a, from_b) = std::thread::scope(|scope| {
        let ta = scope.spawn(|| claim_all(&*a, "node-a"));
        let tb = scope.spawn(|| claim_all(&*b, "node-b"));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    let mut all = from_a;
    all.extend(from_b);
    all.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("j{i:02}")).collect();
    assert_eq!(
        all, expected,
        "each job claimed exactly once across both runners"
    );
}

fn an_expired_lease_is_taken_over_and_fences_the_old_owner(backend: &Backend) {
    let store = backend.open();
    store
        .insert_job(&new_job("j1", "batch", 1))
        .expect("insert");
    let first = store
        .claim_job(&claim("a", &["batch"], &[], 100))
        .expect("claim")
        .expect("a job");
    assert_eq!(
        (first.claims, first.lease_until_ms),
        (1, Some(1_100)),
        "the first claim counts once and leases until now + lease"
    );
    assert!(
        store
            .claim_job(&claim("b", &["batch"], &[], 500))
            .expect("claim")
            .is_none(),
        "a live lease is not taken"
    );
    assert!(
        store
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
            .expect("progress"),
        "the owner's progress is saved"
    );
    let taken = store
        .claim_job(&claim("b", &["batch"], &[], 1_200))
        .expect("claim")
        .expect("the expired lease is taken over");
    assert_eq!(taken.claims, 2, "a takeover counts as a second claim");
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
        },
        "the progress carries over"
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
    assert!(
        !store
            .set_job_state("j1", Some("a"), JobState::Completed, None, 1_300, &[])
            .expect("state"),
        "the old owner cannot end the job"
    );
    assert!(
        store
            .renew_job_lease("j1", "b", 1_300, 1_000)
            .expect("renew"),
        "the new owner renews its lease"
    );
    assert!(
        store
            .set_job_state(
                "j1",
                Some("b"),
                JobState::Completed,
                Some("done"),
                1_400,
                &[]
            )
            .expect("state"),
        "the new owner ends the job"
    );
    let done = store.job("j1").expect("get").expect("exists");
    assert_eq!(
        (
            done.state,
            done.end_time_ms,
            done.owner,
            done.message.as_deref()
        ),
        (JobState::Completed, Some(1_400), None, Some("done")),
        "an ended job has its end time and message, and no owner"
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

fn a_restarted_owner_takes_its_own_jobs_back_at_once_and_kinds_filter(backend: &Backend) {
    let store = backend.open();
    store
        .insert_job(&new_job("b1", "batch", 1))
        .expect("insert");
    store
        .insert_job(&new_job("i1", "ingestion", 2))
        .expect("insert");
    let got = store
        .claim_job(&claim("node", &["ingestion"], &[], 10))
        .expect("claim");
    assert_eq!(
        got.map(|j| j.id),
        Some("i1".into()),
        "only a job of a claimed kind is taken"
    );
    let running = vec!["i1".to_string()];
    assert!(
        store
            .claim_job(&claim("node", &["ingestion"], &running, 20))
            .expect("claim")
            .is_none(),
        "a job the runner is running is not claimed twice"
    );
    // The same owner after a restart (nothing running) gets i1 again before its lease ends.
    let again = store
        .claim_job(&claim("node", &["ingestion"], &[], 30))
        .expect("claim");
    assert_eq!(
        again.map(|j| (j.id, j.claims)),
        Some(("i1".into(), 2)),
        "a restarted owner takes its own job back at once"
    );
}

fn stop_requests_end_unclaimed_jobs_and_mark_running_ones(backend: &Backend) {
    let store = backend.open();
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
    assert!(
        store.request_job_stop("idle", 20).expect("stop"),
        "stop idle"
    );
    assert!(
        store.request_job_stop("busy", 20).expect("stop"),
        "stop busy"
    );
    let idle = store.job("idle").expect("get").expect("exists");
    assert_eq!(
        (idle.state, idle.end_time_ms),
        (JobState::Stopped, Some(20)),
        "an unclaimed job ends Stopped at once"
    );
    let busy = store.job("busy").expect("get").expect("exists");
    assert_eq!(
        (busy.state, busy.stop_requested, busy.end_time_ms),
        (JobState::Stopping, true, None),
        "a running job goes Stopping and stays open"
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

fn jobs_list_oldest_first_by_kind(backend: &Backend) {
    let store = backend.open();
    store
        .insert_job(&new_job("b2", "batch", 5))
        .expect("insert");
    store
        .insert_job(&new_job("i1", "ingestion", 1))
        .expect("insert");
    store
        .insert_job(&new_job("b1", "batch", 5))
        .expect("insert");
    store
        .insert_job(&new_job("b0", "batch", 3))
        .expect("insert");
    let ids = |kind| {
        store
            .list_jobs(kind)
            .expect("list")
            .into_iter()
            .map(|j| j.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(Some("batch")),
        vec!["b0", "b2", "b1"],
        "oldest first, ties in insertion order"
    );
    assert_eq!(ids(None), vec!["i1", "b0", "b2", "b1"], "every kind");
    assert!(ids(Some("none")).is_empty(), "a kind with no jobs");
    assert!(
        matches!(
            store.insert_job(&new_job("b1", "batch", 9)),
            Err(crate::StoreError::Duplicate("job ID"))
        ),
        "a job ID is used once"
    );
}

on_both_backends!(
    two_stores_on_one_file_never_claim_the_same_job,
    an_expired_lease_is_taken_over_and_fences_the_old_owner,
    a_restarted_owner_takes_its_own_jobs_back_at_once_and_kinds_filter,
    stop_requests_end_unclaimed_jobs_and_mark_running_ones,
    jobs_list_oldest_first_by_kind,
);

/// Needs no store: the names are the same on every backend.
#[test]
fn states_round_trip_by_name() {
    for state in JobState::ALL {
        assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
    }
    assert!("Running".parse::<JobState>().is_err());
    assert_eq!(JobState::finals().count(), 5);
}
