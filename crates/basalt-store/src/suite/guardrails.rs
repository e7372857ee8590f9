//! Guardrail versions: the DRAFT, numbered snapshots, unique names and tokens.

use crate::testing::{on_both_backends, Backend};
use crate::{GuardrailRecord, StoreError, DRAFT};

fn draft(id: &str, name: &str, token: &str) -> GuardrailRecord {
    GuardrailRecord {
        id: id.into(),
        version: DRAFT.into(),
        name: name.into(),
        description: Some("d".into()),
        policy_json: "{}".into(),
        blocked_input_messaging: "no".into(),
        blocked_outputs_messaging: "no".into(),
        kms_key_id: None,
        tags_json: None,
        client_token: Some(token.into()),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

fn versions_snapshot_the_draft_and_number_upwards(backend: &Backend) {
    let store = backend.open();
    store
        .create_guardrail(&draft("g1", "first", "t1"))
        .expect("create");
    assert_eq!(
        store
            .create_guardrail_version("g1", Some("v1"), Some("t2"), 5)
            .expect("v1"),
        Some("1".into()),
        "the first version must be numbered 1"
    );
    let mut edited = draft("g1", "first", "t1");
    edited.policy_json = r#"{"words":[]}"#.into();
    assert!(
        store.update_guardrail_draft(&edited).expect("update"),
        "the DRAFT update must report a change"
    );
    assert_eq!(
        store
            .create_guardrail_version("g1", None, None, 6)
            .expect("v2"),
        Some("2".into()),
        "the second version must be numbered 2"
    );
    let v1 = store.guardrail("g1", "1").expect("get").expect("v1 exists");
    assert_eq!(
        (v1.policy_json.as_str(), v1.description.as_deref()),
        ("{}", Some("v1")),
        "version 1 must snapshot the DRAFT as it was, with its own description"
    );
    let v2 = store.guardrail("g1", "2").expect("get").expect("v2 exists");
    assert_eq!(
        v2.policy_json, r#"{"words":[]}"#,
        "version 2 must snapshot the edited DRAFT"
    );
    let versions: Vec<String> = store
        .list_guardrails(Some("g1"))
        .expect("list")
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, vec!["DRAFT", "1", "2"], "versions in order");
    assert_eq!(
        store
            .create_guardrail_version("nope", None, None, 7)
            .expect("none"),
        None,
        "a version of a missing guardrail"
    );
}

fn names_and_tokens_are_unique_and_deletes_are_scoped(backend: &Backend) {
    let store = backend.open();
    store
        .create_guardrail(&draft("g1", "same", "t1"))
        .expect("create");
    let same_name = store.create_guardrail(&draft("g2", "same", "t2"));
    assert!(
        matches!(same_name, Err(StoreError::Duplicate("name"))),
        "a second guardrail of the same name: {same_name:?}"
    );
    let same_token = store.create_guardrail(&draft("g3", "other", "t1"));
    assert!(
        matches!(same_token, Err(StoreError::Duplicate("client token"))),
        "a second guardrail with the same client token: {same_token:?}"
    );
    store
        .create_guardrail_version("g1", None, None, 2)
        .expect("v1");
    assert!(
        !store
            .delete_guardrail("g1", Some("DRAFT"))
            .expect("draft is not deletable alone"),
        "the DRAFT alone must not be deletable"
    );
    assert!(store.delete_guardrail("g1", Some("1")).expect("delete v1"));
    assert!(
        store.guardrail("g1", DRAFT).expect("get").is_some(),
        "deleting a version must keep the DRAFT"
    );
    assert!(store.delete_guardrail("g1", None).expect("delete all"));
    assert!(
        store.list_guardrails(None).expect("list").is_empty(),
        "deleting the guardrail must delete every version"
    );
}

on_both_backends!(
    versions_snapshot_the_draft_and_number_upwards,
    names_and_tokens_are_unique_and_deletes_are_scoped,
);
