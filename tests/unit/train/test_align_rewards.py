"""Reward sources of the online stages, the align: config checks, and the upstream TRL hooks the stages rely on."""

from __future__ import annotations

import inspect

import pytest

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.train.rewards import (
    contains_reference,
    exact_number,
    last_number,
    resolve_reward,
)
from tuneforge.train.stages import get_stage


def no_rm(path):
    raise AssertionError("no reward model expected")


def test_builtin_rewards():
    assert last_number("so 3,400.5 then #### 42") == 42.0 and last_number("none") is None
    assert exact_number(["The answer is 42.", "41", "no idea"], reference=["#### 42"] * 3) == [1.0, 0.0, 0.0]
    assert contains_reference(["It is PARIS.", "Lyon"], reference=["paris", "paris"]) == [1.0, 0.0]
    fmt, _ = resolve_reward(r"format:^\d+$", no_rm)
    assert fmt(["12", "12 apples"]) == [1.0, 0.0]
    length, _ = resolve_reward("length:2", no_rm)
    assert length(["a b", "a", "a b c d", ""]) == [1.0, 0.5, 0.0, 0.0]


def test_user_reward_from_file_and_module(tmp_path):
    f = tmp_path / "my_rewards.py"
    f.write_text("def shout(completions, **kw):\n    return [float(c.isupper()) for c in completions]\n")
    func, tok = resolve_reward(f"{f}:shout", no_rm)
    assert func(["HI", "hi"]) == [1.0, 0.0] and tok is None
    func, _ = resolve_reward("tuneforge.train.rewards:exact_number", no_rm)
    assert func is exact_number
    for bad in ("nope", f"{f}:missing", "format:(", "length:x", "no_such_module_xyz:f"):
        with pytest.raises(ConfigError):
            resolve_reward(bad, no_rm)


def test_rm_reward_goes_to_the_reward_model_loader():
    seen = []
    resolve_reward("rm:runs/my-rm", lambda p: seen.append(p) or ("model", "tok"))
    assert seen == ["runs/my-rm"]


def test_stage_checks_before_any_work():
    with pytest.raises(ConfigError, match="multiple of align.num_generations"):
        get_stage(load_config(None, ["stage=grpo", "train.batch_size=6", "align.num_generations=4"]))
    with pytest.raises(ConfigError, match="method"):
        get_stage(load_config(None, ["stage=dpo", "method=freeze"]))
    with pytest.raises(ConfigError):
        load_config(None, ["align.pref_loss=sigmod"])
    assert get_stage(load_config(None, ["stage=ppo", "train.batch_size=4"])).name == "ppo"


def test_upstream_trl_hooks_we_override_keep_their_shape():
    """align_common.PretokenizedDataset overrides the private `_prepare_dataset` of TRL's DPO/KTO trainers and
    PretokenizedPairs the per-row `tokenize_row` of CPO/ORPO: if this fails after a TRL upgrade, read those
    docstrings first."""
    from trl import DPOTrainer, KTOTrainer
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    for cls in (DPOTrainer, KTOTrainer):
        params = list(inspect.signature(cls._prepare_dataset).parameters)
        assert params == ["self", "dataset", "processing_class", "args", "dataset_name"], (cls, params)
    for cls in (CPOTrainer, ORPOTrainer):
        assert list(inspect.signature(cls.tokenize_row).parameters)[:2] == ["self", "feature"], cls
    assert "calculate_KL" in inspect.getsource(KTOTrainer._prepare_dataset)
    # train/online_eval.py scores held-out answers with the online trainers' private reward helper and attributes
    from trl import GRPOTrainer, RLOOTrainer

    for cls in (GRPOTrainer, RLOOTrainer):
        params = list(inspect.signature(cls._calculate_rewards).parameters)
        assert params == ["self", "inputs", "prompts", "completions", "completion_ids_list"], (cls, params)
        init = inspect.getsource(cls.__init__)
        assert all(f"self.{a} =" in init for a in ("reward_weights", "reward_func_names", "eos_token_ids", "_metrics"))


def test_align_examples_load_and_validate():
    from pathlib import Path

    from tuneforge.train.stages import load_training_config

    examples = sorted((Path(__file__).parents[3] / "examples").glob("align_*.yaml"))
    assert len(examples) >= 7
    for path in examples:
        cfg, stage = load_training_config(str(path), [])
        assert stage.name == cfg.stage and Path(cfg.data.dataset_dir or path.parent).exists(), path
        for spec in cfg.data.train:
            assert Path(spec.path).exists() or (Path(cfg.data.dataset_dir) / "dataset_info.json").exists(), path
