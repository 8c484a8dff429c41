"""Confidence intervals, result tables and base-vs-tuned comparison reports (markdown + one bar chart per task).

CIs: percentile bootstrap over samples (any metric: means of per-sample scores, or corpus metrics recomputed
from resampled sacrebleu statistics), or Wilson's binomial interval for 0/1 scores. Differences between two
models on the same samples use a paired bootstrap (same resampled ids for both).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

from tuneforge.eval.generate import score_from_stats

CORPUS_METRICS = ("bleu", "chrf", "ter")
RAW_METRICS = ("reward_margin",)  # mean differences in reward units, not proportions: shown as they are


# ------------------------------------------------------------------------------------------------------ CIs

def _resample_counts(n: int, n_boot: int, seed: int):
    """(n_boot, n) matrix: how often each sample is drawn in each bootstrap resample."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def _percentiles(values, level: float) -> tuple[float, float]:
    import numpy as np

    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def wilson_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 0.0
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(values: Sequence[float], method: str = "bootstrap", level: float = 0.95, n_boot: int = 1000,
            seed: int = 0) -> tuple[float, float]:
    """CI of the mean of per-sample scores. Wilson needs 0/1 scores (otherwise bootstrap is used)."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return 0.0, 0.0
    if method == "wilson" and np.isin(v, (0.0, 1.0)).all():
        return wilson_interval(float(v.sum()), len(v), level)
    boots = _resample_counts(len(v), n_boot, seed) @ v / len(v)
    return _percentiles(boots, level)


def stats_ci(name: str, stats: Sequence[Sequence[float]], level: float = 0.95, n_boot: int = 1000,
             seed: int = 0) -> tuple[float, float]:
    """CI of a corpus metric (bleu/chrf/ter) by resampling sentences' sufficient statistics."""
    import numpy as np

    s = np.asarray(stats, dtype=np.float64)
    if len(s) == 0:
        return 0.0, 0.0
    sums = _resample_counts(len(s), n_boot, seed) @ s
    return _percentiles([score_from_stats(name, row) for row in sums], level)


def paired_diff_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95, n_boot: int = 1000,
                   seed: int = 0, score: Callable | None = None) -> tuple[float, float]:
    """CI of score(b) - score(a) on the same samples (paired bootstrap). Rows may be vectors (corpus stats)."""
    import numpy as np

    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a_) == 0:
        return 0.0, 0.0
    counts = _resample_counts(len(a_), n_boot, seed)
    if score is None:
        diffs = counts @ (b_ - a_) / len(a_)
    else:
        sa, sb = counts @ a_, counts @ b_
        diffs = [score(y) - score(x) for x, y in zip(sa, sb)]
    return _percentiles(diffs, level)


# ----------------------------------------------------------------------------------------- task summaries

def per_sample_series(records: Sequence[dict], metric: str) -> list[Any]:
    """Per-sample values of a metric from prediction records (a float, or a stats row for corpus metrics)."""
    if metric in CORPUS_METRICS:
        return [r["stats"][metric] for r in records]
    return [r["scores"][metric] for r in records]


def add_intervals(task_result: dict, records: Sequence[dict], method: str, level: float, n_boot: int,
                  seed: int) -> dict:
    """Fill task_result["ci"][metric] = [lo, hi] for every metric in task_result["metrics"]."""
    ci = {}
    for metric in task_result["metrics"]:
        series = per_sample_series(records, metric)
        if metric in CORPUS_METRICS:
            lo, hi = stats_ci(metric, series, level, n_boot, seed)
        else:
            lo, hi = mean_ci(series, method, level, n_boot, seed)
        ci[metric] = [lo, hi]
    task_result["ci"] = ci
    task_result["ci_method"] = "wilson" if method == "wilson" else "bootstrap"
    task_result["ci_level"] = level
    return task_result


def _fmt(metric: str, v: float) -> str:
    if metric in RAW_METRICS:
        return f"{v:.3f}"
    return f"{v:.2f}" if metric in CORPUS_METRICS else f"{100 * v:.1f}"


def _scale(metric: str) -> float:
    """Chart units: accuracy-type metrics in points (%), the others as they are."""
    return 1.0 if metric in CORPUS_METRICS + RAW_METRICS else 100.0


def results_markdown(results: dict) -> str:
    """One evaluation's results as a markdown table (percentages; BLEU/chrF/TER on their 0-100 scale)."""
    lines = [f"# Evaluation: {results.get('label', '')}", "", f"model: `{results.get('model', '')}`", "",
             "| task | metric | value | CI | n | shots | limit | seconds | samples/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, t in results["tasks"].items():
        shots = t.get("fewshot") or 0
        shots = f"{shots} ({t['fewshot_sampler']})" if shots and t.get("fewshot_sampler") else str(shots)
        run = f"| {shots} | {t.get('limit') or '-'} | {t.get('seconds', '-')} | {t.get('samples_per_s') or '-'} |"
        for metric, v in t["metrics"].items():
            lo, hi = t.get("ci", {}).get(metric, (float("nan"),) * 2)
            star = " *" if metric == t.get("main") else ""
            lines.append(f"| {name} | {metric}{star} | {_fmt(metric, v)} | [{_fmt(metric, lo)}, {_fmt(metric, hi)}] "
                         f"| {t['n']} " + run)
    lines += ["", f"\\* main metric. {int(100 * _level(results))}% confidence intervals "
                  f"({_method(results)}). Accuracy-type metrics in %; reward_margin in reward units."]
    return "\n".join(lines + _preference_notes(results)) + "\n"


def _preference_notes(results: dict) -> list[str]:
    """What each preference task's reward was, and every pair it could not score (never dropped silently)."""
    lines = []
    for name, t in results["tasks"].items():
        if t.get("type") != "preference":
            continue
        beta = f" (beta {t['beta']})" if t.get("beta") else ""
        dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (t.get("dropped") or {}).items())
        lines += ["", f"{name}: {t.get('reward', '')}{beta}; {t['n']} pairs scored"
                      + (f"; dropped or cut: {dropped}" if dropped else "; none dropped") + "."]
    return lines


def _level(results: dict) -> float:
    return next((t.get("ci_level", 0.95) for t in results["tasks"].values()), 0.95)


def _method(results: dict) -> str:
    return next((t.get("ci_method", "bootstrap") for t in results["tasks"].values()), "bootstrap")


# --------------------------------------------------------------------------------------------- comparison

def compare(entries: Sequence[dict], out_dir: Path, level: float = 0.95, n_boot: int = 1000,
            seed: int = 0) -> Path:
    """Write compare.md (+ compare_<task>.png, compare.json) for 2+ evaluated models.

    Each entry: {"label", "results" (results.json dict), "records": {task: [prediction records]}}. The first entry
    is the reference; deltas (entry - reference) have paired-bootstrap CIs over the samples both have.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = entries[0]
    tasks = [t for t in ref["results"]["tasks"] if all(t in e["results"]["tasks"] for e in entries[1:])]
    labels = [e["label"] for e in entries]
    pct = int(100 * level)
    md = ["# Comparison", "", "| model | source |", "|---|---|"]
    md += [f"| {e['label']} | `{e['results'].get('model', '')}` |" for e in entries]
    summary: dict[str, Any] = {"models": labels, "tasks": {}}
    for task in tasks:
        ref_t = ref["results"]["tasks"][task]
        # union over models: a preference task has no implicit reward for a model without reference (n/a)
        metrics = list(dict.fromkeys(m for e in entries for m in e["results"]["tasks"][task]["metrics"]))
        header = "| metric | " + " | ".join(labels) + " | " + " | ".join(f"Δ {l} − {labels[0]}" for l in labels[1:]) + " |"
        ref_recs = {r["id"]: r for r in ref["records"].get(task, [])}
        changed = [changed_answers(ref_recs, {r["id"]: r for r in e["records"].get(task, [])}) for e in entries[1:]]
        md += ["", f"## {task}", "", f"n = {ref_t['n']} samples; {pct}% CIs in brackets.", ""]
        md += [f"- {lab} vs {labels[0]}: {c['changed']} of {c['common']} answers changed "
               f"({c['fixed']} now right, {c['broken']} now wrong)" for lab, c in zip(labels[1:], changed)]
        md += ["", header, "|" + "---|" * (1 + len(labels) + len(labels) - 1)]
        summary["tasks"][task] = {"answers_changed": dict(zip(labels[1:], changed))}
        diffs: dict[str, list] = {}
        for metric in metrics:
            cells, deltas = [], []
            for e in entries:
                t = e["results"]["tasks"][task]
                v = t["metrics"].get(metric)
                lo, hi = t.get("ci", {}).get(metric, (float("nan"),) * 2)
                cells.append("n/a" if v is None else f"{_fmt(metric, v)} [{_fmt(metric, lo)}, {_fmt(metric, hi)}]")
            for e in entries[1:]:
                recs = {r["id"]: r for r in e["records"].get(task, [])}
                common = [i for i in ref_recs if i in recs]
                if metric not in ref_t["metrics"] or metric not in e["results"]["tasks"][task]["metrics"]:
                    deltas.append("n/a")
                    continue
                d = e["results"]["tasks"][task]["metrics"][metric] - ref_t["metrics"][metric]
                if common:
                    a = per_sample_series([ref_recs[i] for i in common], metric)
                    b = per_sample_series([recs[i] for i in common], metric)
                    score = (lambda row, m=metric: score_from_stats(m, row)) if metric in CORPUS_METRICS else None
                    lo, hi = paired_diff_ci(a, b, level, n_boot, seed, score=score)
                    deltas.append(f"{_signed(metric, d)} [{_signed(metric, lo)}, {_signed(metric, hi)}]")
                else:
                    lo = hi = d
                    deltas.append(f"{_signed(metric, d)}")
                diffs.setdefault(metric, []).append((d, lo, hi))
            md.append(f"| {metric} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")
            summary["tasks"][task][metric] = {lab: e["results"]["tasks"][task]["metrics"].get(metric)
                                              for lab, e in zip(labels, entries)}
        png = out_dir / f"compare_{_safe(task)}.png"
        diff_chart(task, diffs, labels, png, level, ref_t["n"])
        md += ["", f"![{task}]({png.name})"]
    md += ["", "Accuracy-type metrics in %, BLEU/chrF/TER on sacrebleu's 0-100 scale (TER: lower is better), "
               "reward_margin in reward units; n/a: the metric does not apply to that model. "
               "Δ CIs: paired bootstrap over the samples both models answered; the charts show these paired "
               "differences (an interval that excludes 0 is a real change at that level)."]
    path = out_dir / "compare.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    import json

    (out_dir / "compare.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return path


def _signed(metric: str, v: float) -> str:
    s = _fmt(metric, v)
    return s if s.startswith("-") else "+" + s


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def changed_answers(ref: dict[str, dict], other: dict[str, dict]) -> dict[str, int]:
    """How many answers differ between two models on their common samples (MCQ: chosen choice; generation: the
    extracted answer, else the output text), and how many of those went from wrong to right / right to wrong."""
    out = {"common": 0, "changed": 0, "fixed": 0, "broken": 0}
    for i, a in ref.items():
        b = other.get(i)
        if b is None:
            continue
        out["common"] += 1
        if _answer(a) != _answer(b):
            out["changed"] += 1
            ra, rb = _right(a), _right(b)
            out["fixed"] += int(rb and not ra)
            out["broken"] += int(ra and not rb)
    return out


def _answer(rec: dict) -> Any:
    if "pred" in rec:
        return rec["pred"]
    return rec.get("extracted", rec.get("output"))


def _right(rec: dict) -> bool:
    scores = rec.get("scores") or {}
    if "acc" in scores:
        return scores["acc"] >= 1
    return bool(scores) and next(iter(scores.values())) >= 1


def diff_chart(task: str, diffs: dict[str, list[tuple[float, float, float]]], labels: Sequence[str], path: Path,
               level: float, n: int) -> None:
    """Paired differences (model - reference) per metric with their paired-bootstrap CIs, a line at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in diffs if len(diffs[m]) == len(labels) - 1]  # skip metrics a model lacks (n/a)
    others = labels[1:]
    width = 0.8 / max(len(others), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(metrics) + 1), 3.6))
    for k, lab in enumerate(others):
        scale = [_scale(m) for m in metrics]
        d = [diffs[m][k][0] * s for m, s in zip(metrics, scale)]
        lo = [max(v - diffs[m][k][1] * s, 0) for m, v, s in zip(metrics, d, scale)]
        hi = [max(diffs[m][k][2] * s - v, 0) for m, v, s in zip(metrics, d, scale)]
        xs = [i + (k - (len(others) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, d, width, yerr=[lo, hi], capsize=3, label=f"{lab} − {labels[0]}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel("difference (points)")
    ax.set_title(f"{task}: paired difference (n={n}, {int(100 * level)}% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
