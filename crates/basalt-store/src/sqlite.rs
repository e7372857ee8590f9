//! The embedded SQLite store.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{
    AuditQuery, AuditRecord, AuditStore, InvocationLog, InvocationRecord, InvocationSample,
    KeyLimits, KeyRecord, KeyStore, QuotaClaim, QuotaStore, QuotaWindow, StoreError, UsageRow,
};

/// Migrations, applied in order; the index + 1 is the schema version.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_keys_and_invocations.sql"),
    include_str!("../migrations/0002_guardrails.sql"),
    include_str!("../migrations/0003_quotas.sql"),
    include_str!("../migrations/0004_batch_jobs.sql"),
    include_str!("../migrations/0005_provisioned.sql"),
    include_str!("../migrations/0006_knowledge_bases.sql"),
    include_str!("../migrations/0007_key_retrieval_filter.sql"),
    include_str!("../migrations/0008_key_version.sql"),
    include_str!("../migrations/0009_jobs.sql"),
    include_str!("../migrations/0010_inference_profiles.sql"),
    include_str!("../migrations/0011_agents.sql"),
    include_str!("../migrations/0012_custom_models.sql"),
    include_str!("../migrations/0013_responses.sql"),
    include_str!("../migrations/0014_key_policy_and_audit.sql"),
    include_str!("../migrations/0015_invocation_node.sql"),
];

/// SQLite in WAL mode behind a mutex (writes are short; metering is batched by callers).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// A second connection to the same file that only answers [`KeyStore::change_marker`],
    /// which authenticated requests ask: it never waits behind the main connection's
    /// writes (a metering batch of up to 2048 rows holds that lock for milliseconds).
    /// `None` for an in-memory database, which has no second connection.
    watcher: Option<Mutex<Connection>>,
}

/// A unique-constraint failure of a record with a unique name and ID: `Duplicate("name")`
/// when the constraint names a `name` column, else `Duplicate("id")`.
pub(crate) fn name_or_id_taken(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, Some(m))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            if m.contains("name") {
                StoreError::Duplicate("name")
            } else {
                StoreError::Duplicate("id")
            }
        }
        _ => db(e),
    }
}

/// A SQLite failure as the store's: a full disk (or a file the process can no longer
/// write) is `Unavailable` — the request may succeed once space returns, and callers
/// answer 503 and keep what they could not write — anything else a database error.
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure) => {
            StoreError::Unavailable(format!("SQLite: {e}"))
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// A unique-constraint violation as the duplicate it is (`client token`, `name`,
/// else `id`), any other failure as a database error.
pub(crate) fn unique_violation(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, Some(m))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            if m.contains("client_token") {
                StoreError::Duplicate("client token")
            } else if m.contains("name") {
                StoreError::Duplicate("name")
            } else {
                StoreError::Duplicate("id")
            }
        }
        _ => db(e),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db)?;
        let mut store = Self::prepare(conn)?;
        let watcher = Connection::open(path).map_err(db)?;
        watcher
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        store.watcher = Some(Mutex::new(watcher));
        Ok(store)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::prepare(Connection::open_in_memory().map_err(db)?)
    }

    fn prepare(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction().map_err(db)?;
            tx.execute_batch(sql).map_err(db)?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)
                .map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            watcher: None,
        })
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::Database("connection lock poisoned".into()))?;
        f(&mut conn)
    }
}

/// A claim's upsert (the same text runs on SQLite and PostgreSQL): a new window takes
/// the claim as it is (checked against the limits beforehand), an existing one only if
/// each positive part stays within its limit. No row comes back when it was refused.
pub(crate) const CLAIM_QUOTA_SQL: &str =
    "INSERT INTO quota_windows (key_id, model_id, window_start_ms, requests, tokens)
     VALUES ($1, $2, $3,
             CASE WHEN CAST($4 AS BIGINT) < 0 THEN 0 ELSE CAST($4 AS BIGINT) END,
             CASE WHEN CAST($5 AS BIGINT) < 0 THEN 0 ELSE CAST($5 AS BIGINT) END)
     ON CONFLICT (key_id, model_id, window_start_ms) DO UPDATE
     SET requests = CASE WHEN quota_windows.requests + CAST($4 AS BIGINT) < 0 THEN 0
                         ELSE quota_windows.requests + CAST($4 AS BIGINT) END,
         tokens = CASE WHEN quota_windows.tokens + CAST($5 AS BIGINT) < 0 THEN 0
                       ELSE quota_windows.tokens + CAST($5 AS BIGINT) END
     WHERE (CAST($4 AS BIGINT) <= 0 OR CAST($6 AS BIGINT) IS NULL
            OR quota_windows.requests + CAST($4 AS BIGINT) <= CAST($6 AS BIGINT))
       AND (CAST($5 AS BIGINT) <= 0 OR CAST($7 AS BIGINT) IS NULL
            OR quota_windows.tokens + CAST($5 AS BIGINT) <= CAST($7 AS BIGINT))
     RETURNING requests, tokens";

/// Whether a claim could fit an empty window (a new row is not checked by the upsert).
pub(crate) fn claim_fits_alone(
    claim: &QuotaClaim,
    max_requests: Option<u64>,
    max_tokens: Option<u64>,
) -> bool {
    let fits = |part: i64, max: Option<u64>| part <= 0 || max.is_none_or(|m| part as u64 <= m);
    fits(claim.requests, max_requests) && fits(claim.tokens, max_tokens)
}

pub(crate) fn clamp_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        access_key_id: row.get(2)?,
        bearer_sha256: row.get(3)?,
        is_admin: row.get::<_, i64>(4)? != 0,
        created_at: row.get(5)?,
        revoked_at: row.get(6)?,
        limits: KeyLimits {
            requests_per_minute: row.get::<_, Option<i64>>(7)?.map(|v| v.max(0) as u64),
            tokens_per_minute: row.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
            monthly_budget_usd: row.get(9)?,
        },
        retrieval_filter: row.get(10)?,
        policy: row.get(11)?,
    })
}

const KEY_COLUMNS: &str =
    "id, name, access_key_id, bearer_sha256, is_admin, created_at, revoked_at,
     requests_per_minute, tokens_per_minute, monthly_budget_usd, retrieval_filter, policy";

impl KeyStore for SqliteStore {
    fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO api_keys (id, name, access_key_id, bearer_sha256, is_admin, created_at, revoked_at,
                 requests_per_minute, tokens_per_minute, monthly_budget_usd, retrieval_filter, policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![key.id, key.name, key.access_key_id, key.bearer_sha256, key.is_admin as i64, key.created_at, key.revoked_at,
                    key.limits.requests_per_minute.map(|v| v as i64), key.limits.tokens_per_minute.map(|v| v as i64), key.limits.monthly_budget_usd,
                    key.retrieval_filter, key.policy],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Duplicate("key id")
                }
                other => db(other),
            })?;
            Ok(())
        })
    }

    fn key_by_access_key_id(&self, access_key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE access_key_id = ?1"),
                [access_key_id],
                key_from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn key_by_bearer_sha256(&self, bearer_sha256: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE bearer_sha256 = ?1"),
                [bearer_sha256],
                key_from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], key_from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn revoke_key(&self, id_or_access_key_id: &str, at: i64) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE api_keys SET revoked_at = ?2
                     WHERE (id = ?1 OR access_key_id = ?1) AND revoked_at IS NULL",
                    params![id_or_access_key_id, at],
                )
                .map_err(db)?;
            Ok(changed > 0)
        })
    }

    fn set_key_limits(
        &self,
        id_or_access_key_id: &str,
        limits: &KeyLimits,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE api_keys SET requests_per_minute = ?2, tokens_per_minute = ?3, monthly_budget_usd = ?4
                     WHERE id = ?1 OR access_key_id = ?1",
                    params![
                        id_or_access_key_id,
                        limits.requests_per_minute.map(|v| v as i64),
                        limits.tokens_per_minute.map(|v| v as i64),
                        limits.monthly_budget_usd
                    ],
                )
                .map_err(db)?;
            Ok(changed > 0)
        })
    }

    fn set_key_retrieval_filter(
        &self,
        id_or_access_key_id: &str,
        filter: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE api_keys SET retrieval_filter = ?2 WHERE id = ?1 OR access_key_id = ?1",
                    params![id_or_access_key_id, filter],
                )
                .map_err(db)?;
            Ok(changed > 0)
        })
    }

    fn set_key_policy(
        &self,
        id_or_access_key_id: &str,
        policy: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE api_keys SET policy = ?2 WHERE id = ?1 OR access_key_id = ?1",
                    params![id_or_access_key_id, policy],
                )
                .map_err(db)?;
            Ok(changed > 0)
        })
    }

    /// The `key_version` row, which triggers move on every change to `api_keys`
    /// from any connection or process (and nothing else moves).
    fn change_marker(&self) -> Result<i64, StoreError> {
        let read = |conn: &Connection| {
            conn.prepare_cached("SELECT version FROM key_version WHERE id = 1")
                .and_then(|mut statement| statement.query_row([], |r| r.get(0)))
                .map_err(db)
        };
        match &self.watcher {
            Some(watcher) => read(
                &*watcher
                    .lock()
                    .map_err(|_| StoreError::Database("watcher lock poisoned".into()))?,
            ),
            None => self.with(|conn| read(conn)),
        }
    }
}

impl InvocationLog for SqliteStore {
    fn record_invocations(&self, records: &[InvocationRecord]) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO invocations (at_ms, request_id, key_id, key_name, model_id, inference_type,
                         operation, input_tokens, output_tokens, latency_ms, first_token_ms, cost_usd, outcome,
                         inference_profile, model_alias, agent_session, node)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                    )
                    .map_err(db)?;
                for r in records {
                    stmt.execute(params![
                        r.at_ms,
                        r.request_id,
                        r.key_id,
                        r.key_name,
                        r.model_id,
                        r.inference_type,
                        r.operation,
                        r.input_tokens as i64,
                        r.output_tokens as i64,
                        r.latency_ms as i64,
                        r.first_token_ms.map(|v| v as i64),
                        r.cost_usd,
                        r.outcome,
                        r.inference_profile,
                        r.model_alias,
                        r.agent_session,
                        r.node,
                    ])
                    .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })
    }

    fn usage(&self, since_ms: i64, until_ms: i64) -> Result<Vec<UsageRow>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT COALESCE(key_name, '(none)'), model_id, inference_type, COUNT(*),
                            SUM(CASE WHEN outcome = 'success' THEN 0 ELSE 1 END),
                            SUM(input_tokens), SUM(output_tokens), SUM(cost_usd), AVG(latency_ms),
                            SUM(CASE WHEN outcome = 'throttled' THEN 1 ELSE 0 END)
                     FROM invocations WHERE at_ms >= ?1 AND at_ms < ?2
                     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![since_ms, until_ms], |row| {
                    Ok(UsageRow {
                        key_name: row.get(0)?,
                        model_id: row.get(1)?,
                        inference_type: row.get(2)?,
                        invocations: row.get::<_, i64>(3)? as u64,
                        errors: row.get::<_, i64>(4)? as u64,
                        input_tokens: row.get::<_, i64>(5)? as u64,
                        output_tokens: row.get::<_, i64>(6)? as u64,
                        cost_usd: row.get(7)?,
                        avg_latency_ms: row.get(8)?,
                        throttles: row.get::<_, i64>(9)? as u64,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn invocation_samples(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<InvocationSample>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT at_ms, COALESCE(key_name, '(none)'), model_id, inference_type, outcome,
                            input_tokens, output_tokens, latency_ms, cost_usd, inference_profile,
                            model_alias, agent_session, node
                     FROM invocations WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY at_ms",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![since_ms, until_ms], |row| {
                    Ok(InvocationSample {
                        at_ms: row.get(0)?,
                        key_name: row.get(1)?,
                        model_id: row.get(2)?,
                        inference_type: row.get(3)?,
                        outcome: row.get(4)?,
                        input_tokens: row.get::<_, i64>(5)?.max(0) as u64,
                        output_tokens: row.get::<_, i64>(6)?.max(0) as u64,
                        latency_ms: row.get::<_, i64>(7)?.max(0) as u64,
                        cost_usd: row.get(8)?,
                        inference_profile: row.get(9)?,
                        model_alias: row.get(10)?,
                        agent_session: row.get(11)?,
                        node: row.get(12)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn spend_by_key(&self, since_ms: i64) -> Result<Vec<(String, f64)>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT key_id, SUM(cost_usd) FROM invocations
                     WHERE key_id IS NOT NULL AND at_ms >= ?1 GROUP BY key_id",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([since_ms], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }
}

impl QuotaStore for SqliteStore {
    fn claim_quota(
        &self,
        claim: &QuotaClaim,
        max_requests: Option<u64>,
        max_tokens: Option<u64>,
    ) -> Result<Option<QuotaWindow>, StoreError> {
        if !claim_fits_alone(claim, max_requests, max_tokens) {
            return Ok(None);
        }
        self.with(|conn| {
            conn.prepare_cached(CLAIM_QUOTA_SQL)
                .and_then(|mut statement| {
                    statement
                        .query_row(
                            params![
                                claim.key_id,
                                claim.model_id,
                                claim.window_start_ms,
                                claim.requests,
                                claim.tokens,
                                max_requests.map(clamp_i64),
                                max_tokens.map(clamp_i64),
                            ],
                            |row| {
                                Ok(QuotaWindow {
                                    key_id: claim.key_id.clone(),
                                    model_id: claim.model_id.clone(),
                                    window_start_ms: claim.window_start_ms,
                                    requests: row.get::<_, i64>(0)?.max(0) as u64,
                                    tokens: row.get::<_, i64>(1)?.max(0) as u64,
                                })
                            },
                        )
                        .optional()
                })
                .map_err(db)
        })
    }

    fn quota_windows_since(&self, since_ms: i64) -> Result<Vec<QuotaWindow>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT key_id, model_id, window_start_ms, requests, tokens FROM quota_windows
                     WHERE window_start_ms >= ?1",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([since_ms], |row| {
                    Ok(QuotaWindow {
                        key_id: row.get(0)?,
                        model_id: row.get(1)?,
                        window_start_ms: row.get(2)?,
                        requests: row.get::<_, i64>(3)?.max(0) as u64,
                        tokens: row.get::<_, i64>(4)?.max(0) as u64,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn prune_quota_windows(&self, before_ms: i64) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM quota_windows WHERE window_start_ms < ?1",
                [before_ms],
            )
            .map_err(db)?;
            Ok(())
        })
    }
}

fn audit_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, AuditRecord)> {
    Ok((
        row.get(0)?,
        AuditRecord {
            at_ms: row.get(1)?,
            request_id: row.get(2)?,
            key_id: row.get(3)?,
            key_name: row.get(4)?,
            action: row.get(5)?,
            resource: row.get(6)?,
            status: row.get::<_, i64>(7)?.clamp(0, i64::from(u16::MAX)) as u16,
            source: row.get(8)?,
        },
    ))
}

/// The audit query's text (the same on both backends).
pub(crate) const AUDIT_QUERY_SQL: &str =
    "SELECT seq, at_ms, request_id, key_id, key_name, action, resource, status, source
     FROM audit_log
     WHERE at_ms >= $1 AND at_ms < $2
       AND (CAST($3 AS TEXT) IS NULL OR key_id = CAST($3 AS TEXT) OR key_name = CAST($3 AS TEXT))
       AND seq > $4
     ORDER BY seq LIMIT $5";

impl crate::StoreHealth for SqliteStore {
    fn ping(&self) -> Result<(), StoreError> {
        self.with(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
    }
}

impl AuditStore for SqliteStore {
    fn record_audit(&self, r: &AuditRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO audit_log (at_ms, request_id, key_id, key_name, action, resource, status, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    r.at_ms,
                    r.request_id,
                    r.key_id,
                    r.key_name,
                    r.action,
                    r.resource,
                    i64::from(r.status),
                    r.source
                ])
            })
            .map_err(db)?;
            Ok(())
        })
    }

    fn audit_log(&self, q: &AuditQuery<'_>) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(AUDIT_QUERY_SQL).map_err(db)?;
            let rows = statement
                .query_map(
                    params![
                        q.since_ms,
                        q.until_ms,
                        q.key,
                        q.after.unwrap_or(0),
                        q.limit.min(i64::MAX as usize) as i64
                    ],
                    audit_from_row,
                )
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }
}
