//! Upgrades of stored records whose form changed, run once at `basalt serve`'s start,
//! before any service reads them. Each is idempotent: a record already in the current
//! form is left alone, so every node of a fleet may run it.

use anyhow::{Context, Result};
use basalt_edge::bedrock::knowledge_wire::{upgrade_stored_record, StoredKind};
use basalt_store::knowledge::{KnowledgeKind, KnowledgeStore};

/// Knowledge bases and data sources stored before the core had typed settings held
/// Bedrock's configuration documents as given; they are rewritten in the current
/// form. A record that cannot be read is left as it is, and logged: the service then
/// answers an internal error for it, naming it.
pub fn knowledge_records(store: &dyn KnowledgeStore) -> Result<usize> {
    let mut upgraded = 0;
    for (kind, stored) in [
        (KnowledgeKind::KnowledgeBase, StoredKind::KnowledgeBase),
        (KnowledgeKind::DataSource, StoredKind::DataSource),
    ] {
        let records = store
            .list_knowledge(kind, None)
            .with_context(|| format!("cannot list the stored {}s", kind.as_str()))?;
        for mut record in records {
            match upgrade_stored_record(stored, &record.body) {
                Ok(None) => {}
                Ok(Some(body)) => {
                    record.body = body;
                    store.update_knowledge(&record).with_context(|| {
                        format!("cannot rewrite stored {} {}", kind.as_str(), record.id)
                    })?;
                    upgraded += 1;
                }
                Err(e) => tracing::error!(
                    kind = kind.as_str(),
                    id = %record.id,
                    error = %e,
                    "a stored record of an earlier form cannot be upgraded; it is left as it is"
                ),
            }
        }
    }
    if upgraded > 0 {
        tracing::info!(
            upgraded,
            "knowledge-base records rewritten in the current form"
        );
    }
    Ok(upgraded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_store::knowledge::KnowledgeRecord;
    use basalt_store::SqliteStore;

    #[test]
    fn old_knowledge_records_are_rewritten_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("basalt.db")).expect("a store");
        let old = serde_json::json!({
            "dataSourceId": "DS00000001", "knowledgeBaseId": "KB00000001", "name": "docs",
            "dataSourceConfiguration": {"type": "CUSTOM"}, "dataDeletionPolicy": "DELETE",
            "status": "AVAILABLE", "failureReasons": [], "createdMs": 1, "updatedMs": 2});
        store
            .insert_knowledge(&KnowledgeRecord {
                kind: KnowledgeKind::DataSource,
                id: "DS00000001".into(),
                parent: "KB00000001".into(),
                name: "docs".into(),
                body: old.to_string(),
                created_ms: 1,
                updated_ms: 2,
            })
            .expect("inserted");
        assert_eq!(knowledge_records(&store).expect("upgraded"), 1);
        let body = &store
            .list_knowledge(KnowledgeKind::DataSource, None)
            .expect("listed")[0]
            .body;
        let ds: basalt_core::knowledge::DataSource =
            serde_json::from_str(body).expect("the current form");
        assert_eq!(ds.location, basalt_core::knowledge::Location::Custom);
        assert_eq!(knowledge_records(&store).expect("a second run"), 0);
    }
}
