"""Feature extraction (stage: cls, method: features): a frozen backbone embeds every text once, then a small head
(linear, MLP, or scikit-learn logistic regression) is trained on the pooled embeddings. The cheap alternative to
fine-tuning: one forward pass per sample, no backward through the backbone.

Saved to `<run>/features_head/`: head.safetensors (weights), head.json (pooling, head type, label names, backbone
path). A logistic-regression head is stored as the equivalent linear layer, so all heads load the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tuneforge.config.schema import Config
from tuneforge.train.common import RunDir


def pool(hidden, mask, how: str):
    """One vector per sequence from token states [B, T, H] and the attention mask [B, T]."""
    import torch

    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        idx = mask.sum(1).clamp(min=1) - 1  # right padding: last real token
        return hidden[torch.arange(hidden.shape[0]), idx]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def embed(backbone, tokenizer, texts: list[str], pairs: list[str] | None, max_len: int, pooling: str,
          batch_size: int = 64, normalize: bool = False) -> np.ndarray:
    """Pooled embeddings, computed in length-sorted batches (less padding) and returned in input order."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + len(pairs[i] if pairs else ""))
    out = np.zeros((len(texts), 0), dtype=np.float32)
    chunks = []
    backbone.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            enc = tokenizer([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None, truncation=True,
                            max_length=max_len, padding=True, return_tensors="pt")
            enc = {k: v.to(backbone.device) for k, v in enc.items()}
            hidden = backbone(**enc).last_hidden_state
            vec = pool(hidden.float(), enc["attention_mask"], pooling)
            if normalize:
                vec = torch.nn.functional.normalize(vec, dim=-1)
            chunks.append((idx, vec.cpu().numpy()))
    if chunks:
        out = np.zeros((len(texts), chunks[0][1].shape[1]), dtype=np.float32)
        for idx, vec in chunks:
            out[idx] = vec
    return out


def make_head(kind: str, dim: int, n_out: int, hidden: int):
    import torch

    if kind == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Dropout(0.1),
                                   torch.nn.Linear(hidden, n_out))
    return torch.nn.Sequential(torch.nn.Linear(dim, n_out))


def train_head(x: np.ndarray, y: np.ndarray, task, multi_label: bool, n_labels: int, seed: int,
               log=None):
    """Fit the head on embeddings; returns a torch module mapping embeddings → logits."""
    import torch

    torch.manual_seed(seed)
    if task.head == "logreg":
        return _logreg_head(x, y, task, multi_label, n_labels, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few small matmuls per epoch: thread start-up costs more than it saves
    try:
        return _fit_torch_head(x, y, task, multi_label, n_labels, log)
    finally:
        torch.set_num_threads(threads)


def _fit_torch_head(x, y, task, multi_label: bool, n_labels: int, log):
    import torch

    head = make_head(task.head, x.shape[1], n_labels, task.head_hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=task.head_lr, weight_decay=task.head_weight_decay)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y).float() if multi_label else torch.from_numpy(y).long()
    loss_fn = torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss()
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


def _logreg_head(x, y, task, multi_label: bool, n_labels: int, seed: int):
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
            lr = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, col)
            weight[j], bias[j] = lr.coef_[0], lr.intercept_[0]
    else:
        lr = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)
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


def head_logits(head, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return head(torch.from_numpy(x)).numpy()


def save_head(head, out: Path, meta: dict) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(out / "head.safetensors"))
    (out / "head.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out


class FeatureClassifier:
    """A saved feature-extraction classifier: backbone + pooling + head, for `predict(texts)`."""

    def __init__(self, head_dir: str | Path):
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        d = Path(head_dir)
        self.meta = json.loads((d / "head.json").read_text(encoding="utf-8"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.meta["backbone"])
        self.backbone = AutoModel.from_pretrained(self.meta["backbone"])
        self.head = make_head(self.meta["head"] if self.meta["head"] == "mlp" else "linear", self.meta["dim"],
                              len(self.meta["labels"]), self.meta.get("hidden", 0) or 1)
        self.head.load_state_dict(load_file(str(d / "head.safetensors")))
        self.head.eval()

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        m = self.meta
        x = embed(self.backbone, self.tokenizer, texts, pairs, m["max_len"], m["pooling"], normalize=m["normalize"])
        return head_logits(self.head, x)

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list:
        logits = self.logits(texts, pairs)
        names = self.meta["labels"]
        if self.meta["multi_label"]:
            return [[names[j] for j in np.flatnonzero(row > 0)] for row in logits]  # sigmoid(z) > 0.5 ⇔ z > 0
        return [names[i] for i in logits.argmax(-1)]


def run(cfg: Config, run: RunDir, resume: bool) -> dict:
    import time

    from transformers import AutoModel

    from tuneforge.models.load import load_model, load_tokenizer, resolve_model_path
    from tuneforge.train.cls import build_data, report
    from tuneforge.train.task_common import max_input_len, print_summary, write_env

    tokenizer = load_tokenizer(cfg.model)
    data = build_data(cfg, run)
    write_env(cfg, run)
    backbone = load_model(cfg.model, auto_class=AutoModel, apply_adapter=True)
    max_len = max_input_len(cfg, tokenizer, backbone.config)
    t = cfg.task

    def vectors(examples):
        pairs = [e.text_pair or "" for e in examples] if any(e.text_pair for e in examples) else None
        return embed(backbone, tokenizer, [e.text for e in examples], pairs, max_len, t.pooling,
                     batch_size=max(cfg.train.batch_size, 32), normalize=t.normalize_embeddings)

    t0 = time.time()
    x_train = vectors(data.train)
    embed_s = time.time() - t0
    y_train = np.array([data.label_map.encode(e) for e in data.train])
    run.metrics.unlink(missing_ok=True)
    with open(run.metrics, "a", encoding="utf-8") as log_file:
        def log(epoch, loss):
            log_file.write(json.dumps({"step": epoch, "epoch": epoch, "loss": loss}) + "\n")

        head = train_head(x_train, y_train, t, data.label_map.multi_label, len(data.label_map), cfg.train.seed, log)
    train_logits = head_logits(head, x_train)
    metrics: dict = {"embed_train_s": round(embed_s, 2), "head_train_s": round(time.time() - t0 - embed_s, 2),
                     "train_samples": len(data.train), "embedding_dim": int(x_train.shape[1])}
    metrics["train_accuracy"] = float(_accuracy(train_logits, y_train, data.label_map.multi_label))
    meta = {"backbone": str(Path(resolve_model_path(cfg.model.path)).resolve()), "pooling": t.pooling,
            "head": t.head, "hidden": t.head_hidden if t.head == "mlp" else 0, "dim": int(x_train.shape[1]),
            "labels": data.label_map.names, "multi_label": data.label_map.multi_label, "max_len": max_len,
            "normalize": t.normalize_embeddings}
    out = save_head(head, run.root / "features_head", meta)
    data.label_map.save(out / "label_map.json")
    data.label_map.save(run.root / "label_map.json")
    if cfg.output.plot:
        from tuneforge.train.plots import plot_metrics

        plot_metrics(run.metrics, run.plots)
    if data.eval:
        metrics.update(report(cfg, run, data.eval, head_logits(head, vectors(data.eval)), data.label_map))
        print_summary("cls/features", metrics, ("eval_accuracy", "eval_f1_macro", "eval_f1_micro"))
    return metrics


def _accuracy(logits: np.ndarray, y: np.ndarray, multi: bool) -> float:
    if multi:
        return float(((logits > 0).astype(int) == y).all(1).mean())
    return float((logits.argmax(-1) == y).mean())
