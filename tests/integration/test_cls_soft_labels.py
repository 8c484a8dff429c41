"""Distillation through soft labels (`task.soft_label_column`) on tiny random BERTs: a teacher run's
predictions.jsonl is the student's training file as it is. Its labels are flipped on purpose, so what the student
learns on held-out rows shows which target it followed: the teacher's probabilities (weight 1) or the labels
(weight 0)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import sentiment_rows, tiny_bert, write_jsonl  # noqa: E402

from tuneforge.config.load import load_config  # noqa: E402
from tuneforge.train.run import run_training  # noqa: E402

FLIP = {"positive": "negative", "negative": "positive"}


def as_text(rows, flip=False):
    return [{"text": r["sentence"], "label": FLIP[r["label"]] if flip else r["label"]} for r in rows]


def cls(tmp_path, name, train, evals, *extra):
    return load_config(overrides=[
        "stage=cls", "method=full", f"model.path={tiny_bert()}", f"data.train=[{train}]", f"data.eval=[{evals}]",
        "data.cutoff_len=32", "train.lr=1e-2", "train.epochs=3", "train.batch_size=16", "train.threads=1",
        "task.text_column=text", "output.plot=false", f"output.dir={tmp_path}", f"output.name={name}", *extra])


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """The teacher learns from correct labels and scores the student's rows, whose labels are all wrong."""
    d = tmp_path_factory.mktemp("soft")
    right = write_jsonl(d / "teacher.jsonl", as_text(sentiment_rows(240, 0)))
    wrong = write_jsonl(d / "student.jsonl", as_text(sentiment_rows(240, 2), flip=True))
    out = run_training(cls(d, "teacher", right, wrong))
    assert out["eval_accuracy"] <= 0.1  # it predicts the truth, so it disagrees with the flipped labels
    return Path(out["run_dir"]) / "predictions.jsonl"


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("held") / "eval.jsonl", as_text(sentiment_rows(80, 1)))


@pytest.mark.parametrize("extra", [[], ["task.pooling=mean"]], ids=["model-head", "pooled-head"])
def test_with_weight_1_the_student_learns_the_teachers_probabilities_not_the_labels(tmp_path, teacher_file,
                                                                                     held_out, extra):
    out = run_training(cls(tmp_path, "kd", teacher_file, held_out, "task.soft_label_column=probs",
                           "task.soft_label_weight=1", *extra))
    assert out["eval_accuracy"] >= 0.9, out


def test_with_weight_0_the_same_rows_teach_the_flipped_labels(tmp_path, teacher_file, held_out):
    out = run_training(cls(tmp_path, "hard", teacher_file, held_out, "task.soft_label_column=probs",
                           "task.soft_label_weight=0"))
    assert out["eval_accuracy"] <= 0.1, out
