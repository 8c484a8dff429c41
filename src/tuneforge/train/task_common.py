"""Pieces the task stages (cls, qa, seq2seq, features) share: input length, model loading with a task head, the
method (LoRA with the stage's peft task type), an in-memory dataset and the eval summary line."""

from __future__ import annotations

from typing import Any

from tuneforge.config.schema import Config
from tuneforge.models.adapters import apply_method
from tuneforge.models.heads import unfreeze_task_head
from tuneforge.models.load import attach_adapter, load_model, resolve_model_path
from tuneforge.train.common import training_args


class ListDataset:
    """A list of feature dicts as a torch-style map dataset (the Trainer only needs __len__/__getitem__)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def columns_to_rows(cols: dict[str, list]) -> list[dict]:
    keys = list(cols)
    return [dict(zip(keys, vals)) for vals in zip(*(cols[k] for k in keys))]


def max_input_len(cfg: Config, tokenizer: Any, model_config: Any = None) -> int:
    """data.cutoff_len, capped at what the model's position embeddings / tokenizer allow."""
    limits = [cfg.data.cutoff_len]
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 1_000_000:
        limits.append(tml)
    mpe = getattr(model_config, "max_position_embeddings", None) if model_config is not None else None
    if isinstance(mpe, int) and mpe > 0:
        limits.append(mpe)
    return min(limits)


def load_task_model(cfg: Config, auto_class: Any, **kwargs):
    """Base model with a task head: pretrained weights, or random ones from config.json (task.random_init)."""
    from transformers import set_seed

    set_seed(cfg.train.seed)  # the new head's init is part of the run's reproducibility
    if cfg.task.random_init:
        from transformers import AutoConfig

        conf = AutoConfig.from_pretrained(resolve_model_path(cfg.model.path), **kwargs)
        return auto_class.from_config(conf)
    # a checkpoint whose head has another label count (e.g. a previous run) gets a fresh head
    return load_model(cfg.model, auto_class=auto_class, apply_adapter=False, ignore_mismatched_sizes=True, **kwargs)


def prepare_task_model(model, cfg: Config, task_type: str):
    """Apply cfg.method; LoRA gets the stage's peft task type so the head is trained and saved with the adapter."""
    if cfg.model.adapter:
        return attach_adapter(model, cfg.model.adapter, trainable=True)
    model = apply_method(model, cfg, task_type=task_type)
    if cfg.method == "freeze":
        unfreeze_task_head(model)
    return model


def task_training_args(cfg: Config, run: Any, has_eval: bool, **extra):
    extra.setdefault("per_device_eval_batch_size", max(cfg.train.batch_size, 32))
    return training_args(cfg, run, has_eval=has_eval, **extra)


def print_summary(stage: str, metrics: dict, keys: tuple[str, ...]) -> None:
    from rich.console import Console

    shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), (int, float)))
    Console().print(f"[bold]{stage} eval[/] {shown}")
