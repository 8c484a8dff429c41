"""The progress bar shows the last logged loss even when the log comes after the step's refresh (1-step runs)."""

from __future__ import annotations

import math
from types import SimpleNamespace

from tuneforge.train.callbacks import RichProgressCallback


def test_progress_bar_shows_the_loss_logged_after_the_last_step():
    cb = RichProgressCallback()
    state = SimpleNamespace(is_world_process_zero=True, max_steps=1, global_step=0, num_input_tokens_seen=0)
    cb.on_train_begin(None, state, None)
    state.global_step, state.num_input_tokens_seen = 1, 100
    cb.on_step_end(None, state, None)
    task = cb.progress.tasks[0]
    assert math.isnan(task.fields["loss"])  # the Trainer logs after the step-end callback
    cb.on_log(None, state, None, logs={"loss": 2.5})
    assert task.fields["loss"] == 2.5
    cb.on_train_end(None, state, None)
