//! Agents' records: versions, aliases, sessions and memories.

use crate::testing::{on_both_backends, Backend};
use crate::{AgentKind, AgentRecord, StoreError};

fn record(kind: AgentKind, agent: &str, key: &str, name: Option<(&str, &str)>) -> AgentRecord {
    AgentRecord {
        kind,
        agent_id: agent.into(),
        key: key.into(),
        name: name.map(|(s, n)| (s.into(), n.into())),
        body: "{}".into(),
        revision: 1,
        created_ms: 1,
        updated_ms: 1,
        expires_ms: None,
    }
}

fn names_are_unique_in_their_scope_only(backend: &Backend) {
    let store = backend.open();
    let draft = record(AgentKind::Version, "A1", "DRAFT", Some(("agents", "bot")));
    store.insert_agent_record(&draft).expect("insert");
    let clash = record(AgentKind::Version, "A2", "DRAFT", Some(("agents", "bot")));
    let result = store.insert_agent_record(&clash);
    assert!(
        matches!(result, Err(StoreError::Duplicate("name"))),
        "a second agent named bot: {result:?}"
    );
    // Numbered versions carry no name; aliases are scoped by agent.
    store
        .insert_agent_record(&record(AgentKind::Version, "A1", "1", None))
        .expect("version 1");
    store
        .insert_agent_record(&record(AgentKind::Version, "A1", "2", None))
        .expect("version 2");
    store
        .insert_agent_record(&record(AgentKind::Alias, "A1", "X1", Some(("A1", "live"))))
        .expect("alias");
    store
        .insert_agent_record(&record(AgentKind::Alias, "A2", "X2", Some(("A2", "live"))))
        .expect("same alias name, other agent");
    let result =
        store.insert_agent_record(&record(AgentKind::Alias, "A1", "X3", Some(("A1", "live"))));
    assert!(
        matches!(result, Err(StoreError::Duplicate("name"))),
        "a second alias named live in one agent: {result:?}"
    );
    let result = store.insert_agent_record(&record(AgentKind::Version, "A1", "1", None));
    assert!(
        matches!(result, Err(StoreError::Duplicate("id"))),
        "version 1 twice: {result:?}"
    );
    let versions = store
        .list_agent_records(AgentKind::Version, Some("A1"))
        .expect("list");
    assert_eq!(
        versions.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["1", "2", "DRAFT"],
        "versions of one agent, oldest first then by key"
    );
}

fn a_record_whose_key_and_name_are_both_taken_is_a_duplicate_name(backend: &Backend) {
    let store = backend.open();
    let draft = record(AgentKind::Version, "A1", "DRAFT", Some(("agents", "bot")));
    store.insert_agent_record(&draft).expect("insert");
    let result = store.insert_agent_record(&draft);
    assert!(
        matches!(result, Err(StoreError::Duplicate("name"))),
        "the same draft twice (SQLite names the name): {result:?}"
    );
    let mut renamed = record(AgentKind::Version, "A1", "1", Some(("agents", "other")));
    store
        .insert_agent_record(&renamed)
        .expect("a second named row");
    renamed.name = Some(("agents".into(), "bot".into()));
    let result = store.update_agent_record(&renamed);
    assert!(
        matches!(result, Err(StoreError::Duplicate("name"))),
        "renaming onto a taken name: {result:?}"
    );
    let all = store
        .list_agent_records(AgentKind::Version, None)
        .expect("list");
    assert_eq!(all.len(), 2, "a refused write changed the records: {all:?}");
}

fn updates_are_compare_and_swap_on_the_revision(backend: &Backend) {
    let store = backend.open();
    let mut draft = record(AgentKind::Version, "A1", "DRAFT", Some(("agents", "bot")));
    store.insert_agent_record(&draft).expect("insert");
    draft.body = r#"{"a":1}"#.into();
    assert!(
        store.update_agent_record(&draft).expect("first edit"),
        "the first edit was refused"
    );
    // A second writer that read revision 1 loses.
    draft.body = r#"{"a":2}"#.into();
    assert!(
        !store.update_agent_record(&draft).expect("stale edit"),
        "an edit of a stale revision was applied"
    );
    let stored = store
        .agent_record(AgentKind::Version, "A1", "DRAFT")
        .expect("read")
        .expect("present");
    assert_eq!((stored.revision, stored.body.as_str()), (2, r#"{"a":1}"#));
}

fn deleting_an_agent_drops_every_kind_and_expiry_lists_idle_sessions(backend: &Backend) {
    let store = backend.open();
    store
        .insert_agent_record(&record(
            AgentKind::Version,
            "A1",
            "DRAFT",
            Some(("agents", "bot")),
        ))
        .expect("agent");
    let mut session = record(AgentKind::Session, "A1", "TSTALIASID/s1", None);
    session.expires_ms = Some(100);
    store.insert_agent_record(&session).expect("session");
    let mut fresh = record(AgentKind::Session, "A1", "TSTALIASID/s2", None);
    fresh.expires_ms = Some(1_000);
    store.insert_agent_record(&fresh).expect("session 2");
    let expired = store
        .expired_agent_records(AgentKind::Session, 500, 10)
        .expect("expired");
    assert_eq!(expired.len(), 1, "expired sessions: {expired:?}");
    assert_eq!(expired[0].key, "TSTALIASID/s1");
    assert!(
        store.delete_agent("A1").expect("delete"),
        "deleting the agent found nothing"
    );
    assert!(
        store
            .list_agent_records(AgentKind::Session, Some("A1"))
            .expect("list")
            .is_empty(),
        "a session outlived its agent"
    );
    assert!(
        store
            .agent_record(AgentKind::Version, "A1", "DRAFT")
            .expect("read")
            .is_none(),
        "the draft outlived its agent"
    );
}

on_both_backends!(
    names_are_unique_in_their_scope_only,
    a_record_whose_key_and_name_are_both_taken_is_a_duplicate_name,
    updates_are_compare_and_swap_on_the_revision,
    deleting_an_agent_drops_every_kind_and_expiry_lists_idle_sessions,
);
