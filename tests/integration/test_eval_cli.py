"""`tuneforge eval` end to end on a tiny model: single eval, bad files, train → compare base vs tuned."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "eval"))

from tiny_lm import build_tiny_llama  # noqa: E402

from shared_paths import DATA  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-cli"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaldata")
    mcq = [{"id": f"m{i}", "question": f"Which number is {w}?", "choices": ["one", "two", "three"], "answer": i % 3}
           for i, w in enumerate(["one", "two", "three", "small", "big", "odd", "even", "prime"] * 2)]
    gen = [{"id": f"g{i}", "question": f"What is {i} plus {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"}
           for i in range(6)]
    sft = [{"instruction": f"What is {i} plus {i}?", "input": "", "output": f"#### {2 * i}"} for i in range(16)]
    for name, rows in (("mcq.jsonl", mcq), ("gen.jsonl", gen), ("sft.jsonl", sft)):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return d


def _config(tmp_path, tiny, files, absolute=False, **extra) -> Path:
    cfg = {
        "model": {"path": str(tiny)},
        "data": {"train": str(files / "sft.jsonl"), "cutoff_len": 64},
        "lora": {"r": 4, "alpha": 8},
        "train": {"max_steps": 3, "batch_size": 4, "lr": 5e-3, "save_steps": 0},
        "output": {"dir": str(tmp_path / "runs"), "name": "tiny-sft", "plot": False},
        "eval": {"max_new_tokens": 6, "bootstrap_samples": 200, "tasks": [
            {"name": "numbers", "file": "mcq.jsonl", "prompt": "Question: {question}\nAnswer:", "choices": "choices",
             "gold": "answer"},
            {"name": "math", "file": "gen.jsonl", "preset": "gsm8k"},
        ]},
        **extra,
    }
    if absolute:  # a run's config.yaml keeps task paths as written (the loader resolves data/model paths only)
        for t in cfg["eval"]["tasks"]:
            t["file"] = str(files / t["file"])
    path = files / f"cfg-{tmp_path.name}.yaml"  # task files are relative to the config's folder
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _cli(*args):
    from tuneforge.cli import app

    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output


def test_eval_a_model_from_a_config(tmp_path, tiny, files):
    code, out = _cli("eval", str(_config(tmp_path, tiny, files)), "eval.batch_size=3")
    assert code == 0, out
    res_dir = tmp_path / "runs" / "eval-tiny-sft"
    results = json.loads((res_dir / "results.json").read_text())
    assert results["tasks"]["numbers"]["n"] == 16 and results["tasks"]["math"]["n"] == 6
    assert set(results["tasks"]["numbers"]["ci"]) == {"acc", "acc_norm"}
    preds = (res_dir / "predictions" / "numbers.jsonl").read_text().splitlines()
    assert len(preds) == 16 and set(json.loads(preds[0])) >= {"id", "gold", "pred", "loglikelihoods", "scores"}
    assert "| numbers | acc * |" in (res_dir / "results.md").read_text()
    # re-running one task keeps the other task's results
    code, out = _cli("eval", str(_config(tmp_path, tiny, files)), "--task", "numbers", "--force", "--limit", "4")
    assert code == 0, out
    again = json.loads((res_dir / "results.json").read_text())
    assert again["tasks"]["numbers"]["n"] == 4 and again["tasks"]["math"] == results["tasks"]["math"]
    code, out = _cli("eval", str(_config(tmp_path, tiny, files)), "--task", "nope")
    assert code == 2 and "unknown task(s) ['nope']" in out


@pytest.mark.parametrize("row,msg", [
    ({"id": "x", "question": "q", "choices": ["a", "b"]}, "missing gold field 'answer'"),
    ({"id": "x", "question": "q", "choices": ["a", "b"], "answer": 7}, "gold index 7 out of range for 2 choices"),
    ({"id": "x", "question": "q", "choices": [], "answer": 0}, "empty choices"),
])
def test_bad_task_file_is_a_one_line_error_with_file_and_line(tmp_path, tiny, files, row, msg):
    bad = tmp_path / "bad.jsonl"
    good = {"id": "ok", "question": "q", "choices": ["a", "b"], "answer": 0}
    bad.write_text("\n".join(json.dumps(r) for r in (good, row)) + "\n", encoding="utf-8")
    cfg = _config(tmp_path, tiny, files)
    code, out = _cli("eval", str(cfg), f"eval.tasks=[{{name: b, file: {bad}, prompt: '{{question}}', "
                                       f"choices: choices, gold: answer}}]")
    assert code == 2
    assert f"bad.jsonl:2: {msg}" in out and "Traceback" not in out


def test_train_then_compare_base_vs_tuned(tmp_path, tiny, files):
    cfg = _config(tmp_path, tiny, files, absolute=True)
    code, out = _cli("train", str(cfg))
    assert code == 0, out
    run = tmp_path / "runs" / "tiny-sft"
    assert (run / "adapter" / "adapter_config.json").exists()

    # the same config now evaluates the trained run, into the run dir
    code, out = _cli("eval", str(cfg))
    assert code == 0, out
    tuned = json.loads((run / "eval" / "results.json").read_text())
    assert "adapter" in tuned["model"]

    code, out = _cli("eval", "--compare", "base", str(run))
    assert code == 0, out
    comp = run / "eval" / "compare"
    md = (comp / "compare.md").read_text()
    assert "| acc | " in md and "Δ tiny-sft − base" in md and "n = 16 samples" in md
    assert (comp / "compare_numbers.png").exists() and (comp / "compare_math.png").exists()
    summary = json.loads((comp / "compare.json").read_text())
    assert summary["models"] == ["base", "tiny-sft"]
    base = json.loads((comp / "base" / "results.json").read_text())
    assert "adapter" not in base["model"]
    # LoRA at lr 5e-3 for 3 steps changes the model: log-likelihoods must differ from the base model's
    lb = [json.loads(x)["loglikelihoods"] for x in (comp / "base/predictions/numbers.jsonl").read_text().splitlines()]
    lt = [json.loads(x)["loglikelihoods"] for x in (run / "eval/predictions/numbers.jsonl").read_text().splitlines()]
    assert lb != lt
    # eval.after_train: the hook `tuneforge train` calls at the end
    from tuneforge.config import load_config
    from tuneforge.eval.run import after_training
    from tuneforge.runs import RunDir

    on = load_config(cfg, ["eval.after_train=true"])
    metrics = after_training(on, RunDir(run), log=lambda m: None)
    assert set(metrics) == {"eval/numbers/acc", "eval/numbers/acc_norm", "eval/math/strict_match",
                            "eval/math/flexible_extract"}
    assert metrics["eval/numbers/acc"] == tuned["tasks"]["numbers"]["metrics"]["acc"]
    # unchanged inputs: results are reused, not recomputed
    code, out = _cli("eval", "--compare", "base", str(run))
    assert code == 0 and out.count("up to date") == 4, out  # 2 models x 2 tasks
    assert "samples/s" not in out  # nothing was scored again


def test_after_training_hook(tmp_path, tiny, files):
    from tuneforge.config import load_config
    from tuneforge.eval.run import after_training
    from tuneforge.runs import RunDir

    cfg = load_config(_config(tmp_path, tiny, files))
    assert after_training(cfg, RunDir(tmp_path / "nowhere")) == {}  # eval.after_train is off by default


def test_merged_model_run_scores_like_base_plus_adapter(tmp_path, tiny, files):
    """A run dir with a merged model/ (no adapter/) evaluates to the same log-likelihoods as base + adapter."""
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _config(tmp_path, tiny, files, absolute=True)
    code, out = _cli("train", str(cfg), "train.lr=2e-2")
    assert code == 0, out
    run = tmp_path / "runs" / "tiny-sft"
    merged_run = tmp_path / "runs" / "tiny-sft-merged"
    merged_run.mkdir()
    shutil.copy(run / "config.yaml", merged_run / "config.yaml")
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), run / "adapter").merge_and_unload()
    merged.save_pretrained(merged_run / "model")
    AutoTokenizer.from_pretrained(tiny).save_pretrained(merged_run / "model")

    for r in (run, merged_run):
        code, out = _cli("eval", str(r), "--task", "numbers")
        assert code == 0, out
    a = [json.loads(x)["loglikelihoods"] for x in (run / "eval/predictions/numbers.jsonl").read_text().splitlines()]
    b = [json.loads(x)["loglikelihoods"] for x in
         (merged_run / "eval/predictions/numbers.jsonl").read_text().splitlines()]
    assert "model" in json.loads((merged_run / "eval/results.json").read_text())["model"]
    assert max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)) < 1e-3
