"""The peer side of benches/kb_latency.sh and kb_ann_real.sh: FAISS (faiss-cpu) on the
very vectors and queries the Rust side wrote — exact inner-product search
(IndexFlatIP), an inverted file like Basalt's (IndexIVFFlat with as many cells, probed
until it has read as large a share of the vectors) and HNSW (IndexHNSWFlat, M=32) —
p50/p99 over the same queries, single-threaded like Basalt's scan, and recall@10
against exact. Builds use both cores, as Basalt's do."""
import math
import sys
import time

import faiss
import numpy as np

D = 384


def percentiles(ms):
    ms = sorted(ms)
    return ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def main(work):
    faiss.omp_set_num_threads(1)
    base = np.fromfile(f"{work}/base.f32", dtype="<f4").reshape(-1, D)
    queries = np.fromfile(f"{work}/queries.f32", dtype="<f4").reshape(-1, D)
    n = base.shape[0]
    flat = faiss.IndexFlatIP(D)
    flat.add(base)
    times, truth = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = flat.search(q[None, :], 10)
        times.append((time.perf_counter() - t) * 1000)
        truth.append(set(ids[0].tolist()))
    p50, p99 = percentiles(times)
    print(f"faiss n={n} IndexFlatIP    p50={p50:.2f} ms p99={p99:.2f} ms recall@10=1.000")
    # Basalt's choices (crates/basalt-kb/src/ann.rs, AnnParams): about sqrt(n) cells, a
    # power of two in [64, 4096]; a query reads 10 % of the vectors, at least 8,192.
    nlist = min(4096, max(64, 1 << math.ceil(math.log2(max(1, int(math.sqrt(n)))))))
    nprobe = max(1, math.ceil(max(0.10 * n, 8192) / (n / nlist)))
    faiss.omp_set_num_threads(2)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(D), D, nlist, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    ivf.train(base)
    ivf.add(base)
    print(f"faiss n={n} IndexIVFFlat nlist={nlist} built in {time.perf_counter() - t:.1f} s (2 threads)")
    faiss.omp_set_num_threads(1)
    report(ivf, f"IVF nprobe={nprobe}", queries, truth, n, lambda: setattr(ivf, "nprobe", nprobe))
    if n > 200_000 and "--hnsw" not in sys.argv:
        return
    faiss.omp_set_num_threads(2)
    hnsw = faiss.IndexHNSWFlat(D, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    t = time.perf_counter()
    hnsw.add(base)
    print(f"faiss n={n} IndexHNSWFlat built in {time.perf_counter() - t:.0f} s (2 threads)")
    faiss.omp_set_num_threads(1)
    for ef in (32, 64, 128):
        report(hnsw, f"HNSW efSearch={ef}", queries, truth, n,
               lambda ef=ef: setattr(hnsw.hnsw, "efSearch", ef))


def report(index, name, queries, truth, n, configure):
    configure()
    times, hits = [], 0
    for q, want in zip(queries, truth):
        t = time.perf_counter()
        _, ids = index.search(q[None, :], 10)
        times.append((time.perf_counter() - t) * 1000)
        hits += len(want & set(ids[0].tolist()))
    p50, p99 = percentiles(times)
    print(f"faiss n={n} {name:<18} p50={p50:.2f} ms p99={p99:.2f} ms recall@10={hits / (10 * len(queries)):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
