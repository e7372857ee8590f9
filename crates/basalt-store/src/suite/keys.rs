//! Keys, metering and quota windows.

use std::time::Duration;

use super::eventually;
use crate::testing::{on_both_backends, Backend};
use crate::{
    AuditQuery, AuditRecord, InvocationRecord, KeyLimits, KeyRecord, QuotaClaim, QuotaWindow,
    StoreError,
};

fn key(id: &str, akid: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        name: format!("name-{id}"),
        access_key_id: akid.into(),
        bearer_sha256: format!("hash-{id}"),
        is_admin: false,
        created_at: 1,
        revoked_at: None,
        limits: KeyLimits::default(),
        retrieval_filter: None,
        policy: None,
    }
}

fn invocation(key: &str, model: &str, input: u64, outcome: &str, at_ms: i64) -> InvocationRecord {
    InvocationRecord {
        at_ms,
        request_id: "r".into(),
        key_id: Some(key.into()),
        key_name: Some(key.into()),
        model_id: model.into(),
        inference_type: "ON_DEMAND".into(),
        operation: "Converse".into(),
        input_tokens: input,
        output_tokens: 2,
        latency_ms: 10,
        first_token_ms: None,
        cost_usd: 0.5,
        outcome: outcome.into(),
        inference_profile: None,
        model_alias: None,
        agent_session: None,
        node: None,
    }
}

fn keys_round_trip_and_revoke_by_either_id(backend: &Backend) {
    let store = backend.open();
    store.insert_key(&key("k1", "AKIA1")).expect("insert");
    let mut admin = key("k2", "AKIA2");
    admin.is_admin = true;
    admin.retrieval_filter = Some(r#"{"equals":{"key":"t","value":"b"}}"#.into());
    admin.policy = Some(r#"{"Statement":[]}"#.into());
    store.insert_key(&admin).expect("insert");
    assert_eq!(
        store
            .key_by_access_key_id("AKIA1")
            .expect("get")
            .map(|k| k.id),
        Some("k1".into())
    );
    let got = store.key_by_bearer_sha256("hash-k2").expect("get");
    assert_eq!(got, Some(admin), "a key did not come back as stored");
    assert!(store.key_by_access_key_id("nope").expect("get").is_none());
    assert!(store.revoke_key("AKIA1", 5).expect("revoke"));
    assert!(
        !store.revoke_key("k1", 6).expect("revoke twice"),
        "second revoke must report nothing changed"
    );
    assert!(store.revoke_key("k2", 7).expect("revoke by id"));
    let keys = store.list_keys().expect("list");
    assert_eq!(
        keys.iter().map(|k| k.revoked_at).collect::<Vec<_>>(),
        vec![Some(5), Some(7)]
    );
    assert!(store
        .set_key_retrieval_filter("k1", Some(r#"{"equals":{"key":"t","value":"a"}}"#))
        .expect("set filter"));
    assert!(!store
        .set_key_retrieval_filter("nope", None)
        .expect("set filter"));
    assert_eq!(
        store
            .key_by_access_key_id("AKIA1")
            .expect("get")
            .and_then(|k| k.retrieval_filter)
            .as_deref(),
        Some(r#"{"equals":{"key":"t","value":"a"}}"#)
    );
}

fn duplicate_access_key_is_refused(backend: &Backend) {
    let store = backend.open();
    store.insert_key(&key("k1", "AKIA1")).expect("insert");
    let mut dup = key("k3", "AKIA1");
    dup.bearer_sha256 = "other".into();
    assert!(matches!(
        store.insert_key(&dup),
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        store.list_keys().expect("list").len(),
        1,
        "the refused key was written"
    );
}

fn usage_groups_by_key_and_model_within_the_period(backend: &Backend) {
    let store = backend.open();
    store
        .record_invocations(&[
            InvocationRecord {
                node: Some("node-a".into()),
                ..invocation("a", "m1", 10, "success", 100)
            },
            invocation("a", "m1", 5, "client_error", 150),
            invocation("b", "m1", 7, "success", 120),
            invocation("a", "m1", 99, "success", 500),
            invocation("b", "m1", 1, "throttled", 130),
        ])
        .expect("record");
    let rows = store.usage(0, 200).expect("usage");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0].key_name.as_str(),
            rows[0].invocations,
            rows[0].errors,
            rows[0].input_tokens
        ),
        ("a", 2, 1, 15)
    );
    assert_eq!(
        (
            rows[1].key_name.as_str(),
            rows[1].invocations,
            rows[1].input_tokens,
            rows[1].throttles,
            rows[1].errors
        ),
        ("b", 2, 8, 1, 1)
    );
    assert!((rows[0].cost_usd - 1.0).abs() < 1e-9);
    assert!((rows[0].avg_latency_ms - 10.0).abs() < 1e-9);
    let samples = store.invocation_samples(100, 151).expect("samples");
    assert_eq!(
        samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
        vec![100, 120, 130, 150],
        "samples must come oldest first, within the period"
    );
    assert_eq!(
        samples
            .iter()
            .map(|s| s.node.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("node-a"), None, None, None],
        "the serving node is kept"
    );
}

fn key_limits_and_quota_windows_round_trip(backend: &Backend) {
    let store = backend.open();
    store.insert_key(&key("k1", "AKIA1")).expect("insert");
    let limits = KeyLimits {
        requests_per_minute: Some(3),
        tokens_per_minute: None,
        monthly_budget_usd: Some(2.5),
    };
    assert!(store.set_key_limits("AKIA1", &limits).expect("set"));
    assert!(!store.set_key_limits("nope", &limits).expect("set"));
    let got = store
        .key_by_access_key_id("AKIA1")
        .expect("get")
        .expect("exists");
    assert_eq!(got.limits, limits);
    let claim = |start, requests, tokens| QuotaClaim {
        key_id: "k1".into(),
        model_id: "m".into(),
        window_start_ms: start,
        requests,
        tokens,
    };
    let totals = |start, requests, tokens| QuotaWindow {
        key_id: "k1".into(),
        model_id: "m".into(),
        window_start_ms: start,
        requests,
        tokens,
    };
    assert_eq!(
        store
            .claim_quota(&claim(60_000, 1, 10), Some(3), None)
            .expect("claim"),
        Some(totals(60_000, 1, 10))
    );
    assert_eq!(
        store
            .claim_quota(&claim(120_000, 2, 20), Some(3), Some(30))
            .expect("claim"),
        Some(totals(120_000, 2, 20))
    );
    assert_eq!(
        store
            .claim_quota(&claim(120_000, 2, 0), Some(3), Some(30))
            .expect("claim"),
        None,
        "2 + 2 requests must not fit a limit of 3"
    );
    assert_eq!(
        store
            .claim_quota(&claim(120_000, 0, 11), Some(3), Some(30))
            .expect("claim"),
        None,
        "20 + 11 tokens must not fit a limit of 30"
    );
    assert_eq!(
        store
            .claim_quota(&claim(180_000, 4, 0), Some(3), None)
            .expect("claim"),
        None,
        "a new window must not take more than its limit either"
    );
    assert_eq!(
        store
            .claim_quota(&claim(120_000, 1, 10), Some(3), Some(30))
            .expect("claim"),
        Some(totals(120_000, 3, 30)),
        "a claim that fits exactly is taken"
    );
    assert_eq!(
        store
            .claim_quota(&claim(120_000, -5, -4), Some(3), Some(30))
            .expect("give back"),
        Some(totals(120_000, 0, 26)),
        "giving back is never refused and never goes below zero"
    );
    assert_eq!(
        store.quota_windows_since(120_000).expect("load"),
        vec![totals(120_000, 0, 26)],
        "refused claims must have changed nothing"
    );
    store.prune_quota_windows(120_000).expect("prune");
    assert_eq!(store.quota_windows_since(0).expect("load").len(), 1);
    store
        .record_invocations(&[
            invocation("k1", "m", 1, "success", 100),
            invocation("k1", "m", 1, "success", 50),
        ])
        .expect("record");
    let spend = store.spend_by_key(60).expect("spend");
    assert_eq!(spend.len(), 1);
    assert!((spend[0].1 - 0.5).abs() < 1e-9, "{spend:?}");
}

fn migrations_apply_once_on_reopen(backend: &Backend) {
    backend
        .open()
        .insert_key(&key("k1", "AKIA1"))
        .expect("insert");
    let again = backend.open();
    assert_eq!(again.list_keys().expect("list").len(), 1);
}

fn change_marker_moves_when_another_handle_writes(backend: &Backend) {
    let server = backend.open();
    let before = server.change_marker().expect("marker");
    backend
        .open()
        .insert_key(&key("k1", "AKIA1"))
        .expect("insert");
    assert!(
        eventually(Duration::from_secs(5), || server
            .change_marker()
            .expect("marker")
            != before),
        "a key written through another handle did not move the change marker within 5 s"
    );
}

fn change_marker_moves_with_key_writes_only(backend: &Backend) {
    let store = backend.open();
    let before = store.change_marker().expect("marker");
    store
        .record_invocations(&[invocation("k1", "m1", 3, "success", 1)])
        .expect("metering write");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.change_marker().expect("marker"),
        before,
        "a metering write emptied the key cache"
    );
    store.insert_key(&key("k1", "AKIA1")).expect("insert");
    assert!(
        eventually(Duration::from_secs(5), || store
            .change_marker()
            .expect("marker")
            != before),
        "an inserted key did not move the marker"
    );
    let inserted = store.change_marker().expect("marker");
    assert!(store.revoke_key("k1", 5).expect("revoke"));
    assert!(
        eventually(Duration::from_secs(5), || store
            .change_marker()
            .expect("marker")
            != inserted),
        "a revocation did not move the marker"
    );
}

fn key_policies_round_trip(backend: &Backend) {
    let store = backend.open();
    store.insert_key(&key("k1", "AKIA1")).expect("insert");
    let policy =
        r#"{"Statement":[{"Effect":"Allow","Action":"bedrock:InvokeModel","Resource":"*"}]}"#;
    assert!(store.set_key_policy("AKIA1", Some(policy)).expect("set"));
    assert!(
        !store.set_key_policy("nope", Some(policy)).expect("set"),
        "no such key"
    );
    let got = store
        .key_by_access_key_id("AKIA1")
        .expect("get")
        .expect("key");
    assert_eq!(got.policy.as_deref(), Some(policy));
    assert!(store.set_key_policy("k1", None).expect("clear"));
    let got = store
        .key_by_access_key_id("AKIA1")
        .expect("get")
        .expect("key");
    assert_eq!(got.policy, None, "a cleared policy must read back as none");
}

fn the_audit_log_pages_and_filters_by_key(backend: &Backend) {
    let store = backend.open();
    let entry = |at_ms, key: &str, action: &str| AuditRecord {
        at_ms,
        request_id: format!("req-{at_ms}"),
        key_id: Some(format!("id-{key}")),
        key_name: key.into(),
        action: action.into(),
        resource: "*".into(),
        status: 200,
        source: "api".into(),
    };
    for (at, key, action) in [
        (10, "alice", "bedrock:CreateGuardrail"),
        (20, "bob", "bedrock:DeleteGuardrail"),
        (30, "alice", "basalt:RevokeKey"),
        (40, "alice", "bedrock:CreateKnowledgeBase"),
    ] {
        store.record_audit(&entry(at, key, action)).expect("record");
    }
    let all = store
        .audit_log(&AuditQuery {
            since_ms: 0,
            until_ms: 100,
            limit: 10,
            ..AuditQuery::default()
        })
        .expect("query");
    assert_eq!(
        all.iter().map(|(_, r)| r.at_ms).collect::<Vec<_>>(),
        vec![10, 20, 30, 40]
    );
    assert_eq!(
        all[0].1,
        entry(10, "alice", "bedrock:CreateGuardrail"),
        "an entry must read back as written"
    );
    let page = |after| {
        store
            .audit_log(&AuditQuery {
                since_ms: 0,
                until_ms: 100,
                key: Some("alice"),
                after,
                limit: 2,
            })
            .expect("query")
    };
    let first = page(None);
    assert_eq!(
        first.iter().map(|(_, r)| r.at_ms).collect::<Vec<_>>(),
        vec![10, 30]
    );
    let second = page(first.last().map(|(seq, _)| *seq));
    assert_eq!(
        second.iter().map(|(_, r)| r.at_ms).collect::<Vec<_>>(),
        vec![40]
    );
    let by_id = store
        .audit_log(&AuditQuery {
            since_ms: 15,
            until_ms: 35,
            key: Some("id-bob"),
            limit: 10,
            ..AuditQuery::default()
        })
        .expect("query");
    assert_eq!(
        by_id.len(),
        1,
        "a key ID and a period must both filter: {by_id:?}"
    );
}

fn a_reachable_store_answers_a_ping(backend: &Backend) {
    backend
        .open()
        .ping()
        .expect("a store that was just opened must answer");
}

on_both_backends!(
    a_reachable_store_answers_a_ping,
    key_policies_round_trip,
    the_audit_log_pages_and_filters_by_key,
    keys_round_trip_and_revoke_by_either_id,
    duplicate_access_key_is_refused,
    usage_groups_by_key_and_model_within_the_period,
    key_limits_and_quota_windows_round_trip,
    migrations_apply_once_on_reopen,
    change_marker_moves_when_another_handle_writes,
    change_marker_moves_with_key_writes_only,
);
