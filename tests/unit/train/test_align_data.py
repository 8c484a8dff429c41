"""Preference / feedback / prompt data: layouts read, bad rows caught or counted, and the chosen/rejected label
masks of every template family cover exactly the response tokens (the bug class behind many DPO reports)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from tiny_bpe import build_tiny_tokenizer

from tuneforge.config import load_config
from tuneforge.config.schema import DataConfig, DatasetSpec
from tuneforge.data.load import load_datasets
from tuneforge.data.preference import (
    FeedbackReader,
    PairReader,
    PairSample,
    PromptReader,
    flatten,
)
from tuneforge.data.preference_tokenize import split_response, tokenize_pairs
from tuneforge.data.readers import Row
from tuneforge.data.template_specs import TEMPLATES
from tuneforge.data.templates import (
    IGNORE_INDEX,
    encode_conversation,
    ensure_template_tokens,
)
from tuneforge.errors import DataError

NAMED = sorted({t.name for t in TEMPLATES.values()})
PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "What is the capital of France?"}]


def row(data: dict, line: int = 3) -> Row:
    return Row(data, "pairs.json", line)


def spec(**kw) -> DatasetSpec:
    return DatasetSpec(path="pairs.json", **kw)


# --- layouts ------------------------------------------------------------------------------------------------
def test_llamafactory_sharegpt_and_alpaca_ranking_and_trl_layouts():
    read = PairReader()
    lf = read(row({"conversations": [{"from": "human", "value": "Hi?"}],
                   "chosen": {"from": "gpt", "value": "Hello."}, "rejected": {"from": "gpt", "value": "Go."}}),
              spec(format="sharegpt"))
    assert lf.prompt == [{"role": "user", "content": "Hi?"}] and (lf.chosen, lf.rejected) == ("Hello.", "Go.")
    alpaca = read(row({"instruction": "Add", "input": "1+1", "chosen": "2", "rejected": "3"}), spec())
    assert alpaca.prompt == [{"role": "user", "content": "Add\n1+1"}] and alpaca.chosen == "2"
    trl_plain = read(row({"prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."}), spec())
    assert trl_plain.prompt == [{"role": "user", "content": "Sky?"}]
    trl_conv = read(row({"prompt": [{"role": "user", "content": "Sky?"}],
                         "chosen": [{"role": "assistant", "content": "Blue."}],
                         "rejected": [{"role": "assistant", "content": "Green."}]}), spec())
    assert (trl_conv.chosen, trl_conv.rejected) == ("Blue.", "Green.")
    implicit = read(row({"chosen": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}],
                         "rejected": [{"role": "user", "content": "Sky?"},
                                      {"role": "assistant", "content": "Green."}]}), spec())
    assert implicit.prompt == [{"role": "user", "content": "Sky?"}] and implicit.rejected == "Green."


def test_feedback_and_prompt_layouts():
    fb = FeedbackReader()
    lf = fb(row({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
                 "label": False}), spec(columns={"messages": "messages", "kto_tag": "label"}))
    assert lf[0].completion == "A" and lf[0].label is False
    trl = fb(row({"prompt": "Q", "completion": "A", "label": True}), spec())
    assert trl[0].label is True and trl[0].prompt == [{"role": "user", "content": "Q"}]
    pair = fb(row({"prompt": "Q", "chosen": "good", "rejected": "bad"}), spec())
    assert [(s.completion, s.label) for s in pair] == [("good", True), ("bad", False)]
    p = PromptReader()(row({"question": "2+2?", "answer": "#### 4"}), spec(columns={"prompt": "question"}))
    assert p.prompt == [{"role": "user", "content": "2+2?"}] and p.reference == "#### 4"


# --- bad data: an error naming file:line, or a counted drop; never a silent zero-loss pair --------------------
def test_missing_rejected_is_an_error_with_file_and_line():
    with pytest.raises(DataError) as e:
        PairReader()(row({"prompt": "Q", "chosen": "A"}, line=7), spec())
    assert "pairs.json" in str(e.value) and "7" in str(e.value) and "rejected" in str(e.value)


def test_identical_and_empty_pairs_are_dropped_and_counted(tmp_path):
    rows = [{"prompt": "Q1", "chosen": "same", "rejected": "same"},
            {"prompt": "Q2", "chosen": "  ", "rejected": "no"},
            {"prompt": "Q3", "chosen": "yes", "rejected": "no"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, [f"data.train={path}", "stage=dpo"])
    read = PairReader()
    train, _, _ = load_datasets(cfg, convert=read)
    assert len(train) == 1
    counts = read.counts.as_dict()
    assert counts["dropped_identical_pair"] == 1 and counts["dropped_empty_response"] == 1
    assert any(":1: dropped" in w for w in counts["warnings"]) and any(":2: dropped" in w for w in counts["warnings"])


def test_cutoff_counts_truncated_cut_away_and_identical_after_cut():
    tok = build_tiny_tokenizer()
    ensure_template_tokens(tok, "chatml")
    d = DataConfig(template="chatml", cutoff_len=24)
    long_prompt = [{"role": "user", "content": "Hello! How are you today? " * 8}]
    short = [{"role": "user", "content": "Hi"}]
    samples = [PairSample("f", 1, long_prompt, "yes", "no"),  # prompt alone > cutoff: both responses cut away
               PairSample("f", 2, short, "Line one. " * 6 + "A", "Line one. " * 6 + "B"),  # same tokens after cut
               PairSample("f", 3, short, "Paris is the capital. " * 3, "no"),  # truncated, kept
               PairSample("f", 4, short, "yes", "no")]
    rows, stats = tokenize_pairs(samples, tok, d)
    assert len(rows) == 2 and stats["kept"] == 2
    assert stats["dropped_response_cut_away"] == 1 and stats["dropped_identical_after_cutoff"] == 1
    assert stats["truncated"] == 2
    assert all(len(r["prompt_ids"]) + len(r["chosen_ids"]) <= 24 for r in rows)
    assert stats["prompt_tokens"]["p100"] < 24 and any("f:1: dropped" in w for w in stats["warnings"])
    with pytest.raises(DataError):
        tokenize_pairs(samples, tok, DataConfig(template="chatml", cutoff_len=24, overlong="error"))


# --- label masks per template family --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMED + ["jinja"])
def test_pair_masks_cover_exactly_the_response_tokens(name):
    tok = build_tiny_tokenizer()
    template = "chatml" if name == "jinja" else name
    ensure_template_tokens(tok, template)
    tok.chat_template = TEMPLATES[template].jinja
    d = DataConfig(template="auto" if name == "jinja" else name, cutoff_len=512)
    chosen, rejected = "Paris is the capital.", "Line one.\nLine two."
    rows, _ = tokenize_pairs([PairSample("f", 1, PROMPT, chosen, rejected)], tok, d)
    r = rows[0]
    for answer, ids in ((chosen, r["chosen_ids"]), (rejected, r["rejected_ids"])):
        full, labels = encode_conversation(tok, [*PROMPT, {"role": "assistant", "content": answer}], d.template)
        trained = [t for t, lab in zip(full, labels) if lab != IGNORE_INDEX]
        assert ids == trained  # exactly what SFT trains: the answer + its end-of-turn marker, nothing else
        assert full[: len(r["prompt_ids"])] == r["prompt_ids"]
        text = tok.decode(ids)
        assert text.strip().startswith(answer.strip()) and answer.strip() not in tok.decode(r["prompt_ids"])
        assert len(text.strip()) > len(answer.strip())  # the end-of-turn marker is trained too
    assert split_response(tok, PROMPT, chosen, d)[0] == r["prompt_ids"]


def test_shared_dpo_demo_reads_through_dataset_info():
    from shared_paths import DATA

    root = DATA / "llamafactory_demo"
    if not (root / "dpo_en_demo.json").exists():
        pytest.skip("shared LLaMA-Factory demo data not present")
    cfg = load_config(None, [f"data.dataset_dir={root}", "data.train=dpo_en_demo", "stage=dpo"])
    read = PairReader()
    train, _, report = load_datasets(cfg, convert=read)
    assert len(train) + sum(read.counts.dropped.values()) == report.read == 300
    fb = FeedbackReader()
    cfg = load_config(None, [f"data.dataset_dir={root}", "data.train=kto_en_demo", "stage=kto"])
    samples = flatten(load_datasets(cfg, convert=fb)[0])
    assert len(samples) == 300 and sum(s.label for s in samples) == 150
