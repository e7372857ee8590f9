//! Application inference profiles.

use crate::testing::{on_both_backends, Backend};
use crate::{InferenceProfileRecord, StoreError};

fn profile(id: &str, name: &str, token: Option<&str>) -> InferenceProfileRecord {
    InferenceProfileRecord {
        id: id.into(),
        name: name.into(),
        description: None,
        model_id: "m".into(),
        tags_json: None,
        client_token: token.map(str::to_owned),
        created_ms: 1,
        updated_ms: 1,
    }
}

fn names_and_tokens_are_unique_and_rows_round_trip(backend: &Backend) {
    let store = backend.open();
    store
        .insert_inference_profile(&profile("p1", "team-a", Some("t1")))
        .expect("insert");
    let same_name = store.insert_inference_profile(&profile("p2", "team-a", None));
    assert!(
        matches!(same_name, Err(StoreError::Duplicate("name"))),
        "a second profile of the same name: {same_name:?}"
    );
    let same_token = store.insert_inference_profile(&profile("p3", "team-b", Some("t1")));
    assert!(
        matches!(same_token, Err(StoreError::Duplicate("client token"))),
        "a second profile with the same client token: {same_token:?}"
    );
    assert_eq!(
        store.inference_profile("p1").expect("get"),
        Some(profile("p1", "team-a", Some("t1"))),
        "a profile did not come back as stored"
    );
    assert_eq!(
        store
            .inference_profile_by_client_token("t1")
            .expect("get")
            .map(|p| p.id),
        Some("p1".into())
    );
    assert_eq!(
        store.list_inference_profiles().expect("list").len(),
        1,
        "the refused profiles were written"
    );
    assert!(store.delete_inference_profile("p1").expect("delete"));
    assert!(
        !store.delete_inference_profile("p1").expect("delete"),
        "a second delete must report nothing deleted"
    );
    assert!(store.inference_profile("p1").expect("get").is_none());
}

on_both_backends!(names_and_tokens_are_unique_and_rows_round_trip);
