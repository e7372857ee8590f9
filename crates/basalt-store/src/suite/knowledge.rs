//! Knowledge-base records: unique names per parent, round trips, deletes.

use crate::testing::{on_both_backends, Backend};
use crate::{KnowledgeKind, KnowledgeRecord, StoreError};

fn record(kind: KnowledgeKind, id: &str, parent: &str, name: &str) -> KnowledgeRecord {
    KnowledgeRecord {
        kind,
        id: id.into(),
        parent: parent.into(),
        name: name.into(),
        body: "{}".into(),
        created_ms: 1,
        updated_ms: 1,
    }
}

fn names_are_unique_per_parent_and_records_round_trip(backend: &Backend) {
    let store = backend.open();
    let kb = record(KnowledgeKind::KnowledgeBase, "KB00000001", "", "docs");
    store
        .insert_knowledge(&kb)
        .expect("insert a knowledge base");
    let same_name = store.insert_knowledge(&record(
        KnowledgeKind::KnowledgeBase,
        "KB00000002",
        "",
        "docs",
    ));
    assert!(
        matches!(same_name, Err(StoreError::Duplicate("name"))),
        "a second knowledge base of the same name: {same_name:?}"
    );
    let ds = record(
        KnowledgeKind::DataSource,
        "DS00000001",
        "KB00000001",
        "docs",
    );
    store
        .insert_knowledge(&ds)
        .expect("a data source may share a name with a record of another kind");
    let got = store
        .list_knowledge(KnowledgeKind::DataSource, Some("KB00000001"))
        .expect("list");
    assert_eq!(got.len(), 1, "the knowledge base's data sources: {got:?}");
    let mut changed = ds.clone();
    changed.body = "{\"x\":1}".into();
    assert!(
        store.update_knowledge(&changed).expect("update"),
        "an update of an existing record must report a change"
    );
    let back = store
        .knowledge(KnowledgeKind::DataSource, "DS00000001")
        .expect("get");
    assert_eq!(
        back.map(|r| r.body),
        Some("{\"x\":1}".to_owned()),
        "the updated body"
    );
    assert!(
        store
            .delete_knowledge(KnowledgeKind::DataSource, "DS00000001")
            .expect("delete"),
        "a delete of an existing record must report it"
    );
    assert!(
        !store
            .delete_knowledge(KnowledgeKind::DataSource, "DS00000001")
            .expect("delete again"),
        "a second delete must report nothing deleted"
    );
}

on_both_backends!(names_are_unique_per_parent_and_records_round_trip);
