//! The approximate index against exact search, in the vector set and in the store.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::ann::AnnParams;
use crate::filter::{Filter, Metadata};
use crate::index::{EmbeddedIndex, NewChunk, Query, SearchType};
use crate::vectors::VectorSet;

const D: usize = 32;

/// Unit vectors around 200 random centres (deterministic).
struct Clustered {
    state: u64,
    centres: Vec<Vec<f32>>,
}

impl Clustered {
    fn new() -> Self {
        let mut data = Self {
            state: 0x2545_f491_4f6c_dd1d,
            centres: Vec::new(),
        };
        data.centres = (0..200)
            .map(|_| unit((0..D).map(|_| data.uniform()).collect()))
            .collect();
        data
    }

    fn uniform(&mut self) -> f32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    fn vector(&mut self) -> Vec<f32> {
        let c = ((self.uniform() + 0.5) * 199.99) as usize;
        let centre = self.centres[c].clone();
        unit(centre.iter().map(|x| x + 0.15 * self.uniform()).collect())
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

/// Built from 10,000 vectors; a query reads 5 % of them (1,000 of 20,000).
fn params() -> AnnParams {
    AnnParams {
        build_from: 10_000,
        scan_fraction: 0.05,
        scan_min: 512,
        ..AnnParams::default()
    }
}

fn ids(set: &VectorSet, hits: &[(usize, f32)]) -> Vec<i64> {
    hits.iter().filter_map(|(s, _)| set.id_of(*s)).collect()
}

fn filled(n: usize, data: &mut Clustered) -> VectorSet {
    let mut set = VectorSet::with_params(D, params());
    for id in 0..n {
        let mut metadata = Metadata::new();
        metadata.insert("rare".into(), json!(id % 1000 == 7));
        set.push(id as i64, &data.vector(), &metadata, id as u64);
    }
    set
}

fn mean_recall(set: &VectorSet, queries: &[Vec<f32>], filter: Option<&Filter>) -> f64 {
    let total: f64 = queries
        .iter()
        .map(|q| {
            let got = ids(set, &set.top(q, 10, filter));
            let want = ids(set, &set.exact_top(q, 10, filter));
            let hit = got.iter().filter(|id| want.contains(id)).count();
            hit as f64 / want.len().max(1) as f64
        })
        .sum();
    total / queries.len() as f64
}

#[test]
fn the_inverted_file_keeps_recall_against_exact_search() {
    let mut data = Clustered::new();
    let mut set = filled(20_000, &mut data);
    assert!(set.ann_due(), "20,000 vectors should call for the index");
    set.build_ann();
    assert!(set.ann_lists() >= 64, "cells: {}", set.ann_lists());
    assert!(!set.ann_due(), "a fresh build is not due again");
    let queries: Vec<Vec<f32>> = (0..50).map(|_| data.vector()).collect();
    let recall = mean_recall(&set, &queries, None);
    assert!(recall >= 0.95, "recall@10 {recall:.3}");
}

#[test]
fn a_rare_filter_reads_more_cells_until_it_fills_k() {
    let mut data = Clustered::new();
    let mut set = filled(20_000, &mut data);
    set.build_ann();
    // 20 of the 20,000 match: scattered over the cells.
    let rare = Filter::parse(&json!({"equals": {"key": "rare", "value": true}}))
        .unwrap_or_else(|e| panic!("{e}"));
    let queries: Vec<Vec<f32>> = (0..10).map(|_| data.vector()).collect();
    for q in &queries {
        let got = ids(&set, &set.top(q, 10, Some(&rare)));
        assert_eq!(got.len(), 10, "a filtered query came back short: {got:?}");
        assert!(got.iter().all(|id| id % 1000 == 7), "{got:?}");
    }
    assert!(mean_recall(&set, &queries, Some(&rare)) >= 0.95);
}

#[test]
fn vectors_written_and_removed_after_the_build_are_found_and_forgotten() {
    let mut data = Clustered::new();
    let mut set = filled(20_000, &mut data);
    set.build_ann();
    let fresh = data.vector();
    set.push(50_000, &fresh, &Metadata::new(), 50_000);
    assert_eq!(ids(&set, &set.top(&fresh, 1, None)), vec![50_000]);
    set.remove(50_000);
    assert!(!ids(&set, &set.top(&fresh, 10, None)).contains(&50_000));
    // Removing most vectors compacts the set; the cells follow the new slots.
    for id in 0..15_000 {
        set.remove(id);
    }
    let queries: Vec<Vec<f32>> = (0..30).map(|_| data.vector()).collect();
    for q in &queries {
        let got = ids(&set, &set.top(q, 10, None));
        assert!(
            got.iter().all(|id| (15_000..20_000).contains(id)),
            "{got:?}"
        );
    }
    assert!(mean_recall(&set, &queries, None) >= 0.95);
}

fn wait_for_index(index: &EmbeddedIndex) {
    let started = Instant::now();
    while index.ann_building() || index.ann_cells() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the approximate index was not built"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_store_builds_the_index_in_the_background_and_reuses_it_after_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut data = Clustered::new();
    let target = data.vector();
    let queries: Vec<Vec<f32>> = (0..20).map(|_| data.vector()).collect();
    let before = {
        let index = EmbeddedIndex::open_with(dir.path(), D, params())
            .unwrap_or_else(|e| panic!("open: {e}"));
        for doc in 0..120 {
            let chunks = (0..100)
                .map(|i| NewChunk {
                    text: format!("chunk {doc}-{i}"),
                    context: None,
                    metadata: Metadata::new(),
                    vector: if doc == 77 && i == 3 {
                        target.clone()
                    } else {
                        data.vector()
                    },
                })
                .collect();
            let put = index.put_document("ds", &format!("doc{doc}.txt"), "h", chunks);
            assert_eq!(put.ok(), Some(100));
        }
        wait_for_index(&index);
        let hits = index
            .search(&Query {
                vector: &target,
                text: "",
                k: 1,
                filter: None,
                search: SearchType::Semantic,
            })
            .unwrap_or_else(|e| panic!("search: {e}"));
        assert_eq!(hits.first().map(|h| h.text.as_str()), Some("chunk 77-3"));
        let mut recall = 0.0;
        for q in &queries {
            let exact = index
                .exact_vector_search(q, 10, None)
                .unwrap_or_else(|e| panic!("{e}"));
            let got = semantic_ids(&index, q);
            recall += got.iter().filter(|id| exact.contains(id)).count() as f64 / 10.0;
        }
        assert!(recall / queries.len() as f64 >= 0.95, "recall {recall}");
        (index.ann_cells(), semantic_ids(&index, &queries[0]))
    };
    let reopened =
        EmbeddedIndex::open_with(dir.path(), D, params()).unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(
        reopened.ann_cells(),
        before.0,
        "the saved index should be in use as soon as the store opens"
    );
    assert!(
        !reopened.ann_building(),
        "nothing to rebuild after a restart"
    );
    assert_eq!(semantic_ids(&reopened, &queries[0]), before.1);
}

fn semantic_ids(index: &EmbeddedIndex, vector: &[f32]) -> Vec<i64> {
    index
        .search(&Query {
            vector,
            text: "",
            k: 10,
            filter: None,
            search: SearchType::Semantic,
        })
        .unwrap_or_else(|e| panic!("search: {e}"))
        .into_iter()
        .map(|h| h.chunk_id)
        .collect()
}

#[test]
fn the_full_int8_scan_tests_a_selective_filter_first_and_a_wide_one_after() {
    let mut data = Clustered::new();
    let mut set = filled(12_000, &mut data);
    for id in 12_000..13_000i64 {
        let mut metadata = Metadata::new();
        metadata.insert("rare".into(), json!(false));
        metadata.insert("wide".into(), json!(true));
        set.push(id, &data.vector(), &metadata, id as u64);
    }
    assert_eq!(
        set.ann_lists(),
        0,
        "no approximate index here: the full scan runs"
    );
    let rare = Filter::parse(&json!({"equals": {"key": "rare", "value": true}}))
        .unwrap_or_else(|e| panic!("{e}"));
    let wide = Filter::parse(&json!({"notEquals": {"key": "rare", "value": true}}))
        .unwrap_or_else(|e| panic!("{e}"));
    let queries: Vec<Vec<f32>> = (0..10).map(|_| data.vector()).collect();
    for q in &queries {
        let got = ids(&set, &set.top(q, 10, Some(&rare)));
        assert_eq!(
            got,
            ids(&set, &set.exact_top(q, 10, Some(&rare))),
            "rare filter"
        );
        let got = ids(&set, &set.top(q, 10, Some(&wide)));
        assert!(got.iter().all(|id| id % 1000 != 7), "{got:?}");
    }
    assert!(mean_recall(&set, &queries, Some(&wide)) >= 0.99);
}
