"""`tuneforge eval` preference tasks against the trainers' own held-out numbers: a tiny LoRA DPO run's implicit-reward
accuracy / margin / log-probs, and an rm run's pairwise accuracy / margin, on the same held-out file; and the
`--compare base <run>` table of an aligned run with its start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from align_tasks import write_pairs
from typer.testing import CliRunner

from tuneforge.config import load_config
from tuneforge.config.evaluation import EvalConfig
from tuneforge.eval.run import evaluate, run_target
from tuneforge.train.run import run_training

pytestmark = pytest.mark.slow


def _train(model_dir, tmp_path, stage, train_file, eval_file, *overrides) -> tuple[Path, dict]:
    # eval batch = train.batch_size = all 8 held-out pairs: TRL's batch-mean metrics are then the file's means
    cfg = load_config(None, [f"stage={stage}", f"model.path={model_dir}", f"data.train={train_file}",
                             f"data.eval={eval_file}", f"output.dir={tmp_path / 'runs'}", f"output.name={stage}",
                             "train.max_steps=8", "train.lr=2e-2", "train.batch_size=8", "train.logging_steps=4",
                             "output.plot=false", *overrides])
    out = run_training(cfg)
    return Path(out["run_dir"]), out


def _evaluate_run(run: Path, eval_file: str, **task) -> tuple[dict, list[dict]]:
    target, _ = run_target(run)
    eval_cfg = EvalConfig(tasks=[{"name": "held_out", "file": eval_file, "type": "preference", **task}],
                          progress="off", bootstrap_samples=50)
    res = evaluate(target, eval_cfg, log=lambda m: None)["tasks"]["held_out"]
    recs = [json.loads(x) for x in (target.out_dir / "predictions" / "held_out.jsonl").read_text().splitlines()]
    return res, recs


def _with_swapped(path: str, k: int) -> str:
    """The first k held-out pairs with chosen and rejected swapped: a trained model gets them wrong, so accuracy is
    neither 0 nor 1 and matching it exactly means something."""
    rows = [json.loads(x) for x in Path(path).read_text().splitlines()]
    for r in rows[:k]:
        r["chosen"], r["rejected"] = r["rejected"], r["chosen"]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dpo_run(tiny_llama, tmp_path_factory):
    """A LoRA DPO run (beta 0.2) with its held-out metrics, and its held-out file."""
    tmp = tmp_path_factory.mktemp("dpo-eval")
    tr, ev = write_pairs(tmp / "train.jsonl", 32, 0), _with_swapped(write_pairs(tmp / "eval.jsonl", 8, 1), 3)
    run, out = _train(tiny_llama, tmp, "dpo", tr, ev, "align.pref_beta=0.2", "train.max_steps=2", "train.lr=5e-3")
    return run, out, ev


def test_dpo_run_implicit_reward_matches_the_trainer(dpo_run):
    run, out, ev = dpo_run
    res, recs = _evaluate_run(run, ev, beta=0.2)
    m = res["metrics"]
    print("dpo cross-check", {k: out[f"eval_{k}"] for k in ("rewards/accuracies", "rewards/margins", "logps/chosen",
                                                             "logps/rejected")}, m)
    assert res["n"] == 8 and res["scoring"] == "implicit reward" and "adapter disabled" in res["reward"]
    assert 0 < m["reward_acc"] < 1 and m["reward_acc"] == out["eval_rewards/accuracies"]
    assert m["reward_margin"] == pytest.approx(out["eval_rewards/margins"], abs=1e-4)
    assert abs(out["eval_rewards/margins"]) > 0.01  # trained away from the reference: the check has teeth
    for side in ("chosen", "rejected"):  # the summed answer log-probs themselves, not only their comparison
        mean = sum(r[f"logp_{side}"] for r in recs) / len(recs)
        assert mean == pytest.approx(out[f"eval_logps/{side}"], abs=1e-4)


def test_compare_base_with_the_aligned_run(dpo_run, tiny_llama, tmp_path):
    run, out, ev = dpo_run
    cfg = {"model": {"path": str(tiny_llama)}, "output": {"dir": str(tmp_path / "runs")},
           "eval": {"bootstrap_samples": 50, "tasks": [{"name": "prefs", "file": ev, "type": "preference"}]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    from tuneforge.cli import app

    res = CliRunner().invoke(app, ["eval", "--compare", "base", str(run), "-c", str(tmp_path / "cfg.yaml")])
    assert res.exit_code == 0, res.output
    md = (run / "eval" / "compare" / "compare.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["reward_acc"].startswith("| reward_acc | n/a | ") and rows["reward_acc"].endswith("| n/a |")
    assert rows["logp_acc"].count("[") == 3  # base, run, and their paired difference with a CI
    run_res = json.loads((run / "eval" / "results.json").read_text())["tasks"]["prefs"]
    assert run_res["metrics"]["reward_acc"] == out["eval_rewards/accuracies"]  # accuracy does not depend on beta


def test_rm_run_pairwise_accuracy_matches_the_trainer(tiny_llama, tmp_path):
    tr, ev = write_pairs(tmp_path / "train.jsonl", 32, 0), _with_swapped(write_pairs(tmp_path / "ev.jsonl", 8, 1), 3)
    run, out = _train(tiny_llama, tmp_path, "rm", tr, ev, "train.lr=1e-2", "train.max_steps=4")
    res, recs = _evaluate_run(run, ev)
    print("rm cross-check", out["eval_accuracy"], out["eval_margin"], res["metrics"])
    assert res["scoring"] == "reward model" and list(res["metrics"]) == ["reward_acc", "reward_margin"]
    assert 0 < res["metrics"]["reward_acc"] < 1 and res["metrics"]["reward_acc"] == out["eval_accuracy"]
    assert res["metrics"]["reward_margin"] == pytest.approx(out["eval_margin"], abs=1e-4)
    assert all("score_chosen" in r for r in recs)
