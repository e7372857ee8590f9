//! Query latency of the embedded store (`benches/kb_latency.sh` runs it beside FAISS).
//!
//! Synthetic data (clustered unit vectors: 1,000 Gaussian clusters in 384 dimensions;
//! chunk texts of 40 words drawn from a Zipf-like 5,000-word vocabulary), because the
//! figures are about the index, not the embedding model:
//! - the whole store (SQLite + vectors + tantivy) at 10k and 100k chunks: semantic,
//!   hybrid and filtered (10 % selectivity) queries through `EmbeddedIndex::search`;
//! - the vector set alone at 1M vectors.
//!
//! Each prints p50/p99 over 300 queries and recall@10 against exact search.
//! `cargo run --release -p basalt-kb --example kb_latency -- <out dir> [sizes…]`
//! writes the 1M vectors and the queries as raw little-endian f32 for the peer.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use basalt_kb::filter::{Filter, Metadata};
use basalt_kb::index::{EmbeddedIndex, NewChunk, Query, SearchType};
use basalt_kb::vectors::VectorSet;

const D: usize = 384;
const QUERIES: usize = 300;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-7), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

struct Data {
    centers: Vec<Vec<f32>>,
    rng: Rng,
}

impl Data {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let centers = (0..1000)
            .map(|_| unit((0..D).map(|_| rng.normal()).collect()))
            .collect();
        Self { centers, rng }
    }
    fn vector(&mut self) -> Vec<f32> {
        let c = (self.rng.next() % self.centers.len() as u64) as usize;
        let noise = 0.06;
        let center = &self.centers[c];
        unit(
            center
                .iter()
                .map(|x| x + noise * self.rng.normal())
                .collect(),
        )
    }
    fn text(&mut self) -> String {
        (0..40)
            .map(|_| {
                let r = self.rng.uniform();
                format!("w{}", (5000.0 * r * r * r) as usize)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (at(0.50), at(0.99))
}

fn recall(got: &[i64], exact: &[i64]) -> f64 {
    let hits = got.iter().filter(|id| exact.contains(id)).count();
    hits as f64 / exact.len().max(1) as f64
}

fn store(n: usize) {
    let dir = std::env::temp_dir().join(format!("basalt-kb-latency-{n}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let index = EmbeddedIndex::open(&dir, D).unwrap();
    let mut data = Data::new(7);
    let started = Instant::now();
    for doc in 0..n / 100 {
        let chunks = (0..100)
            .map(|i| {
                let mut metadata = Metadata::new();
                metadata.insert("group".into(), serde_json::json!((doc * 100 + i) % 10));
                NewChunk {
                    text: data.text(),
                    context: None,
                    metadata,
                    vector: data.vector(),
                }
            })
            .collect();
        index
            .put_document("ds", &format!("doc{doc}"), "h", chunks)
            .unwrap();
    }
    index.flush().unwrap();
    println!(
        "store n={n}: loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let filter =
        Filter::parse(&serde_json::json!({"equals": {"key": "group", "value": 3}})).unwrap();
    let queries: Vec<(Vec<f32>, String)> =
        (0..QUERIES).map(|_| (data.vector(), data.text())).collect();
    for (name, search, filter) in [
        ("semantic", SearchType::Semantic, None),
        ("hybrid", SearchType::Hybrid, None),
        ("semantic+filter", SearchType::Semantic, Some(&filter)),
        ("hybrid+filter", SearchType::Hybrid, Some(&filter)),
    ] {
        let mut times = Vec::new();
        let mut recalls = Vec::new();
        for (vector, text) in &queries {
            let words: String = text.split(' ').take(4).collect::<Vec<_>>().join(" ");
            let q = Query {
                vector,
                text: &words,
                k: 10,
                filter,
                search,
            };
            let t = Instant::now();
            let hits = index.search(&q).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if search == SearchType::Semantic {
                let exact = index.exact_vector_search(vector, 10, filter).unwrap();
                let got: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
                recalls.push(recall(&got, &exact));
            }
        }
        let (p50, p99) = percentiles(times);
        let r = if recalls.is_empty() {
            String::from("-")
        } else {
            format!("{:.3}", recalls.iter().sum::<f64>() / recalls.len() as f64)
        };
        println!("store n={n} {name:16} p50={p50:.2} ms p99={p99:.2} ms recall@10={r}");
    }
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_f32(path: &Path, rows: &[Vec<f32>]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for r in rows {
        for x in r {
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
}

fn vectors_alone(n: usize, out: Option<&Path>) {
    let mut data = Data::new(11);
    let mut set = VectorSet::new(D);
    let mut rows = Vec::new();
    for id in 0..n {
        let v = data.vector();
        set.push(id as i64, &v, &Metadata::new(), id as u64);
        if out.is_some() {
            rows.push(v);
        }
    }
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| data.vector()).collect();
    if let Some(dir) = out {
        write_f32(&dir.join("base.f32"), &rows);
        write_f32(&dir.join("queries.f32"), &queries);
    }
    drop(rows);
    let (mut fast, mut exact, mut recalls) = (Vec::new(), Vec::new(), Vec::new());
    for q in &queries {
        let t = Instant::now();
        let got = set.top(q, 10, None);
        fast.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let truth = set.exact_top(q, 10, None);
        exact.push(t.elapsed().as_secs_f64() * 1000.0);
        let got: Vec<i64> = got.iter().filter_map(|(s, _)| set.id_of(*s)).collect();
        let truth: Vec<i64> = truth.iter().filter_map(|(s, _)| set.id_of(*s)).collect();
        recalls.push(recall(&got, &truth));
    }
    let (p50, p99) = percentiles(fast);
    let (e50, e99) = percentiles(exact);
    println!(
        "vectors n={n} int8+rescore p50={p50:.2} ms p99={p99:.2} ms recall@10={:.3}; exact f32 p50={e50:.2} ms p99={e99:.2} ms",
        recalls.iter().sum::<f64>() / recalls.len() as f64
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().map(std::path::PathBuf::from);
    let sizes: Vec<String> = args.collect();
    let sizes: Vec<&str> = if sizes.is_empty() {
        vec!["store:10000", "store:100000", "vectors:1000000"]
    } else {
        sizes.iter().map(String::as_str).collect()
    };
    for size in sizes {
        match size.split_once(':') {
            Some(("store", n)) => store(n.parse().unwrap()),
            Some(("vectors", n)) => vectors_alone(n.parse().unwrap(), out.as_deref()),
            _ => println!("unknown size {size}; use store:N or vectors:N"),
        }
    }
}
