"""Recall / precision of `tuneforge decontam` on the planted sets, against the naive MiniLM-cosine baseline.

For each planted set (bench/decontam_planted.py: `tune`, on which the defaults were chosen; `holdout`, other
benchmark families, whose first untuned run is recorded in the docs; `fresh`, built after the first rule change; `fresh2`, built last; neither tuned on): record-level recall and precision of the default "removed" decision and of
`--keep-similar`, category accuracy on the planted positives and per-category precision (records the tool put in
a category whose expected category is that one), misses and false positives by kind; the same for the
baseline (Platypus: remove a record when the cosine of its question to a benchmark question, without choices,
is >= 0.8); and the wall time of a first and a cached second run.

    PYTHONPATH=src python bench/bench_decontam_quality.py [--sets tune,holdout,fresh,fresh2] [--cache-dir DIR]

Writes bench/results/bench_decontam_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "bench_decontam_quality.json"


def score(labels: list[dict], removed: set[int], categories: dict[int, str]) -> dict:
    """Record-level recall/precision of `removed`, category accuracy and per-category precision."""
    pos = {i for i, lab in enumerate(labels) if lab["positive"]}
    tp = len(removed & pos)
    out = {"n_records": len(labels), "n_planted": len(pos), "n_removed": len(removed), "true_positives": tp,
           "recall": round(tp / max(1, len(pos)), 4), "precision": round(tp / max(1, len(removed)), 4),
           "missed_by_kind": dict(Counter(labels[i]["kind"] for i in pos - removed)),
           "false_positives_by_kind": dict(Counter(labels[i]["kind"] for i in removed - pos))}
    if categories:
        right = [categories.get(i) == labels[i]["expected"] for i in pos if i in categories]
        out["category_accuracy"] = round(sum(right) / max(1, len(right)), 4)
        per = {}
        for cat in ("duplicate", "gray-area", "similar-but-different"):
            got = [i for i, c in categories.items() if c == cat]
            per[cat] = {"records": len(got), "precision": round(sum(labels[i]["expected"] == cat for i in got)
                                                               / max(1, len(got)), 4)}
        out["per_category"] = per
        out["confusion"] = dict(Counter(f"{labels[i]['kind']}->{categories.get(i, 'kept')}" for i in pos))
    return out


def baseline(records: list[dict], against: list[Path], cache_dir: str, threshold: float = 0.8) -> set[int]:
    """Platypus: cosine (MiniLM) of the record's question vs each benchmark question alone >= threshold."""
    from tuneforge.data.decontam import load_benchmarks
    from tuneforge.data.embed_index import embed, search
    from tuneforge.data.qa_fields import rows_to_qas
    from tuneforge.data.readers import Row

    train = rows_to_qas([Row(r, "<train>", n) for n, r in enumerate(records, 1)])
    bench = load_benchmarks(against)
    tv = embed([q.question for q in train], cache_dir=cache_dir)
    bv = embed([q.stem_text for q in bench], cache_dir=cache_dir)
    nb = search(tv, bv, k=1)
    return {i for i in range(len(train)) if nb.scores[i, 0] >= threshold}


def run_set(name: str, cache_dir: str, work: Path) -> dict:
    from decontam_planted import build

    from tuneforge.data.decontam import decontaminate_records

    ps = build(name, work / name)
    t0 = time.perf_counter()
    _, report = decontaminate_records(ps.records, ps.against, cache_dir=cache_dir)
    first = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    _, report = decontaminate_records(ps.records, ps.against, cache_dir=cache_dir)
    cached, cached_cpu = time.perf_counter() - t0, time.process_time() - c0
    cats = {r.train_index: r.category for r in report.records}
    keep_similar = {i for i, c in cats.items() if c != "similar-but-different"}
    result = {"records": len(ps.records), "bench_items": report.n_bench,
              "benchmarks": [p.name for p in ps.against],
              "default": score(ps.labels, set(report.removed), cats),
              "keep_similar": score(ps.labels, keep_similar, {}),
              "baseline_minilm_cosine_0.8": score(ps.labels, baseline(ps.records, ps.against, cache_dir), {}),
              "wall_s": {"first_run": round(first, 2), "cached_rerun": round(cached, 2)},
              "cpu_s_cached_rerun": round(cached_cpu, 2), "loadavg_after": os.getloadavg()[0],
              "timings_cached_rerun": report.timings}
    result["false_positive_examples"] = [
        {"record": r.pair.train.question[:200], "bench": r.pair.bench.question[:200], "category": r.category,
         "evidence": r.pair.methods, "scores": r.pair.scores}
        for r in report.records if not ps.labels[r.train_index]["positive"]][:15]
    flagged = {r.train_index for r in report.records}
    result["missed_examples"] = [
        {"kind": lab["kind"], "bench": lab["bench"], "record": json.dumps(ps.records[i])[:300]}
        for i, lab in enumerate(ps.labels) if lab["positive"] and i not in flagged][:15]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="tune,holdout,fresh,fresh2")
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default: a fresh temp dir)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "loadavg_start": os.getloadavg()}, "sets": {}}
    results = out["sets"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = a.cache_dir or str(Path(tmp) / "cache")
        for name in a.sets.split(","):
            results[name] = run_set(name, cache, Path(tmp))
            a.out.write_text(json.dumps(out, indent=2), encoding="utf-8")  # after each set: partial runs count
    for name, r in results.items():
        d, b, k = r["default"], r["baseline_minilm_cosine_0.8"], r["keep_similar"]
        print(f"{name}: removed recall {d['recall']:.3f} precision {d['precision']:.3f} "
              f"(category accuracy {d.get('category_accuracy')}); keep-similar {k['recall']:.3f}/{k['precision']:.3f}; "
              f"baseline {b['recall']:.3f}/{b['precision']:.3f}; cached rerun {r['wall_s']['cached_rerun']} s wall, {r['cpu_s_cached_rerun']} s CPU")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
