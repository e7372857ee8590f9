//! Custom models and their deployments.

use crate::testing::{on_both_backends, Backend};
use crate::{CustomModelRecord, DeploymentRecord, StoreError};

fn record(id: &str, name: &str) -> CustomModelRecord {
    CustomModelRecord {
        id: id.into(),
        name: name.into(),
        key_id: Some("k1".into()),
        base_model_id: "base".into(),
        job_id: "job".into(),
        customization_type: "FINE_TUNING".into(),
        adapter_path: "/tmp/a.gguf".into(),
        adapter_sha256: "00".into(),
        details_json: "{}".into(),
        created_ms: 5,
    }
}

fn deployment() -> DeploymentRecord {
    DeploymentRecord {
        id: "dddddddddddd".into(),
        name: "dep".into(),
        key_id: None,
        model_id: "aaaaaaaaaaaa".into(),
        description: Some("x".into()),
        client_token: Some("tok".into()),
        created_ms: 1,
        updated_ms: 1,
    }
}

fn custom_models_insert_find_list_and_delete(backend: &Backend) {
    let store = backend.open();
    store
        .insert_custom_model(&record("aaaaaaaaaaaa", "one"))
        .expect("insert");
    let result = store.insert_custom_model(&record("bbbbbbbbbbbb", "one"));
    assert!(
        matches!(result, Err(StoreError::Duplicate(_))),
        "a second model named one: {result:?}"
    );
    store
        .insert_custom_model(&record("cccccccccccc", "two"))
        .expect("insert");
    assert_eq!(
        store.custom_model("aaaaaaaaaaaa").expect("get"),
        Some(record("aaaaaaaaaaaa", "one"))
    );
    assert_eq!(
        store
            .custom_model_by_name("two")
            .expect("get by name")
            .map(|r| r.id),
        Some("cccccccccccc".into())
    );
    assert_eq!(store.list_custom_models().expect("list").len(), 2);
    assert!(
        store.delete_custom_model("aaaaaaaaaaaa").expect("delete"),
        "deleting a model found nothing"
    );
    assert!(
        !store
            .delete_custom_model("aaaaaaaaaaaa")
            .expect("delete again"),
        "a model was deleted twice"
    );
    assert_eq!(
        store.custom_model_by_name("one").expect("get by name"),
        None
    );
}

fn deployments_are_found_by_id_name_or_token_and_repointed(backend: &Backend) {
    let store = backend.open();
    let mut d = deployment();
    store.insert_deployment(&d).expect("insert");
    let result = store.insert_deployment(&d);
    assert!(
        matches!(result, Err(StoreError::Duplicate(_))),
        "the same deployment twice: {result:?}"
    );
    assert_eq!(
        store.deployment("dddddddddddd").expect("by id").as_ref(),
        Some(&d)
    );
    assert_eq!(store.deployment("dep").expect("by name").as_ref(), Some(&d));
    assert_eq!(
        store
            .deployment_by_client_token("tok")
            .expect("by token")
            .as_ref(),
        Some(&d)
    );
    d.model_id = "bbbbbbbbbbbb".into();
    d.updated_ms = 2;
    assert!(
        store.update_deployment(&d).expect("update"),
        "the update found nothing"
    );
    assert_eq!(store.list_deployments().expect("list"), vec![d.clone()]);
    assert!(
        store.delete_deployment(&d.id).expect("delete"),
        "the delete found nothing"
    );
    assert_eq!(store.deployment("dep").expect("by name"), None);
}

/// When several unique columns clash, both backends name the one SQLite checks
/// first: a deployment's client token, then its name, then its ID; a model's name,
/// then its ID.
fn duplicates_name_the_same_column_on_both_backends(backend: &Backend) {
    let store = backend.open();
    store
        .insert_custom_model(&record("aaaaaaaaaaaa", "one"))
        .expect("insert");
    let result = store.insert_custom_model(&record("aaaaaaaaaaaa", "one"));
    assert!(
        matches!(result, Err(StoreError::Duplicate("name"))),
        "a model whose ID and name are taken: {result:?}"
    );
    let result = store.insert_custom_model(&record("aaaaaaaaaaaa", "two"));
    assert!(
        matches!(result, Err(StoreError::Duplicate("id"))),
        "a model whose ID is taken: {result:?}"
    );

    let d = deployment();
    store.insert_deployment(&d).expect("insert");
    let result = store.insert_deployment(&d);
    assert!(
        matches!(result, Err(StoreError::Duplicate("client token"))),
        "a deployment whose ID, name and token are taken: {result:?}"
    );
    let retry = DeploymentRecord {
        id: "eeeeeeeeeeee".into(),
        ..d.clone()
    };
    let result = store.insert_deployment(&retry);
    assert!(
        matches!(result, Err(StoreError::Duplicate("client token"))),
        "a retry with the same name and token: {result:?}"
    );
    let same_name = DeploymentRecord {
        client_token: Some("other".into()),
        ..d.clone()
    };
    let result = store.insert_deployment(&same_name);
    assert!(
        matches!(result, Err(StoreError::Duplicate("name"))),
        "a deployment whose ID and name are taken: {result:?}"
    );
    let same_id = DeploymentRecord {
        name: "other".into(),
        client_token: None,
        ..d.clone()
    };
    let result = store.insert_deployment(&same_id);
    assert!(
        matches!(result, Err(StoreError::Duplicate("id"))),
        "a deployment whose ID is taken: {result:?}"
    );
    assert_eq!(
        store.list_deployments().expect("list"),
        vec![d],
        "a refused deployment was written"
    );
}

on_both_backends!(
    custom_models_insert_find_list_and_delete,
    deployments_are_found_by_id_name_or_token_and_repointed,
    duplicates_name_the_same_column_on_both_backends,
);
