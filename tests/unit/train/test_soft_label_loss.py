"""Soft labels for stage cls (`task.soft_label_column`): the teacher's probabilities are checked row by row before
anything loads (file:line), counted when `data.invalid: skip` leaves rows out, refused where they do not apply, and
the KD term is zero exactly when the student already matches the teacher."""

from __future__ import annotations

import json

import pytest
import torch

from tuneforge.config.load import load_config
from tuneforge.data.task_data import ClsExample, LabelMap
from tuneforge.errors import ConfigError, DataError
from tuneforge.train.cls_common import build_data
from tuneforge.train.cls_soft import SoftLabelLoss
from tuneforge.train.stages import load_training_config

LM = LabelMap(["neg", "pos"], aliases={"0": 0, "1": 1})


def ex(soft, line=3):
    return ClsExample("t", None, "pos", "f.jsonl", line, soft=soft)


@pytest.mark.parametrize("soft, expected", [
    ({"pos": 0.75, "neg": 0.25}, [0.25, 0.75]),   # by name, any order
    ({"0": 0.5, "1": 0.5}, [0.5, 0.5]),           # by alias (int ids)
    ([0.2, 0.8], [0.2, 0.8]),                     # a list in label order
    ([0.2, 0.805], [0.2 / 1.005, 0.805 / 1.005]),  # rounding in a written file: renormalised
])
def test_soft_targets_in_label_order(soft, expected):
    assert LM.soft_target(ex(soft), "probs") == pytest.approx(expected)


@pytest.mark.parametrize("soft, message", [
    (None, "missing soft-label field 'probs'"),
    ({"pos": 1.0}, "no probability for neg"),
    ({"pos": 0.5, "neg": 0.3, "maybe": 0.2}, "unknown label 'maybe'"),
    ([0.3, 0.3], "sums to 0.6000, not 1"),
    ([1.2, -0.2], r"values must be probabilities in \[0, 1\]"),
    ([0.2, 0.3, 0.5], "a list of 2 probabilities"),
    ("pos", "must be {label: probability}"),
    ([True, False], "values must be probabilities"),
])
def test_bad_soft_targets_name_the_file_and_line(soft, message):
    with pytest.raises(DataError, match=message) as e:
        LM.soft_target(ex(soft, line=7), "probs")
    assert "f.jsonl:7" in str(e.value)


def test_multi_label_soft_targets_are_per_label_probabilities():
    lm = LabelMap(["a", "b", "c"], multi_label=True)
    assert lm.soft_target(ex({"a": 0.9, "b": 0.8, "c": 0.0}), "p") == [0.9, 0.8, 0.0]  # need not sum to 1


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n, bad_at=()):
    out = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        probs = {"pos": 0.9, "neg": 0.1} if i % 2 else {"pos": 0.2, "neg": 0.8}
        out.append({"text": f"row {i}", "label": label, "probs": {"pos": 0.9} if i in bad_at else probs})
    return out


def test_bad_rows_stop_the_run_before_any_model_or_are_skipped_and_counted(tmp_path):
    train = write(tmp_path / "train.jsonl", rows(10, bad_at=(4, 6)))
    ev = write(tmp_path / "eval.jsonl", [{"text": "x", "label": "pos"}])  # eval rows need no teacher
    base = ["stage=cls", f"data.train=[{train}]", f"data.eval=[{ev}]", "task.soft_label_column=probs"]
    with pytest.raises(DataError, match=r"train.jsonl:5: 'probs' has no probability for neg"):
        build_data(load_config(overrides=base))
    data = build_data(load_config(overrides=[*base, "data.invalid=skip"]))
    assert len(data.train) == 8 and [e.line for e in data.skipped] == [5, 7] and len(data.eval) == 1
    assert "no probability" in data.skipped[0].message


@pytest.mark.parametrize("overrides, message", [
    (["stage=cls", "method=features"], "task.soft_label_column does not apply to method features"),
    (["stage=qa"], "task.soft_label_column does not apply to stage qa"),
    (["stage=seq2seq"], "task.soft_label_column does not apply to stage seq2seq"),
    (["stage=distill", "distill.teacher=x"], "task.soft_label_column does not apply to stage distill"),
])
def test_the_key_is_refused_where_it_does_not_apply(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_training_config(None, [*overrides, "task.soft_label_column=probs"])


def test_kd_term_is_zero_only_when_the_student_matches_the_teacher():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.3, -2.0]])
    probs = torch.softmax(logits, -1)
    for t in (1.0, 2.0):
        loss = SoftLabelLoss(0.5, t, multi_label=False)
        assert loss.kd_sum(logits, probs).item() == pytest.approx(0.0, abs=1e-5)
        assert loss.kd_sum(-logits, probs).item() > 0.1
    sig = torch.sigmoid(logits)
    ml = SoftLabelLoss(0.5, 1.0, multi_label=True)
    # multi-label: BCE to the teacher's probabilities, smallest at the student that reproduces them
    assert ml.kd_sum(logits, sig).item() < ml.kd_sum(logits + 0.5, sig).item()
    assert ml.kd_sum(logits, sig).item() < ml.kd_sum(logits - 0.5, sig).item()
