"""The peer side of benches/kb_latency.sh: FAISS (faiss-cpu) on the very vectors and
queries the Rust side wrote — exact inner-product search (IndexFlatIP) and HNSW
(IndexHNSWFlat, M=32) — p50/p99 over the same queries, single-threaded like Basalt's
scan, and recall@10 of HNSW against exact."""
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
    faiss.omp_set_num_threads(2)
    hnsw = faiss.IndexHNSWFlat(D, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    t = time.perf_counter()
    hnsw.add(base)
    print(f"faiss n={n} IndexHNSWFlat built in {time.perf_counter() - t:.0f} s (2 threads)")
    faiss.omp_set_num_threads(1)
    for ef in (32, 64, 128):
        hnsw.hnsw.efSearch = ef
        times, hits = [], 0
        for q, want in zip(queries, truth):
            t = time.perf_counter()
            _, ids = hnsw.search(q[None, :], 10)
            times.append((time.perf_counter() - t) * 1000)
            hits += len(want & set(ids[0].tolist()))
        p50, p99 = percentiles(times)
        print(f"faiss n={n} HNSW efSearch={ef:<4} p50={p50:.2f} ms p99={p99:.2f} ms recall@10={hits / (10 * len(queries)):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
