"""Honest stops: divergence and collapse detection, checkpoints that really resume, and SIGTERM/SIGINT.

The loss logged at step s was computed with the weights of checkpoint-(s-1), so a checkpoint is *good* only when
the loss measured right after it was finite and in a sane range, and its weights are finite. When training
diverges (non-finite loss, a spike far above the running median) or collapses (grad-norm 0, or the loss back at
ln(vocab) after it had been lower) the checkpoints written after the last sane loss are marked `diverged.json`
and skipped by `--resume`, and the error names the checkpoint `--resume` will use.

`train.on_divergence: warn` only warns about spikes and collapse (a non-finite loss always stops); checkpoint
rotation is paused while the loss is out of range, so the good ones are not rotated away.
"""

from __future__ import annotations

import math
import signal
import statistics
from pathlib import Path

from transformers import TrainerCallback

from tuneforge.errors import TrainingError
from tuneforge.runs import RunDir, checkpoint_step

PATIENCE = 3  # logged steps in a row before grad-norm 0 / loss at ln(vocab) counts as collapse
SPIKE_FACTOR = 4.0  # a loss this many times its running median ...
SPIKE_MARGIN = 1.0  # ... and at least this many nats above it is a spike (near-zero losses may triple harmlessly)
MIN_HISTORY = 5  # logged losses needed before spikes are judged
WINDOW = 20  # running median over this many logged losses
UNIFORM_TOL = 0.02  # "at ln(vocab)": within 2%


class DivergenceGuard(TrainerCallback):
    """Watches the logged loss and grad-norm; stops (or warns) on spikes and collapse, naming a good checkpoint."""

    def __init__(self, run: RunDir, action: str = "stop"):
        self.run = run
        self.action = action
        self.history: list[float] = []
        self.first_bad_step: int | None = None  # first step whose logged loss was out of range
        self.logging_steps = 1
        self.log_vocab: float | None = None
        self._zero_grad = 0
        self._uniform = 0
        self._warned: set[str] = set()

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.logging_steps = max(1, int(args.logging_steps or 1))
        head = model.get_output_embeddings() if model is not None and hasattr(model, "get_output_embeddings") \
            else None
        weight = getattr(head, "weight", None)
        self.log_vocab = math.log(weight.shape[0]) if weight is not None and weight.shape[0] > 1 else None

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "loss" not in logs:
            return
        loss, grad_norm, step = float(logs["loss"]), logs.get("grad_norm"), state.global_step
        problem = self.judge(loss, None if grad_norm is None else float(grad_norm))
        if problem is None:
            self.history.append(loss)
            return
        if self.first_bad_step is None:  # a collapse began with the first step of its streak
            streak = max(self._zero_grad, self._uniform, 1)
            self.first_bad_step = max(1, step - (streak - 1) * self.logging_steps)
        if self.action == "stop":
            raise divergence_error(self.run, f"{problem} at step {step}", self.first_bad_step, self.logging_steps)
        kind = problem.split(":")[0]
        if kind not in self._warned and state.is_world_process_zero:
            self._warned.add(kind)
            print(f"WARNING: {problem} at step {step} (train.on_divergence=warn: training continues; "
                  "checkpoint rotation paused)", flush=True)

    def judge(self, loss: float, grad_norm: float | None) -> str | None:
        """A description of what is wrong with this logged step, or None when it looks sane."""
        if not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        self._zero_grad = self._zero_grad + 1 if grad_norm is not None and grad_norm == 0.0 else 0
        if self._zero_grad >= PATIENCE:
            return f"collapse: grad-norm 0 for {self._zero_grad} logged steps (loss {loss:.4f})"
        if self.log_vocab is not None:
            at_uniform = abs(loss - self.log_vocab) <= UNIFORM_TOL * self.log_vocab
            learned = bool(self.history) and min(self.history) < (1 - 5 * UNIFORM_TOL) * self.log_vocab
            self._uniform = self._uniform + 1 if at_uniform and learned else 0
            if self._uniform >= PATIENCE:
                return (f"collapse: loss stuck at ln(vocab)={self.log_vocab:.3f} (uniform predictions) for "
                        f"{self._uniform} logged steps after reaching {min(self.history):.3f}")
        if len(self.history) >= MIN_HISTORY:
            median = statistics.median(self.history[-WINDOW:])
            if loss > SPIKE_FACTOR * median and loss - median > SPIKE_MARGIN:
                return f"loss spike: {loss:.4g} vs running median {median:.4g}"
        return None

    @property
    def suspect(self) -> bool:
        """True once the loss left its sane range or a collapse streak began: rotation must not delete the
        checkpoints that may turn out to be the last good ones."""
        return self.first_bad_step is not None or self._zero_grad > 0 or self._uniform > 0


def divergence_error(run: RunDir, what: str, bad_step: int, logging_steps: int = 1) -> TrainingError:
    """Mark the checkpoints that cannot be trusted and build the error naming the one `--resume` will use."""
    marked = mark_untrusted(run, bad_step, logging_steps)
    good = run.latest_checkpoint()
    note = f"; {len(marked)} later checkpoint(s) marked diverged" if marked else ""
    if good is None:
        hint = "no checkpoint was written before the loss went bad; start again with a lower train.lr"
    else:
        hint = (f"checkpoint that resumes: {good} (step {checkpoint_step(good)}){note}; "
                "add --resume with a lower train.lr to continue from it")
    return TrainingError(f"{what}; training stopped", hint=hint)


def mark_untrusted(run: RunDir, bad_step: int, logging_steps: int = 1) -> list[Path]:
    """Mark checkpoints written at or after the last sane loss, or holding non-finite weights (main process)."""
    if not run.checkpoints.is_dir():
        return []
    marked = []
    for ckpt in sorted(run.checkpoints.glob("checkpoint-*"), key=checkpoint_step):
        step = checkpoint_step(ckpt)
        if step < 0 or run.is_diverged(ckpt):
            continue
        if step + logging_steps >= bad_step:
            reason = f"written at step {step}; the loss logged at step {bad_step} was out of range"
        elif not weights_finite(ckpt):
            reason = "non-finite weights"
        else:
            continue
        run.mark_diverged(ckpt, reason)
        marked.append(ckpt)
    return marked


def weights_finite(ckpt: Path) -> bool:
    """Every tensor of the checkpoint's safetensors files is finite."""
    import torch
    from safetensors import safe_open

    for f in ckpt.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                t = st.get_tensor(key)
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    return False
    return True


class StopSignal(TrainerCallback):
    """SIGTERM/SIGINT (a scheduler's preemption notice, Ctrl-C): finish the current step, save a checkpoint, stop.

    `fit` installs it around `trainer.train()` and raises TrainingInterrupted afterwards (exit 143), so a job
    script can requeue with `--resume` and continue bit-exactly from the saved step.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. a web UI worker): skip
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signum
        print(f"\n{signal.Signals(signum).name} received: saving a checkpoint after this step, then stopping",
              flush=True)

    def on_step_end(self, args, state, control, **kw):
        if self._agreed_stop():
            control.should_save = True
            control.should_training_stop = True
        return control

    def _agreed_stop(self) -> bool:
        """Under DDP every rank must stop after the same step (else one waits forever in the next all-reduce):
        the ranks agree with one tiny all-reduce per step. A single process just reads its flag."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.received is not None
        import torch

        flag = torch.tensor([1 if self.received is not None else 0],
                            device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.received is None:
            self.received = signal.SIGTERM  # another rank got the signal
        return bool(flag.item())

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""


class NewPeakLR(TrainerCallback):
    """On resume, honour the `train.lr` of this command: the Trainer restores the checkpoint's optimizer and
    scheduler, whose peak lr is the old one, so `--resume train.lr=<lower>` after a divergence would silently
    diverge again. The schedule keeps its shape (warm-up, decay position) around the new peak."""

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
        base = getattr(lr_scheduler, "base_lrs", None)
        if not state.global_step or optimizer is None or not base or math.isclose(base[0], args.learning_rate):
            return
        scale = args.learning_rate / base[0]
        lr_scheduler.base_lrs = [b * scale for b in base]
        for group in optimizer.param_groups:
            group["lr"] *= scale
            if "initial_lr" in group:
                group["initial_lr"] *= scale
        if state.is_world_process_zero:
            print(f"resume: peak learning rate {base[0]:g} -> {args.learning_rate:g} (train.lr of this command)",
                  flush=True)
