"""Trainer callbacks: metrics.jsonl (loss, lr, grad-norm, tokens/s) and a rich progress bar with ETA."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


class MetricsCallback(TrainerCallback):
    """Append one JSON line per log event; tokens/s comes from the Trainer's non-padding token counter."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._last_t = None
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kw):
        self._last_t = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen or 0

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        tokens = state.num_input_tokens_seen or 0
        rec = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
        if self._last_t is not None and now > self._last_t and tokens > self._last_tokens:
            rec["tokens_per_s"] = round((tokens - self._last_tokens) / (now - self._last_t), 2)
        rec["tokens_seen"] = tokens
        self._last_t, self._last_tokens = now, tokens
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=float) + "\n")


class RichProgressCallback(TrainerCallback):
    """One progress bar: step / total, ETA, loss and tokens/s; falls back to nothing when not a TTY-worthy run."""

    def __init__(self):
        self.progress = None
        self.task = None
        self._loss = float("nan")
        self._tps = 0.0
        self._t0 = None
        self._tokens0 = 0

    def on_train_begin(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train[/]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"), transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                           loss=self._loss, tps=self._tps)
        self._t0, self._tokens0 = time.perf_counter(), state.num_input_tokens_seen or 0

    def on_step_end(self, args, state, control, **kw):
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self._t0
        tokens = (state.num_input_tokens_seen or 0) - self._tokens0
        self._tps = tokens / elapsed if elapsed > 0 else 0.0
        self.progress.update(self.task, completed=state.global_step, loss=self._loss, tps=self._tps)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])
            if self.progress is not None:  # the step-end refresh ran before this log: show the loss now
                self.progress.update(self.task, loss=self._loss)

    def on_train_end(self, args, state, control, **kw):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
