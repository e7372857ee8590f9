//! Provisioned throughput.

use crate::testing::{on_both_backends, Backend};
use crate::{ProvisionedRecord, StoreError};

fn record(id: &str, name: &str, token: Option<&str>) -> ProvisionedRecord {
    ProvisionedRecord {
        id: id.into(),
        name: name.into(),
        model_id: "m".into(),
        desired_model_id: "m".into(),
        model_units: 2,
        status: "InService".into(),
        failure_message: None,
        commitment: None,
        commitment_expires_ms: None,
        client_token: token.map(str::to_string),
        created_ms: 1,
        updated_ms: 1,
    }
}

fn names_and_tokens_are_unique_and_lookups_take_id_or_name(backend: &Backend) {
    let store = backend.open();
    store
        .insert_provisioned(&record("p1", "alpha", Some("t1")))
        .expect("insert");
    let same_name = store.insert_provisioned(&record("p2", "alpha", None));
    assert!(
        matches!(same_name, Err(StoreError::Duplicate("name"))),
        "a second provisioned model of the same name: {same_name:?}"
    );
    let same_token = store.insert_provisioned(&record("p3", "beta", Some("t1")));
    assert!(
        matches!(same_token, Err(StoreError::Duplicate("client token"))),
        "a second provisioned model with the same client token: {same_token:?}"
    );
    assert_eq!(
        store.provisioned("alpha").expect("get").map(|r| r.id),
        Some("p1".into()),
        "a lookup by name"
    );
    assert_eq!(
        store
            .provisioned_by_client_token("t1")
            .expect("get")
            .map(|r| r.name),
        Some("alpha".into())
    );
    let mut renamed = record("p1", "gamma", None);
    renamed.status = "Failed".into();
    store.update_provisioned(&renamed).expect("update");
    let got = store.provisioned("p1").expect("get").expect("exists");
    assert_eq!(
        (got.name.as_str(), got.status.as_str(), got.model_units),
        ("gamma", "Failed", 2),
        "the update must replace name and status and keep the units"
    );
    assert!(store.delete_provisioned("p1").expect("delete"));
    assert!(store.list_provisioned().expect("list").is_empty());
}

on_both_backends!(names_and_tokens_are_unique_and_lookups_take_id_or_name);
