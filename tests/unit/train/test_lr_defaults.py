"""Per-method default learning rates: applied only when train.lr is unset, recorded as resolved, used by the
trainer arguments, and never written back into the config."""

from __future__ import annotations

import pytest
import yaml

from tuneforge.config import load_config
from tuneforge.runs import open_run
from tuneforge.train.common import training_args
from tuneforge.train.stages import get_stage


@pytest.mark.parametrize("overrides,expected", [
    (["stage=cls", "method=lora"], 2e-3),
    (["stage=cls", "method=full"], 1e-4),
    (["stage=cls", "method=lora", "train.lr=1e-3"], None),  # the user's value always wins
    (["stage=qa", "method=lora"], 2e-3),
    (["stage=qa", "method=full"], None),
    (["stage=sft", "method=lora"], None),
])
def test_default_lr_only_when_unset(overrides, expected):
    cfg = load_config(None, overrides)
    assert get_stage(cfg).default_lr(cfg) == expected


def test_resolved_lr_reaches_the_trainer_and_not_the_config(tmp_path):
    cfg = load_config(None, ["stage=cls", "method=lora", f"output.dir={tmp_path}", "output.name=r"])
    run = open_run(cfg, resume=False, resolved={"train.lr": get_stage(cfg).default_lr(cfg)})
    try:
        assert training_args(cfg, run).learning_rate == 2e-3
        written = yaml.safe_load(run.config.read_text())
        assert written["train"]["lr"] == cfg.train.lr == 2e-4 and written["resolved"]["train.lr"] == 2e-3
    finally:
        run.release()
    explicit = load_config(None, ["stage=cls", "method=lora", "train.lr=5e-5", f"output.dir={tmp_path}",
                                  "output.name=s"])
    run = open_run(explicit, resume=False)
    try:
        assert training_args(explicit, run).learning_rate == 5e-5
    finally:
        run.release()
