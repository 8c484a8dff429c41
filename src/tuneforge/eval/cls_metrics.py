"""Classification report for the task heads: accuracy, P/R/F1 (macro, micro, per class), confusion matrix (+ PNG).

Single-label inputs are class ids; multi-label inputs are 0/1 matrices (accuracy is then exact-set accuracy).
The headline numbers agree with `eval.metrics.classification_scores`; this adds per-class rows and the matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def classification_report(y_true: Sequence, y_pred: Sequence, names: list[str]) -> dict:
    """Flat metric keys (accuracy, f1_macro, ...) plus `per_class` and `confusion_matrix` (rows = true labels)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    multi = yt.ndim == 2
    labels = None if multi else list(range(len(names)))
    out: dict = {"accuracy": float((yt == yp).all(axis=1).mean() if multi else (yt == yp).mean()) if len(yt) else 0.0,
                 "n": int(len(yt))}
    for avg in ("macro", "micro"):
        p, r, f, _ = precision_recall_fscore_support(yt, yp, labels=labels, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, average=None, zero_division=0)
    out["per_class"] = {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                        for i, n in enumerate(names)}
    if not multi:
        out["confusion_matrix"] = confusion_matrix(yt, yp, labels=labels).tolist()
    return out


def plot_confusion_matrix(matrix: list[list[int]], names: list[str], path: str | Path, title: str = "") -> Path:
    """Write a confusion-matrix PNG (counts in the cells, rows = true label, columns = predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(matrix)
    k = len(names)
    size = min(2 + 0.6 * k, 16)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"confusion matrix (n={int(cm.sum())})")
    if k <= 30:
        hi = cm.max() / 2 if cm.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > hi else "black",
                        fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

