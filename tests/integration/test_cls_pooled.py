"""Stage cls with a pooled head (`method: full`, `task.pooling` set, optional `task.head_init: probe`) on a tiny
random BERT: it learns on held-out rows, saves a folder `FeatureClassifier` loads back to the same predictions,
the probe really starts the head (near-zero learning rate: the probe-started model beats a random head), resume
continues to the same losses, and what it does not support is refused in one line before anything loads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import sentiment_rows, tiny_bert, write_jsonl  # noqa: E402

from tuneforge.config.load import load_config  # noqa: E402
from tuneforge.errors import ConfigError  # noqa: E402
from tuneforge.train.run import run_training  # noqa: E402


def pooled(tmp_path, name, *extra) -> list[str]:
    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(240, 0))
    ev = write_jsonl(tmp_path / "e.jsonl", sentiment_rows(80, 1))
    return ["stage=cls", "method=full", f"model.path={tiny_bert()}", f"data.train=[{tr}]", f"data.eval=[{ev}]",
            "data.cutoff_len=32", "task.pooling=mean", "train.lr=1e-2", "train.batch_size=16", "train.threads=1",
            "train.logging_steps=1", "output.plot=false", f"output.dir={tmp_path / 'runs'}", f"output.name={name}",
            *extra]


def test_pooled_head_learns_and_its_saved_folder_predicts_the_same(tmp_path):
    from tuneforge.models.heads import FeatureClassifier

    out = run_training(load_config(overrides=pooled(tmp_path, "mean", "train.max_steps=45", "task.head_init=probe")))
    run = Path(out["run_dir"])
    assert out["eval_accuracy"] >= 0.9  # held-out rows
    meta = json.loads((run / "model" / "head.json").read_text())
    assert (meta["backbone"], meta["pooling"], meta["labels"]) == (".", "mean", ["negative", "positive"])
    assert json.loads((run / "model" / "config.json").read_text())["architectures"] == ["BertModel"]
    from safetensors import safe_open

    with safe_open(str(run / "model" / "model.safetensors"), "pt") as f:  # the unused [CLS] pooler is dropped
        assert f.keys() and not [k for k in f.keys() if "pooler" in k]  # noqa: SIM118 (a safe_open handle)
    resolved = (run / "config.yaml").read_text()
    assert "probe_train_accuracy" in resolved
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    texts = [r["sentence"] for r in sentiment_rows(80, 1)]
    assert FeatureClassifier(run / "model").predict(texts) == [p["prediction"] for p in preds]
    # export would load the backbone without its head: refused in one line
    from tuneforge.export.source import load_source, open_source

    with pytest.raises(ConfigError, match="pooled-head classifier"):
        load_source(open_source(str(run)))


def test_probe_starts_the_head_from_the_frozen_features(tmp_path):
    """lr ~0: the model is what it was built as. A probe-started head classifies the held-out rows as well as a
    linear probe on the tiny model's features can; a random head is at chance."""
    still = ("train.max_steps=1", "train.lr=1e-12", "train.scheduler=constant")
    probe = run_training(load_config(overrides=pooled(tmp_path, "probe", *still, "task.head_init=probe")))
    random_head = run_training(load_config(overrides=pooled(tmp_path, "random", *still)))
    assert probe["eval_accuracy"] >= random_head["eval_accuracy"] + 0.2, (probe, random_head)


def test_pooled_head_resume_continues_to_the_same_losses(tmp_path):
    from tuneforge.runs import RunDir

    def run(name, steps, resume=False):
        cfg = load_config(overrides=pooled(tmp_path, name, f"train.max_steps={steps}", "train.save_steps=2",
                                           "train.scheduler=constant", "task.head_init=probe"))
        return Path(run_training(cfg, resume=resume)["run_dir"])

    def losses(run_dir):
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]

    straight = losses(run("straight", 4))
    half = run("half", 2)
    assert RunDir(half).latest_checkpoint() is not None
    run("half", 4, resume=True)
    assert losses(half) == straight and len(straight) == 4


@pytest.mark.parametrize(("extra", "message"), [
    (("method=lora",), "trains a pooled head with method full, not lora"),
    (("method=freeze",), "trains a pooled head with method full, not freeze"),
    (("task.pooling=auto", "task.head_init=probe"), "task.head_init: probe needs a pooled head"),
    (("task.head_init=probe", "task.head=mlp"), "task.head must be linear or logreg"),
    (("method=features", "task.head_init=probe"), "task.head_init applies to a pooled head"),
])
def test_what_the_pooled_head_does_not_support_is_refused(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        run_training(load_config(overrides=pooled(tmp_path, "refused", *extra)))
    assert not (tmp_path / "runs" / "refused").exists()  # refused before a run dir was made
