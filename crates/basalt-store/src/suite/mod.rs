//! The store suite: every test here runs on SQLite and on PostgreSQL (see
//! [`crate::testing`]), so the two backends keep one behaviour.

mod agents;
mod batch;
mod custom_models;
mod guardrails;
mod jobs;
mod keys;
mod knowledge;
mod profiles;
mod provisioned;
mod responses;

use std::time::{Duration, Instant};

/// Polls `check` until it holds or `within` passes (PostgreSQL's key watcher learns
/// of changes asynchronously; SQLite at once).
pub(crate) fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
