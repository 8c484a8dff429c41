"""`tuneforge compare-approaches` on extractive QA and translation configs (tiny random models): the config's own
route and the decoder routes are scored on the same held-out rows, written once; the table has the task's columns
with a winner each; a bad route name stops before anything runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from task_tiny_models import qa_rows, tiny_bert, tiny_t5, translation_rows, write_jsonl  # noqa: E402

from tuneforge.errors import ConfigError, DataError  # noqa: E402
from tuneforge.train.compare import compare_approaches  # noqa: E402

TRAIN = {"epochs": 1, "max_steps": 3, "batch_size": 8, "threads": 1, "logging_steps": 1}


def _write(d: Path, cfg: dict) -> str:
    (d / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return str(d / "cfg.yaml")


@pytest.fixture(scope="module")
def qa_config(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmpqa")
    # every question on its own context, some unanswerable: those train the span head but are scored by no route
    write_jsonl(d / "train.jsonl", qa_rows(40, 0, ctx_words=20, unanswerable=0.2))
    write_jsonl(d / "eval.jsonl", qa_rows(10, 1, ctx_words=20, unanswerable=0.3))
    return _write(d, {"stage": "qa", "method": "full", "model": {"path": tiny_bert()},
                      "data": {"train": [{"path": "train.jsonl"}], "eval": [{"path": "eval.jsonl"}], "cutoff_len": 64},
                      "task": {"doc_stride": 16, "allow_unanswerable": True}, "train": TRAIN,
                      "output": {"dir": str(d / "runs"), "name": "qa"}})


@pytest.fixture(scope="module")
def mt_config(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmpmt")
    write_jsonl(d / "train.jsonl", translation_rows(40, 0))
    write_jsonl(d / "eval.jsonl", translation_rows(8, 1))
    return _write(d, {"stage": "seq2seq", "method": "full", "model": {"path": tiny_t5()},
                      "data": {"train": [{"path": "train.jsonl"}], "eval": [{"path": "eval.jsonl"}], "cutoff_len": 32},
                      "task": {"source_lang": "en", "target_lang": "de", "max_new_tokens": 8}, "train": TRAIN,
                      "output": {"dir": str(d / "runs"), "name": "mt"}})


def _heldout_ids(run_dir: str) -> int:
    return sum(1 for _ in (Path(run_dir) / "eval" / "predictions" / "heldout.jsonl").open())


@pytest.mark.slow
def test_qa_routes_share_the_held_out_questions(qa_config, tiny_llama, tmp_path):
    res = compare_approaches(qa_config, decoder=tiny_llama, out=str(tmp_path), shots=1)
    rows = {r["approach"]: r for r in res["rows"]}
    assert list(rows) == ["span_head", "zero_shot", "few_shot", "sft_lora"]
    heldout = [json.loads(x) for x in (tmp_path / "data" / "heldout.jsonl").open()]
    answerable = sum(1 for r in qa_rows(10, 1, ctx_words=20, unanswerable=0.3) if not r["is_impossible"])
    assert len(heldout) == answerable == res["eval_samples"] and all(r["answers"]["text"] for r in heldout)
    for name, r in rows.items():
        assert not r.get("error"), (name, r.get("error"))
        assert 0 <= r["eval_f1"] <= 1 and 0 <= r["eval_exact_match"] <= r["eval_f1"], r
        assert r["infer_s_per_1k"] > 0, r
    for name in ("zero_shot", "few_shot", "sft_lora"):  # every decoder route answered every held-out question
        assert _heldout_ids(rows[name]["run_dir"]) == answerable
    span = json.loads((Path(rows["span_head"]["run_dir"]) / "eval_report.json").read_text())
    assert span["n"] == answerable  # the span head is scored on the same questions, not its own split
    sft_cfg = yaml.safe_load((Path(rows["sft_lora"]["run_dir"]) / "config.yaml").read_text())
    assert sft_cfg["train"]["lr"] == 1e-3 and sft_cfg["data"]["train"][0]["format"] == "qa"
    assert rows["zero_shot"]["trainable_params"] == 0 < rows["sft_lora"]["trainable_params"]
    md = Path(res["files"]["md"]).read_text()
    assert "| approach | F1 | EM |" in md and "Winners: F1: **" in md and "extractive QA" in md
    assert Path(res["files"]["png"]).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_translation_routes_and_a_rerun_of_one_route_keeps_the_others(mt_config, tiny_llama, tmp_path):
    res = compare_approaches(mt_config, approaches=["seq2seq", "zero_shot", "sft_lora"], decoder=tiny_llama,
                             out=str(tmp_path))
    rows = {r["approach"]: r for r in res["rows"]}
    for name, r in rows.items():
        assert not r.get("error"), (name, r.get("error"))
        assert 0 <= r["eval_bleu"] <= 100 and 0 <= r["eval_chrf"] <= 100, r
    sft_cfg = yaml.safe_load((Path(rows["sft_lora"]["run_dir"]) / "config.yaml").read_text())
    assert sft_cfg["data"]["system"] == "Translate English to German."
    assert "| approach | BLEU | chrF |" in Path(res["files"]["md"]).read_text()
    again = compare_approaches(mt_config, approaches=["zero_shot"], decoder=tiny_llama, out=str(tmp_path))
    assert [r["approach"] for r in again["rows"]] == ["seq2seq", "zero_shot", "sft_lora"]
    assert again["kept_from_earlier"] == ["seq2seq", "sft_lora"]


def test_a_route_of_another_task_is_refused_before_anything_runs(mt_config, tmp_path):
    with pytest.raises(ConfigError, match="not a route for translation"):
        compare_approaches(mt_config, approaches=["span_head"], out=str(tmp_path))
    assert not (tmp_path / "compare.json").exists()


def test_bad_inputs_stop_with_one_line_before_anything_runs(qa_config, mt_config, tmp_path):
    d = Path(qa_config).parent
    # held-out questions that are all unanswerable: nothing a decoder could be scored on
    write_jsonl(d / "eval_none.jsonl", [dict(r, is_impossible=True, answers={"text": [], "answer_start": []})
                                        for r in qa_rows(4, 2, ctx_words=20)])
    with pytest.raises(ConfigError, match="no answerable held-out question"):
        compare_approaches(qa_config, ["data.eval=[eval_none.jsonl]"], out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="--decoder-examples: 0"):
        compare_approaches(mt_config, out=str(tmp_path / "b"), decoder_examples=0)
    # a bad row in the QA file names its file:line (the config's own data check, before any route)
    bad = d / "train_bad.jsonl"
    bad.write_text((d / "train.jsonl").read_text() + '{"context": "abc", "question": "q?", '
                   '"answers": {"text": ["zzz"], "answer_start": [0]}}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train_bad.jsonl:41"):
        compare_approaches(qa_config, ["data.train=[train_bad.jsonl]"], out=str(tmp_path / "c"))
    assert not any((tmp_path / x / "compare.json").exists() for x in "abc")
