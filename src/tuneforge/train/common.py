"""Machinery every stage shares: threads, TrainingArguments, the guarded Trainer, callbacks, fit/resume, saving.

A stage recipe (sft.py, cls.py, ...) builds data and model, then calls `training_args`, `TuneforgeTrainer`
(or mixes `GuardMixin` into another Trainer class, e.g. a TRL one), `callbacks` and `fit`. The run dir itself
belongs to `tuneforge.runs`.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from pathlib import Path

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError, TrainingError
from tuneforge.runs import RunDir, atomic_dir
from tuneforge.train.callbacks import MetricsCallback, RichProgressCallback
from tuneforge.train.plots import plot_metrics


def set_threads(cfg: Config) -> int:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = cfg.train.threads or usable
    torch.set_num_threads(max(1, int(n or 1)))
    return torch.get_num_threads()


def training_args(cfg: Config, run: RunDir, has_eval: bool = False, args_class=None, **extra):
    """`args_class` (TrainingArguments by default; a TRL config class such as DPOConfig fits too) from the
    `train:` section, with CPU-friendly defaults; `extra` sets stage-specific fields."""
    import torch
    from transformers import TrainingArguments

    args_class = args_class or TrainingArguments
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
    if "activation_checkpointing" in args_class.__dataclass_fields__:  # transformers >= 5.2x name
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    try:
        return args_class(**kwargs)
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
        # Private Trainer API, overridden on purpose: the Trainer writes checkpoint-N/ in place, so a kill mid-save
        # leaves a directory that looks complete and `--resume` would load half a state. We point it at a staging
        # dir and rename. tests/unit/train/test_upstream_hooks.py fails loudly if transformers renames this method
        # or changes its signature.
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
    return [MetricsCallback(run.metrics), RichProgressCallback()]


def fit(trainer, run: RunDir, resume: bool) -> dict:
    """Train (resuming from the latest checkpoint when asked), then plot; returns the final metrics."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    ckpt = run.latest_checkpoint() if resume else None
    run.truncate_metrics(int(ckpt.name.split("-")[1]) if ckpt is not None else None)
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    if trainer.args.should_save:
        plot_metrics(run.metrics, run.plots)
    return dict(result.metrics)


def save_final(model, tokenizer, run: RunDir, cfg: Config) -> Path:
    """Save the adapter (LoRA) or full model as safetensors, atomically, plus the tokenizer (main process only)."""
    is_peft = hasattr(model, "peft_config")
    target = run.adapter if is_peft else run.model
    if not run.main:
        return target
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    if is_peft and cfg.output.save_merged:
        with atomic_dir(run.model) as tmp:
            model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
    return target
