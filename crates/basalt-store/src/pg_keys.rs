//! [`KeyStore`], [`InvocationLog`] and [`QuotaStore`] on PostgreSQL.

use postgres::Row;

use crate::pg::{duplicate, pg};
use crate::sqlite::{claim_fits_alone, clamp_i64, AUDIT_QUERY_SQL, CLAIM_QUOTA_SQL};
use crate::{
    AuditQuery, AuditRecord, AuditStore, InvocationLog, InvocationRecord, InvocationSample,
    KeyLimits, KeyRecord, KeyStore, PostgresStore, QuotaClaim, QuotaStore, QuotaWindow, StoreError,
    UsageRow,
};

const KEY_COLUMNS: &str =
    "id, name, access_key_id, bearer_sha256, is_admin, created_at, revoked_at,
     requests_per_minute, tokens_per_minute, monthly_budget_usd, retrieval_filter, policy";

fn key_from_row(row: &Row) -> KeyRecord {
    KeyRecord {
        id: row.get(0),
        name: row.get(1),
        access_key_id: row.get(2),
        bearer_sha256: row.get(3),
        is_admin: row.get(4),
        created_at: row.get(5),
        revoked_at: row.get(6),
        limits: KeyLimits {
            requests_per_minute: row.get::<_, Option<i64>>(7).map(|v| v.max(0) as u64),
            tokens_per_minute: row.get::<_, Option<i64>>(8).map(|v| v.max(0) as u64),
            monthly_budget_usd: row.get(9),
        },
        retrieval_filter: row.get(10),
        policy: row.get(11),
    }
}

/// A digest of a metering batch (128 bits from two SipHash passes over its records'
/// identities): the same batch tried again has the same digest.
fn batch_digest(records: &[InvocationRecord]) -> String {
    use std::hash::{Hash, Hasher};
    let pass = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        for r in records {
            (
                &r.request_id,
                r.at_ms,
                &r.model_id,
                &r.operation,
                &r.key_id,
                &r.node,
            )
                .hash(&mut h);
            (r.input_tokens, r.output_tokens, r.latency_ms, &r.outcome).hash(&mut h);
        }
        h.finish()
    };
    format!("{:016x}{:016x}", pass(1), pass(2))
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v.min(i64::MAX as u64) as i64)
}

impl KeyStore for PostgresStore {
    fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, name, access_key_id, bearer_sha256, is_admin, created_at,
                 revoked_at, requests_per_minute, tokens_per_minute, monthly_budget_usd,
                 retrieval_filter, policy)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &key.id,
                    &key.name,
                    &key.access_key_id,
                    &key.bearer_sha256,
                    &key.is_admin,
                    &key.created_at,
                    &key.revoked_at,
                    &opt_i64(key.limits.requests_per_minute),
                    &opt_i64(key.limits.tokens_per_minute),
                    &key.limits.monthly_budget_usd,
                    &key.retrieval_filter,
                    &key.policy,
                ],
            )
            .map_err(duplicate("key id"))?;
            Ok(())
        })
    }

    fn key_by_access_key_id(&self, access_key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE access_key_id = $1"),
                &[&access_key_id],
            )
            .map_err(pg)?
            .as_ref()
            .map(key_from_row))
        })
    }

    fn key_by_bearer_sha256(&self, bearer_sha256: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE bearer_sha256 = $1"),
                &[&bearer_sha256],
            )
            .map_err(pg)?
            .as_ref()
            .map(key_from_row))
        })
    }

    fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(key_from_row)
            .collect())
        })
    }

    fn revoke_key(&self, id_or_access_key_id: &str, at: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE api_keys SET revoked_at = $2
                     WHERE (id = $1 OR access_key_id = $1) AND revoked_at IS NULL",
                    &[&id_or_access_key_id, &at],
                )
                .map_err(pg)?;
            Ok(changed > 0)
        })
    }

    fn set_key_retrieval_filter(
        &self,
        id_or_access_key_id: &str,
        filter: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE api_keys SET retrieval_filter = $2 WHERE id = $1 OR access_key_id = $1",
                    &[&id_or_access_key_id, &filter],
                )
                .map_err(pg)?;
            Ok(changed > 0)
        })
    }

    fn set_key_limits(
        &self,
        id_or_access_key_id: &str,
        limits: &KeyLimits,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE api_keys SET requests_per_minute = $2, tokens_per_minute = $3,
                     monthly_budget_usd = $4 WHERE id = $1 OR access_key_id = $1",
                    &[
                        &id_or_access_key_id,
                        &opt_i64(limits.requests_per_minute),
                        &opt_i64(limits.tokens_per_minute),
                        &limits.monthly_budget_usd,
                    ],
                )
                .map_err(pg)?;
            Ok(changed > 0)
        })
    }

    fn set_key_policy(
        &self,
        id_or_access_key_id: &str,
        policy: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE api_keys SET policy = $2 WHERE id = $1 OR access_key_id = $1",
                    &[&id_or_access_key_id, &policy],
                )
                .map_err(pg)?;
            Ok(changed > 0)
        })
    }

    /// From memory: the key watcher keeps it current (see [`crate::pg`]).
    fn change_marker(&self) -> Result<i64, StoreError> {
        Ok(self.key_version())
    }
}

impl InvocationLog for PostgresStore {
    fn record_invocations(&self, records: &[InvocationRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let digest = batch_digest(records);
        let newest = records.iter().map(|r| r.at_ms).max().unwrap_or_default();
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg)?;
            let first_time = tx
                .execute(
                    "INSERT INTO invocation_batches (digest, at_ms) VALUES ($1, $2)
                     ON CONFLICT (digest) DO NOTHING",
                    &[&digest, &newest],
                )
                .map_err(pg)?;
            if first_time == 0 {
                // An earlier try committed it; its reply was lost.
                return Ok(());
            }
            if digest.ends_with('0') {
                // Now and then (one batch in 16), forget batches older than a day.
                tx.execute(
                    "DELETE FROM invocation_batches WHERE at_ms < $1",
                    &[&(newest - 86_400_000)],
                )
                .map_err(pg)?;
            }
            let statement = tx
                .prepare(
                    "INSERT INTO invocations (at_ms, request_id, key_id, key_name, model_id,
                     inference_type, operation, input_tokens, output_tokens, latency_ms,
                     first_token_ms, cost_usd, outcome, inference_profile, model_alias, agent_session,
                     node)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .map_err(pg)?;
            for r in records {
                tx.execute(
                    &statement,
                    &[
                        &r.at_ms,
                        &r.request_id,
                        &r.key_id,
                        &r.key_name,
                        &r.model_id,
                        &r.inference_type,
                        &r.operation,
                        &(r.input_tokens as i64),
                        &(r.output_tokens as i64),
                        &(r.latency_ms as i64),
                        &opt_i64(r.first_token_ms),
                        &r.cost_usd,
                        &r.outcome,
                        &r.inference_profile,
                        &r.model_alias,
                        &r.agent_session,
                        &r.node,
                    ],
                )
                .map_err(pg)?;
            }
            tx.commit().map_err(pg)
        })
    }

    fn usage(&self, since_ms: i64, until_ms: i64) -> Result<Vec<UsageRow>, StoreError> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT COALESCE(key_name, '(none)'), model_id, inference_type, COUNT(*),
                            SUM(CASE WHEN outcome = 'success' THEN 0 ELSE 1 END)::BIGINT,
                            SUM(input_tokens)::BIGINT, SUM(output_tokens)::BIGINT,
                            SUM(cost_usd), AVG(latency_ms)::DOUBLE PRECISION,
                            SUM(CASE WHEN outcome = 'throttled' THEN 1 ELSE 0 END)::BIGINT
                     FROM invocations WHERE at_ms >= $1 AND at_ms < $2
                     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                    &[&since_ms, &until_ms],
                )
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|row| UsageRow {
                    key_name: row.get(0),
                    model_id: row.get(1),
                    inference_type: row.get(2),
                    invocations: row.get::<_, i64>(3).max(0) as u64,
                    errors: row.get::<_, i64>(4).max(0) as u64,
                    input_tokens: row.get::<_, i64>(5).max(0) as u64,
                    output_tokens: row.get::<_, i64>(6).max(0) as u64,
                    cost_usd: row.get(7),
                    avg_latency_ms: row.get(8),
                    throttles: row.get::<_, i64>(9).max(0) as u64,
                })
                .collect())
        })
    }

    fn invocation_samples(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<InvocationSample>, StoreError> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT at_ms, COALESCE(key_name, '(none)'), model_id, inference_type, outcome,
                            input_tokens, output_tokens, latency_ms, cost_usd, inference_profile,
                            model_alias, agent_session, node
                     FROM invocations WHERE at_ms >= $1 AND at_ms < $2 ORDER BY at_ms, id",
                    &[&since_ms, &until_ms],
                )
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|row| InvocationSample {
                    at_ms: row.get(0),
                    key_name: row.get(1),
                    model_id: row.get(2),
                    inference_type: row.get(3),
                    outcome: row.get(4),
                    input_tokens: row.get::<_, i64>(5).max(0) as u64,
                    output_tokens: row.get::<_, i64>(6).max(0) as u64,
                    latency_ms: row.get::<_, i64>(7).max(0) as u64,
                    cost_usd: row.get(8),
                    inference_profile: row.get(9),
                    model_alias: row.get(10),
                    agent_session: row.get(11),
                    node: row.get(12),
                })
                .collect())
        })
    }

    fn spend_by_key(&self, since_ms: i64) -> Result<Vec<(String, f64)>, StoreError> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT key_id, SUM(cost_usd) FROM invocations
                     WHERE key_id IS NOT NULL AND at_ms >= $1 GROUP BY key_id",
                    &[&since_ms],
                )
                .map_err(pg)?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }
}

impl QuotaStore for PostgresStore {
    fn claim_quota(
        &self,
        claim: &QuotaClaim,
        max_requests: Option<u64>,
        max_tokens: Option<u64>,
    ) -> Result<Option<QuotaWindow>, StoreError> {
        if !claim_fits_alone(claim, max_requests, max_tokens) {
            return Ok(None);
        }
        self.with(|c| {
            let row = c
                .query_opt(
                    CLAIM_QUOTA_SQL,
                    &[
                        &claim.key_id,
                        &claim.model_id,
                        &claim.window_start_ms,
                        &claim.requests,
                        &claim.tokens,
                        &max_requests.map(clamp_i64),
                        &max_tokens.map(clamp_i64),
                    ],
                )
                .map_err(pg)?;
            Ok(row.map(|row| QuotaWindow {
                key_id: claim.key_id.clone(),
                model_id: claim.model_id.clone(),
                window_start_ms: claim.window_start_ms,
                requests: row.get::<_, i64>(0).max(0) as u64,
                tokens: row.get::<_, i64>(1).max(0) as u64,
            }))
        })
    }

    fn quota_windows_since(&self, since_ms: i64) -> Result<Vec<QuotaWindow>, StoreError> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT key_id, model_id, window_start_ms, requests, tokens FROM quota_windows
                     WHERE window_start_ms >= $1",
                    &[&since_ms],
                )
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|row| QuotaWindow {
                    key_id: row.get(0),
                    model_id: row.get(1),
                    window_start_ms: row.get(2),
                    requests: row.get::<_, i64>(3).max(0) as u64,
                    tokens: row.get::<_, i64>(4).max(0) as u64,
                })
                .collect())
        })
    }

    fn prune_quota_windows(&self, before_ms: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM quota_windows WHERE window_start_ms < $1",
                &[&before_ms],
            )
            .map_err(pg)?;
            Ok(())
        })
    }
}

impl crate::StoreHealth for PostgresStore {
    fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.batch_execute("SELECT 1").map_err(pg))
    }
}

impl AuditStore for PostgresStore {
    fn record_audit(&self, r: &AuditRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit_log (at_ms, request_id, key_id, key_name, action, resource, status, source)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &r.at_ms,
                    &r.request_id,
                    &r.key_id,
                    &r.key_name,
                    &r.action,
                    &r.resource,
                    &i32::from(r.status),
                    &r.source,
                ],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn audit_log(&self, q: &AuditQuery<'_>) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        self.with(|c| {
            let rows = c
                .query(
                    AUDIT_QUERY_SQL,
                    &[
                        &q.since_ms,
                        &q.until_ms,
                        &q.key,
                        &q.after.unwrap_or(0),
                        &(q.limit.min(i64::MAX as usize) as i64),
                    ],
                )
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|row| {
                    (
                        row.get(0),
                        AuditRecord {
                            at_ms: row.get(1),
                            request_id: row.get(2),
                            key_id: row.get(3),
                            key_name: row.get(4),
                            action: row.get(5),
                            resource: row.get(6),
                            status: row.get::<_, i32>(7).clamp(0, i32::from(u16::MAX)) as u16,
                            source: row.get(8),
                        },
                    )
                })
                .collect())
        })
    }
}
