//! The audit log: every control-plane change (and every refused attempt at one) with
//! who made it, what it was, on what, when and how it was answered. Written by the
//! edge after it answers a changing request, by the CLI for the key changes it makes;
//! read by administrators (`GET /basalt/v1/audit`, `basalt audit`).

use std::sync::Arc;

pub use basalt_store::AuditRecord;
use basalt_store::{AuditQuery, AuditStore};

use crate::common::store_error;
use crate::CoreError;

/// The most entries one query returns.
pub const MAX_PAGE: usize = 1_000;

pub struct AuditLog {
    store: Arc<dyn AuditStore>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// One page of entries and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// The sequence number to ask `after` for the next page; `None` on the last.
    pub next_after: Option<i64>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Self { store }
    }

    /// Records one entry. A failure is logged, not returned: the change it records has
    /// happened already, and its answer must not turn into an error.
    pub fn record(&self, entry: &AuditRecord) {
        if let Err(e) = self.store.record_audit(entry) {
            tracing::error!(error = %e, action = %entry.action, key = %entry.key_name, "cannot write an audit entry");
        }
    }

    /// Entries in `[since_ms, until_ms)`, oldest first, `limit` at most (1..=[`MAX_PAGE`]).
    pub fn page(
        &self,
        since_ms: i64,
        until_ms: i64,
        key: Option<&str>,
        after: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, CoreError> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(CoreError::Validation(format!(
                "maxResults must be 1 to {MAX_PAGE}"
            )));
        }
        let rows = self
            .store
            .audit_log(&AuditQuery {
                since_ms,
                until_ms,
                key,
                after,
                limit: limit + 1,
            })
            .map_err(store_error("audit"))?;
        let more = rows.len() > limit;
        let mut rows = rows;
        rows.truncate(limit);
        let next_after = if more {
            rows.last().map(|(seq, _)| *seq)
        } else {
            None
        };
        Ok(AuditPage {
            entries: rows.into_iter().map(|(_, r)| r).collect(),
            next_after,
        })
    }
}
