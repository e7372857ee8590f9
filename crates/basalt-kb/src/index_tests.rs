use serde_json::json;

use crate::filter::{Filter, Metadata};
use crate::index::{EmbeddedIndex, NewChunk, Query, SearchType};
use crate::store::ChunkStore;

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn chunk(text: &str, vector: &[f32], metadata: serde_json::Value) -> NewChunk {
    NewChunk {
        text: text.into(),
        context: None,
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        vector: unit(vector),
    }
}

fn open(dir: &std::path::Path) -> EmbeddedIndex {
    match EmbeddedIndex::open(dir, 3) {
        Ok(i) => i,
        Err(e) => panic!("open: {e}"),
    }
}

fn search(
    index: &EmbeddedIndex,
    vector: &[f32],
    text: &str,
    k: usize,
    filter: Option<&Filter>,
    search: SearchType,
) -> Vec<String> {
    let v = unit(vector);
    match index.search(&Query {
        vector: &v,
        text,
        k,
        filter,
        search,
    }) {
        Ok(hits) => hits.into_iter().map(|h| h.text).collect(),
        Err(e) => panic!("search: {e}"),
    }
}

#[test]
fn replacing_a_document_leaves_no_stale_chunks_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let index = open(dir.path());
        let put = index.put_document(
            "ds",
            "a.txt",
            "h1",
            vec![
                chunk("granite is intrusive", &[1.0, 0.0, 0.0], json!({})),
                chunk("basalt is extrusive", &[0.0, 1.0, 0.0], json!({})),
            ],
        );
        assert_eq!(put.ok(), Some(2));
        assert_eq!(
            index
                .put_document(
                    "ds",
                    "a.txt",
                    "h2",
                    vec![chunk("obsidian is glass", &[0.0, 0.0, 1.0], json!({}))]
                )
                .ok(),
            Some(1)
        );
        assert!(index.flush().is_ok());
        assert_eq!(index.chunk_count(), 1);
        assert_eq!(
            search(
                &index,
                &[0.0, 1.0, 0.0],
                "basalt",
                5,
                None,
                SearchType::Hybrid
            ),
            ["obsidian is glass"]
        );
        assert!(search(
            &index,
            &[0.0, 1.0, 0.0],
            "basalt",
            5,
            None,
            SearchType::Keyword
        )
        .is_empty());
    }
    let index = open(dir.path());
    assert_eq!(index.chunk_count(), 1);
    assert_eq!(
        index
            .documents("ds")
            .ok()
            .and_then(|d| d.get("a.txt").cloned())
            .as_deref(),
        Some("h2")
    );
    assert_eq!(
        search(
            &index,
            &[0.0, 0.0, 1.0],
            "glass",
            5,
            None,
            SearchType::Keyword
        ),
        ["obsidian is glass"]
    );
}

#[test]
fn a_keyword_index_that_lags_the_chunk_store_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let index = open(dir.path());
        assert!(index
            .put_document(
                "ds",
                "a",
                "h",
                vec![chunk("pumice floats", &[1.0, 0.0, 0.0], json!({}))]
            )
            .is_ok());
        // No flush: the process "crashes" with the keyword index behind.
    }
    let index = open(dir.path());
    assert_eq!(
        search(
            &index,
            &[1.0, 0.0, 0.0],
            "pumice",
            5,
            None,
            SearchType::Keyword
        ),
        ["pumice floats"]
    );
}

#[test]
fn filtered_search_still_fills_k_from_matching_chunks() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let index = open(dir.path());
    // 50 chunks of tenant a close to the query, 5 of tenant b far from it.
    for i in 0..50 {
        let c = chunk(
            &format!("rock a{i}"),
            &[1.0, 0.01 * i as f32, 0.0],
            json!({"tenant": "a"}),
        );
        assert!(index
            .put_document("ds", &format!("a{i}"), "h", vec![c])
            .is_ok());
    }
    for i in 0..5 {
        let c = chunk(
            &format!("rock b{i}"),
            &[0.0, 1.0, 0.1 * i as f32],
            json!({"tenant": "b"}),
        );
        assert!(index
            .put_document("ds", &format!("b{i}"), "h", vec![c])
            .is_ok());
    }
    assert!(index.flush().is_ok());
    let filter = Filter::parse(&json!({"equals": {"key": "tenant", "value": "b"}}))
        .unwrap_or_else(|e| panic!("{e}"));
    for mode in [
        SearchType::Semantic,
        SearchType::Hybrid,
        SearchType::Keyword,
    ] {
        let got = search(&index, &[1.0, 0.0, 0.0], "rock", 5, Some(&filter), mode);
        assert_eq!(got.len(), 5, "{mode:?}: {got:?}");
        assert!(
            got.iter().all(|t| t.starts_with("rock b")),
            "{mode:?}: {got:?}"
        );
    }
    let got = search(
        &index,
        &[1.0, 0.0, 0.0],
        "rock",
        3,
        None,
        SearchType::Semantic,
    );
    assert_eq!(got, ["rock a0", "rock a1", "rock a2"]);
}

#[test]
fn a_filtered_keyword_search_is_the_unfiltered_ranking_filtered() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let index = open(dir.path());
    // 400 chunks; "rock" appears 1..=8 times (so scores differ), and the tenant
    // attribute gives filters of every share: half, a tenth, one chunk in 200, none.
    for i in 0..400 {
        let text = format!("{} basalt {i}", "rock ".repeat(1 + i % 8));
        let tenant = match i {
            _ if i % 200 == 7 => "rare",
            _ if i % 10 == 3 => "tenth",
            _ if i % 2 == 0 => "half",
            _ => "other",
        };
        let c = chunk(&text, &[1.0, 0.0, 0.0], json!({ "tenant": tenant }));
        assert!(index
            .put_document("ds", &format!("d{i}"), "h", vec![c])
            .is_ok());
    }
    assert!(index.flush().is_ok());
    let everything = search(
        &index,
        &[1.0, 0.0, 0.0],
        "rock",
        400,
        None,
        SearchType::Keyword,
    );
    assert_eq!(everything.len(), 400);
    let tenant_of = |text: &str| -> &str {
        let i: usize = text
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match i {
            _ if i % 200 == 7 => "rare",
            _ if i % 10 == 3 => "tenth",
            _ if i % 2 == 0 => "half",
            _ => "other",
        }
    };
    for tenant in ["half", "tenth", "rare", "nobody"] {
        let filter = Filter::parse(&json!({"equals": {"key": "tenant", "value": tenant}}))
            .unwrap_or_else(|e| panic!("{e}"));
        for k in [1, 5, 20] {
            let got = search(
                &index,
                &[1.0, 0.0, 0.0],
                "rock",
                k,
                Some(&filter),
                SearchType::Keyword,
            );
            let want: Vec<String> = everything
                .iter()
                .filter(|t| tenant_of(t) == tenant)
                .take(k)
                .cloned()
                .collect();
            assert_eq!(got, want, "tenant {tenant}, k {k}");
        }
    }
}

#[test]
fn hybrid_ranks_a_chunk_both_methods_like_above_either_alone() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let index = open(dir.path());
    let docs = [
        ("vector only", [1.0, 0.0, 0.0]),
        ("zeolite keyword only", [0.0, 1.0, 0.0]),
        ("zeolite both", [0.9, 0.1, 0.0]),
    ];
    for (i, (text, v)) in docs.iter().enumerate() {
        assert!(index
            .put_document("ds", &i.to_string(), "h", vec![chunk(text, v, json!({}))])
            .is_ok());
    }
    assert!(index.flush().is_ok());
    let got = search(
        &index,
        &[1.0, 0.0, 0.0],
        "zeolite",
        1,
        None,
        SearchType::Hybrid,
    );
    assert_eq!(got, ["zeolite both"]);
}

#[test]
fn children_of_one_parent_come_back_once_as_the_parent() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let index = open(dir.path());
    let mut a = chunk("child one", &[1.0, 0.0, 0.0], json!({}));
    a.context = Some("parent text".into());
    let mut b = chunk("child two", &[0.9, 0.1, 0.0], json!({}));
    b.context = Some("parent text".into());
    let c = chunk("other", &[0.5, 0.5, 0.0], json!({}));
    assert!(index.put_document("ds", "p", "h", vec![a, b, c]).is_ok());
    let got = search(&index, &[1.0, 0.0, 0.0], "", 2, None, SearchType::Semantic);
    assert_eq!(got, ["parent text", "other"]);
}

#[test]
fn deleting_a_data_source_removes_only_its_chunks() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let index = open(dir.path());
    assert!(index
        .put_document(
            "one",
            "x",
            "h",
            vec![chunk("from one", &[1.0, 0.0, 0.0], json!({}))]
        )
        .is_ok());
    assert!(index
        .put_document(
            "two",
            "x",
            "h",
            vec![chunk("from two", &[1.0, 0.0, 0.0], json!({}))]
        )
        .is_ok());
    assert_eq!(index.delete_data_source("one").ok(), Some(1));
    assert_eq!(
        search(
            &index,
            &[1.0, 0.0, 0.0],
            "from",
            5,
            None,
            SearchType::Hybrid
        ),
        ["from two"]
    );
    let _: Metadata = Metadata::new();
}

#[test]
fn a_store_refuses_vectors_of_another_length() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    drop(open(dir.path()));
    assert!(EmbeddedIndex::open(dir.path(), 4).is_err());
    let index = open(dir.path());
    let bad = NewChunk {
        text: "x".into(),
        context: None,
        metadata: Metadata::new(),
        vector: vec![1.0; 4],
    };
    assert!(index.put_document("ds", "x", "h", vec![bad]).is_err());
}

#[test]
fn a_write_waits_for_another_writer_of_the_chunk_store_instead_of_failing() {
    // The approximate-index thread saves its build through its own connection; a
    // document written meanwhile must wait for it, not fail with "database is locked".
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let index = open(dir.path());
    let first = index.put_document(
        "ds",
        "a.txt",
        "h1",
        vec![chunk("one", &[1.0, 0.0, 0.0], json!({}))],
    );
    assert_eq!(first.ok(), Some(1));
    let other = rusqlite::Connection::open(dir.path().join("chunks.sqlite"))
        .unwrap_or_else(|e| panic!("{e}"));
    other
        .execute_batch("BEGIN IMMEDIATE; UPDATE state SET value = value WHERE key = 'generation';")
        .unwrap_or_else(|e| panic!("{e}"));
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        other.execute_batch("COMMIT").map_err(|e| e.to_string())
    });
    let second = index.put_document(
        "ds",
        "a.txt",
        "h2",
        vec![chunk("two", &[0.0, 1.0, 0.0], json!({}))],
    );
    assert_eq!(second.map_err(|e| e.to_string()), Ok(1));
    let deleted = index.delete_document("ds", "a.txt");
    assert_eq!(deleted.map_err(|e| e.to_string()), Ok(true));
    assert_eq!(release.join().ok(), Some(Ok(())));
}
