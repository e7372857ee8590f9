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
            conn.execute(
                "INSERT INTO agent_records (kind, agent_id, key, name_scope, name, body, revision,
                 created_ms, updated_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
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
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
    }

    fn update_agent_record(&self, r: &AgentRecord) -> Result<bool, StoreError> {
        let (scope, name) = name_parts(r);
        self.with(|conn| {
            let n = conn
                .execute(
                    "UPDATE agent_records SET name_scope=?4, name=?5, body=?6, revision=revision+1,
                     updated_ms=?7, expires_ms=?8
                     WHERE kind=?1 AND agent_id=?2 AND key=?3 AND revision=?9",
                    params![
                        r.kind.as_str(),
                        r.agent_id,
                        r.key,
                        scope,
                        name,
                        r.body,
                        r.updated_ms,
                        r.expires_ms,
                        r.revision
                    ],
                )
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
            conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM agent_records WHERE kind=?1 AND agent_id=?2 AND key=?3"
                ),
                params![kind.as_str(), agent_id, key],
                |row| from_row(kind, row),
            )
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
                .execute(
                    "DELETE FROM agent_records WHERE kind=?1 AND agent_id=?2 AND key=?3",
                    params![kind.as_str(), agent_id, key],
                )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: AgentKind, agent: &str, key: &str, name: Option<(&str, &str)>) -> AgentRecord {
        AgentRecord {
            kind,
            agent_id: agent.into(),
            key: key.into(),
            name: name.map(|(s, n)| (s.into(), n.into())),
            body: "{}".into(),
            revision: 1,
            created_ms: 1,
            updated_ms: 1,
            expires_ms: None,
        }
    }

    #[test]
    fn names_are_unique_in_their_scope_only() {
        let store = SqliteStore::open_in_memory().expect("open");
        let draft = record(AgentKind::Version, "A1", "DRAFT", Some(("agents", "bot")));
        store.insert_agent_record(&draft).expect("insert");
        let clash = record(AgentKind::Version, "A2", "DRAFT", Some(("agents", "bot")));
        assert!(matches!(
            store.insert_agent_record(&clash),
            Err(StoreError::Duplicate("name"))
        ));
        // Numbered versions carry no name; aliases are scoped by agent.
        store
            .insert_agent_record(&record(AgentKind::Version, "A1", "1", None))
            .expect("version 1");
        store
            .insert_agent_record(&record(AgentKind::Version, "A1", "2", None))
            .expect("version 2");
        store
            .insert_agent_record(&record(AgentKind::Alias, "A1", "X1", Some(("A1", "live"))))
            .expect("alias");
        store
            .insert_agent_record(&record(AgentKind::Alias, "A2", "X2", Some(("A2", "live"))))
            .expect("same alias name, other agent");
        assert!(matches!(
            store.insert_agent_record(&record(AgentKind::Alias, "A1", "X3", Some(("A1", "live")))),
            Err(StoreError::Duplicate("name"))
        ));
        assert!(matches!(
            store.insert_agent_record(&record(AgentKind::Version, "A1", "1", None)),
            Err(StoreError::Duplicate("id"))
        ));
        let versions = store
            .list_agent_records(AgentKind::Version, Some("A1"))
            .expect("list");
        assert_eq!(
            versions.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["1", "2", "DRAFT"]
        );
    }

    #[test]
    fn updates_are_compare_and_swap_on_the_revision() {
        let store = SqliteStore::open_in_memory().expect("open");
        let mut draft = record(AgentKind::Version, "A1", "DRAFT", Some(("agents", "bot")));
        store.insert_agent_record(&draft).expect("insert");
        draft.body = r#"{"a":1}"#.into();
        assert!(store.update_agent_record(&draft).expect("first edit"));
        // A second writer that read revision 1 loses.
        draft.body = r#"{"a":2}"#.into();
        assert!(!store.update_agent_record(&draft).expect("stale edit"));
        let stored = store
            .agent_record(AgentKind::Version, "A1", "DRAFT")
            .expect("read")
            .expect("present");
        assert_eq!((stored.revision, stored.body.as_str()), (2, r#"{"a":1}"#));
    }

    #[test]
    fn deleting_an_agent_drops_every_kind_and_expiry_lists_idle_sessions() {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .insert_agent_record(&record(
                AgentKind::Version,
                "A1",
                "DRAFT",
                Some(("agents", "bot")),
            ))
            .expect("agent");
        let mut session = record(AgentKind::Session, "A1", "TSTALIASID/s1", None);
        session.expires_ms = Some(100);
        store.insert_agent_record(&session).expect("session");
        let mut fresh = record(AgentKind::Session, "A1", "TSTALIASID/s2", None);
        fresh.expires_ms = Some(1_000);
        store.insert_agent_record(&fresh).expect("session 2");
        let expired = store
            .expired_agent_records(AgentKind::Session, 500, 10)
            .expect("expired");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].key, "TSTALIASID/s1");
        assert!(store.delete_agent("A1").expect("delete"));
        assert!(store
            .list_agent_records(AgentKind::Session, Some("A1"))
            .expect("list")
            .is_empty());
        assert!(store
            .agent_record(AgentKind::Version, "A1", "DRAFT")
            .expect("read")
            .is_none());
    }
}
