"""Task recipe keys on tiny random models: class weights help the minority class of a skewed set, early stopping
stops and keeps (and saves) the best checkpoint, `--seeds N` writes one row per seed plus mean and std and scores
the seeds' averaged probabilities, and seq2seq early stopping scores generations (bleu) with label smoothing on."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import qa_rows, sentiment_rows, tiny_bert, tiny_t5, translation_rows, write_jsonl  # noqa: E402

from tuneforge.config.load import load_config  # noqa: E402
from tuneforge.errors import ConfigError  # noqa: E402
from tuneforge.train.run import run_training  # noqa: E402


def cls_overrides(tmp_path, train, evals, *extra):
    return ["stage=cls", "method=full", f"model.path={tiny_bert()}", f"data.train=[{train}]", f"data.eval=[{evals}]",
            "data.cutoff_len=32", "train.lr=1e-2", "train.batch_size=16", "train.threads=1", "train.logging_steps=5",
            "output.plot=false", f"output.dir={tmp_path}", *extra]


def skewed(tmp_path) -> tuple[str, str]:
    rows = sentiment_rows(600, 3)
    pos = [r for r in rows if r["label"] == "positive"][:20]
    neg = [r for r in rows if r["label"] == "negative"][:200]
    train = pos + neg
    random.Random(0).shuffle(train)
    return write_jsonl(tmp_path / "skew.jsonl", train), write_jsonl(tmp_path / "eval.jsonl", sentiment_rows(80, 1))


def minority_stats(run_dir: str) -> tuple[float, float]:
    """(mean predicted probability of 'positive' on positive eval rows, recall of 'positive')."""
    recs = [json.loads(x) for x in Path(run_dir, "predictions.jsonl").read_text().splitlines()]
    pos = [r for r in recs if r["label"] == "positive"]
    return (sum(r["probs"]["positive"] for r in pos) / len(pos),
            sum(r["prediction"] == "positive" for r in pos) / len(pos))


def test_balanced_class_weights_help_the_minority_class(tmp_path):
    tr, ev = skewed(tmp_path)  # 20 positive, 200 negative; held-out eval is balanced
    plain = run_training(load_config(overrides=cls_overrides(tmp_path, tr, ev, "train.epochs=1", "output.name=plain")))
    weighted = run_training(load_config(overrides=cls_overrides(
        tmp_path, tr, ev, "train.epochs=1", "output.name=weighted", "task.class_weights=balanced")))
    p_plain, r_plain = minority_stats(plain["run_dir"])
    p_weighted, r_weighted = minority_stats(weighted["run_dir"])
    assert p_weighted > p_plain + 0.2, (p_plain, p_weighted)  # measured: 0.07 -> 0.52
    assert r_weighted >= r_plain
    resolved = yaml.safe_load(Path(weighted["run_dir"], "config.yaml").read_text())["resolved"]
    assert resolved["task.class_weights"] == pytest.approx({"negative": 220 / 400, "positive": 220 / 40})
    assert "task.class_weights" not in yaml.safe_load(Path(plain["run_dir"], "config.yaml").read_text()).get(
        "resolved", {})


def test_class_weight_count_must_match_the_labels(tmp_path):
    tr, ev = skewed(tmp_path)
    cfg = load_config(overrides=cls_overrides(tmp_path, tr, ev, "output.name=bad", "task.class_weights=[1, 2, 3]"))
    with pytest.raises(ConfigError, match="task.class_weights has 3 values but there are 2 labels"):
        run_training(cfg)
    assert not (tmp_path / "bad" / "model").exists()


def test_early_stopping_stops_and_saves_the_best_checkpoint(tmp_path):
    import torch
    from safetensors.torch import load_file

    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(240, 0))
    ev = write_jsonl(tmp_path / "e.jsonl", sentiment_rows(80, 1))
    out = run_training(load_config(overrides=cls_overrides(
        tmp_path, tr, ev, "output.name=es", "train.max_steps=300", "train.eval_steps=5",
        "train.early_stopping_patience=3")))
    run = Path(out["run_dir"])
    results = json.loads((run / "results.json").read_text())
    assert results["stopped_early"] and results["last_step"] < 300
    best = results["best_step"]
    assert best < results["last_step"] and results["last_step"] - best == 3 * 5  # patience: 3 evaluations
    assert results["eval_accuracy"] == results["best_eval_accuracy"] >= 0.9  # learned; final eval = best model
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    scores = {r["step"]: r["eval_accuracy"] for r in evals if "eval_accuracy" in r}
    assert max(scores.values()) == scores[best] and all(scores[s] < scores[best] for s in scores if s < best)
    # the final model is the best checkpoint's weights, not the last step's
    final = load_file(str(run / "model" / "model.safetensors"))
    kept = load_file(str(run / "checkpoints" / f"checkpoint-{best}" / "model.safetensors"))
    last = load_file(str(run / "checkpoints" / f"checkpoint-{results['last_step']}" / "model.safetensors"))
    key = "classifier.weight"
    assert torch.equal(final[key], kept[key]) and not torch.equal(final[key], last[key])
    state = json.loads((run / "checkpoints" / f"checkpoint-{results['last_step']}" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == str(run / "checkpoints" / f"checkpoint-{best}")  # not the staging dir


def test_validation_split_is_what_selection_watches_and_the_eval_set_is_scored_at_the_end(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(240, 0))
    # the eval set's labels are flipped: a run that selected on it would log low scores during training
    flipped = [{**r, "label": {"positive": "negative", "negative": "positive"}[r["label"]]} for r in sentiment_rows(80, 1)]
    ev = write_jsonl(tmp_path / "e.jsonl", flipped)
    out = run_training(load_config(overrides=cls_overrides(
        tmp_path, tr, ev, "output.name=vs", "train.max_steps=120", "train.eval_steps=5",
        "train.early_stopping_patience=3", "train.validation_split=0.25")))
    run = Path(out["run_dir"])
    report = json.loads((run / "data_report.json").read_text())
    assert (report["train"]["samples"], report["validation"]["samples"], report["eval"]["samples"]) == (180, 60, 80)
    results = json.loads((run / "results.json").read_text())
    assert results["best_validation_accuracy"] >= 0.9 and "best_eval_accuracy" not in results  # learned, held out
    assert results["eval_accuracy"] <= 0.1  # the flipped eval set, scored once by the selected model
    watched = [json.loads(x)["eval_accuracy"] for x in (run / "metrics.jsonl").read_text().splitlines()
               if "eval_accuracy" in json.loads(x)]
    assert len(watched) >= 2 and max(watched) == results["best_validation_accuracy"]


def test_validation_split_is_refused_where_nothing_watches_it(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(40, 0))
    with pytest.raises(ConfigError, match="train.validation_split does not apply to method features"):
        run_training(load_config(overrides=[*cls_overrides(tmp_path, tr, tr, "train.validation_split=0.2"),
                                            "method=features"]))
    with pytest.raises(ConfigError, match="train.validation_split does not apply to stage qa"):
        run_training(load_config(overrides=[*cls_overrides(tmp_path, tr, tr, "train.validation_split=0.2"),
                                            "stage=qa"]))


def test_label_smoothing_keeps_the_classifier_less_confident(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(240, 0))
    ev = write_jsonl(tmp_path / "e.jsonl", sentiment_rows(40, 1))
    tops = {}
    for smoothing in (0.0, 0.3):
        out = run_training(load_config(overrides=cls_overrides(
            tmp_path, tr, ev, f"output.name=ls{smoothing}", "train.epochs=3", f"train.label_smoothing={smoothing}")))
        assert out["eval_accuracy"] >= 0.9, out
        recs = [json.loads(x) for x in Path(out["run_dir"], "predictions.jsonl").read_text().splitlines()]
        tops[smoothing] = sum(max(r["probs"].values()) for r in recs) / len(recs)
    # smoothed targets are 0.85 / 0.15 (2 classes): measured mean top probability 0.97 plain, 0.89 smoothed
    assert tops[0.3] < tops[0.0] - 0.04 and tops[0.3] < 0.92, tops


def test_seeds_option_writes_one_row_per_seed_and_mean_std(tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli import app

    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(64, 0))
    ev = write_jsonl(tmp_path / "e.jsonl", sentiment_rows(24, 1))
    args = ["train", "-", *cls_overrides(tmp_path, tr, ev, "output.name=multi", "train.max_steps=2"), "--seeds", "3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    parent = tmp_path / "multi"
    summary = json.loads((parent / "seeds.json").read_text())
    assert summary["seeds"] == [42, 43, 44] and len(summary["runs"]) == 3
    losses = [r["train_loss"] for r in summary["runs"]]
    assert len(set(losses)) == 3  # each seed really trained its own model (different head init and data order)
    assert summary["mean"]["train_loss"] == pytest.approx(sum(losses) / 3) and summary["std"]["train_loss"] > 0
    for seed in (42, 43, 44):
        sub = parent / f"seed-{seed}"
        assert (sub / "model").is_dir() and yaml.safe_load((sub / "config.yaml").read_text())["train"]["seed"] == seed
    table = (parent / "seeds.md").read_text().splitlines()
    assert len(table) == 2 + 3 + 2 and table[-2].startswith("| mean ± std |") and table[-1].startswith("| ensemble |")
    results = json.loads((parent / "results.json").read_text())
    assert results["mean"]["train_loss"] == summary["mean"]["train_loss"]
    # the ensemble: each eval row's probabilities averaged over the three seeds, recomputed here from their files
    per_seed = [[json.loads(x) for x in (parent / f"seed-{s}" / "predictions.jsonl").read_text().splitlines()]
                for s in (42, 43, 44)]
    right = 0
    for recs in zip(*per_seed):
        mean = {n: sum(r["probs"][n] for r in recs) / 3 for n in recs[0]["probs"]}
        right += max(mean, key=mean.get) == recs[0]["label"]
    assert results["ensemble"]["ensemble_eval_accuracy"] == pytest.approx(right / 24)
    assert summary["ensemble"] == results["ensemble"]
    assert len((parent / "ensemble_predictions.jsonl").read_text().splitlines()) == 24


def test_seq2seq_early_stopping_scores_generations_with_label_smoothing(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", translation_rows(160, 0))
    ev = write_jsonl(tmp_path / "e.jsonl", translation_rows(8, 1))
    out = run_training(load_config(overrides=[
        "stage=seq2seq", "method=full", f"model.path={tiny_t5()}", f"data.train=[{tr}]", f"data.eval=[{ev}]",
        "task.source_lang=en", "task.target_lang=de", "task.max_new_tokens=8", "data.cutoff_len=16",
        "train.lr=1e-2", "train.batch_size=16", "train.threads=1", "train.max_steps=10", "train.eval_steps=5",
        "train.early_stopping_patience=1", "train.label_smoothing=0.1", "output.plot=false",
        f"output.dir={tmp_path}", "output.name=s2s"]))
    evals = [json.loads(x) for x in Path(out["run_dir"], "metrics.jsonl").read_text().splitlines()]
    bleu_steps = [r["step"] for r in evals if "eval_bleu" in r]  # periodic evaluation generated and scored
    assert bleu_steps and bleu_steps[0] == 5
    assert out["best_step"] in bleu_steps and "best_eval_bleu" in out


def test_qa_early_stopping_selects_by_f1(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", qa_rows(120, 0))
    ev = write_jsonl(tmp_path / "e.jsonl", qa_rows(30, 1))
    out = run_training(load_config(overrides=[
        "stage=qa", "method=full", f"model.path={tiny_bert()}", f"data.train=[{tr}]", f"data.eval=[{ev}]",
        "data.cutoff_len=48", "task.doc_stride=8", "train.lr=5e-3", "train.batch_size=16", "train.threads=1",
        "train.max_steps=80", "train.eval_steps=8", "train.early_stopping_patience=2", "output.plot=false",
        f"output.dir={tmp_path}", "output.name=qa"]))
    assert out["stopped_early"] and out["last_step"] - out["best_step"] == 2 * 8
    assert out["eval_f1"] == out["best_eval_f1"] >= 0.9  # learned, and the saved model is the best one


def test_group_by_length_keeps_evaluation_in_data_order(tmp_path):
    """transformers also length-groups (and shuffles) evaluation batches under group_by_length; predictions.jsonl
    and the reported accuracy pair outputs with examples by position, so evaluation must stay in order."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(64, 0))
    ev = write_jsonl(tmp_path / "e.jsonl", sentiment_rows(40, 1))  # 3-9 words: batches of mixed length
    out = run_training(load_config(overrides=cls_overrides(
        tmp_path, tr, ev, "output.name=gbl", "train.max_steps=6", "train.group_by_length=true")))
    run = Path(out["run_dir"])
    recs = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["line"] for r in recs] == list(range(1, 41))
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "model")
    with torch.no_grad():
        probs = torch.cat([model(**tok([r["text"]], return_tensors="pt")).logits.softmax(-1) for r in recs])
    recorded = torch.tensor([[r["probs"]["negative"], r["probs"]["positive"]] for r in recs])
    assert torch.allclose(probs, recorded, atol=2e-5)  # each record holds the prediction for its own text


def test_seeds_without_an_eval_set_write_their_summary_and_no_ensemble(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", sentiment_rows(64, 0))
    out = run_training(load_config(overrides=[
        "stage=cls", "method=full", f"model.path={tiny_bert()}", f"data.train=[{tr}]", "data.cutoff_len=32",
        "train.lr=1e-2", "train.batch_size=16", "train.threads=1", "train.max_steps=2", "train.seeds=[1, 2]",
        "output.plot=false", f"output.dir={tmp_path}", "output.name=noeval"]))
    results = json.loads((tmp_path / "noeval" / "results.json").read_text())
    assert results["seeds"] == [1, 2] and results["ensemble"] == {} and "ensemble_error" not in results
    assert "mean_train_loss" in out and not (tmp_path / "noeval" / "ensemble_predictions.jsonl").exists()
