"""Each alignment stage trains a tiny model through the real recipe (TRL underneath) and its held-out metric
improves over the start: preference accuracy / margin on held-out pairs (dpo, simpo, orpo, kto), pairwise
accuracy (rm), mean reward on held-out prompts (grpo, rloo). The held-out files use other prompts and answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from align_tasks import write_feedback, write_pairs, write_prompts

from tuneforge.config import load_config
from tuneforge.train.run import run_training

pytestmark = pytest.mark.slow


def train(model_dir, tmp_path, stage, train_file, eval_file, *overrides):
    cfg = load_config(None, [f"stage={stage}", f"model.path={model_dir}", f"data.train={train_file}",
                             f"data.eval={eval_file}", "data.template=auto", f"output.dir={tmp_path / 'runs'}",
                             f"output.name={stage}", "train.max_steps=8", "train.lr=2e-2", "train.batch_size=8",
                             "train.logging_steps=2", *overrides])
    out = run_training(cfg)
    return Path(out["run_dir"]), out


@pytest.mark.parametrize("stage,method", [("dpo", "lora"), ("simpo", "lora"), ("orpo", "lora"), ("kto", "full")])
def test_offline_preference_stages_learn_held_out(tiny_llama, tmp_path, stage, method):
    writer = write_feedback if stage == "kto" else write_pairs
    tr, ev = writer(tmp_path / "train.jsonl", 32, 0), writer(tmp_path / "eval.jsonl", 8, 1)
    extra = ["train.lr=3e-3"] if method == "full" else []
    run, out = train(tiny_llama, tmp_path, stage, tr, ev, f"method={method}", *extra)
    assert out["eval_rewards/margins"] > out["start_eval_rewards/margins"] + 0.05, out
    if stage != "kto":  # KTO has no pairs to rank
        assert out["eval_rewards/accuracies"] >= 0.75, out
        assert out["eval_rewards/accuracies"] >= out["start_eval_rewards/accuracies"], out
    report = json.loads((run / "data_report.json").read_text())
    assert report["train"]["kept"] == 32 and report["eval"]["kept"] == 8 and "prompt_tokens" in report["train"]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/chosen" in r for r in rows) and (run / "plots" / "rewards.png").exists()
    final = run / ("adapter" if method == "lora" else "model")
    assert any(final.glob("*.safetensors"))


def test_dpo_lora_reference_is_the_base_with_adapter_disabled(tiny_llama, tmp_path):
    """No second model copy and no 'ref' adapter: TRL applies our LoRA config and disables it for the reference."""
    from datasets import Dataset

    from tuneforge.runs import open_run
    from tuneforge.train.dpo import STAGE

    cfg = load_config(None, ["stage=dpo", f"model.path={tiny_llama}", f"data.train={write_pairs(tmp_path / 't.jsonl', 8, 0)}",
                             f"output.dir={tmp_path}", "output.name=ref"])
    tok = STAGE.load_tokenizer(cfg)
    rows, _, _ = STAGE.build_data(cfg, tok)
    model, peft_config = STAGE.build_policy(cfg, tok)
    trainer = STAGE.make_trainer(cfg, open_run(cfg, False), model, peft_config, tok, Dataset.from_list(rows), None)
    assert trainer.ref_model is None and list(trainer.model.peft_config) == ["default"]


def test_reward_model_pairwise_accuracy_improves(tiny_llama, tmp_path):
    tr, ev = write_pairs(tmp_path / "train.jsonl", 32, 0), write_pairs(tmp_path / "eval.jsonl", 8, 1)
    run, out = train(tiny_llama, tmp_path, "rm", tr, ev, "train.lr=1e-2")
    assert out["eval_accuracy"] >= 0.75 and out["eval_accuracy"] > out["start_eval_accuracy"], out
    assert (run / "adapter" / "adapter_config.json").exists()


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_online_stages_raise_held_out_reward(tiny_llama, tmp_path, stage):
    tr, ev = write_prompts(tmp_path / "train.jsonl", 32, 0), write_prompts(tmp_path / "eval.jsonl", 8, 1)
    run, out = train(tiny_llama, tmp_path, stage, tr, ev, "method=full", "train.lr=3e-2", "align.rewards=[length:2]",
                     "align.max_completion_length=16")
    assert out["eval_reward"] >= out["start_eval_reward"] + 0.15, out
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/length_target/mean" in r for r in rows) and (run / "plots" / "reward.png").exists()
    # the held-out reward is one greedy answer per prompt (train/online_eval.py), logged like any evaluation
    final = [r for r in rows if "eval_reward" in r]
    assert final and final[-1]["eval_reward"] == pytest.approx(out["eval_reward"]), rows[-2:]
    assert 0 < out["eval_completions/mean_length"] <= 16 and 0 <= out["eval_completions/clipped_ratio"] <= 1


def test_dpo_training_steps_take_the_shared_prompt_path(tiny_llama, tmp_path, monkeypatch):
    """TRL's own training and evaluation calls reach the shared-prompt forward (not its padded fallback), and
    `align.share_prompt=false` keeps them on TRL's head."""
    from tuneforge.train import shared_prompt

    calls = []
    real = shared_prompt.shared_prompt_forward

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(shared_prompt, "shared_prompt_forward", counted)
    tr, ev = write_pairs(tmp_path / "train.jsonl", 8, 0), write_pairs(tmp_path / "eval.jsonl", 4, 1)
    train(tiny_llama, tmp_path, "dpo", tr, ev, "train.max_steps=2", "train.batch_size=4")
    # 2 steps x (policy + reference) + 2 evaluations (start, end) x (policy + reference)
    assert len(calls) >= 8 and all(calls), calls
    calls.clear()
    train(tiny_llama, tmp_path, "dpo", tr, ev, "train.max_steps=1", "align.share_prompt=false",
          "output.name=padded")
    assert calls == []


def test_dpo_resume_is_bit_exact(tiny_llama, tmp_path):
    """4 steps straight == 2 steps, then --resume to 4 (constant lr, so stopping early changes no schedule): the same
    losses and margins to the bit, through the shared-prompt forward."""
    from tuneforge.runs import RunDir

    tr = write_pairs(tmp_path / "train.jsonl", 8, 0)

    def run(name, steps, resume=False):
        cfg = load_config(None, ["stage=dpo", f"model.path={tiny_llama}", f"data.train={tr}", "data.template=auto",
                                 f"output.dir={tmp_path / 'runs'}", f"output.name={name}", f"train.max_steps={steps}",
                                 "train.lr=2e-2", "train.batch_size=2", "train.logging_steps=1", "train.save_steps=2",
                                 "train.scheduler=constant", "lora.dropout=0.1"])
        return Path(run_training(cfg, resume=resume)["run_dir"])

    def curve(run_dir):
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["rewards/margins"]) for r in rows if "loss" in r and "rewards/margins" in r]

    straight = curve(run("straight", 4))
    half = run("half", 2)
    assert RunDir(half).latest_checkpoint() is not None
    run("half", 4, resume=True)
    assert curve(half) == straight and len(straight) == 4
