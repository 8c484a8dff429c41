"""QA stage on a tiny random BERT: learns span extraction across doc-stride windows (held-out EM/F1), LoRA saves the
span head, SQuAD v2 mode predicts "no answer", bad answer_start fails with file:line before training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import qa_rows, tiny_bert, write_jsonl  # noqa: E402

from tuneforge.config.load import load_config  # noqa: E402
from tuneforge.errors import DataError  # noqa: E402
from tuneforge.train.run import run_training  # noqa: E402


def qa_cfg(tmp_path, train, evals, *extra):
    return load_config(overrides=[
        "stage=qa", "method=full", f"model.path={tiny_bert()}", f"data.train=[{train}]", f"data.eval=[{evals}]",
        "data.cutoff_len=32", "task.doc_stride=8", "train.lr=1e-2", "train.epochs=2", "train.batch_size=16",
        "train.threads=1", "train.logging_steps=5", f"output.dir={tmp_path}", "output.name=run", *extra])


def test_span_head_learns_over_windows(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", qa_rows(160, 0, ctx_words=40))
    ev = write_jsonl(tmp_path / "e.jsonl", qa_rows(40, 1, ctx_words=40))
    out = run_training(qa_cfg(tmp_path, tr, ev))
    assert out["train_windows"] >= 2 * 160  # contexts longer than one window
    assert out["eval_exact_match"] >= 0.8 and out["eval_f1"] >= 0.8, out
    recs = [json.loads(x) for x in Path(out["run_dir"], "predictions.jsonl").read_text().splitlines()]
    assert len(recs) == 40 and {"id", "file", "line", "prediction", "answers", "exact_match", "n_best"} <= set(recs[0])
    from transformers import AutoModelForQuestionAnswering

    assert AutoModelForQuestionAnswering.from_pretrained(Path(out["run_dir"]) / "model") is not None


def test_lora_saves_span_head(tmp_path):
    from safetensors import safe_open

    tr = write_jsonl(tmp_path / "t.jsonl", qa_rows(48, 0, ctx_words=20))
    out = run_training(qa_cfg(tmp_path, tr, tr, "method=lora", "train.epochs=1"))
    with safe_open(str(Path(out["run_dir"]) / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert any("qa_outputs" in k for k in f.keys())


def test_unanswerable_mode(tmp_path):
    tr = write_jsonl(tmp_path / "t.jsonl", qa_rows(200, 0, ctx_words=20, unanswerable=0.4))
    ev = write_jsonl(tmp_path / "e.jsonl", qa_rows(40, 1, ctx_words=20, unanswerable=0.4))
    out = run_training(qa_cfg(tmp_path, tr, ev, "task.allow_unanswerable=true", "data.cutoff_len=48",
                              "train.epochs=3"))
    assert "eval_no_answer_f1" in out and out["eval_f1"] >= 0.8, out
    skipped = run_training(qa_cfg(tmp_path, tr, ev, "output.name=v1", "train.max_steps=1"))
    report = json.loads(Path(skipped["run_dir"], "data_report.json").read_text())
    assert report["used"]["train"] == report["train"]["answerable"] < 200  # v1 mode drops unanswerable questions


def test_bad_answer_start_fails_before_training(tmp_path):
    rows = qa_rows(3, 0)
    rows[2]["answers"]["answer_start"] = [rows[2]["answers"]["answer_start"][0] + 1]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad\.jsonl:3: answer_start \d+ does not match"):
        run_training(qa_cfg(tmp_path, bad, bad))
