"""Machinery every stage shares: run dir, TrainingArguments, the guarded Trainer, callbacks, fit/resume.

A stage recipe (sft.py, cls.py, ...) builds data and model, then calls `training_args`, `TuneforgeTrainer`
(or mixes `GuardMixin` into another Trainer class), `callbacks` and `fit`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError, TrainingError


@dataclass
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def model(self) -> Path:
        return self.root / "model"

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints.is_dir():
            return None
        steps = [(int(p.name.split("-")[1]), p) for p in self.checkpoints.glob("checkpoint-*")
                 if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "trainer_state.json").exists()]
        return max(steps)[1] if steps else None

    def write_json(self, name: str, obj) -> Path:
        path = self.root / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
        return path


def prepare_run_dir(cfg: Config, resume: bool) -> RunDir:
    """Create (or, with resume, reopen) the run dir and write the resolved config into it."""
    parent = Path(cfg.output.dir)
    if cfg.output.name:
        root = parent / cfg.output.name
    elif resume:
        candidates = sorted((p for p in parent.glob(f"{cfg.stage}-*") if RunDir(p).latest_checkpoint()),
                            key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"--resume: no run with checkpoints under {parent}/ (set output.name to choose one)")
        root = candidates[-1]
    else:
        root = parent / f"{cfg.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDir(root)
    if resume:
        if not run.latest_checkpoint():
            raise ConfigError(f"--resume: {root} has no complete checkpoint to resume from")
    elif root.exists() and any(root.iterdir()) and not cfg.output.overwrite:
        raise ConfigError(f"run dir {root} already exists",
                          hint="use --resume, a new output.name, or output.overwrite=true")
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run.checkpoints / ".staging", ignore_errors=True)  # leftovers of a killed save
    run.config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return run


def set_threads(cfg: Config) -> int:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = cfg.train.threads or usable
    torch.set_num_threads(max(1, int(n or 1)))
    return torch.get_num_threads()


def training_args(cfg: Config, run: RunDir, has_eval: bool = False, **extra):
    """TrainingArguments from the `train:` section, with CPU-friendly defaults."""
    import torch
    from transformers import TrainingArguments

    t = cfg.train
    on_gpu = torch.cuda.is_available()
    want_bf16 = on_gpu and torch.cuda.is_bf16_supported() and cfg.model.dtype in ("auto", "bfloat16")
    kwargs = dict(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm if t.max_grad_norm > 0 else 0.0,
        optim=t.optim,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if (has_eval and t.eval_steps) else "no",
        eval_steps=t.eval_steps or None,
        gradient_checkpointing=t.gradient_checkpointing,
        torch_compile=t.compile,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        report_to=t.report_to or "none",
        bf16=want_bf16,
        use_cpu=not on_gpu,
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu,
    )
    kwargs.update(extra)
    if "activation_checkpointing" in TrainingArguments.__dataclass_fields__:  # transformers >= 5.2x name
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"train: {e}") from None


class GuardMixin:
    """NaN/inf guard + atomic checkpoints; mix into any transformers Trainer subclass."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not math.isfinite(float(loss)):
            last = RunDir(Path(self.args.output_dir).parent).latest_checkpoint()
            raise TrainingError(
                f"non-finite loss ({float(loss)}) at step {self.state.global_step + 1}; training stopped",
                hint=f"last good checkpoint: {last}" if last else "no checkpoint was written before this step; "
                "try a lower train.lr")
        return loss

    def _save_checkpoint(self, model, trial):
        # Write into a staging dir, then rename: a kill mid-save never leaves a checkpoint that looks complete.
        final_root = self.args.output_dir
        staging = os.path.join(final_root, ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        self.args.output_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = final_root
        name = f"checkpoint-{self.state.global_step}"
        target = os.path.join(final_root, name)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staging, name), target)
        shutil.rmtree(staging, ignore_errors=True)
        if self.args.should_save and self.args.save_total_limit:
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(output_dir=final_root, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)


def make_trainer_class(base):
    return type(f"Tuneforge{base.__name__}", (GuardMixin, base), {})


@functools.lru_cache(maxsize=None)
def _trainer():
    from transformers import Trainer

    return make_trainer_class(Trainer)


def TuneforgeTrainer(*args, **kwargs):  # noqa: N802 - reads like a class at call sites
    return _trainer()(*args, **kwargs)


def callbacks(cfg: Config, run: RunDir) -> list:
    from tuneforge.train.callbacks import MetricsCallback, RichProgressCallback

    return [MetricsCallback(run.metrics), RichProgressCallback()]


def fit(trainer, run: RunDir, resume: bool) -> dict:
    """Train (resuming from the latest checkpoint when asked), then plot; returns the final metrics."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    ckpt = run.latest_checkpoint() if resume else None
    if not resume and run.metrics.exists():
        run.metrics.unlink()
    if ckpt is not None:
        _truncate_metrics(run.metrics, int(ckpt.name.split("-")[1]))
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    from tuneforge.train.plots import plot_metrics

    if trainer.args.should_save:
        plot_metrics(run.metrics, run.plots)
    return dict(result.metrics)


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, forget logged steps after the checkpoint so metrics.jsonl has each step once."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def save_final(model, tokenizer, run: RunDir, cfg: Config) -> Path:
    """Save the adapter (LoRA) or full model as safetensors, atomically, plus the tokenizer."""
    is_peft = hasattr(model, "peft_config")
    target = run.adapter if is_peft else run.model
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    if is_peft and cfg.output.save_merged:
        merged = model.merge_and_unload()
        merged.save_pretrained(run.model, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(run.model)
    return target
