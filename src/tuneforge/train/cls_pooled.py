"""The pooled head of stage cls (`method: full` with `task.pooling` mean / cls / last): build it, and start it
from a linear probe when `task.head_init: probe` asks (LP-FT: the head first learns to read the pretrained
features, so the first full-model steps do not spend their gradients undoing a random head).
"""

from __future__ import annotations

import time

import numpy as np

from tuneforge.config.schema import Config
from tuneforge.data.task_data import ClsExample, LabelMap
from tuneforge.errors import ConfigError
from tuneforge.models.heads import embed
from tuneforge.runs import RunDir
from tuneforge.train import features
from tuneforge.train.task_common import load_task_model, max_input_len


def wants_pooled_head(cfg: Config) -> bool:
    return cfg.method != "features" and cfg.task.pooling != "auto"


def check_pooled(cfg: Config) -> None:
    """One line before anything loads: what the pooled head does not support."""
    t = cfg.task
    if cfg.method == "features":
        if t.head_init != "random":
            raise ConfigError("task.head_init applies to a pooled head trained end to end (method full)",
                              hint="method features fits its head on the embeddings anyway; remove the key")
        return
    if t.pooling == "auto":
        if t.head_init != "random":
            raise ConfigError("task.head_init: probe needs a pooled head: set task.pooling (mean, cls or last)",
                              hint="the model's own head (BERT's pooler, a decoder's last token) starts at random")
        return
    if cfg.method != "full":
        raise ConfigError(f"task.pooling={t.pooling} trains a pooled head with method full, not {cfg.method}",
                          hint="use method full, or task.pooling=auto for the model's own head")
    if t.head_init == "probe" and t.head == "mlp":
        raise ConfigError("task.head_init: probe fits the pooled model's linear head: task.head must be linear or "
                          "logreg, not mlp", hint="remove task.head (linear is the default)")
    if cfg.model.adapter:
        raise ConfigError("task.pooling with model.adapter: a pooled head fine-tunes the whole backbone",
                          hint="merge the adapter first (tuneforge export merge) and train from the merged model")


def build_pooled_model(cfg: Config, tokenizer, label_map: LabelMap, train: list[ClsExample], run: RunDir):
    """Backbone + pooled linear head; with head_init probe, the head starts from the features head (task.head
    linear or logreg) fitted on the frozen backbone's embeddings of the training rows (seconds on a few thousand
    texts)."""
    from transformers import AutoModel

    from tuneforge.models.pooled import PooledClassifier

    backbone = load_task_model(cfg, AutoModel)
    max_len = max_input_len(cfg, tokenizer, backbone.config)
    model = PooledClassifier(backbone, cfg.task.pooling, len(label_map), label_map.multi_label, label_map.names,
                             max_len)
    if cfg.task.head_init == "probe":
        t0 = time.time()
        probe_accuracy = _probe_init(model, cfg, tokenizer, label_map, train, max_len)
        run.record_resolved(**{"task.head_init": {"probe_train_accuracy": round(probe_accuracy, 4),
                                                  "probe_s": round(time.time() - t0, 1)}})
    return model


def _probe_init(model, cfg: Config, tokenizer, label_map: LabelMap, train: list[ClsExample], max_len: int) -> float:
    import torch

    pairs = [e.text_pair or "" for e in train] if any(e.text_pair for e in train) else None
    x = embed(model.backbone, tokenizer, [e.text for e in train], pairs, max_len, cfg.task.pooling,
              batch_size=max(cfg.train.batch_size, 32))
    model.backbone.train()  # embed() left it in eval mode; the Trainer sets the mode per step anyway
    y = np.array([label_map.encode(e) for e in train])
    # the features head as configured (task.head linear / logreg, head_lr, head_epochs, head_weight_decay): on AG
    # News' mean-pooled MiniLM-L6 embeddings the default linear head scores 0.860 held out, logreg at its default C
    # (1e4, barely regularised) 0.796 (bench/results/agnews_minilm_pooled.json)
    probe = features.train_head(x, y, cfg.task, label_map.multi_label, len(label_map), cfg.train.seed)
    with torch.no_grad():
        model.head[0].weight.copy_(probe[0].weight)
        model.head[0].bias.copy_(probe[0].bias)
        logits = probe(torch.from_numpy(x)).numpy()
    return features.head_accuracy(logits, y, label_map.multi_label)
