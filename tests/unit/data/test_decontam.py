"""Detectors, categories, search backends, caching and the records API of decontamination (fake encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import decontam_fakes
from tuneforge.data.decontam import (DecontamSettings, answer_overlap, categorize, decontaminate,
                                     decontaminate_records, exact_matches, ngram_matches)
from tuneforge.data.embed_index import brute_force_search, choose_index, embed, search
from tuneforge.data.formats import Sample
from tuneforge.data.qa_fields import QA
from tuneforge.errors import DataError

LONG_Q = ("Toula went to the bakery and bought various types of pastries. She bought 3 dozen donuts which cost "
          "$68 per dozen. How much was the total cost?")


@pytest.fixture
def fake(monkeypatch):
    return decontam_fakes.install(monkeypatch)


def test_exact_match_after_normalisation():
    train = [QA("what is the CAPITAL of france", ""), QA("Name a colour.", "")]
    bench = [QA("What is the capital of France?", "Paris")]
    assert exact_matches(train, bench) == {(0, 0): 1.0}


def test_ngram_overlap_13_grams_and_short_questions():
    bench = [QA(LONG_Q, "204"), QA("Who wrote Hamlet?", "Shakespeare"), QA("Is tap water safe to drink?", "")]
    leaked = QA("Solve: " + LONG_Q[:120] + " Explain.", "")
    hits = ngram_matches([leaked, QA("I went to the bakery and bought bread.", "")], bench, n=13)
    assert (0, 0) in hits and 0 < hits[(0, 0)] < 1
    assert not any(i == 1 for i, _ in hits)
    # 6+ word questions shorter than n are one n-gram; shorter ones are left to other detectors
    hits = ngram_matches([QA("Tell me: is tap water safe to drink", ""), QA("who wrote hamlet", "")], bench)
    assert hits == {(0, 2): 1.0}
    assert ngram_matches([leaked], bench, n=200) == {}  # whole question must appear when n > its length


def test_answer_overlap():
    assert answer_overlap("C. 24", "24") == 1.0
    assert answer_overlap("", "24") is None
    assert answer_overlap("The cat sat", "A dog ran") == 0.0


@pytest.mark.parametrize("train, cosine, category", [
    (QA("What is the capital of Frnace?", "Paris"), 0.97, "duplicate"),                  # typo, same answer
    (QA("What is the capital of France?", "Lyon"), 0.99, "gray-area"),                  # same question, other answer
    (QA("Context: France is in Europe and its capital is famous for the Eiffel tower. What is the capital of "
        "France?", "Paris"), 0.85, "gray-area"),                                        # extra context
    (QA("Which city is France's capital?", "Paris"), 0.9, "gray-area"),                 # paraphrase, same answer
    (QA("What is the capital of Spain?", "Madrid"), 0.86, "similar-but-different"),    # same topic, other question
])
def test_categories(train, cosine, category):
    got, feats = categorize(train, QA("What is the capital of France?", "Paris"), cosine, 0.8)
    assert got == category, feats


def test_decontaminate_flags_removes_and_reports(fake, tmp_path):
    bench = [QA("What is the capital of France?", "Paris"), QA(LONG_Q, "694")]
    train = [QA("what is the capital of france", "Paris"), QA("capital France what is the of", "Paris"),
             QA("Describe a process of making crepes.", "Mix flour and eggs."), QA(LONG_Q + " Show work.", "694")]
    rep = decontaminate(train, bench, DecontamSettings(cache_dir=str(tmp_path)))
    assert rep.flagged_records() == [0, 1, 3] and rep.removed == [0, 1, 3]
    by_train = {p.train_index: p for p in rep.pairs}
    assert by_train[0].methods == ["exact", "ngram", "embedding"] and by_train[0].category == "duplicate"
    assert by_train[1].methods == ["embedding"]  # word salad: only the bag-of-words embedding sees it
    assert by_train[3].scores["ngram"] == 1.0 and "cosine" in by_train[3].scores
    assert rep.best_cosine.shape == (4,) and rep.index_kind == "flat"
    out = rep.write(tmp_path / "rep")
    lines = [json.loads(x) for x in open(out["jsonl"], encoding="utf-8")]
    assert len(lines) == 3 and {"category", "methods", "scores", "train_line", "bench_file"} <= set(lines[0])
    md = open(out["markdown"], encoding="utf-8").read()
    assert "## Categories" in md and "similar-but-different" in md and "| duplicate |" in md
    assert open(out["histogram"], "rb").read(4) == b"\x89PNG"
    assert json.load(open(out["summary"]))["n_removed"] == 3


def test_threshold_methods_and_keep_categories(fake, tmp_path):
    bench = [QA("What is the capital of France?", "Paris")]
    train = [QA("What is the capital of Spain?", "Madrid")]  # bag-of-words cosine 0.83 with the fake encoder
    s = dict(cache_dir=str(tmp_path))
    assert decontaminate(train, bench, DecontamSettings(**s)).removed == [0]
    assert decontaminate(train, bench, DecontamSettings(threshold=0.9, **s)).removed == []
    assert decontaminate(train, bench, DecontamSettings(methods=("exact", "ngram"), **s)).pairs == []
    kept = decontaminate(train, bench, DecontamSettings(drop=("duplicate", "gray-area"), **s))
    assert kept.category_counts()["similar-but-different"] == 1 and kept.removed == []


@pytest.mark.parametrize("kw, msg", [({"methods": ("exact", "fuzzy")}, "unknown decontamination method"),
                                     ({"threshold": 1.5}, "threshold"), ({"ngram": 0}, "n-gram"),
                                     ({"index": "ivf"}, "unknown index"), ({"drop": ("dupe",)}, "unknown category")])
def test_settings_are_validated(kw, msg):
    with pytest.raises(DataError, match=msg):
        DecontamSettings(**kw)


def test_empty_inputs_are_errors(tmp_path):
    with pytest.raises(DataError, match="training data is empty"):
        decontaminate([], [QA("q", "a")])
    with pytest.raises(DataError, match="benchmark data is empty"):
        decontaminate([QA("q", "a")], [])
    with pytest.raises(DataError, match="empty input"):
        decontaminate_records([], against=["x.jsonl"])
    empty = tmp_path / "bench.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="bench.jsonl: benchmark file has no records"):
        decontaminate_records([{"instruction": "a", "output": "b"}], against=[empty])


def test_records_api_accepts_dicts_and_samples(fake, tmp_path):
    bench = tmp_path / "tqa.jsonl"
    bench.write_text(json.dumps({"Question": "Is tap water safe to drink?", "Best Answer": "It depends"}) + "\n",
                     encoding="utf-8")
    dicts = [{"instruction": "Is tap water safe to drink?", "input": "", "output": "It depends"},
             {"instruction": "Write a poem about autumn.", "input": "", "output": "Leaves fall."}]
    kept, rep = decontaminate_records(dicts, [bench], cache_dir=str(tmp_path / "c"), report_dir=tmp_path / "r")
    assert kept == [dicts[1]] and (tmp_path / "r" / "report.md").exists()
    samples = [Sample("a.json", 1, messages=[{"role": "user", "content": "is TAP water safe to drink"},
                                             {"role": "assistant", "content": "It depends."}]),
               Sample("a.json", 2, messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])]
    kept, rep = decontaminate_records(samples, [bench], cache_dir=str(tmp_path / "c"))
    assert kept == [samples[1]] and rep.pairs[0].train.file == "a.json" and rep.pairs[0].category == "duplicate"
    with pytest.raises(DataError, match="missing text field 'prompt'"):
        decontaminate_records(dicts, [bench], train_field="prompt")


def test_embeddings_are_batched_and_cached(fake, tmp_path):
    texts = [f"question number {i}" for i in range(10)]
    a = embed(texts, cache_dir=tmp_path)
    b = embed(texts, cache_dir=tmp_path)
    assert fake.calls == 1 and np.array_equal(a, b) and a.dtype == np.float32
    embed(texts[:5], cache_dir=tmp_path)
    assert fake.calls == 2  # a different list is a different cache entry
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)


def test_search_backends_agree():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    flat, brute, hnsw = (search(queries, base, k=3, kind=k) for k in ("flat", "brute", "hnsw"))
    assert np.array_equal(flat.ids[:, 0], np.arange(50)) and np.array_equal(brute.ids, flat.ids)
    assert np.allclose(brute.scores, flat.scores, atol=1e-5)
    assert (hnsw.ids[:, 0] == flat.ids[:, 0]).mean() >= 0.98
    assert brute_force_search(queries, base, k=600).ids.shape == (50, 500)  # k capped at the index size
    assert choose_index(10_000) == "flat" and choose_index(100_000) == "hnsw"
    assert search(queries, base[:0], k=3).index_kind == "none"


def test_real_minilm_separates_paraphrase_from_topic_neighbour(tmp_path):
    pytest.importorskip("sentence_transformers")
    try:
        vecs = embed(["How many American men are gay?", "What share of men in America are gay?",
                      "How many bones does an adult human have?"], cache_dir=tmp_path)
    except Exception as e:  # the packaged model is an optional extra
        pytest.skip(f"packaged MiniLM not available: {e}")
    assert vecs.shape == (3, 384)
    assert vecs[0] @ vecs[1] >= 0.8 > vecs[0] @ vecs[2]
