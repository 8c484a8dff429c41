"""Divergence/collapse judgement and which checkpoints stay trusted (synthetic logs, no model)."""

import math
import random

import pytest
import torch
from safetensors.torch import save_file

from tuneforge.errors import TrainingError
from tuneforge.runs import RunDir
from tuneforge.train.guards import DivergenceGuard, divergence_error, mark_untrusted


def guard(run=None, action="stop", vocab=None):
    g = DivergenceGuard(run or RunDir("/nonexistent"), action)
    g.log_vocab = math.log(vocab) if vocab else None
    return g


def problems(g, losses, grads=None):
    grads = grads or [1.0] * len(losses)
    out = []
    for loss, gn in zip(losses, grads):
        p = g.judge(loss, gn)
        out.append(p)
        if p is None:
            g.history.append(loss)
    return out


def test_noisy_healthy_training_is_not_flagged():
    rng = random.Random(0)
    losses = [6.0 * math.exp(-i / 40) + rng.uniform(-0.4, 0.4) for i in range(200)] + [0.02, 0.06, 0.01]
    assert all(p is None for p in problems(guard(vocab=500), losses))


def test_spike_far_above_running_median():
    out = problems(guard(), [2.0, 1.9, 2.1, 1.8, 1.9, 2.0, 40.0])
    assert out[:-1] == [None] * 6 and out[-1].startswith("loss spike")


def test_collapse_grad_norm_zero_and_uniform_loss():
    out = problems(guard(), [3.0, 2.0, 2.0, 2.0], [1.0, 0.0, 0.0, 0.0])
    assert out[-1].startswith("collapse: grad-norm 0") and out[-2] is None
    ln_v = math.log(500)
    out = problems(guard(vocab=500), [ln_v, 4.0, 3.0, ln_v, ln_v, ln_v])
    assert out[-1].startswith("collapse: loss stuck at ln(vocab)") and out[-2] is None
    # a fresh random model starts at ln(vocab): that alone is not a collapse
    assert all(p is None for p in problems(guard(vocab=500), [ln_v] * 10))


def _ckpt(run, step, value=0.5):
    d = run.checkpoints / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text("{}")
    save_file({"w": torch.full((4,), value)}, str(d / "model.safetensors"))


def test_checkpoints_after_the_last_sane_loss_or_with_nan_weights_are_not_resumed(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3, 4):
        _ckpt(run, step)
    _ckpt(run, 5, float("nan"))
    # loss logged at step 4 was bad: it came from checkpoint-3's weights, so 3, 4 (and 5) are out
    marked = mark_untrusted(run, bad_step=4)
    assert sorted(p.name for p in marked) == ["checkpoint-3", "checkpoint-4", "checkpoint-5"]
    assert run.latest_checkpoint().name == "checkpoint-2"
    save_file({"w": torch.tensor([1.0, float("inf")])}, str(run.checkpoints / "checkpoint-2" / "model.safetensors"))
    mark_untrusted(run, bad_step=100)
    assert run.latest_checkpoint().name == "checkpoint-1"


def test_stop_names_the_checkpoint_resume_will_use(tmp_path):
    run = RunDir(tmp_path)
    for step in (2, 4, 6):
        _ckpt(run, step)
    g = guard(run)
    g.on_train_begin(type("A", (), {"logging_steps": 1})(), None, None)
    state = type("S", (), {"global_step": 0, "is_world_process_zero": True})()
    for step, loss in enumerate([2.0, 1.9, 2.1, 1.8, 1.9, 2.0, 50.0], 1):
        state.global_step = step
        if step < 7:
            g.on_log(None, state, None, logs={"loss": loss, "grad_norm": 1.0})
    with pytest.raises(TrainingError) as e:
        g.on_log(None, state, None, logs={"loss": 50.0, "grad_norm": 1.0})
    assert "checkpoint-4" in str(e.value) and "--resume" in str(e.value)
    assert run.latest_checkpoint().name == "checkpoint-4"


def test_warn_mode_continues_and_pauses_rotation(tmp_path, capsys):
    g = guard(RunDir(tmp_path), action="warn")
    state = type("S", (), {"global_step": 0, "is_world_process_zero": True})()
    for step, loss in enumerate([2.0, 1.9, 2.1, 1.8, 1.9, 2.0, 50.0, 2.0], 1):
        state.global_step = step
        g.on_log(None, state, None, logs={"loss": loss})
    assert g.suspect and g.first_bad_step == 7 and "WARNING: loss spike" in capsys.readouterr().out
    assert divergence_error(RunDir(tmp_path), "x", 7).hint.startswith("no checkpoint")
