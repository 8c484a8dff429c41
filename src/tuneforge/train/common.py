"""Machinery every stage shares: threads, TrainingArguments, the guarded Trainer, callbacks, fit/resume, saving.

A stage recipe (sft.py, cls.py, ...) builds data and model, then calls `training_args`, `TuneforgeTrainer`
(or mixes `GuardMixin` into another Trainer class, e.g. a TRL one), `callbacks` and `fit`. The run dir itself
belongs to `tuneforge.runs`.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import re
import shutil
from pathlib import Path

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError, TrainingError, TrainingInterrupted
from tuneforge.models.load import record_base
from tuneforge.runs import RunDir, atomic_dir
from tuneforge.train.callbacks import MetricsCallback, RichProgressCallback
from tuneforge.train.guards import DivergenceGuard, NewPeakLR, StopSignal, divergence_error
from tuneforge.train.observers import observers
from tuneforge.train.plots import plot_metrics
from tuneforge.train.sparsity import KeepSparsity
from tuneforge.train.tracking import tracking_args


def set_threads(cfg: Config) -> int:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # N processes on one machine share its cores (torchrun would otherwise leave every rank at 1 thread).
    n = cfg.train.threads or max(1, (usable or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    torch.set_num_threads(max(1, int(n or 1)))
    return torch.get_num_threads()


def _resolved_lr(run: RunDir, lr: float) -> float:
    """The stage's per-method default (train/stage.py `lr_defaults`) when the run recorded one, else train.lr."""
    return (run.resolved() if run.config.is_file() else {}).get("train.lr", lr)


def training_args(cfg: Config, run: RunDir, has_eval: bool = False, args_class=None,
                  select: tuple[str, bool] | None = None, **extra):
    """`args_class` (TrainingArguments by default; a TRL config class such as DPOConfig fits too) from the
    `train:` section, with CPU-friendly defaults; `extra` sets stage-specific fields. `select` = (metric,
    greater_is_better) from the stage: with train.early_stopping_patience the best checkpoint by it is kept and
    reloaded at the end."""
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
        learning_rate=_resolved_lr(run, t.lr),
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
        bf16=want_bf16,
        use_cpu=not on_gpu,
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu,
        ddp_find_unused_parameters=False,  # every trainable parameter is used; saves a graph walk per step
        deepspeed=t.deepspeed,
        label_smoothing_factor=t.label_smoothing,
        **tracking_args(cfg, run),
    )
    if select and has_eval and t.early_stopping_patience:
        # load_best_model_at_end needs a checkpoint at every evaluation: both every eval_steps, else every epoch
        every = "steps" if t.eval_steps else "epoch"
        kwargs.update(eval_strategy=every, save_strategy=every, save_steps=t.save_steps or t.eval_steps or 500,
                      load_best_model_at_end=True, metric_for_best_model=select[0], greater_is_better=select[1])
    kwargs.update(extra)
    if "activation_checkpointing" in args_class.__dataclass_fields__:  # transformers >= 5.2x name
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    try:
        return args_class(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"train: {e}") from None


class GuardMixin:
    """NaN/inf guard + atomic checkpoints; mix into any transformers Trainer subclass."""

    def train(self, *args, **kwargs):
        # SIGTERM/SIGINT handlers live exactly as long as training: afterwards (or after an error) they are the
        # caller's again, so an interactive session's Ctrl-C is never swallowed.
        stop = _find_callback(self, StopSignal)
        if stop:
            stop.install()
        try:
            return super().train(*args, **kwargs)
        finally:
            if stop:
                stop.uninstall()

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not math.isfinite(float(loss)):
            # The weights that produced this loss are those of the previous step: checkpoints from there on are
            # marked diverged, and the error names the one `--resume` will really continue from.
            step = self.state.global_step + 1
            guard = _find_callback(self, DivergenceGuard)
            bad = min(step, guard.first_bad_step or step) if guard else step
            run = RunDir(Path(self.args.output_dir).parent, main=self.is_world_process_zero())
            raise divergence_error(run, f"non-finite loss ({float(loss)}) at step {step}", bad)
        return loss

    def _get_eval_sampler(self, eval_dataset):
        # Private Trainer API, overridden on purpose: with train_sampling_strategy=group_by_length transformers also
        # groups *evaluation* batches by length, in a shuffled order, so predict() returns rows out of dataset
        # order. Our reports (cls predictions.jsonl / accuracy, QA span decoding) pair outputs with examples by
        # position: evaluation stays in order. tests/unit/train/test_upstream_hooks.py watches the signature.
        if self.args.train_sampling_strategy != "group_by_length" or eval_dataset is None:
            return super()._get_eval_sampler(eval_dataset)
        from torch.utils.data import SequentialSampler

        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None  # None: accelerate shards

    def _save_checkpoint(self, model, trial):
        # Private Trainer API, overridden on purpose: the Trainer writes checkpoint-N/ in place, so a kill mid-save
        # leaves a directory that looks complete and `--resume` would load half a state. We point it at a staging
        # dir and rename. tests/unit/train/test_upstream_hooks.py fails loudly if transformers renames this method
        # or changes its signature.
        # Several processes: every rank writes its part (its RNG state; shards under FSDP / DeepSpeed) into the one
        # staging dir, so rank 0 alone clears it before and renames it after, with every rank waiting at both
        # points (each rank renaming on its own lost the others' files or moved a half-written checkpoint).
        final_root = self.args.output_dir
        staging = os.path.join(final_root, ".staging")
        main = self.args.should_save
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.args.output_dir = staging
        name = f"checkpoint-{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)
        except Exception as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise _disk_error(e, f"{name}", RunDir(Path(final_root).parent).latest_checkpoint()) from None
        finally:
            self.args.output_dir = final_root
        self.accelerator.wait_for_everyone()
        self._point_best_at(final_root, os.path.join(staging, name))  # every rank's memory; rank 0 the file
        if main:
            target = os.path.join(final_root, name)
            if os.path.exists(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, name), target)
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()  # nobody reads or rotates before the checkpoint is in place
        guard = _find_callback(self, DivergenceGuard)
        if self.args.should_save and self.args.save_total_limit and not (guard and guard.suspect):
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(output_dir=final_root, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)

    def _point_best_at(self, final_root: str, staged: str) -> None:
        # The Trainer looked for the best checkpoint under the staging dir while saving; the best one is (or, once
        # this rename is done, will be) checkpoint-<best step> in the real dir. Fix the path in memory and in the
        # staged trainer_state.json so load_best_model_at_end, rotation and --resume all find it.
        best = self.state.best_global_step
        if not (best and self.args.load_best_model_at_end):
            return
        self.state.best_model_checkpoint = os.path.join(final_root, f"checkpoint-{best}")
        if self.args.should_save:
            self.state.save_to_json(os.path.join(staged, "trainer_state.json"))


def resume_point(run: RunDir) -> Path | None:
    """The checkpoint `--resume` continues from (None: start fresh), announced on the main process."""
    ckpt = run.latest_checkpoint()
    if ckpt is not None and run.main:
        print(f"resuming from {ckpt.name} (step {ckpt.name.split('-')[1]}) in {run.root}", flush=True)
    return ckpt


def _find_callback(trainer, cls):
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, cls)), None)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _disk_error(e: Exception, what: str, kept: Path | None) -> BaseException:
    """Out of space (or over a file-size limit) while saving: one line; the atomic save left nothing half-written.
    Other errors are returned unchanged. safetensors reports I/O failures as its own error type ("os error 28")."""
    code = e.errno if isinstance(e, OSError) else None
    found = re.search(r"os error (\d+)", str(e)) if code is None else None
    code = int(found.group(1)) if found else code
    if code not in DISK_FULL:
        return e
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    return TrainingError(f"no space left while saving {what}{where}: {os.strerror(code)}; nothing was half-written",
                         hint=f"free disk space, then add --resume to continue from {kept}" if kept else
                         "free disk space (or point output.dir at a larger disk) and start again")


def make_trainer_class(base):
    return type(f"Tuneforge{base.__name__}", (GuardMixin, base), {})


@functools.lru_cache(maxsize=None)
def _trainer():
    from transformers import Trainer

    return make_trainer_class(Trainer)


def TuneforgeTrainer(*args, **kwargs):  # noqa: N802 - reads like a class at call sites
    return _trainer()(*args, **kwargs)


def callbacks(cfg: Config, run: RunDir) -> list:
    extra = []
    if cfg.train.early_stopping_patience:  # stage.validate allowed it: the trainer args select the best model
        from transformers import EarlyStoppingCallback

        extra.append(EarlyStoppingCallback(cfg.train.early_stopping_patience, cfg.train.early_stopping_threshold))
    if cfg.train.keep_sparsity:  # recovery fine-tune after an unstructured prune: zeros stay zero
        extra.append(KeepSparsity(run))
    return [MetricsCallback(run.metrics), RichProgressCallback(), DivergenceGuard(run, cfg.train.on_divergence),
            NewPeakLR(), StopSignal(), *observers(), *extra]


def fit(trainer, run: RunDir, resume: bool) -> dict:
    """Train (resuming from the latest checkpoint when asked), then plot; returns the final metrics."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    ckpt = resume_point(run) if resume else None
    run.truncate_metrics(int(ckpt.name.split("-")[1]) if ckpt is not None else None)
    if trainer.args.world_size > 1:  # what the launcher actually set up, next to the config that asked for it
        a, kind = trainer.args, str(trainer.accelerator.distributed_type).split(".")[-1]
        if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and kind != "FSDP":
            raise ConfigError(f"the launch config asks for FSDP but accelerate set up {kind} (FSDP runs only on "
                              "CUDA devices)", hint="on CPU launch without the FSDP config (plain DDP)")
        run.record_resolved(distributed={"type": kind, "world_size": a.world_size, "global_batch":
                                         a.per_device_train_batch_size * a.gradient_accumulation_steps * a.world_size})
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    if trainer.args.should_save:
        plot_metrics(run.metrics, run.plots)
    stop = _find_callback(trainer, StopSignal)
    if stop and stop.received is not None:
        saved = run.latest_checkpoint()
        raise TrainingInterrupted(f"stopped by {stop.name} at step {trainer.state.global_step}; saved {saved}",
                                  hint="add --resume to the same command to continue")
    return {**result.metrics, **best_checkpoint_metrics(trainer)}


def best_checkpoint_metrics(trainer) -> dict:
    """With load_best_model_at_end: which step the final model comes from, its score, and where training stopped."""
    state, args = trainer.state, trainer.args
    if not (args.load_best_model_at_end and state.best_global_step):
        return {}
    name = args.metric_for_best_model
    name = name if name.startswith("eval_") else f"eval_{name}"
    return {"best_step": state.best_global_step, f"best_{name}": state.best_metric,
            "last_step": state.global_step, "stopped_early": state.global_step < state.max_steps}


def gathered_weights(trainer) -> dict | None:
    """The whole weights of a model FSDP or DeepSpeed ZeRO-3 shards across ranks; None when each rank holds them whole.

    Gathering is a collective: every rank must call this (as the Trainer's own save_model does), or rank 0 waits for
    the others forever; rank 0 then writes the dict it got back.
    """
    if getattr(trainer, "is_fsdp_enabled", False):
        return trainer.accelerator.get_state_dict(trainer.model)
    if getattr(trainer, "is_deepspeed_enabled", False):
        try:
            return trainer.accelerator.get_state_dict(trainer.deepspeed)
        except ValueError as e:  # ZeRO-3 without the 16-bit gather: the weights exist only as shards
            raise TrainingError(f"the final model could not be gathered from the DeepSpeed shards: {e}",
                                hint="set stage3_gather_16bit_weights_on_model_save: true in the DeepSpeed config "
                                     "(examples/distributed/ds_z3.json); the checkpoints hold the trained shards")
    return None


def save_final(trainer, tokenizer, run: RunDir, cfg: Config) -> Path:
    """Save the adapter (LoRA) or full model as safetensors, atomically, plus the tokenizer (main process only)."""
    weights = gathered_weights(trainer)  # every rank, before the others return
    # sharded: the wrapper (FSDP1) or engine-managed module writes the gathered dict; unwrap as the Trainer does
    model = trainer.model if weights is None else trainer.accelerator.unwrap_model(trainer.model)
    is_peft = hasattr(model, "peft_config")
    target = run.adapter if is_peft else run.model
    if not run.main:
        return target
    try:
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            if is_peft:  # the base as a portable id + its weights' hash, not the local GGUF cache dir
                record_base(tmp, cfg.model)
        if is_peft and cfg.output.save_merged and weights is None:
            with atomic_dir(run.model) as tmp:
                model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
    except Exception as e:
        raise _disk_error(e, "the final model", run.latest_checkpoint()) from None
    if is_peft and cfg.output.save_merged and weights is not None:
        # Merging needs the whole base on one rank, which sharding exists to avoid; the adapter is saved and
        # `tuneforge export` folds it in on one process.
        print(f"output.save_merged: not merged in a sharded run; merge with: tuneforge export {run.root}")
    return target
