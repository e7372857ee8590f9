//! [`KnowledgeStore`] on SQLite.

use rusqlite::{params, OptionalExtension};

use crate::knowledge::{KnowledgeKind, KnowledgeRecord, KnowledgeStore};
use crate::sqlite::{db, name_or_id_taken as constraint};
use crate::{SqliteStore, StoreError};

fn from_row(kind: KnowledgeKind, row: &rusqlite::Row<'_>) -> rusqlite::Result<KnowledgeRecord> {
    Ok(KnowledgeRecord {
        kind,
        id: row.get(0)?,
        parent: row.get(1)?,
        name: row.get(2)?,
        body: row.get(3)?,
        created_ms: row.get(4)?,
        updated_ms: row.get(5)?,
    })
}

impl KnowledgeStore for SqliteStore {
    fn insert_knowledge(&self, r: &KnowledgeRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO knowledge_resources (kind, id, parent, name, body, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.kind.as_str(), r.id, r.parent, r.name, r.body, r.created_ms, r.updated_ms],
            )
            .map_err(constraint)?;
            Ok(())
        })
    }

    fn update_knowledge(&self, r: &KnowledgeRecord) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute(
                    "UPDATE knowledge_resources SET name=?3, body=?4, updated_ms=?5 WHERE kind=?1 AND id=?2",
                    params![r.kind.as_str(), r.id, r.name, r.body, r.updated_ms],
                )
                .map_err(constraint)?;
            Ok(n > 0)
        })
    }

    fn knowledge(
        &self,
        kind: KnowledgeKind,
        id: &str,
    ) -> Result<Option<KnowledgeRecord>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT id, parent, name, body, created_ms, updated_ms FROM knowledge_resources
                 WHERE kind=?1 AND id=?2",
                params![kind.as_str(), id],
                |row| from_row(kind, row),
            )
            .optional()
            .map_err(db)
        })
    }

    fn list_knowledge(
        &self,
        kind: KnowledgeKind,
        parent: Option<&str>,
    ) -> Result<Vec<KnowledgeRecord>, StoreError> {
        self.with(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT id, parent, name, body, created_ms, updated_ms FROM knowledge_resources
                     WHERE kind=?1 AND (?2 IS NULL OR parent=?2) ORDER BY created_ms, id",
                )
                .map_err(db)?;
            let rows = statement
                .query_map(params![kind.as_str(), parent], |row| from_row(kind, row))
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn delete_knowledge(&self, kind: KnowledgeKind, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute(
                    "DELETE FROM knowledge_resources WHERE kind=?1 AND id=?2",
                    params![kind.as_str(), id],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
    }
}
