"""Feature extraction (stage: cls, method: features): a frozen backbone embeds every text once, then a small head
(linear, MLP, or scikit-learn logistic regression) is trained on the pooled embeddings. The cheap alternative to
fine-tuning: one forward pass per sample, no backward through the backbone.

Saved to `<run>/features_head/` (see `models/heads.py` for the format and `FeatureClassifier` to load it). A
logistic-regression head is stored as the equivalent linear layer, so all heads load the same way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tuneforge.config.schema import Config
from tuneforge.models.heads import embed, head_logits, make_head, save_head
from tuneforge.models.load import load_model, load_tokenizer, resolve_model_path
from tuneforge.runs import RunDir, atomic_dir
from tuneforge.train.cls_common import build_data, class_weights, report
from tuneforge.train.plots import plot_metrics
from tuneforge.train.task_common import max_input_len, print_summary


def train_head(x: np.ndarray, y: np.ndarray, task, multi_label: bool, n_labels: int, seed: int,
               log=None, weights: list[float] | None = None):
    """Fit the head on embeddings; returns a torch module mapping embeddings → logits. `weights`: loss weight per
    class (multi-label: pos_weight per label), see cls_common.class_weights."""
    import torch

    torch.manual_seed(seed)
    if task.head == "logreg":
        return _logreg_head(x, y, task, multi_label, n_labels, seed, weights)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few small matmuls per epoch: thread start-up costs more than it saves
    try:
        return _fit_torch_head(x, y, task, multi_label, n_labels, log, weights)
    finally:
        torch.set_num_threads(threads)


def _fit_torch_head(x, y, task, multi_label: bool, n_labels: int, log, weights=None):
    import torch

    head = make_head(task.head, x.shape[1], n_labels, task.head_hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=task.head_lr, weight_decay=task.head_weight_decay)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y).float() if multi_label else torch.from_numpy(y).long()
    w = torch.tensor(weights, dtype=torch.float32) if weights else None
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=w) if multi_label else torch.nn.CrossEntropyLoss(weight=w)
    head.train()
    for epoch in range(task.head_epochs):  # full batch: embeddings of a few thousand samples fit in memory
        opt.zero_grad()
        loss = loss_fn(head(xt), yt)
        loss.backward()
        opt.step()
        if log is not None:
            log(epoch + 1, float(loss.detach()))
    head.eval()
    return head


def _logreg_head(x, y, task, multi_label: bool, n_labels: int, seed: int, weights=None):
    """scikit-learn logistic regression, copied into an equivalent torch Linear head."""
    import torch
    from sklearn.linear_model import LogisticRegression

    c = 1.0 / task.head_weight_decay if task.head_weight_decay > 0 else 1e6
    weight = np.zeros((n_labels, x.shape[1]), dtype=np.float32)
    bias = np.zeros(n_labels, dtype=np.float32)
    if multi_label:  # one binary model per label
        for j in range(n_labels):
            col = y[:, j]
            if col.min() == col.max():  # a label that is always/never on: constant logit
                bias[j] = 10.0 if col[0] else -10.0
                continue
            cw = {0: 1.0, 1: weights[j]} if weights else None
            lr = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=cw).fit(x, col)
            weight[j], bias[j] = lr.coef_[0], lr.intercept_[0]
    else:
        seen = set(y.tolist())
        cw = {i: w for i, w in enumerate(weights) if i in seen} if weights else None
        lr = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=cw).fit(x, y)
        classes = lr.classes_.astype(int)
        if len(classes) == 2:  # sklearn keeps one row for binary problems: logit(c1) - logit(c0)
            weight[classes[1]], bias[classes[1]] = lr.coef_[0], lr.intercept_[0]
        else:
            weight[classes], bias[classes] = lr.coef_, lr.intercept_
        weight[[i for i in range(n_labels) if i not in set(classes)]] = 0
        bias[[i for i in range(n_labels) if i not in set(classes)]] = -1e4  # classes never seen in training
    head = torch.nn.Sequential(torch.nn.Linear(x.shape[1], n_labels))
    with torch.no_grad():
        head[0].weight.copy_(torch.from_numpy(weight))
        head[0].bias.copy_(torch.from_numpy(bias))
    return head.eval()


def run(cfg: Config, run: RunDir, resume: bool) -> dict:
    """Embed every text once with the frozen backbone, fit the head, save it, report on the eval split."""
    from transformers import AutoModel

    tokenizer = load_tokenizer(cfg.model)
    data = build_data(cfg, run)
    weights = class_weights(cfg, data)
    if weights is not None:
        run.record_resolved(**{"task.class_weights": dict(zip(data.label_map.names, weights))})
    run.write_env(cfg)
    backbone = load_model(cfg.model, auto_class=AutoModel, apply_adapter=True)
    max_len = max_input_len(cfg, tokenizer, backbone.config)
    t = cfg.task
    pooling = "mean" if t.pooling == "auto" else t.pooling

    def vectors(examples):
        pairs = [e.text_pair or "" for e in examples] if any(e.text_pair for e in examples) else None
        return embed(backbone, tokenizer, [e.text for e in examples], pairs, max_len, pooling,
                     batch_size=max(cfg.train.batch_size, 32), normalize=t.normalize_embeddings)

    t0 = time.time()
    x_train = vectors(data.train)
    embed_s = time.time() - t0
    y_train = np.array([data.label_map.encode(e) for e in data.train])
    run.truncate_metrics(None)
    with open(run.metrics, "a", encoding="utf-8") as log_file:
        def log(epoch, loss):
            log_file.write(json.dumps({"step": epoch, "epoch": epoch, "loss": loss}) + "\n")

        head = train_head(x_train, y_train, t, data.label_map.multi_label, len(data.label_map), cfg.train.seed, log,
                          weights)
    train_logits = head_logits(head, x_train)
    metrics: dict = {"embed_train_s": round(embed_s, 2), "head_train_s": round(time.time() - t0 - embed_s, 2),
                     "train_samples": len(data.train), "embedding_dim": int(x_train.shape[1])}
    metrics["train_accuracy"] = float(head_accuracy(train_logits, y_train, data.label_map.multi_label))
    meta = {"backbone": str(Path(resolve_model_path(cfg.model.path)).resolve()), "pooling": pooling,
            "head": t.head, "hidden": t.head_hidden if t.head == "mlp" else 0, "dim": int(x_train.shape[1]),
            "labels": data.label_map.names, "multi_label": data.label_map.multi_label, "max_len": max_len,
            "normalize": t.normalize_embeddings}
    with atomic_dir(run.root / "features_head") as tmp:
        save_head(head, tmp, meta)
        data.label_map.save(tmp / "label_map.json")
    run.write_json("label_map.json", data.label_map.to_json())
    if cfg.output.plot:
        plot_metrics(run.metrics, run.plots)
    if data.eval:
        metrics.update(report(cfg, run, data.eval, head_logits(head, vectors(data.eval)), data.label_map))
        print_summary("cls/features", metrics, ("eval_accuracy", "eval_f1_macro", "eval_f1_micro"))
    return metrics


def head_accuracy(logits: np.ndarray, y: np.ndarray, multi: bool) -> float:
    if multi:
        return float(((logits > 0).astype(int) == y).all(1).mean())
    return float((logits.argmax(-1) == y).mean())
