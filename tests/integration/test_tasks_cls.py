"""Classification stage on tiny random models: full / LoRA / features from one config, multi-label, pairs, decoder
LM head, and the bad-input errors. Every training test asserts learning on held-out data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import sentiment_rows, tiny_bert, tiny_llama, write_jsonl  # noqa: E402

from tuneforge.config.load import load_config  # noqa: E402
from tuneforge.errors import DataError  # noqa: E402
from tuneforge.train.run import run_training  # noqa: E402


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("sent")
    return write_jsonl(d / "train.jsonl", sentiment_rows(240, 0)), write_jsonl(d / "eval.jsonl", sentiment_rows(80, 1))


def cls_cfg(tmp_path, model, train, evals, *extra):
    return load_config(overrides=[
        "stage=cls", "method=full", f"model.path={model}", f"data.train=[{train}]", f"data.eval=[{evals}]",
        "data.cutoff_len=32", "train.lr=1e-2", "train.epochs=3", "train.batch_size=16", "train.threads=1",
        "train.logging_steps=5", f"output.dir={tmp_path}", "output.name=run", *extra])


def losses(run_dir):
    return [r["loss"] for r in map(json.loads, Path(run_dir, "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_full_finetune_learns_and_round_trips(tmp_path, sentiment):
    out = run_training(cls_cfg(tmp_path, tiny_bert(), *sentiment))
    run = Path(out["run_dir"])
    assert out["eval_accuracy"] >= 0.9, out
    ls = losses(run)
    assert ls[-1] < ls[0] * 0.7
    assert (run / "plots" / "confusion_matrix.png").exists()
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 80 and {"file", "line", "label", "prediction", "probs"} <= set(preds[0])
    # the saved model is a plain transformers checkpoint with the label names
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run / "model")
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert model.config.id2label == {0: "negative", 1: "positive"}
    logits = model(**tok([preds[0]["text"]], return_tensors="pt")).logits
    assert model.config.id2label[int(logits.argmax())] == preds[0]["prediction"]
    assert json.loads((run / "label_map.json").read_text())["names"] == ["negative", "positive"]


def test_lora_from_same_config_trains_adapter_and_head(tmp_path, sentiment):
    """A random tiny backbone is a poor LoRA base (learning with LoRA is shown on real MiniLM in
    test_tasks_minilm.py); here: only adapters + head change, both are saved, and the reload predicts the same."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = run_training(cls_cfg(tmp_path, tiny_bert(), *sentiment, "method=lora", "lora.r=8", "train.lr=2e-2"))
    run = Path(out["run_dir"])
    with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert any("classifier" in k for k in keys)  # head trained and saved with the adapter
        assert any("lora_B" in k and f.get_tensor(k).abs().sum() > 0 for k in keys)  # adapters moved off zero init
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    model = AutoPeftModelForSequenceClassification.from_pretrained(run / "adapter").eval()
    base = load_file(str(Path(tiny_bert()) / "model.safetensors"))
    merged = model.merge_and_unload()
    q = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(merged.state_dict()["bert." + q], base[q])  # merging folds the adapter in
    rec = json.loads((run / "predictions.jsonl").read_text().splitlines()[0])
    tok = AutoTokenizer.from_pretrained(run / "adapter")
    with torch.no_grad():
        probs = merged(**tok([rec["text"]], return_tensors="pt")).logits.softmax(-1)[0]
    assert probs[1].item() == pytest.approx(rec["probs"]["positive"], abs=1e-4)


def test_features_from_same_config(tmp_path, sentiment):
    out = run_training(cls_cfg(tmp_path, tiny_bert(), *sentiment, "method=features", "task.head=logreg"))
    assert out["eval_accuracy"] >= 0.8, out
    from tuneforge.models.heads import FeatureClassifier

    clf = FeatureClassifier(Path(out["run_dir"]) / "features_head")
    assert set(clf.predict(["the movie was great", "awful plot"])) <= {"negative", "positive"}


def test_multi_label_and_pairs(tmp_path):
    import random

    rng = random.Random(0)
    words = {"sport": ["goal", "match"], "money": ["bank", "price"], "tech": ["chip", "code"]}

    def rows(n):
        out = []
        for _ in range(n):
            labels = rng.sample(sorted(words), rng.randint(1, 2))
            a = " ".join(rng.choice(words[x]) for x in labels) + " today"
            out.append({"sentence1": a, "sentence2": "news report", "label": labels})
        return out

    tr, ev = write_jsonl(tmp_path / "t.jsonl", rows(240)), write_jsonl(tmp_path / "e.jsonl", rows(60))
    out = run_training(cls_cfg(tmp_path, tiny_bert(), tr, ev, "train.epochs=6"))
    assert out["eval_f1_micro"] >= 0.8, out
    rec = json.loads(Path(out["run_dir"], "predictions.jsonl").read_text().splitlines()[0])
    assert isinstance(rec["prediction"], list) and rec["text_pair"] == "news report"


def test_decoder_lm_classification_head(tmp_path, sentiment):
    out = run_training(cls_cfg(tmp_path, tiny_llama(), *sentiment, "train.epochs=4"))
    assert out["eval_accuracy"] >= 0.85, out


def test_decoder_head_starts_at_zero_but_a_trained_head_is_kept(tmp_path):
    """A new score head on a decoder LM starts at zero (logits equal, loss ln K); a classifier checkpoint's own head
    is loaded as it is, not zeroed."""
    import torch

    from tuneforge.data.task_data import LabelMap
    from tuneforge.models.load import load_tokenizer
    from tuneforge.train.cls import build_model

    labels = LabelMap(names=["negative", "positive"], multi_label=False)
    cfg = cls_cfg(tmp_path, tiny_llama(), "a.jsonl", "b.jsonl")
    model = build_model(cfg, load_tokenizer(cfg.model), labels)
    assert torch.count_nonzero(model.score.weight) == 0
    with torch.no_grad():
        model.score.weight.fill_(0.5)
    model.save_pretrained(tmp_path / "clf")
    load_tokenizer(cfg.model).save_pretrained(tmp_path / "clf")
    again = build_model(cls_cfg(tmp_path, tmp_path / "clf", "a.jsonl", "b.jsonl"), load_tokenizer(cfg.model), labels)
    assert torch.all(again.score.weight == 0.5)


def test_unknown_eval_label_fails_before_training(tmp_path, sentiment):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"sentence": "ok", "label": "positive"},
                                               {"sentence": "meh", "label": "neutral"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: unknown label 'neutral'"):
        run_training(cls_cfg(tmp_path, tiny_bert(), sentiment[0], bad))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_freeze_trains_last_layer_and_head_only(tmp_path, sentiment):
    import torch
    from safetensors.torch import load_file

    out = run_training(cls_cfg(tmp_path, tiny_bert(), *sentiment, "method=freeze", "freeze.trainable_layers=1",
                               "train.max_steps=3"))
    after = load_file(str(Path(out["run_dir"]) / "model" / "model.safetensors"))
    before = load_file(str(Path(tiny_bert()) / "model.safetensors"))
    assert torch.equal(after["bert.encoder.layer.0.attention.self.query.weight"],
                       before["encoder.layer.0.attention.self.query.weight"])
    assert not torch.equal(after["bert.encoder.layer.1.attention.self.query.weight"],
                           before["encoder.layer.1.attention.self.query.weight"])
    assert not torch.equal(after["bert.pooler.dense.weight"], before["pooler.dense.weight"])
