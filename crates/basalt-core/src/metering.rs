//! Metering: every invocation becomes an [`InvocationRecord`] in the store and a set of
//! Prometheus metrics named after Bedrock's CloudWatch metrics.
//!
//! Records go through a channel to one writer thread that inserts them in batches, so
//! the request path never waits on the database.

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
}

/// Hands records to the writer thread and updates metrics.
#[derive(Debug, Clone)]
pub struct Meter {
    sender: mpsc::Sender<Message>,
}

/// How long records gather before one write.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Most records in one write.
const MAX_BATCH: usize = 512;

enum Message {
    Record(Box<InvocationRecord>),
    Flush(mpsc::Sender<()>),
}

impl Meter {
    /// Starts the writer thread over `log`.
    pub fn start(log: Arc<dyn InvocationLog>) -> Self {
        let (sender, receiver) = mpsc::channel::<Message>();
        let spawned = std::thread::Builder::new().name("basalt-meter".into()).spawn(move || {
            let mut pending: Vec<InvocationRecord> = Vec::new();
            let mut waiters: Vec<mpsc::Sender<()>> = Vec::new();
            while let Ok(first) = receiver.recv() {
                // The first record opens a batch window. Sleeping through it, rather
                // than waiting on the channel, lets the request threads queue their
                // records without waking this thread once per request.
                if matches!(first, Message::Record(_)) {
                    std::thread::sleep(BATCH_WINDOW);
                }
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    match message {
                        Message::Record(r) => pending.push(*r),
                        Message::Flush(w) => waiters.push(w),
                    }
                    if pending.len() < MAX_BATCH {
                        next = receiver.try_recv().ok();
                    }
                }
                if !pending.is_empty() {
                    if let Err(e) = log.record_invocations(&pending) {
                        tracing::error!(error = %e, records = pending.len(), "cannot write invocation records");
                    }
                    pending.clear();
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the metering thread; invocations will not be recorded");
        }
        Self { sender }
    }

    /// Records one invocation.
    pub fn record(&self, record: InvocationRecord) {
        let labels = [
            ("model_id", record.model_id.clone()),
            ("operation", record.operation.clone()),
        ];
        metrics::counter!(names::INVOCATIONS, &labels).increment(1);
        metrics::histogram!(names::LATENCY, &labels).record(record.latency_ms as f64 / 1000.0);
        if let Some(ttft) = record.first_token_ms {
            metrics::histogram!(names::TIME_TO_FIRST_TOKEN, &labels).record(ttft as f64 / 1000.0);
        }
        metrics::counter!(names::INPUT_TOKENS, &labels).increment(record.input_tokens);
        metrics::counter!(names::OUTPUT_TOKENS, &labels).increment(record.output_tokens);
        match record.outcome.as_str() {
            "throttled" => metrics::counter!(names::THROTTLES, &labels).increment(1),
            "client_error" => metrics::counter!(names::CLIENT_ERRORS, &labels).increment(1),
            "server_error" => metrics::counter!(names::SERVER_ERRORS, &labels).increment(1),
            _ => {}
        }
        metrics::counter!(names::COST, &labels).increment((record.cost_usd * 1e9) as u64);
        let _ = self.sender.send(Message::Record(Box::new(record)));
    }

    /// Waits until everything recorded so far is in the store.
    pub fn flush(&self, timeout: Duration) {
        let (tx, rx) = mpsc::channel();
        if self.sender.send(Message::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}
