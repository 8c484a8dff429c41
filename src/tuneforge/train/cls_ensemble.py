"""The seed ensemble of a classification run with `train.seeds`: the class probabilities the seed runs wrote to
their predictions.jsonl, averaged per eval row, scored like one run's predictions.

Averaging the probabilities of models that differ only by their seed (data order, dropout, head start) is the
cheapest ensemble there is: it costs N times the inference, no extra training beyond the seeds already run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.eval.cls_metrics import classification_report
from tuneforge.runs import RunDir
from tuneforge.train.cls_common import decide

PREFIX = "ensemble_eval_"


def read_predictions(root: Path) -> list[dict]:
    path = root / "predictions.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the seed ensemble averages each seed's predictions",
                          hint="leave task.write_predictions on (the default)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _key(rec: dict) -> tuple:
    return rec["file"], rec["line"], json.dumps(rec["label"])


def average(per_seed: list[list[dict]], names: list[str]) -> np.ndarray:
    """(rows, labels) mean probabilities; every seed must have scored the same eval rows in the same order."""
    first = per_seed[0]
    for i, recs in enumerate(per_seed[1:], start=2):
        if len(recs) != len(first) or any(_key(a) != _key(b) for a, b in zip(first, recs)):
            raise ConfigError(f"the seed runs did not score the same eval rows (seed run {i} of {len(per_seed)} "
                              "differs from the first)", hint="the eval split depends on data.mix_seed, not "
                              "train.seed: keep data the same across the seeds")
    return np.mean([[[rec["probs"][n] for n in names] for rec in recs] for recs in per_seed], axis=0)


def seed_ensemble(parent: RunDir, roots: list[Path], threshold: float) -> dict:
    """Score the averaged probabilities of the seed runs under `roots`; writes ensemble_predictions.jsonl and
    ensemble_report.json into the parent run dir and returns `ensemble_eval_*` metrics (empty for one seed)."""
    if len(roots) < 2 or not any((r / "predictions.jsonl").is_file() for r in roots):
        return {}  # one model, or no eval set (nothing was predicted): nothing to average
    per_seed = [read_predictions(r) for r in roots]
    first = per_seed[0]
    if not first:
        return {}
    names = list(first[0]["probs"])
    multi = isinstance(first[0]["label"], list)
    probs = average(per_seed, names)
    preds = decide(probs, multi, threshold)
    if multi:
        truth = np.array([[int(n in rec["label"]) for n in names] for rec in first])
        labels = [[n for n, x in zip(names, row) if x] for row in preds]
    else:
        truth = np.array([names.index(rec["label"]) for rec in first])
        labels = [names[int(p)] for p in preds]
    rep = classification_report(truth, preds, names)
    parent.write_json("ensemble_report.json", {"seeds": len(roots), "runs": [str(r) for r in roots], **rep})
    parent.write_jsonl("ensemble_predictions.jsonl", [
        {**{k: rec[k] for k in ("file", "line", "text", "text_pair", "label") if k in rec}, "prediction": label,
         "correct": label == rec["label"], "probs": {n: round(float(p), 5) for n, p in zip(names, row)}}
        for rec, label, row in zip(first, labels, probs)])
    return {f"{PREFIX}{k}": v for k, v in rep.items() if isinstance(v, (int, float))}
