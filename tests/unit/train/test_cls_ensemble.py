"""The seed ensemble of stage cls (train/cls_ensemble.py) on hand-written predictions files: averaged probabilities,
not majority votes; refusals when the seeds scored different rows or wrote no predictions."""

from __future__ import annotations

import json

import pytest

from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir
from tuneforge.train.cls_ensemble import seed_ensemble


def write_seed(root, rows):
    root.mkdir(parents=True)
    recs = [{"file": "e.jsonl", "line": i + 1, "text": f"t{i}", "label": label, "probs": probs}
            for i, (label, probs) in enumerate(rows)]
    (root / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def test_probabilities_are_averaged_not_votes(tmp_path):
    # row 1: two seeds lean 'b' a little, one is sure of 'a' -> the mean says 'a' (a vote would say 'b')
    a = write_seed(tmp_path / "s1", [("a", {"a": 0.45, "b": 0.55}), ("b", {"a": 0.2, "b": 0.8})])
    b = write_seed(tmp_path / "s2", [("a", {"a": 0.45, "b": 0.55}), ("b", {"a": 0.6, "b": 0.4})])
    c = write_seed(tmp_path / "s3", [("a", {"a": 0.99, "b": 0.01}), ("b", {"a": 0.3, "b": 0.7})])
    parent = RunDir(tmp_path / "parent")
    parent.root.mkdir()
    out = seed_ensemble(parent, [a, b, c], 0.5)
    assert out["ensemble_eval_accuracy"] == 1.0 and out["ensemble_eval_n"] == 2
    recs = [json.loads(x) for x in (parent.root / "ensemble_predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in recs] == ["a", "b"]
    assert recs[0]["probs"]["a"] == pytest.approx((0.45 + 0.45 + 0.99) / 3, abs=1e-5)
    assert json.loads((parent.root / "ensemble_report.json").read_text())["seeds"] == 3


def test_one_seed_has_no_ensemble(tmp_path):
    a = write_seed(tmp_path / "s1", [("a", {"a": 0.9, "b": 0.1})])
    assert seed_ensemble(RunDir(tmp_path / "p"), [a], 0.5) == {}


def test_seeds_that_scored_different_rows_are_refused(tmp_path):
    a = write_seed(tmp_path / "s1", [("a", {"a": 0.9, "b": 0.1}), ("b", {"a": 0.1, "b": 0.9})])
    b = write_seed(tmp_path / "s2", [("b", {"a": 0.9, "b": 0.1}), ("b", {"a": 0.1, "b": 0.9})])
    with pytest.raises(ConfigError, match="same eval rows"):
        seed_ensemble(RunDir(tmp_path / "p"), [a, b], 0.5)


def test_a_seed_without_predictions_is_named(tmp_path):
    a = write_seed(tmp_path / "s1", [("a", {"a": 0.9, "b": 0.1})])
    (tmp_path / "s2").mkdir()
    with pytest.raises(ConfigError, match="s2/predictions.jsonl is missing"):
        seed_ensemble(RunDir(tmp_path / "p"), [a, tmp_path / "s2"], 0.5)
