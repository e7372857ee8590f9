//! [`KnowledgeStore`] on PostgreSQL.

use postgres::Row;

use crate::knowledge::{KnowledgeKind, KnowledgeRecord, KnowledgeStore};
use crate::pg::{pg, unique_violation};
use crate::{PostgresStore, StoreError};

fn from_row(kind: KnowledgeKind, row: &Row) -> KnowledgeRecord {
    KnowledgeRecord {
        kind,
        id: row.get(0),
        parent: row.get(1),
        name: row.get(2),
        body: row.get(3),
        created_ms: row.get(4),
        updated_ms: row.get(5),
    }
}

/// A unique violation as SQLite's store reports it: `name` (the parent already has
/// one of that name), else `id` (the table has no client token to collide on).
fn constraint(e: postgres::Error) -> StoreError {
    unique_violation(e)
}

impl KnowledgeStore for PostgresStore {
    fn insert_knowledge(&self, r: &KnowledgeRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO knowledge_resources (kind, id, parent, name, body, created_ms, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &r.kind.as_str(),
                    &r.id,
                    &r.parent,
                    &r.name,
                    &r.body,
                    &r.created_ms,
                    &r.updated_ms,
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
    }

    fn update_knowledge(&self, r: &KnowledgeRecord) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE knowledge_resources SET name = $3, body = $4, updated_ms = $5
                     WHERE kind = $1 AND id = $2",
                    &[&r.kind.as_str(), &r.id, &r.name, &r.body, &r.updated_ms],
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
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT id, parent, name, body, created_ms, updated_ms FROM knowledge_resources
                 WHERE kind = $1 AND id = $2",
                &[&kind.as_str(), &id],
            )
            .map_err(pg)?
            .map(|row| from_row(kind, &row)))
        })
    }

    fn list_knowledge(
        &self,
        kind: KnowledgeKind,
        parent: Option<&str>,
    ) -> Result<Vec<KnowledgeRecord>, StoreError> {
        self.with(|c| {
            // `COLLATE "C"`: byte order, as SQLite compares text.
            let rows = c
                .query(
                    "SELECT id, parent, name, body, created_ms, updated_ms FROM knowledge_resources
                     WHERE kind = $1 AND ($2::TEXT IS NULL OR parent = $2::TEXT)
                     ORDER BY created_ms, id COLLATE \"C\"",
                    &[&kind.as_str(), &parent],
                )
                .map_err(pg)?;
            Ok(rows.iter().map(|row| from_row(kind, row)).collect())
        })
    }

    fn delete_knowledge(&self, kind: KnowledgeKind, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM knowledge_resources WHERE kind = $1 AND id = $2",
                    &[&kind.as_str(), &id],
                )
                .map_err(pg)?;
            Ok(n > 0)
        })
    }
}
