//! [`AgentStore`] on PostgreSQL.

use postgres::{Client, Row};

use crate::agents::{AgentKind, AgentRecord, AgentStore};
use crate::pg::{pg, unique_violation};
use crate::{PostgresStore, StoreError};

const COLUMNS: &str =
    "agent_id, key, name_scope, name, body, revision, created_ms, updated_ms, expires_ms";

fn from_row(kind: AgentKind, row: &Row) -> AgentRecord {
    let scope: Option<String> = row.get(2);
    let name: Option<String> = row.get(3);
    AgentRecord {
        kind,
        agent_id: row.get(0),
        key: row.get(1),
        name: scope.zip(name),
        body: row.get(4),
        revision: row.get(5),
        created_ms: row.get(6),
        updated_ms: row.get(7),
        expires_ms: row.get(8),
    }
}

fn name_parts(record: &AgentRecord) -> (Option<&str>, Option<&str>) {
    match &record.name {
        Some((scope, name)) => (Some(scope.as_str()), Some(name.as_str())),
        None => (None, None),
    }
}

/// A failed insert as SQLite reports it: when the key and the name are both taken,
/// SQLite names the name (it checks the index declared last first), PostgreSQL the
/// key (it checks the primary key first); so a taken name wins here too.
fn insert_failure(c: &mut Client, r: &AgentRecord, e: postgres::Error) -> StoreError {
    let err = unique_violation(e);
    let (Some(scope), Some(name)) = name_parts(r) else {
        return err;
    };
    if !matches!(err, StoreError::Duplicate("id")) {
        return err;
    }
    match c.query_opt(
        "SELECT 1 FROM agent_records WHERE kind = $1 AND name_scope = $2 AND name = $3",
        &[&r.kind.as_str(), &scope, &name],
    ) {
        Ok(Some(_)) => StoreError::Duplicate("name"),
        Ok(None) => err,
        Err(e) => pg(e),
    }
}

impl AgentStore for PostgresStore {
    fn insert_agent_record(&self, r: &AgentRecord) -> Result<(), StoreError> {
        let (scope, name) = name_parts(r);
        self.with(|c| {
            let inserted = c.execute(
                "INSERT INTO agent_records (kind, agent_id, key, name_scope, name, body, revision,
                 created_ms, updated_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &r.kind.as_str(),
                    &r.agent_id,
                    &r.key,
                    &scope,
                    &name,
                    &r.body,
                    &r.revision,
                    &r.created_ms,
                    &r.updated_ms,
                    &r.expires_ms,
                ],
            );
            match inserted {
                Ok(_) => Ok(()),
                Err(e) => Err(insert_failure(c, r, e)),
            }
        })
    }

    /// One statement: a concurrent update of the same row makes this one wait, then
    /// re-check `revision` against the row as the other left it (so one of two
    /// writers that read the same revision loses, as under SQLite's lock).
    fn update_agent_record(&self, r: &AgentRecord) -> Result<bool, StoreError> {
        let (scope, name) = name_parts(r);
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE agent_records SET name_scope = $4, name = $5, body = $6,
                     revision = revision + 1, updated_ms = $7, expires_ms = $8
                     WHERE kind = $1 AND agent_id = $2 AND key = $3 AND revision = $9",
                    &[
                        &r.kind.as_str(),
                        &r.agent_id,
                        &r.key,
                        &scope,
                        &name,
                        &r.body,
                        &r.updated_ms,
                        &r.expires_ms,
                        &r.revision,
                    ],
                )
                .map_err(unique_violation)?;
            Ok(n > 0)
        })
    }

    fn agent_record(
        &self,
        kind: AgentKind,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM agent_records
                     WHERE kind = $1 AND agent_id = $2 AND key = $3"
                ),
                &[&kind.as_str(), &agent_id, &key],
            )
            .map_err(pg)?
            .map(|row| from_row(kind, &row)))
        })
    }

    fn list_agent_records(
        &self,
        kind: AgentKind,
        agent_id: Option<&str>,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        self.with(|c| {
            let rows = match agent_id {
                Some(agent_id) => c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM agent_records WHERE kind = $1 AND agent_id = $2
                         ORDER BY created_ms, agent_id, key"
                    ),
                    &[&kind.as_str(), &agent_id],
                ),
                None => c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM agent_records WHERE kind = $1
                         ORDER BY created_ms, agent_id, key"
                    ),
                    &[&kind.as_str()],
                ),
            }
            .map_err(pg)?;
            Ok(rows.iter().map(|row| from_row(kind, row)).collect())
        })
    }

    fn delete_agent_record(
        &self,
        kind: AgentKind,
        agent_id: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM agent_records WHERE kind = $1 AND agent_id = $2 AND key = $3",
                    &[&kind.as_str(), &agent_id, &key],
                )
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    /// One statement, so one transaction: every kind goes, or none.
    fn delete_agent(&self, agent_id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM agent_records WHERE agent_id = $1",
                    &[&agent_id],
                )
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn expired_agent_records(
        &self,
        kind: AgentKind,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM agent_records
                         WHERE kind = $1 AND expires_ms IS NOT NULL AND expires_ms <= $2
                         ORDER BY expires_ms, agent_id, key LIMIT $3"
                    ),
                    &[&kind.as_str(), &now_ms, &limit],
                )
                .map_err(pg)?;
            Ok(rows.iter().map(|row| from_row(kind, row)).collect())
        })
    }
}
