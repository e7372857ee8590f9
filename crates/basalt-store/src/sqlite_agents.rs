//! [`AgentStore`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::agents::{AgentKind, AgentRecord, AgentStore};
use crate::sqlite::{db, name_or_id_taken as constraint};
use crate::{SqliteStore, StoreError};

const COLUMNS: &str =
    "agent_id, key, name_scope, name, body, revision, created_ms, updated_ms, expires_ms";

fn from_row(kind: AgentKind, row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    let scope: Option<String> = row.get(2)?;
    let name: Option<String> = row.get(3)?;
    Ok(AgentRecord {
        kind,
        agent_id: row.get(0)?,
        key: row.get(1)?,
        name: scope.zip(name),
        body: row.get(4)?,
        revision: row.get(5)?,
        created_ms: row.get(6)?,
        updated_ms: row.get(7)?,
        expires_ms: row.get(8)?,
    })
}

fn name_parts(record: &AgentRecord) -> (Option<&str>, Option<&str>) {
    match &record.name {
        Some((scope, name)) => (Some(scope.as_str()), Some(name.as_str())),
        None => (None, None),
    }
}

impl AgentStore for SqliteStore {
    fn insert_agent_record(&self, r: &AgentRecord) -> Result<(), StoreError> {
        let (scope, name) = name_parts(r);
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO agent_records (kind, agent_id, key, name_scope, name, body, revision,
                 created_ms, updated_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(db)?
            .execute(params![
                    r.kind.as_str(),
                    r.agent_id,
                    r.key,
                    scope,
                    name,
                    r.body,
                    r.revision,
                    r.created_ms,
                    r.updated_ms,
                    r.expires_ms
                ])
            .map_err(constraint)?;
            Ok(())
        })
    }

    fn update_agent_record(&self, r: &AgentRecord) -> Result<bool, StoreError> {
        let (scope, name) = name_parts(r);
        self.with(|conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE agent_records SET name_scope=?4, name=?5, body=?6, revision=revision+1,
                     updated_ms=?7, expires_ms=?8
                     WHERE kind=?1 AND agent_id=?2 AND key=?3 AND revision=?9",
                )
                .map_err(db)?
                .execute(params![
                    r.kind.as_str(),
                    r.agent_id,
                    r.key,
                    scope,
                    name,
                    r.body,
                    r.updated_ms,
                    r.expires_ms,
                    r.revision
                ])
                .map_err(constraint)?;
            Ok(n > 0)
        })
    }

    fn agent_record(
        &self,
        kind: AgentKind,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.with(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM agent_records WHERE kind=?1 AND agent_id=?2 AND key=?3"
            ))
            .map_err(db)?
            .query_row(params![kind.as_str(), agent_id, key], |row| {
                from_row(kind, row)
            })
            .optional()
            .map_err(db)
        })
    }

    fn list_agent_records(
        &self,
        kind: AgentKind,
        agent_id: Option<&str>,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        self.with(|conn| {
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM agent_records
                     WHERE kind=?1 AND (?2 IS NULL OR agent_id=?2) ORDER BY created_ms, agent_id, key"
                ))
                .map_err(db)?;
            let rows = statement
                .query_map(params![kind.as_str(), agent_id], |row| from_row(kind, row))
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn delete_agent_record(
        &self,
        kind: AgentKind,
        agent_id: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM agent_records WHERE kind=?1 AND agent_id=?2 AND key=?3",
                )
                .map_err(db)?
                .execute(params![kind.as_str(), agent_id, key])
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn delete_agent(&self, agent_id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute(
                    "DELETE FROM agent_records WHERE agent_id=?1",
                    params![agent_id],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn expired_agent_records(
        &self,
        kind: AgentKind,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        self.with(|conn| {
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM agent_records
                     WHERE kind=?1 AND expires_ms IS NOT NULL AND expires_ms <= ?2
                     ORDER BY expires_ms LIMIT ?3"
                ))
                .map_err(db)?;
            let rows = statement
                .query_map(params![kind.as_str(), now_ms, limit as i64], |row| {
                    from_row(kind, row)
                })
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }
}
