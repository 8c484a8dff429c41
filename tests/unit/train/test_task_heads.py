"""Classification report + confusion matrix PNG, feature-extraction pooling and heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tuneforge.config.task import TaskConfig
from tuneforge.eval.cls_metrics import classification_report, plot_confusion_matrix
from tuneforge.eval.metrics import classification_scores
from tuneforge.models.heads import head_logits, pool
from tuneforge.train.features import train_head


def test_report_matches_shared_metrics_and_sklearn():
    y = [0, 0, 1, 1, 2, 2, 2]
    p = [0, 1, 1, 1, 2, 0, 2]
    rep = classification_report(y, p, ["a", "b", "c"])
    ref = classification_scores(p, y, "macro")
    assert rep["accuracy"] == pytest.approx(ref["accuracy"])
    assert rep["f1_macro"] == pytest.approx(ref["f1"])
    assert rep["f1_micro"] == pytest.approx(5 / 7)
    assert rep["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert rep["per_class"]["b"]["recall"] == 1.0 and rep["per_class"]["c"]["support"] == 3


def test_multi_label_report():
    y = np.array([[1, 0], [1, 1], [0, 1]])
    p = np.array([[1, 0], [1, 0], [0, 1]])
    rep = classification_report(y, p, ["x", "y"])
    assert rep["accuracy"] == pytest.approx(2 / 3) and "confusion_matrix" not in rep
    assert rep["per_class"]["y"]["recall"] == 0.5


def test_confusion_png(tmp_path):
    out = plot_confusion_matrix([[3, 1], [0, 4]], ["neg", "pos"], tmp_path / "cm.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_pooling_ignores_padding():
    h = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    m = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(h, m, "cls"), h[:, 0])
    assert torch.allclose(pool(h, m, "mean")[0], h[0, :2].mean(0))
    assert torch.equal(pool(h, m, "last")[0], h[0, 1]) and torch.equal(pool(h, m, "last")[1], h[1, 2])


def _blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.normal(0, 3, (3, 16))
    return (centers[y] + rng.normal(0, 1, (n, 16))).astype(np.float32), y


@pytest.mark.parametrize("head", ["linear", "mlp", "logreg"])
def test_heads_learn_separable_classes(head):
    x_all, y_all = _blobs(300)
    losses = []
    task = TaskConfig(head=head, head_epochs=100)
    model = train_head(x_all[:200], y_all[:200], task, False, 3, 0, log=lambda e, l: losses.append(l))
    acc = (head_logits(model, x_all[200:]).argmax(-1) == y_all[200:]).mean()
    assert acc > 0.9
    if head != "logreg":
        assert losses[-1] < losses[0] / 3


def test_logreg_binary_head_is_equivalent_to_sklearn():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs()
    y = (y > 0).astype(int)
    task = TaskConfig(head="logreg")
    head = train_head(x, y, task, False, 2, 0)
    sk = LogisticRegression(C=1 / task.head_weight_decay, max_iter=2000, random_state=0).fit(x, y)
    assert (head_logits(head, x).argmax(-1) == sk.predict(x)).all()


def test_multi_label_linear_head():
    x, y = _blobs()
    multi = np.stack([(y == 0), (y != 2)], 1).astype(np.float32)
    head = train_head(x, multi, TaskConfig(head="linear", head_epochs=150), True, 2, 0)
    assert (((head_logits(head, x) > 0) == multi.astype(bool)).all(1)).mean() > 0.9
