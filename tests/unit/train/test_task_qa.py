"""Extractive QA data: SQuAD validation with file:line, doc-stride windows, n-best decoding."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from task_tiny_models import qa_rows, tokenizer
from tuneforge.config.task import TaskConfig
from tuneforge.data.qa_data import qa_counts, qa_examples, qa_features
from tuneforge.data.task_rows import load_rows
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.metrics import squad_scores
from tuneforge.eval.qa_postprocess import decode_answers


def spec(path):
    return SimpleNamespace(path=str(path), max_samples=None, columns={})


def write(tmp_path, rows, name="qa.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def oracle_logits(feats):
    """Logits that put all mass on the labelled start/end token of each window."""
    width = max(len(x) for x in feats.inputs["input_ids"])
    s = np.full((len(feats), width), -10.0)
    e = np.full((len(feats), width), -10.0)
    for i, (a, b) in enumerate(zip(feats.inputs["start_positions"], feats.inputs["end_positions"])):
        s[i, a] += 20
        e[i, b] += 20
    return s, e


def test_windows_label_and_decode_back_the_answers(tmp_path):
    rows = qa_rows(40, 0, ctx_words=60)  # longer than one window
    ex = qa_examples(load_rows([spec(write(tmp_path, rows))]), TaskConfig())
    feats = qa_features(ex, tokenizer(), max_len=40, stride=10, with_labels=True)
    assert len(feats) > 2 * len(ex)  # several windows per question
    s, e = oracle_logits(feats)
    decoded = decode_answers(ex, feats, s, e)
    scores = squad_scores([d["prediction"] for d in decoded], [[a["text"] for a in x.answers] for x in ex])
    assert scores == {"exact_match": 1.0, "f1": 1.0}


def test_windows_without_the_answer_point_at_cls(tmp_path):
    ex = qa_examples(load_rows([spec(write(tmp_path, qa_rows(5, 1, ctx_words=80)))]), TaskConfig())
    feats = qa_features(ex, tokenizer(), max_len=32, stride=8, with_labels=True)
    starts = feats.inputs["start_positions"]
    assert 0 in starts and any(s > 0 for s in starts)
    assert sum(s > 0 for s in starts) >= len(ex)  # each answer lands in at least one window


def test_real_shared_squad_files_agree():
    import os

    from shared_paths import DATA

    base = str(DATA / "squad_v2_subset")
    if not os.path.isdir(base):
        pytest.skip("shared data not present")
    flat = qa_examples(load_rows([spec(f"{base}/squad_v2_shared.jsonl")]), TaskConfig())
    nested = qa_examples(load_rows([spec(f"{base}/squad_v2_dev_shared.json")]), TaskConfig())
    assert qa_counts(flat) == qa_counts(nested) == {"questions": 950, "answerable": 473, "unanswerable": 477,
                                                   "contexts": 126}
    assert nested[1].line > nested[0].line > 1  # line of each question's id, not of the article


def test_answer_start_mismatch_names_file_line_and_true_offset(tmp_path):
    rows = [{"id": "a", "context": "Paris is in France.", "question": "Where?",
             "answers": {"text": ["France"], "answer_start": [12]}},
            {"id": "b", "context": "Paris is in France.", "question": "Where?",
             "answers": {"text": ["France"], "answer_start": [3]}}]
    with pytest.raises(DataError, match=r"qa\.jsonl:2: answer_start 3 does not match.*offset 12"):
        qa_examples(load_rows([spec(write(tmp_path, rows))]), TaskConfig())


def test_nested_squad_error_points_at_question_line(tmp_path):
    doc = {"version": "v1.1", "data": [{"title": "T", "paragraphs": [{"context": "abc def", "qas": [
        {"id": "q1", "question": "?", "answers": [{"text": "def", "answer_start": 4}]},
        {"id": "q2", "question": "?", "answers": [{"text": "xyz", "answer_start": 0}]}]}]}]}
    p = tmp_path / "squad.json"
    text = json.dumps(doc, indent=1)
    p.write_text(text, encoding="utf-8")
    line = text[: text.index('"q2"')].count("\n") + 1
    with pytest.raises(DataError, match=rf"squad\.json:{line}: .*does not occur"):
        qa_examples(load_rows([spec(p)]), TaskConfig())


def test_missing_answers_and_bad_start(tmp_path):
    with pytest.raises(DataError, match=r"qa\.jsonl:1: missing answers field 'answers'"):
        qa_examples(load_rows([spec(write(tmp_path, [{"context": "c", "question": "q"}]))]), TaskConfig())
    bad = [{"context": "c", "question": "q", "answers": {"text": ["c"], "answer_start": ["0"]}}]
    with pytest.raises(DataError, match="answer_start must be a non-negative int"):
        qa_examples(load_rows([spec(write(tmp_path, bad))]), TaskConfig())


def test_unanswerable_decoding_uses_null_score(tmp_path):
    rows = qa_rows(6, 3, ctx_words=20, unanswerable=0.5)
    ex = qa_examples(load_rows([spec(write(tmp_path, rows))]), TaskConfig())
    assert any(e.is_impossible for e in ex) and not all(e.is_impossible for e in ex)
    feats = qa_features(ex, tokenizer(), max_len=64, stride=16, with_labels=True)
    s, e = oracle_logits(feats)
    with_null = decode_answers(ex, feats, s, e, allow_unanswerable=True)
    preds = [d["prediction"] for d in with_null]
    assert preds == [x.answers[0]["text"] if x.answers else "" for x in ex]
    without = decode_answers(ex, feats, s, e, allow_unanswerable=False)
    assert all(d["prediction"] for d in without)  # always some span when no-answer is off


def test_max_answer_len_limits_spans(tmp_path):
    ex = qa_examples(load_rows([spec(write(tmp_path, qa_rows(3, 4, ctx_words=20)))]), TaskConfig())
    feats = qa_features(ex, tokenizer(), max_len=64, stride=16, with_labels=False)
    width = max(len(x) for x in feats.inputs["input_ids"])
    s = np.zeros((len(feats), width))
    e = np.zeros((len(feats), width))
    s[:, 8], e[:, 20] = 10, 10  # the best pair is 13 tokens long
    for d in decode_answers(ex, feats, s, e, max_answer_len=5):
        assert len(tokenizer()(d["prediction"], add_special_tokens=False)["input_ids"]) <= 5


def test_stride_too_large_is_a_config_error(tmp_path):
    ex = qa_examples(load_rows([spec(write(tmp_path, qa_rows(2, 0)))]), TaskConfig())
    with pytest.raises(ConfigError, match="doc_stride"):
        qa_features(ex, tokenizer(), max_len=32, stride=30, with_labels=True)


def test_data_check_counts_windows_and_holds_out_contexts(tmp_path):
    from task_tiny_models import minilm_dir

    from tuneforge.config.load import load_config
    from tuneforge.data.qa_data import qa_splits
    from tuneforge.train.stages import STAGES

    p = write(tmp_path, qa_rows(30, 0, ctx_words=60, unanswerable=0.2))
    cfg = load_config(overrides=["stage=qa", f"model.path={minilm_dir()}", f"data.train=[{p}]", "data.eval_split=0.2",
                                 "data.cutoff_len=48", "task.doc_stride=16"])
    out = STAGES["qa"].check_data(cfg)
    assert out["train.unanswerable"] > 0 and out["used.train"] == out["train.answerable"]
    assert out["train.windows_per_question"] > 1
    train, evals, _ = qa_splits(cfg)
    assert evals and not {e.context for e in train} & {e.context for e in evals}


def test_invalid_skip_leaves_out_and_counts_bad_questions(tmp_path):
    from task_tiny_models import minilm_dir

    from tuneforge.config.load import load_config
    from tuneforge.data.qa_data import qa_splits
    from tuneforge.train.stages import STAGES

    good = qa_rows(12, 0, ctx_words=40)
    wrong_offset = dict(good[0], id="off", answers={"text": [good[0]["answers"]["text"][0]], "answer_start": [999]})
    article = {"title": "t", "paragraphs": [
        {"context": "Paris is in France.", "qas": [
            {"id": "a1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
            {"id": "a2", "question": None, "answers": []}]},
        {"context": 7, "qas": []}]}
    p = tmp_path / "qa.jsonl"
    lines = [json.dumps(r) for r in good] + ["{not json", json.dumps(wrong_offset), json.dumps(good[1]),
                                             json.dumps(article)]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = ["stage=qa", f"model.path={minilm_dir()}", f"data.train=[{p}]", "data.eval_split=0.25"]
    with pytest.raises(DataError, match=r"qa.jsonl:13"):  # the default: stop at the first bad row
        qa_splits(load_config(overrides=base))
    cfg = load_config(overrides=[*base, "data.invalid=skip"])
    train, evals, report = qa_splits(cfg)
    ids = {e.id for e in train + evals}
    # kept: the 12 good rows and the article's good question; left out: the malformed line, the wrong offset, the
    # repeated id, the question without text and the paragraph without a string context
    assert len(ids) == 13 and "a1" in ids and "off" not in ids
    assert report["invalid"]["count"] == 5
    assert any("qa.jsonl:13" in m for m in report["invalid"]["first"])
    warning = STAGES["qa"].check_data(cfg)["warnings"]
    assert warning and "skipped (data.invalid: skip): 5" in warning[0]


def test_invalid_skip_with_nothing_usable_is_one_line(tmp_path):
    from tuneforge.config.load import load_config
    from tuneforge.data.qa_data import qa_splits

    p = tmp_path / "qa.jsonl"
    bad = {"context": "abc", "question": "q?", "answers": {"text": ["zzz"], "answer_start": [0]}}
    p.write_text("{bad\n" + json.dumps(bad) + "\n", encoding="utf-8")
    cfg = load_config(overrides=["stage=qa", f"data.train=[{p}]", "data.invalid=skip"])
    with pytest.raises(DataError, match="all 2 were invalid"):
        qa_splits(cfg)
