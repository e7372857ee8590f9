//! Metering: every invocation becomes an [`InvocationRecord`] in the store and a set of
//! Prometheus metrics named after Bedrock's CloudWatch metrics.
//!
//! Records go through a channel to one writer thread that inserts them in batches and
//! publishes their metrics, so the request path never waits on the database and pays
//! no metrics-registry lookups: a batch looks each metric up once per model and
//! operation. Metrics are therefore up to one batch window late; `/metrics` flushes the
//! meter before it renders, so a scrape sees every invocation recorded before it.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use basalt_store::{InvocationLog, InvocationRecord};

/// Metric names (CloudWatch `AWS/Bedrock` equivalents in comments).
pub mod names {
    /// `Invocations`
    pub const INVOCATIONS: &str = "basalt_invocations_total";
    /// `InvocationLatency`
    pub const LATENCY: &str = "basalt_invocation_latency_seconds";
    /// `TimeToFirstToken`
    pub const TIME_TO_FIRST_TOKEN: &str = "basalt_time_to_first_token_seconds";
    /// `InputTokenCount`
    pub const INPUT_TOKENS: &str = "basalt_input_tokens_total";
    /// `OutputTokenCount`
    pub const OUTPUT_TOKENS: &str = "basalt_output_tokens_total";
    /// `InvocationThrottles`
    pub const THROTTLES: &str = "basalt_invocation_throttles_total";
    /// `InvocationClientErrors`
    pub const CLIENT_ERRORS: &str = "basalt_invocation_client_errors_total";
    /// `InvocationServerErrors`
    pub const SERVER_ERRORS: &str = "basalt_invocation_server_errors_total";
    /// Cost from catalog prices, in billionths of a US dollar (counters are integers).
    pub const COST: &str = "basalt_cost_nanodollars_total";
    /// Metering writes the store could not take (they are tried again).
    pub const UNWRITTEN_RETRIES: &str = "basalt_metering_store_retries_total";
}

/// Hands records to the writer thread and updates metrics.
#[derive(Debug, Clone)]
pub struct Meter {
    sender: mpsc::Sender<Message>,
}

/// How long records gather before one write.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Most records in one write. A full batch is followed by the next at once, so the
/// writer keeps up as long as SQLite inserts faster than records arrive (one batch per
/// window capped metering at 512 / 20 ms, about 25k invocations a second, and the queue
/// grew beyond that).
const MAX_BATCH: usize = 2048;

enum Message {
    Record(Box<InvocationRecord>),
    Flush(mpsc::Sender<()>),
}

impl Meter {
    /// Starts the writer thread over `log`.
    pub fn start(log: Arc<dyn InvocationLog>) -> Self {
        let (sender, receiver) = mpsc::channel::<Message>();
        let spawned = std::thread::Builder::new()
            .name("basalt-meter".into())
            .spawn(move || {
                // Records not yet in the store: a batch the store could not take (a shared
                // database down or restarting) stays here and is written again, up to
                // MAX_UNWRITTEN records.
                let mut unwritten: std::collections::VecDeque<Vec<InvocationRecord>> =
                    std::collections::VecDeque::new();
                let mut waiters: Vec<mpsc::Sender<()>> = Vec::new();
                // Whether the last batch was full: records are arriving faster than one
                // batch per window, so the next one is written at once.
                let mut behind = false;
                loop {
                    let first = if unwritten.is_empty() {
                        match receiver.recv() {
                            Ok(message) => Some(message),
                            Err(_) => break,
                        }
                    } else {
                        match receiver.recv_timeout(RETRY_AFTER) {
                            Ok(message) => Some(message),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    };
                    // The first record opens a batch window. Sleeping through it, rather
                    // than waiting on the channel, lets the request threads queue their
                    // records without waking this thread once per request.
                    if !behind && unwritten.is_empty() && matches!(first, Some(Message::Record(_)))
                    {
                        std::thread::sleep(BATCH_WINDOW);
                    }
                    let mut fresh: Vec<InvocationRecord> = Vec::new();
                    let mut next = first;
                    while let Some(message) = next.take() {
                        match message {
                            Message::Record(r) => fresh.push(*r),
                            Message::Flush(w) => waiters.push(w),
                        }
                        if fresh.len() < MAX_BATCH {
                            next = receiver.try_recv().ok();
                        }
                    }
                    behind = fresh.len() >= MAX_BATCH;
                    if !fresh.is_empty() {
                        publish_metrics(&fresh);
                    }
                    write(log.as_ref(), &mut unwritten, fresh);
                    for w in waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
                // The server is stopping: one last try for what is still unwritten.
                write(log.as_ref(), &mut unwritten, Vec::new());
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the metering thread; invocations will not be recorded");
        }
        Self { sender }
    }

    /// Records one invocation.
    pub fn record(&self, record: InvocationRecord) {
        let _ = self.sender.send(Message::Record(Box::new(record)));
    }

    /// Waits until everything recorded so far is in the store and in the metrics.
    pub fn flush(&self, timeout: Duration) {
        let (tx, rx) = mpsc::channel();
        if self.sender.send(Message::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

/// How long the writer waits before it writes again records the store could not take.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Most records kept for another try; beyond it the oldest are dropped (and logged).
const MAX_UNWRITTEN: usize = 200_000;

/// Writes what is unwritten and then `fresh` to the store, a batch at a time. A batch
/// the store is unavailable for stays, exactly as it was, for the next try: the store
/// writes a batch once even when a try's outcome was lost with its connection (it
/// knows a batch by a digest of its records), so a batch is never re-cut. One it
/// refuses otherwise is dropped and logged.
fn write(
    log: &dyn InvocationLog,
    unwritten: &mut std::collections::VecDeque<Vec<InvocationRecord>>,
    fresh: Vec<InvocationRecord>,
) {
    if !fresh.is_empty() {
        unwritten.push_back(fresh);
    }
    while let Some(batch) = unwritten.front() {
        match log.record_invocations(batch) {
            Ok(()) => {
                unwritten.pop_front();
            }
            Err(basalt_store::StoreError::Unavailable(why)) => {
                metrics::counter!(names::UNWRITTEN_RETRIES).increment(1);
                let waiting: usize = unwritten.iter().map(Vec::len).sum();
                tracing::warn!(error = %why, records = waiting, "the store cannot take invocation records now; they are kept and written again");
                let mut excess = waiting.saturating_sub(MAX_UNWRITTEN);
                while excess > 0 {
                    let Some(oldest) = unwritten.pop_front() else {
                        break;
                    };
                    excess = excess.saturating_sub(oldest.len());
                    tracing::error!(dropped = oldest.len(), "the store has been unavailable too long; the oldest invocation records are dropped");
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "cannot write invocation records");
                unwritten.pop_front();
            }
        }
    }
}

/// The metrics of a batch of records, each metric looked up once per model and
/// operation in the batch.
fn publish_metrics(records: &[InvocationRecord]) {
    let mut groups: Vec<(&str, &str, Vec<&InvocationRecord>)> = Vec::new();
    for r in records {
        match groups
            .iter_mut()
            .find(|(model, operation, _)| *model == r.model_id && *operation == r.operation)
        {
            Some((_, _, members)) => members.push(r),
            None => groups.push((&r.model_id, &r.operation, vec![r])),
        }
    }
    for (model, operation, members) in groups {
        let labels = [
            ("model_id", model.to_string()),
            ("operation", operation.to_string()),
        ];
        let sum = |f: fn(&InvocationRecord) -> u64| members.iter().map(|r| f(r)).sum::<u64>();
        let count = |outcome: &str| members.iter().filter(|r| r.outcome == outcome).count() as u64;
        metrics::counter!(names::INVOCATIONS, &labels).increment(members.len() as u64);
        let latency = metrics::histogram!(names::LATENCY, &labels);
        for r in &members {
            latency.record(r.latency_ms as f64 / 1000.0);
        }
        if members.iter().any(|r| r.first_token_ms.is_some()) {
            let ttft = metrics::histogram!(names::TIME_TO_FIRST_TOKEN, &labels);
            for t in members.iter().filter_map(|r| r.first_token_ms) {
                ttft.record(t as f64 / 1000.0);
            }
        }
        metrics::counter!(names::INPUT_TOKENS, &labels).increment(sum(|r| r.input_tokens));
        metrics::counter!(names::OUTPUT_TOKENS, &labels).increment(sum(|r| r.output_tokens));
        for (outcome, name) in [
            ("throttled", names::THROTTLES),
            ("client_error", names::CLIENT_ERRORS),
            ("server_error", names::SERVER_ERRORS),
        ] {
            let n = count(outcome);
            if n > 0 {
                metrics::counter!(name, &labels).increment(n);
            }
        }
        metrics::counter!(names::COST, &labels).increment(sum(|r| (r.cost_usd * 1e9) as u64));
    }
}
