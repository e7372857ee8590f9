//! One durable runner for every kind of long work: knowledge-base ingestion, batch
//! inference, and the customization and import jobs to come.
//!
//! A job is a row in the store ([`JobStore`]) with a kind, a [`JobState`], progress
//! and a kind-specific checkpoint. The [`JobRunner`] claims open jobs of the kinds it
//! has [`JobHandler`]s for under a lease, works on at most each kind's
//! [`JobHandler::max_running`] at once, renews the lease while a job runs, relays
//! stop requests to it, and records how it ended. A runner that dies (`kill -9`) stops
//! renewing: once the lease expires any runner on the same store claims the job and
//! its handler resumes it from its checkpoint; the same runner restarted (the same
//! [`JobsConfig::node`]) takes its jobs back at once. Writes a handler makes as the
//! owner are fenced by the lease, so a runner that lost the job cannot overwrite the
//! one that took it over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde::Deserialize;

use basalt_store::{Claim, JobStore, NewJob, StoreError};
pub use basalt_store::{JobProgress, JobRecord, JobState};

use crate::CoreError;

/// What kind of work a job is; each kind has one [`JobHandler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Batch inference (CreateModelInvocationJob).
    Batch,
    /// Knowledge-base ingestion (StartIngestionJob).
    Ingestion,
    /// Model customization (CreateModelCustomizationJob).
    Customization,
    /// Model import (CreateModelImportJob).
    Import,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        Self::Batch,
        Self::Ingestion,
        Self::Customization,
        Self::Import,
    ];

    /// The name stored in the job row.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batch => basalt_store::BATCH_JOB_KIND,
            Self::Ingestion => "ingestion",
            Self::Customization => "customization",
            Self::Import => "import",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[jobs]`: the runner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// This runner's name in the leases it takes. Stable across restarts, so a
    /// restarted server resumes its own jobs without waiting for their leases to
    /// expire; unique per server sharing a store. Empty: the binary keeps one in the
    /// data directory (`node-id`), or a random one per process.
    pub node: String,
    /// How long a claim holds without being renewed (renewed every third of it).
    pub lease_secs: u64,
    /// How often an idle runner looks for work it was not woken for (jobs created by
    /// another server on the same store, expired leases).
    pub poll_millis: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            node: String::new(),
            lease_secs: 30,
            poll_millis: 2_000,
        }
    }
}

/// How a job's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// The job is over, in a final state.
    Ended {
        state: JobState,
        message: Option<String>,
    },
    /// The job is not over but this runner gives it up (it lost the lease): another
    /// claim resumes it from its checkpoint.
    Released,
}

impl JobEnd {
    pub fn ended(state: JobState, message: Option<String>) -> Self {
        Self::Ended { state, message }
    }
}

/// Runs the jobs of one kind.
#[async_trait]
pub trait JobHandler: Send + Sync {
    fn kind(&self) -> JobKind;
    /// The most jobs of this kind one runner works on at once.
    fn max_running(&self) -> usize {
        1
    }
    /// Works on a claimed job until it ends, is stopped ([`ActiveJob::stop_requested`];
    /// end it `Stopped`), or the lease is lost ([`ActiveJob::lease_lost`]; return
    /// [`JobEnd::Released`]). A job that was claimed before ([`ActiveJob::resumed`])
    /// continues from [`ActiveJob::checkpoint`].
    async fn run(&self, job: ActiveJob) -> JobEnd;
}

#[derive(Debug, Default)]
struct Control {
    stop: Arc<AtomicBool>,
    lost: AtomicBool,
}

/// A job as its handler sees it while it holds the lease.
#[derive(Clone)]
pub struct ActiveJob {
    record: Arc<JobRecord>,
    control: Arc<Control>,
    store: Arc<dyn JobStore>,
    owner: Arc<str>,
}

impl std::fmt::Debug for ActiveJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveJob")
            .field("id", &self.record.id)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("job")(e)
}

impl ActiveJob {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The row as it was claimed.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    /// Claimed before (a restart or a takeover): continue from the checkpoint.
    pub fn resumed(&self) -> bool {
        self.record.claims > 1
    }

    pub fn checkpoint(&self) -> Option<&str> {
        self.record.checkpoint.as_deref()
    }

    /// A stop was asked for (StopModelInvocationJob, StopIngestionJob, ...).
    pub fn stop_requested(&self) -> bool {
        self.control.stop.load(Ordering::SeqCst)
    }

    /// The flag behind [`Self::stop_requested`], for work that polls a flag.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.control.stop)
    }

    /// Another runner may have the job now: stop writing and return
    /// [`JobEnd::Released`].
    pub fn lease_lost(&self) -> bool {
        self.control.lost.load(Ordering::SeqCst)
    }

    /// Moves the job to a non-final state (the runner writes the final one) unless
    /// it is in `unless`; false if it did not move (or the lease is gone).
    pub fn set_state(&self, state: JobState, unless: &[JobState]) -> Result<bool, CoreError> {
        self.store
            .set_job_state(
                &self.record.id,
                Some(&self.owner),
                state,
                None,
                now_ms(),
                unless,
            )
            .map_err(store_error)
    }

    /// Records progress and, when given, the checkpoint a resumed run starts from.
    /// False when the lease is gone (the write was refused).
    pub fn save_progress(
        &self,
        progress: JobProgress,
        checkpoint: Option<&str>,
    ) -> Result<bool, CoreError> {
        let saved = self
            .store
            .save_job_progress(&self.record.id, &self.owner, progress, checkpoint, now_ms())
            .map_err(store_error)?;
        if !saved {
            self.control.lost.store(true, Ordering::SeqCst);
        }
        Ok(saved)
    }
}

pub(crate) use crate::common::now_ms;

/// The runner: claims jobs for its handlers and works on them.
pub struct JobRunner {
    store: Arc<dyn JobStore>,
    owner: Arc<str>,
    lease: Duration,
    poll: Duration,
    handlers: Mutex<HashMap<JobKind, Arc<dyn JobHandler>>>,
    /// Jobs this runner works on, by ID.
    running: Mutex<HashMap<String, (JobKind, Arc<Control>)>>,
    wakeup: tokio::sync::Notify,
}

impl std::fmt::Debug for JobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The running loop of a [`JobRunner`]; aborting it (or dropping the runtime) stops
/// every job it works on at once, as a killed process would.
#[derive(Debug)]
pub struct RunnerTask(tokio::task::JoinHandle<()>);

impl RunnerTask {
    pub fn abort(&self) {
        self.0.abort();
    }
}

impl JobRunner {
    pub fn new(store: Arc<dyn JobStore>, config: &JobsConfig) -> Self {
        let owner = if config.node.is_empty() {
            format!("node-{:016x}", rand::random::<u64>())
        } else {
            config.node.clone()
        };
        Self {
            store,
            owner: owner.into(),
            lease: Duration::from_secs(config.lease_secs.max(1)),
            poll: Duration::from_millis(config.poll_millis.max(10)),
            handlers: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            wakeup: tokio::sync::Notify::new(),
        }
    }

    /// [`Self::new`] with a lease in milliseconds (tests of takeover).
    pub fn with_lease(
        store: Arc<dyn JobStore>,
        node: &str,
        lease: Duration,
        poll: Duration,
    ) -> Self {
        let mut runner = Self::new(
            store,
            &JobsConfig {
                node: node.to_owned(),
                ..JobsConfig::default()
            },
        );
        runner.lease = lease.max(Duration::from_millis(30));
        runner.poll = poll;
        runner
    }

    /// This runner's name in its leases.
    pub fn node(&self) -> &str {
        &self.owner
    }

    /// Adds the handler of a kind (replacing one registered before).
    pub fn register(&self, handler: Arc<dyn JobHandler>) {
        if let Ok(mut handlers) = self.handlers.lock() {
            handlers.insert(handler.kind(), handler);
        }
        self.wakeup.notify_one();
    }

    /// Creates a `Submitted` job and wakes the runner.
    pub fn submit(&self, id: &str, kind: JobKind, payload: &str) -> Result<(), CoreError> {
        self.store
            .insert_job(&NewJob {
                id,
                kind: kind.as_str(),
                payload,
                at_ms: now_ms(),
            })
            .map_err(store_error)?;
        self.wake();
        Ok(())
    }

    /// A job was created or changed elsewhere: look for work now.
    pub fn wake(&self) {
        self.wakeup.notify_one();
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, CoreError> {
        self.store.job(id).map_err(store_error)
    }

    /// Jobs of a kind (every kind for `None`), oldest first.
    pub fn list(&self, kind: Option<JobKind>) -> Result<Vec<JobRecord>, CoreError> {
        self.store
            .list_jobs(kind.map(JobKind::as_str))
            .map_err(store_error)
    }

    /// Moves a job to `state` from outside its run (unless final or in `unless`).
    pub fn set_state(
        &self,
        id: &str,
        state: JobState,
        message: Option<&str>,
        unless: &[JobState],
    ) -> Result<bool, CoreError> {
        self.store
            .set_job_state(id, None, state, message, now_ms(), unless)
            .map_err(store_error)
    }

    /// Asks a job to stop: one nobody works on ends `Stopped` at once, a running one
    /// goes `Stopping` and its handler stops it. False when it had ended already.
    pub fn request_stop(&self, id: &str) -> Result<bool, CoreError> {
        let changed = self
            .store
            .request_job_stop(id, now_ms())
            .map_err(store_error)?;
        if let Some((_, control)) = self.running.lock().ok().and_then(|r| r.get(id).cloned()) {
            control.stop.store(true, Ordering::SeqCst);
        }
        self.wake();
        Ok(changed)
    }

    /// Starts claiming and running jobs; call once, inside the runtime.
    pub fn start(self: &Arc<Self>) -> RunnerTask {
        let runner = Arc::clone(self);
        RunnerTask(tokio::spawn(async move { runner.run_loop().await }))
    }

    fn kinds_with_room(&self) -> Vec<&'static str> {
        let handlers: Vec<(JobKind, usize)> = match self.handlers.lock() {
            Ok(h) => h
                .values()
                .map(|h| (h.kind(), h.max_running().max(1)))
                .collect(),
            Err(_) => return Vec::new(),
        };
        let Ok(running) = self.running.lock() else {
            return Vec::new();
        };
        handlers
            .into_iter()
            .filter(|(kind, max)| running.values().filter(|(k, _)| k == kind).count() < *max)
            .map(|(kind, _)| kind.as_str())
            .collect()
    }

    fn claim(&self, kinds: &[&str]) -> Result<Option<JobRecord>, StoreError> {
        let running: Vec<String> = self
            .running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        self.store.claim_job(&Claim {
            owner: &self.owner,
            kinds,
            running: &running,
            now_ms: now_ms(),
            lease_ms: self.lease.as_millis() as i64,
        })
    }

    async fn run_loop(self: Arc<Self>) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            loop {
                let kinds = self.kinds_with_room();
                if kinds.is_empty() {
                    break;
                }
                match self.claim(&kinds) {
                    Ok(Some(job)) => {
                        let Some(kind) = JobKind::parse(&job.kind) else {
                            break;
                        };
                        let control = Arc::new(Control::default());
                        control.stop.store(job.stop_requested, Ordering::SeqCst);
                        if let Ok(mut running) = self.running.lock() {
                            running.insert(job.id.clone(), (kind, Arc::clone(&control)));
                        }
                        tasks.spawn(Arc::clone(&self).work(kind, job, control));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim a job");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
    }

    /// Runs one claimed job: its handler beside a heartbeat that renews the lease and
    /// relays stop requests made through another runner.
    async fn work(self: Arc<Self>, kind: JobKind, record: JobRecord, control: Arc<Control>) {
        let id = record.id.clone();
        let handler = self
            .handlers
            .lock()
            .ok()
            .and_then(|h| h.get(&kind).cloned());
        let end = match handler {
            None => JobEnd::Released,
            Some(handler) => {
                let job = ActiveJob {
                    record: Arc::new(record),
                    control: Arc::clone(&control),
                    store: Arc::clone(&self.store),
                    owner: Arc::clone(&self.owner),
                };
                tracing::info!(job = %id, kind = %kind, resumed = job.resumed(), "job claimed");
                let run = std::panic::AssertUnwindSafe(handler.run(job)).catch_unwind();
                tokio::pin!(run);
                let mut beat = tokio::time::interval(self.lease / 3);
                beat.tick().await;
                loop {
                    tokio::select! {
                        ended = &mut run => break match ended {
                            Ok(end) => end,
                            Err(_) => {
                                tracing::error!(job = %id, "the job's handler panicked");
                                JobEnd::ended(JobState::Failed, Some("the job stopped on an internal error".into()))
                            }
                        },
                        _ = beat.tick() => self.heartbeat(&id, &control),
                    }
                }
            }
        };
        let recorded = match &end {
            JobEnd::Ended { state, message } => self
                .store
                .set_job_state(
                    &id,
                    Some(&self.owner),
                    *state,
                    message.as_deref(),
                    now_ms(),
                    &[],
                )
                .map(|_| ()),
            JobEnd::Released => self.store.release_job(&id, &self.owner),
        };
        if let Err(e) = recorded {
            tracing::error!(job = %id, error = %e, "cannot record how a job ended");
        }
        tracing::info!(job = %id, kind = %kind, end = ?end, "job left");
        if let Ok(mut running) = self.running.lock() {
            running.remove(&id);
        }
        self.wake();
    }

    fn heartbeat(&self, id: &str, control: &Control) {
        match self
            .store
            .renew_job_lease(id, &self.owner, now_ms(), self.lease.as_millis() as i64)
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %id, "the job's lease was lost; another runner may have it");
                control.lost.store(true, Ordering::SeqCst);
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "cannot renew a job's lease"),
        }
        if let Ok(Some(row)) = self.store.job(id) {
            if row.stop_requested {
                control.stop.store(true, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_store::SqliteStore;
    use std::time::Instant;

    /// Counts its runs; each run saves a checkpoint, then waits for `release` (or a
    /// stop) before it ends.
    struct Recorder {
        runs: Mutex<Vec<(String, String, Option<String>)>>,
        release: tokio::sync::Semaphore,
        node: String,
    }

    #[async_trait]
    impl JobHandler for Recorder {
        fn kind(&self) -> JobKind {
            JobKind::Batch
        }
        fn max_running(&self) -> usize {
            2
        }
        async fn run(&self, job: ActiveJob) -> JobEnd {
            if let Ok(mut runs) = self.runs.lock() {
                runs.push((
                    job.id().to_owned(),
                    self.node.clone(),
                    job.checkpoint().map(str::to_owned),
                ));
            }
            let _ = job.set_state(JobState::InProgress, &[JobState::Stopping]);
            let _ = job.save_progress(
                JobProgress {
                    done: 1,
                    total: Some(2),
                },
                Some(&self.node),
            );
            loop {
                if job.stop_requested() {
                    return JobEnd::ended(JobState::Stopped, None);
                }
                if job.lease_lost() {
                    return JobEnd::Released;
                }
                if let Ok(permit) = self.release.try_acquire() {
                    permit.forget();
                    return JobEnd::ended(JobState::Completed, None);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    fn recorder(node: &str, released: usize) -> Arc<Recorder> {
        Arc::new(Recorder {
            runs: Mutex::new(Vec::new()),
            release: tokio::sync::Semaphore::new(released),
            node: node.to_owned(),
        })
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn state(store: &SqliteStore, id: &str) -> JobState {
        store
            .job(id)
            .ok()
            .flatten()
            .map(|j| j.state)
            .unwrap_or(JobState::Submitted)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_runners_on_one_store_run_each_job_once() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let (ha, hb) = (recorder("a", 1_000), recorder("b", 1_000));
        let a = Arc::new(JobRunner::with_lease(
            store.clone(),
            "a",
            Duration::from_secs(5),
            Duration::from_millis(10),
        ));
        let b = Arc::new(JobRunner::with_lease(
            store.clone(),
            "b",
            Duration::from_secs(5),
            Duration::from_millis(10),
        ));
        a.register(ha.clone());
        b.register(hb.clone());
        let ids: Vec<String> = (0..30).map(|i| format!("job{i:02}")).collect();
        for id in &ids {
            a.submit(id, JobKind::Batch, "{}").expect("submit");
        }
        let (ta, tb) = (a.start(), b.start());
        wait_for("every job to complete", || {
            ids.iter()
                .all(|id| state(&store, id) == JobState::Completed)
        })
        .await;
        ta.abort();
        tb.abort();
        let mut ran: Vec<String> = ha
            .runs
            .lock()
            .expect("runs")
            .iter()
            .map(|r| r.0.clone())
            .collect();
        ran.extend(hb.runs.lock().expect("runs").iter().map(|r| r.0.clone()));
        ran.sort();
        assert_eq!(ran, ids, "each job ran exactly once over both runners");
        let row = store.job("job00").expect("get").expect("row");
        assert_eq!(
            (row.progress, row.owner),
            (
                JobProgress {
                    done: 1,
                    total: Some(2)
                },
                None
            )
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_runners_job_is_taken_over_after_its_lease_from_its_checkpoint() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let lease = Duration::from_millis(300);
        let dead = recorder("dead", 0);
        let a = Arc::new(JobRunner::with_lease(
            store.clone(),
            "dead",
            lease,
            Duration::from_millis(10),
        ));
        a.register(dead.clone());
        a.submit("j1", JobKind::Batch, "{}").expect("submit");
        let task = a.start();
        wait_for("the first runner to save a checkpoint", || {
            store
                .job("j1")
                .ok()
                .flatten()
                .and_then(|j| j.checkpoint)
                .is_some()
        })
        .await;
        task.abort(); // as kill -9: no release, the lease runs out
        let killed_at = Instant::now();
        let heir = recorder("heir", 1);
        let b = Arc::new(JobRunner::with_lease(
            store.clone(),
            "heir",
            lease,
            Duration::from_millis(10),
        ));
        b.register(heir.clone());
        let tb = b.start();
        wait_for("the job to complete on the second runner", || {
            state(&store, "j1") == JobState::Completed
        })
        .await;
        tb.abort();
        assert!(
            killed_at.elapsed() >= lease / 2,
            "taken over only after the lease ran out"
        );
        let runs = heir.runs.lock().expect("runs").clone();
        assert_eq!(
            runs,
            vec![(
                "j1".to_string(),
                "heir".to_string(),
                Some("dead".to_string())
            )],
            "the heir ran it once, from the dead runner's checkpoint"
        );
        assert_eq!(store.job("j1").expect("get").expect("row").claims, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_requests_reach_running_and_waiting_jobs() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let handler = recorder("a", 0);
        let runner = Arc::new(JobRunner::with_lease(
            store.clone(),
            "a",
            Duration::from_secs(5),
            Duration::from_millis(10),
        ));
        runner.register(handler.clone());
        for id in ["r1", "r2", "waiting"] {
            runner.submit(id, JobKind::Batch, "{}").expect("submit");
        }
        let task = runner.start();
        wait_for("two jobs to run", || {
            handler.runs.lock().map(|r| r.len()).unwrap_or(0) == 2
        })
        .await;
        assert_eq!(
            state(&store, "waiting"),
            JobState::Submitted,
            "at most max_running at once"
        );
        assert!(runner.request_stop("waiting").expect("stop"));
        assert_eq!(
            state(&store, "waiting"),
            JobState::Stopped,
            "a job nobody runs stops at once"
        );
        // A stop made through another runner on the same store reaches the owner too.
        let other = JobRunner::with_lease(
            store.clone(),
            "b",
            Duration::from_secs(5),
            Duration::from_millis(10),
        );
        assert!(other.request_stop("r1").expect("stop"));
        assert_eq!(state(&store, "r1"), JobState::Stopping);
        assert!(runner.request_stop("r2").expect("stop"));
        wait_for("both running jobs to stop", || {
            state(&store, "r1") == JobState::Stopped && state(&store, "r2") == JobState::Stopped
        })
        .await;
        task.abort();
        assert!(
            !runner.request_stop("r1").expect("stop"),
            "a stopped job stays stopped"
        );
        assert_eq!(
            handler.runs.lock().expect("runs").len(),
            2,
            "the stopped waiting job never ran"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_fails_its_job_and_the_runner_goes_on() {
        struct Panics;
        #[async_trait]
        impl JobHandler for Panics {
            fn kind(&self) -> JobKind {
                JobKind::Ingestion
            }
            async fn run(&self, job: ActiveJob) -> JobEnd {
                if job.id() == "bad" {
                    panic!("handler bug");
                }
                JobEnd::ended(JobState::Completed, None)
            }
        }
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let runner = Arc::new(JobRunner::with_lease(
            store.clone(),
            "a",
            Duration::from_secs(5),
            Duration::from_millis(10),
        ));
        runner.register(Arc::new(Panics));
        runner
            .submit("bad", JobKind::Ingestion, "{}")
            .expect("submit");
        runner
            .submit("good", JobKind::Ingestion, "{}")
            .expect("submit");
        let task = runner.start();
        wait_for("both jobs to end", || {
            state(&store, "bad") == JobState::Failed && state(&store, "good") == JobState::Completed
        })
        .await;
        task.abort();
    }
}
