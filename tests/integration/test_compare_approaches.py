"""`tuneforge compare-approaches` on tiny random models: every route runs into its own run dir and is scored on the
same held-out split; the table names a winner per column; a failing route is one error line, not a crash; the
per-method default learning rate is used (and recorded) when the config sets none."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import sentiment_rows, tiny_bert, write_jsonl  # noqa: E402

from tuneforge.errors import ConfigError  # noqa: E402
from tuneforge.train.compare import APPROACHES, compare_approaches  # noqa: E402


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    write_jsonl(d / "train.jsonl", sentiment_rows(240, 0))
    write_jsonl(d / "eval.jsonl", sentiment_rows(40, 1))
    cfg = {"stage": "cls", "method": "full", "model": {"path": tiny_bert()},
           "data": {"train": [{"path": "train.jsonl"}], "eval": [{"path": "eval.jsonl"}], "cutoff_len": 32},
           "task": {"text_column": "sentence", "head": "logreg"},
           "train": {"epochs": 1, "max_steps": 4, "batch_size": 16, "threads": 1, "logging_steps": 1},
           "output": {"dir": str(d / "runs"), "name": "sent"}}
    (d / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return str(d / "cfg.yaml")


@pytest.mark.slow
def test_every_route_scored_on_the_same_split(config, tiny_llama, tmp_path):
    res = compare_approaches(config, approaches=list(APPROACHES), decoder=tiny_llama, out=str(tmp_path), shots=2)
    rows = {r["approach"]: r for r in res["rows"]}
    assert list(rows) == list(APPROACHES)
    for name, r in rows.items():
        assert not r.get("error"), (name, r.get("error"))
        assert 0 <= r["eval_accuracy"] <= 1 and 0 <= r["eval_f1_macro"] <= 1, r
        assert r["infer_s_per_1k"] > 0 and r["peak_memory_mib"] > 0, r
        assert (Path(r["run_dir"]) / "config.yaml").is_file() and Path(r["run_dir"]).parent == tmp_path, r
        report = json.loads((Path(r["run_dir"]) / "eval_report.json").read_text())
        assert sum(map(sum, report["confusion_matrix"])) == 40  # the whole held-out split, every route
    assert rows["zero_shot"]["trainable_params"] == 0 and rows["few_shot"]["train_s"] == 0
    # features = a linear head on the 32-dim tiny encoder; LoRA trains far less than the full model
    assert rows["features"]["trainable_params"] == 32 * 2 + 2
    assert 0 < rows["lora"]["trainable_params"] < rows["full"]["trainable_params"] / 2
    # the keyword task is separable from frozen mean-pooled features of even a random encoder: held-out learning
    assert rows["features"]["eval_accuracy"] >= 0.8, rows["features"]
    md = Path(res["files"]["md"]).read_text()
    assert md.count("\n| ") == 1 + len(APPROACHES) and "Winners: accuracy: **" in md
    assert res["winners"]["trainable_params"] == "features"  # non-training routes are not "winners" there
    assert Path(res["files"]["png"]).read_bytes()[:4] == b"\x89PNG"
    # per-method default learning rate: recorded as resolved, used by the trainer, the config left as written
    lora_cfg = yaml.safe_load((Path(rows["lora"]["run_dir"]) / "config.yaml").read_text())
    assert lora_cfg["resolved"]["train.lr"] == 2e-3 and lora_cfg["train"]["lr"] == 2e-4
    lrs = [json.loads(x).get("learning_rate") for x in (Path(rows["lora"]["run_dir"]) / "metrics.jsonl").open()]
    assert max(v for v in lrs if v) > 2e-4


def test_failing_route_is_one_line_and_bad_choices_stop_early(config, tmp_path):
    res = compare_approaches(config, approaches=["zero_shot"], decoder=str(tmp_path / "missing"), out=str(tmp_path))
    err = res["rows"][0]["error"]
    assert "\n" not in err and "missing" in err and Path(res["files"]["md"]).exists()
    with pytest.raises(ConfigError, match="not an approach"):
        compare_approaches(config, approaches=["zero-shoot"], out=str(tmp_path))
    with pytest.raises(ConfigError, match="label-words"):
        compare_approaches(config, approaches=["zero_shot"], out=str(tmp_path), label_words=["a"])


def test_cli_prints_the_table(config, tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli import app

    res = CliRunner().invoke(app, ["compare-approaches", config, "-a", "features", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| features |" in res.output and (tmp_path / "compare.json").is_file()
    bad = CliRunner().invoke(app, ["compare-approaches", config, "-a", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "not an approach" in bad.output and not (tmp_path / "x").exists()


def test_decoder_budget_caps_only_the_decoder_routes_that_train(config, tiny_llama, tmp_path):
    res = compare_approaches(config, approaches=["lora", "sft_lora", "decoder_cls"], decoder=tiny_llama,
                             out=str(tmp_path), decoder_examples=20)
    rows = {r["approach"]: r for r in res["rows"]}
    assert not any(r.get("error") for r in rows.values()), rows
    # batch 16: 20 examples = 2 steps (rounded up) for the decoder routes; the encoder keeps the config's 4 steps
    assert rows["sft_lora"]["train_examples"] == rows["decoder_cls"]["train_examples"] == 32
    assert rows["lora"]["train_examples"] == 64
    for name, steps in (("sft_lora", 2), ("decoder_cls", 2), ("lora", 4)):
        logged = [json.loads(x)["step"] for x in (Path(rows[name]["run_dir"]) / "metrics.jsonl").open()]
        assert max(logged) == steps, (name, logged)
    md = Path(res["files"]["md"]).read_text()
    assert "train examples" in md and "see 20 examples" in md
    with pytest.raises(ConfigError, match="decoder-examples"):
        compare_approaches(config, approaches=["sft_lora"], out=str(tmp_path), decoder_examples=0)


def test_rerunning_one_route_keeps_the_other_rows(config, tiny_llama, tmp_path):
    first = compare_approaches(config, approaches=["features", "zero_shot"], decoder=tiny_llama, out=str(tmp_path))
    feats = first["rows"][0]
    again = compare_approaches(config, approaches=["zero_shot"], decoder=tiny_llama, out=str(tmp_path))
    assert [r["approach"] for r in again["rows"]] == ["features", "zero_shot"]
    assert again["rows"][0] == feats and again["kept_from_earlier"] == ["features"]
    md = Path(again["files"]["md"]).read_text()
    assert "Rows kept from an earlier run of the same setup: features" in md and md.count("\n| ") == 3
    # another setup (shots) does not mix with the earlier rows
    other = compare_approaches(config, approaches=["zero_shot"], decoder=tiny_llama, out=str(tmp_path), shots=1)
    assert [r["approach"] for r in other["rows"]] == ["zero_shot"] and not other["kept_from_earlier"]


def test_decoder_classifier_gets_the_decoder_lora_default(config, tiny_llama):
    from tuneforge.config import load_config
    from tuneforge.train.stages import get_stage

    enc = load_config(config, ["method=lora"])
    dec = load_config(config, ["method=lora", f"model.path={tiny_llama}"])
    assert get_stage(enc).default_lr(enc) == 2e-3 and get_stage(dec).default_lr(dec) == 1e-3
    mine = load_config(config, ["method=lora", f"model.path={tiny_llama}", "train.lr=1e-3"])
    assert get_stage(mine).default_lr(mine) is None


def test_a_pooled_head_config_keeps_the_pooled_head_on_the_full_route_only(config, tmp_path):
    res = compare_approaches(config, ["task.pooling=mean", "task.head_init=probe"],
                             approaches=["features", "full", "lora"], out=str(tmp_path))
    rows = {r["approach"]: r for r in res["rows"]}
    for name, r in rows.items():
        assert not r.get("error"), (name, r.get("error"))
        assert r["infer_s_per_1k"] > 0
    task = {n: yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())["task"] for n, r in rows.items()}
    assert task["full"]["pooling"] == "mean" and task["full"]["head_init"] == "probe"
    assert (Path(rows["full"]["run_dir"]) / "model" / "head.json").is_file()  # timed through its own head
    assert task["features"]["pooling"] == "mean" and task["features"].get("head_init", "random") == "random"
    assert task["lora"].get("pooling", "auto") == "auto" and task["lora"].get("head_init", "random") == "random"
