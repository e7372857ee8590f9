//! Query latency of the embedded store (`benches/kb_latency.sh` runs it beside FAISS).
//!
//! Synthetic data (clustered unit vectors: 1,000 Gaussian clusters in 384 dimensions;
//! chunk texts of 40 words drawn from a Zipf-like 5,000-word vocabulary), because the
//! figures are about the index, not the embedding model:
//! - the whole store (SQLite + vectors + tantivy) at 10k and 100k chunks: semantic,
//!   hybrid and filtered (10 % selectivity) queries through `EmbeddedIndex::search`;
//! - the vector set alone at 1M vectors (`vectors:N`), or on vectors another program
//!   wrote (`file:DIR`, real sentence embeddings from benches/kb_ann_real.sh).
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
    while index.ann_building() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if index.ann_cells() > 0 {
        println!(
            "store n={n}: approximate index of {} cells ready {:.1} s after the start",
            index.ann_cells(),
            started.elapsed().as_secs_f64()
        );
    }
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
    let rows: Vec<Vec<f32>> = (0..n).map(|_| data.vector()).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| data.vector()).collect();
    if let Some(dir) = out {
        write_f32(&dir.join("base.f32"), &rows);
        write_f32(&dir.join("queries.f32"), &queries);
    }
    measure_vectors(&format!("n={n}"), rows, &queries);
}

/// The vectors (and queries) another program wrote: `base.f32` and `queries.f32` in
/// `dir`, raw little-endian f32 rows of 384 (benches/kb_ann_real.sh).
fn vectors_from(dir: &Path) {
    let read = |name: &str| -> Vec<Vec<f32>> {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        bytes
            .chunks_exact(4 * D)
            .map(|row| {
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect()
    };
    let rows = read("base.f32");
    let queries = read("queries.f32");
    measure_vectors(&format!("n={} (real)", rows.len()), rows, &queries);
}

/// Latency and recall@10 of the exact scan, the int8 scan and (when the set is large
/// enough to build one) the approximate index, without and with a 10 % filter.
fn measure_vectors(label: &str, rows: Vec<Vec<f32>>, queries: &[Vec<f32>]) {
    let mut set = VectorSet::new(D);
    for (id, v) in rows.into_iter().enumerate() {
        let mut metadata = Metadata::new();
        metadata.insert("group".into(), serde_json::json!(id % 10));
        set.push(id as i64, &v, &metadata, id as u64);
    }
    let filter =
        Filter::parse(&serde_json::json!({"equals": {"key": "group", "value": 3}})).unwrap();
    let truth: Vec<Vec<i64>> = queries
        .iter()
        .map(|q| ids(&set, &set.exact_top(q, 10, None)))
        .collect();
    let filtered_truth: Vec<Vec<i64>> = queries
        .iter()
        .map(|q| ids(&set, &set.exact_top(q, 10, Some(&filter))))
        .collect();
    let mut exact = Vec::new();
    for q in queries {
        let t = Instant::now();
        std::hint::black_box(set.exact_top(q, 10, None));
        exact.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (e50, e99) = percentiles(exact);
    println!(
        "vectors {label} {:26} p50={e50:.2} ms p99={e99:.2} ms recall@10=1.000",
        "exact f32 scan"
    );
    let measure = |set: &VectorSet, name: &str| {
        for (suffix, filter, truth) in [
            ("", None, &truth),
            (" +filter", Some(&filter), &filtered_truth),
        ] {
            let (mut times, mut recalls) = (Vec::new(), Vec::new());
            for (q, want) in queries.iter().zip(truth) {
                let t = Instant::now();
                let got = set.top(q, 10, filter);
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                recalls.push(recall(&ids(set, &got), want));
            }
            let (p50, p99) = percentiles(times);
            println!(
                "vectors {label} {:26} p50={p50:.2} ms p99={p99:.2} ms recall@10={:.3}",
                format!("{name}{suffix}"),
                recalls.iter().sum::<f64>() / recalls.len() as f64
            );
        }
    };
    // What a filtered query pays before reading any vector: the filter's slots as a
    // bitset (one pass over the attribute's codes).
    let mut alone = Vec::new();
    for _ in queries {
        let t = Instant::now();
        std::hint::black_box(set.passing_slots(&filter));
        alone.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (f50, f99) = percentiles(alone);
    println!(
        "vectors {label} {:26} p50={f50:.2} ms p99={f99:.2} ms",
        "filter's slots alone"
    );
    measure(&set, "int8 scan+rescore");
    // Built from 65,536 vectors here (the store waits for 262,144 by default, the
    // int8 scan being fast enough below) so that smaller real sets measure it too.
    if set.live() >= 65_536 {
        let t = Instant::now();
        set.build_ann();
        println!(
            "vectors {label} approximate index: {} cells built in {:.1} s (scans {:.0} % of the vectors, at least {})",
            set.ann_lists(),
            t.elapsed().as_secs_f64(),
            set.params().scan_fraction * 100.0,
            set.params().scan_min
        );
        measure(&set, "IVF+int8+rescore");
        // SCAN_FRACTIONS="0.02 0.08": the same index read deeper or shallower.
        let sweep = std::env::var("SCAN_FRACTIONS").unwrap_or_default();
        for fraction in sweep
            .split_whitespace()
            .filter_map(|f| f.parse::<f64>().ok())
        {
            let mut params = set.params();
            params.scan_fraction = fraction;
            params.scan_min = 0;
            set.set_params(params);
            measure(&set, &format!("IVF scan {:.0} %", fraction * 100.0));
        }
    }
}

fn ids(set: &VectorSet, hits: &[(usize, f32)]) -> Vec<i64> {
    hits.iter().filter_map(|(s, _)| set.id_of(*s)).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .filter(|a| !a.is_empty())
        .map(std::path::PathBuf::from);
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
            Some(("file", dir)) => vectors_from(Path::new(dir)),
            _ => println!("unknown size {size}; use store:N, vectors:N or file:DIR"),
        }
    }
}
