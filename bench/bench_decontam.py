"""Benchmark the embedding search of `tuneforge decontam`: throughput (pairs/s) and memory.

Sizes (training x benchmark vectors): 10k x 1k and 100k x 10k measured, 1M x 100k extrapolated from a measured
10k x 100k (same index size; every backend's search time is linear in the number of queries). Backends in one run:
faiss IndexFlatIP (exact), faiss HNSW (approximate, recall reported against exact) and brute-force numpy cosine
(chunked matmul + top-k), each in a fresh subprocess so peak RSS is its own. Vectors are synthetic, 384-d
(MiniLM's size), clustered around 200 "topics" with 1% planted near-copies (cosine ~0.9) so the 0.8 threshold
has real hits to find. Also measures MiniLM embedding throughput on real questions (the usual bottleneck), as a
ratio to SentenceTransformer.encode on the same texts and batch size (interleaved runs).

    PYTHONPATH=src python bench/bench_decontam.py [--sizes 10000x1000,100000x10000] [--no-embed]
    PYTHONPATH=src python bench/bench_decontam.py --embed-only   # -> bench/results/bench_decontam_embed.json

Writes bench/results/bench_decontam.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

DIM, TOPICS, K, THRESHOLD = 384, 200, 5, 0.8
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "bench_decontam.json"


def make_vectors(n_train: int, n_bench: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((TOPICS, DIM), dtype=np.float32)

    def sample(n):
        v = 0.6 * centers[rng.integers(0, TOPICS, n)] + rng.standard_normal((n, DIM), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    bench, train = sample(n_bench), sample(n_train)
    n_plant = max(1, n_train // 100)
    rows = rng.choice(n_train, n_plant, replace=False)
    near = bench[rng.integers(0, n_bench, n_plant)] + 0.025 * rng.standard_normal((n_plant, DIM), dtype=np.float32)
    train[rows] = near / np.linalg.norm(near, axis=1, keepdims=True)
    return train, bench


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) so the search's peak excludes data generation; returns RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux / not allowed: the peak then includes generating the vectors
    return _status_mb("VmRSS")


def _pairs(scores, ids) -> set[tuple[int, int]]:
    """(query, index id) pairs at or above the threshold."""
    import numpy as np

    rows, cols = np.nonzero(scores >= THRESHOLD)
    return set(zip(rows.tolist(), ids[rows, cols].tolist()))


def run_one(n_train: int, n_bench: int, backend: str) -> dict:
    """One measurement (called in a subprocess): time, pairs/s, memory, hits at the threshold."""
    import numpy as np

    from tuneforge.data.embed_index import build_index, search

    train, bench = make_vectors(n_train, n_bench)
    base = reset_peak_rss()
    t0 = time.perf_counter()
    if backend == "hnsw":
        index = build_index(bench, "hnsw")
        build_s = time.perf_counter() - t0
        scores, ids = index.search(train, K)
        nb_scores, nb_ids = scores, ids
    else:
        nb = search(train, bench, k=K, kind=backend)
        nb_scores, nb_ids, build_s = nb.scores, nb.ids, None
    total = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    hits = _pairs(nb_scores, nb_ids)
    out = {"n_train": n_train, "n_bench": n_bench, "backend": backend, "seconds": round(total, 3),
           "pairs_per_s": round(n_train * n_bench / total), "peak_rss_mb": round(peak, 1),
           "search_extra_mb": round(max(0.0, peak - base), 1), "data_mb": round((train.nbytes + bench.nbytes) / 2**20, 1),
           "hits": len(hits)}
    if build_s is not None:
        out["build_s"] = round(build_s, 3)
    if backend == "hnsw":  # recall against exact search at the threshold
        exact = search(train, bench, k=K, kind="flat")
        ref = _pairs(exact.scores, exact.ids)
        out["recall_at_threshold"] = round(len(hits & ref) / max(1, len(ref)), 4)
        out["top1_agreement"] = round(float((ids[:, 0] == exact.ids[:, 0]).mean()), 4)
    return out


def embed_throughput(n: int = 256, rounds: int = 3, batch_size: int = 64) -> dict:
    """MiniLM throughput of tuneforge's `embed` (no cache) against `SentenceTransformer.encode` of the same model
    on the same texts with the same batch size, interleaved (A B A B ...) so machine load hits both alike; wall
    and process CPU seconds, best of `rounds`. ratio >= 1 means embed is at least as fast as the library."""
    from tuneforge.data.embed_index import embed, load_encoder

    data = Path("/work/shared/data/gsm8k/train.jsonl")
    if not data.exists():
        data = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
    texts = [json.loads(x)["question"] for x in data.read_text(encoding="utf-8").splitlines()[:n]]
    model = load_encoder()
    model.encode(texts[:64], batch_size=batch_size)  # warm-up
    runs: dict[str, list[tuple[float, float]]] = {"tuneforge_embed": [], "sentence_transformers_encode": []}
    for _ in range(rounds):
        for name in runs:
            w, c = time.perf_counter(), time.process_time()
            if name == "tuneforge_embed":
                embed(texts, batch_size=batch_size, use_cache=False)
            else:
                model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False)
            runs[name].append((time.perf_counter() - w, time.process_time() - c))
    best = {k: (min(x[0] for x in v), min(x[1] for x in v)) for k, v in runs.items()}
    ours, lib = best["tuneforge_embed"], best["sentence_transformers_encode"]
    return {"texts": len(texts), "batch_size": batch_size, "rounds": rounds, "source": "gsm8k train questions",
            "texts_per_s": round(len(texts) / ours[0], 1),
            "wall_s": {k: round(v[0], 2) for k, v in best.items()}, "cpu_s": {k: round(v[1], 2) for k, v in best.items()},
            "ratio_wall": round(lib[0] / ours[0], 3), "ratio_cpu": round(lib[1] / ours[1], 3),
            "loadavg": os.getloadavg()[0]}


def extrapolate(measured: list[dict], n_train: int, n_bench: int, embed_tps: float | None) -> dict:
    """From the measured run with the largest index (ideally the same n_bench): search time x (n_train /
    measured n_train), since every backend's search is linear in queries at a fixed index; HNSW build time kept
    (same index) or scaled by n log n; index memory from the measured run (x n_bench ratio), plus the train
    vectors if all were held at once (the search itself streams them in chunks)."""
    top = max(m["n_bench"] for m in measured)
    out: dict = {"n_train": n_train, "n_bench": n_bench, "pairs": n_train * n_bench,
                 "from": f"measured {next(m['n_train'] for m in measured if m['n_bench'] == top)} x {top}",
                 "method": " ".join(extrapolate.__doc__.split())}
    for m in (m for m in measured if m["n_bench"] == top):
        grow = n_bench / m["n_bench"]
        build = m.get("build_s", 0.0)
        build_scaled = build * grow * (math.log(n_bench) / math.log(m["n_bench"]) if grow != 1 else 1.0)
        search_s = (m["seconds"] - build) * (n_train / m["n_train"]) * grow
        secs = build_scaled + search_s
        out[m["backend"]] = {"seconds": round(secs, 1), "hours": round(secs / 3600, 2),
                             "pairs_per_s": round(n_train * n_bench / secs),
                             "search_peak_extra_mb": round(m["search_extra_mb"] * grow, 1),
                             "train_vectors_mb_if_held": round(n_train * DIM * 4 / 2**20, 1)}
    if embed_tps:
        out["embedding_hours_at_measured_rate"] = round((n_train + n_bench) / embed_tps / 3600, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000x1000,100000x10000,10000x100000")
    ap.add_argument("--backends", default="flat,hnsw,brute")
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--embed-only", action="store_true", help="only the embedding throughput comparison")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: N_TRAINxN_BENCH:BACKEND in this process
    args = ap.parse_args()
    if args.one:
        size, backend = args.one.split(":")
        nt, nb = (int(x) for x in size.split("x"))
        print(json.dumps(run_one(nt, nb, backend)))
        return
    if args.embed_only:
        emb = embed_throughput()
        out = OUT.with_name("bench_decontam_embed.json")
        out.write_text(json.dumps(emb, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(emb, indent=2))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    measured = []
    for size in args.sizes.split(","):
        for backend in args.backends.split(","):
            res = subprocess.run([sys.executable, __file__, "--one", f"{size}:{backend}"], env=env,
                                 capture_output=True, text=True, check=True)
            m = json.loads(res.stdout.strip().splitlines()[-1])
            measured.append(m)
            print(f"{size:>14} {backend:>6}: {m['seconds']:8.2f} s  {m['pairs_per_s']:>14,} pairs/s  "
                  f"peak {m['peak_rss_mb']:7.1f} MB (+{m['search_extra_mb']} MB)  hits {m['hits']}"
                  + (f"  recall {m['recall_at_threshold']}" if "recall_at_threshold" in m else ""), flush=True)
    for m in measured:  # the comparison the issue asks for: each backend against brute force at the same size
        brute = next((x for x in measured if x["backend"] == "brute" and x["n_train"] == m["n_train"]
                      and x["n_bench"] == m["n_bench"]), None)
        if brute:
            m["speedup_vs_brute"] = round(brute["seconds"] / m["seconds"], 2)
    emb = None if args.no_embed else embed_throughput()
    if emb:
        print(f"MiniLM embedding: {emb['texts_per_s']} texts/s, {emb['ratio_wall']}x SentenceTransformer.encode")
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_avg_at_end": os.getloadavg()[0], "python": platform.python_version()},
              "settings": {"dim": DIM, "k": K, "threshold": THRESHOLD, "topics": TOPICS, "planted_near_copies": "1%"},
              "measured": measured, "embedding": emb,
              "extrapolated": extrapolate(measured, 1_000_000, 100_000, emb and emb["texts_per_s"])}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["extrapolated"], indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
