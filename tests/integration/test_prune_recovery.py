"""Recovery fine-tuning after unstructured pruning (train.keep_sparsity): the pruned weights stay exactly zero while
the model still learns; without the option the same run refills them (so the check can fail)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import sentiment_rows, tiny_bert, write_jsonl  # noqa: E402

from tuneforge.config.load import load_config  # noqa: E402
from tuneforge.export.prune import prune_unstructured  # noqa: E402
from tuneforge.train.run import run_training  # noqa: E402


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = tmp_path_factory.mktemp("pruned")
    torch.manual_seed(0)  # the new head's init must not depend on test order (passes with seeds 0-3)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert(), num_labels=2)
    assert prune_unstructured(model, 0.5) > 0
    model.save_pretrained(d / "model")
    AutoTokenizer.from_pretrained(tiny_bert()).save_pretrained(d / "model")
    data = (write_jsonl(d / "train.jsonl", sentiment_rows(240, 0)), write_jsonl(d / "eval.jsonl", sentiment_rows(80, 1)))
    return str(d / "model"), data


def zeros(model_dir) -> dict:
    from safetensors.torch import load_file

    return {k: v == 0 for k, v in load_file(str(Path(model_dir) / "model.safetensors")).items()
            if k.endswith(".weight") and ".encoder.layer." in k and v.ndim == 2}


def run(tmp_path, pruned, name, *extra):
    model, (train, evals) = pruned
    return run_training(load_config(overrides=[
        "stage=cls", "method=full", f"model.path={model}", f"data.train=[{train}]", f"data.eval=[{evals}]",
        "data.cutoff_len=32", "train.lr=1e-2", "train.batch_size=16", "train.threads=1", f"output.dir={tmp_path}",
        f"output.name={name}", *extra]))


def test_keep_sparsity_keeps_the_mask_and_learns(tmp_path, pruned):
    import yaml

    before = zeros(pruned[0])
    out = run(tmp_path, pruned, "kept", "train.keep_sparsity=true", "train.epochs=3")
    after = zeros(Path(out["run_dir"]) / "model")
    assert before.keys() == after.keys() and len(before) == 12  # q, k, v, o, up, down x 2 blocks
    assert all(bool((before[k] == after[k]).all()) for k in before)  # the same weights, exactly zero
    assert all(0.49 < float(m.float().mean()) < 0.51 for m in after.values())
    assert out["eval_accuracy"] >= 0.9, out
    resolved = yaml.safe_load((Path(out["run_dir"]) / "config.yaml").read_text())["resolved"]
    assert resolved["train.keep_sparsity"]["matrices"] == 12 and resolved["train.keep_sparsity"]["sparsity"] > 0.49

    dense = run(tmp_path, pruned, "dense", "train.max_steps=3")  # the ordinary run refills the zeros
    assert all(float(m.float().mean()) < 0.05 for m in zeros(Path(dense["run_dir"]) / "model").values())


def test_keep_sparsity_refuses_an_adapter(tmp_path):
    from types import SimpleNamespace

    from tuneforge.errors import ConfigError
    from tuneforge.runs import RunDir
    from tuneforge.train.sparsity import KeepSparsity

    with pytest.raises(ConfigError, match="keep_sparsity: an adapter"):
        KeepSparsity(RunDir(tmp_path)).on_train_begin(None, SimpleNamespace(is_world_process_zero=True), None,
                                                      model=SimpleNamespace(peft_config={}))
