//! Stored model responses.

use crate::testing::{on_both_backends, Backend};
use crate::{StoreError, StoredResponseRecord};

fn record(id: &str, at: i64) -> StoredResponseRecord {
    StoredResponseRecord {
        id: id.into(),
        key_id: Some("key-a".into()),
        created_ms: at,
        model_id: "m".into(),
        response_json: "{}".into(),
        conversation_json: "[]".into(),
    }
}

fn responses_round_trip_delete_and_prune(backend: &Backend) {
    let store = backend.open();
    store.insert_response(&record("r1", 10)).expect("insert");
    store.insert_response(&record("r2", 20)).expect("insert");
    let result = store.insert_response(&record("r1", 30));
    assert!(result.is_err(), "IDs are unique");
    assert!(
        matches!(result, Err(StoreError::Duplicate("id"))),
        "a taken ID is Duplicate(\"id\"): {result:?}"
    );
    assert_eq!(store.response("r1").expect("get"), Some(record("r1", 10)));
    assert!(
        store.delete_response("r1").expect("delete"),
        "the delete found nothing"
    );
    assert!(
        !store.delete_response("r1").expect("delete again"),
        "a response was deleted twice"
    );
    assert_eq!(store.prune_responses(25).expect("prune"), 1, "pruned rows");
    assert_eq!(store.response("r2").expect("get"), None);
}

on_both_backends!(responses_round_trip_delete_and_prune);
