"""Detectors, categories, search backends, caching and the records API of decontamination (fake encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import decontam_fakes
from tuneforge.data.decontam import DecontamSettings, decontaminate, decontaminate_records
from tuneforge.data.decontam_match import (SAME_STEM, BenchStats, answer_agreement, decide, pair_features,
                                           resolve_answer)
from tuneforge.data.embed_index import brute_force_search, choose_index, embed, search
from tuneforge.data.formats import Sample
from tuneforge.data.qa_fields import QA, split_choices
from tuneforge.errors import DataError

LONG_Q = ("Toula went to the bakery and bought various types of pastries. She bought 3 dozen donuts which cost "
          "$68 per dozen. How much was the total cost?")


@pytest.fixture
def fake(monkeypatch):
    return decontam_fakes.install(monkeypatch)


def _views(stats: BenchStats, question: str, answer: str = "", choices: tuple[str, ...] = ()):
    return stats.views_of(QA(question, answer, choices=choices, stem=question if choices else ""))


MORAL = ("For which of these two scenarios does the main character (who uses I/me/my) do something clearly morally "
         "wrong, according to ordinary moral standards in the US as of 2020? Scenario 1 | ")
MORAL_CHOICES = ["Wrong, Wrong", "Wrong, Not wrong", "Not wrong, Wrong", "Not wrong, Not wrong"]


def test_split_choices_and_letter_answers():
    stem, choices = split_choices("Which gas do plants absorb?\n(a) oxygen\n(b) carbon dioxide\nAnswer briefly.")
    assert stem == "Which gas do plants absorb?\nAnswer briefly." and choices == ("oxygen", "carbon dioxide")
    assert split_choices("A. lone line\nno more") == ("A. lone line\nno more", ())
    qa = QA("q", "(b)", stem="q", choices=("oxygen", "carbon dioxide"))
    assert resolve_answer(qa) == "carbon dioxide"
    assert resolve_answer(QA("q", "The answer is B.", stem="q", choices=("x", "y"))) == "y"
    assert resolve_answer(QA("q", "A dog ran", stem="q", choices=("x", "y"))) == "A dog ran"  # not a letter


def test_boilerplate_is_stripped_from_the_core():
    bench = [QA(MORAL + f"I {verb} the {thing}. Scenario 2 | I fed the {pet}.", "Wrong, Not wrong", stem=MORAL +
                f"I {verb} the {thing}. Scenario 2 | I fed the {pet}.", choices=tuple(MORAL_CHOICES))
             for verb, thing, pet in [("stole", "car", "cat"), ("painted", "fence", "dog"),
                                      ("burned", "letter", "fish"), ("sold", "house", "bird")]]
    stats = BenchStats(bench)
    core = stats.views[0].core
    assert "stole the car" in core and "morally" not in core  # the template is gone, the scenario stays
    sibling = _views(stats, MORAL + "I hid the keys. Scenario 2 | I fed the horse.", "Wrong, Not wrong")
    f = pair_features(sibling, stats.views[0], stats, 0, 0, 0.9)
    assert f["core_similarity"] < SAME_STEM and f["answer_distinctive"] is False
    assert f["choice_overlap"] is None  # the four answers are shared by every item: no evidence
    assert not decide(f).removed


def test_answer_agreement_numbers_and_text():
    stats = BenchStats([QA("q", "x")])
    gsm = _views(stats, "How much?", "She pays 3 x $68 = $204.\n#### 204")
    assert answer_agreement(_views(stats, "x", "The answer is 204."), gsm) is True
    assert answer_agreement(_views(stats, "x", "#### 207"), gsm) is False
    assert answer_agreement(_views(stats, "x", ""), gsm) is None
    text = _views(stats, "q", "Canberra is the capital")
    assert answer_agreement(_views(stats, "x", "It is Canberra is the capital, yes"), text) is True
    assert answer_agreement(_views(stats, "x", "Sydney"), text) is False


@pytest.mark.parametrize("feats, removed, category", [
    ({"core_similarity": 0.97, "answer_agrees": True}, True, "duplicate"),              # copy / light edit
    ({"core_similarity": 1.0, "answer_agrees": None}, True, "duplicate"),               # no answer to compare
    ({"core_similarity": 0.95, "answer_agrees": False}, True, "similar-but-different"),  # same stem, other answer
    ({"core_similarity": 0.9, "numbers_changed": True}, True, "similar-but-different"),  # numeric edit
    ({"core_similarity": 0.5, "cosine": 0.82, "answer_agrees": True}, True, "gray-area"),  # paraphrase
    ({"core_similarity": 0.4, "choice_overlap": 1.0, "answer_agrees": True}, True, "gray-area"),
    ({"unique_ngrams": 0.8, "answer_agrees": True}, True, "duplicate"),               # copied in a long prompt
    ({"core_similarity": 0.5, "cosine": 0.86, "answer_agrees": False}, False, None),    # same topic
    ({"core_similarity": 0.6, "cosine": 0.95, "answer_agrees": None}, True, "gray-area"),  # very close, no answer
    ({"core_similarity": 0.8, "cosine": 0.95, "answer_agrees": False}, False, None),    # sold vs bought the rights
    ({"core_similarity": 0.99, "cosine": 0.99, "passage_only": True}, False, None),     # same passage, other question
    ({"core_similarity": 0.5, "cosine": 0.86, "answer_agrees": True, "answer_distinctive": False}, False, None),
    ({"exact_stem": True, "core_similarity": None, "choice_overlap": 0.0, "answer_agrees": False}, False, None),
    ({"core_similarity": 0.98, "cosine": 0.99, "negated": True}, False, None),         # asks the opposite
    ({"core_similarity": 0.98, "negated": True, "answer_agrees": True}, True, "duplicate"),  # ... same answer
    ({"core_similarity": 0.98, "negated": True, "choice_overlap": 1.0}, True, "duplicate"),  # ... same choices
    # a content word swapped, another answer: another question ("second busiest airport" vs "... container port")
    ({"core_similarity": 0.9, "reworded_words": 1, "answer_agrees": False}, False, None),
    ({"core_similarity": 0.9, "reworded_words": 1, "answer_agrees": False, "numbers_changed": True}, True,
     "similar-but-different"),                                                          # ... a numeric edit stays
    ({"core_similarity": 0.9, "reworded_words": 1, "answer_agrees": True}, True, "gray-area"),  # ... same answer
    # an answer to a question a word away from a SQuAD v2 unanswerable item; a verbatim copy stays removed
    ({"core_similarity": 0.9, "reworded_words": 1, "answers_unanswerable": True}, False, None),
    ({"core_similarity": 0.5, "cosine": 0.95, "reworded_words": 3, "answers_unanswerable": True}, False, None),
    ({"core_similarity": 1.0, "reworded_words": 0, "answers_unanswerable": True}, True, "duplicate"),
])
def test_decisions(feats, removed, category):
    d = decide(feats)
    assert (d.removed, d.category) == (removed, category), d


def test_unanswerable_items_and_abstaining_answers():
    from tuneforge.data.decontam_match import pair_features
    from tuneforge.data.qa_fields import extract_qa
    from tuneforge.data.readers import Row

    item = extract_qa(Row({"question": "When did Herve serve as a Norman general?", "answers": {"text": []}},
                          "b.jsonl", 1), "squad")
    answered = extract_qa(Row({"question": "x", "answers": {"text": ["1050s"]}}, "b.jsonl", 2), "squad")
    assert item.unanswerable and not answered.unanswerable
    stats = BenchStats([item])
    bench = stats.views[0]
    for reply, expected in (("In the 1050s.", True), ("The passage does not say.", False), ("", False)):
        rec = _views(stats, "When did Herve serve as a Byzantine general?", reply)
        assert pair_features(rec, bench, stats, 0, 0, 0.7)["answers_unanswerable"] is expected, reply


def test_negation_of_the_item_is_seen_typos_and_instructions_aside():
    from tuneforge.data.decontam_match import negated

    stats = BenchStats([QA("q", "x")])
    item = _views(stats, "What would not create a conflict between problem X and problem C?")
    plain = _views(stats, "What would create a conflict between problem X and problem C?")
    assert negated(plain, item) and negated(item, plain)
    assert not negated(_views(stats, "what would not create a conflict between problem X and problem C"), item)
    exc = _views(stats, "All of the following are mammals EXCEPT which animal?")
    assert not negated(_views(stats, "All of the following are mammals ecxept which animal?"), exc)  # a typo
    assert negated(_views(stats, "All of the following are mammals, which animal?"), exc)
    # a copy inside instructions that carry their own "do not": not a negation of the item
    wrapped = _views(stats, "Do not explain, just answer. What would create a conflict between problem X and "
                            "problem C? Keep it short and do not add anything else at all.")
    assert not negated(wrapped, plain)


def test_decontaminate_flags_removes_and_reports(fake, tmp_path):
    bench = [QA("What is the capital of France?", "Paris"), QA(LONG_Q, "694")]
    train = [QA("what is the CAPITAL of france", "Paris"), QA("capital France what is the of", "Paris"),
             QA("Describe a process of making crepes.", "Mix flour and eggs."), QA(LONG_Q + " Show work.", "694")]
    rep = decontaminate(train, bench, DecontamSettings(cache_dir=str(tmp_path)))
    assert rep.flagged_records() == [0, 1, 3] and rep.removed == [0, 1, 3]
    by_train = {p.train_index: p for p in rep.pairs}
    assert by_train[0].found_by == ["exact", "ngram", "embedding"] and by_train[0].category == "duplicate"
    assert by_train[1].found_by == ["embedding"] and by_train[1].category == "gray-area"  # word salad
    assert by_train[3].scores["unique_ngrams"] == 1.0 and by_train[3].category == "duplicate"
    assert rep.best_cosine.shape == (4,) and rep.index_kind == "flat"
    out = rep.write(tmp_path / "rep")
    lines = [json.loads(x) for x in open(out["jsonl"], encoding="utf-8")]
    assert len(lines) == 3 and {"category", "evidence", "scores", "train_line", "bench_file"} <= set(lines[0])
    records = [json.loads(x) for x in open(out["records"], encoding="utf-8")]
    assert [r["train_index"] for r in records] == [0, 1, 3] and all(r["removed"] for r in records)
    md = open(out["markdown"], encoding="utf-8").read()
    assert "## Categories" in md and "| records | pairs |" in md and "## Records" in md
    assert "**CAPITAL**" not in md and "**capital**" in md  # the reworded record's moved words are marked
    assert open(out["histogram"], "rb").read(4) == b"\x89PNG"
    assert json.load(open(out["summary"]))["n_removed"] == 3


def test_threshold_methods_and_keep_categories(fake, tmp_path):
    bench = [QA("What is the capital of France?", "Paris")]
    train = [QA("In France, what is the capital city?", "Paris")]  # reworded; fake (bag-of-words) cosine 0.77
    s = dict(cache_dir=str(tmp_path))
    assert decontaminate(train, bench, DecontamSettings(**s)).removed == [0]
    assert decontaminate(train, bench, DecontamSettings(threshold=0.9, **s)).removed == []
    assert decontaminate(train, bench, DecontamSettings(methods=("exact", "ngram"), **s)).pairs == []
    other = [QA("What is the capital of France?", "Lyon")]  # the same question answered differently
    kept = decontaminate(other, bench, DecontamSettings(drop=("duplicate", "gray-area"), **s))
    assert kept.category_counts()["similar-but-different"] == 1 and kept.removed == []
    assert decontaminate(other, bench, DecontamSettings(**s)).removed == [0]


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


def test_embeddings_are_batched_and_cached_per_text(fake, tmp_path):
    texts = [f"question number {i}" for i in range(10)]
    a = embed(texts, cache_dir=tmp_path)
    b = embed(texts, cache_dir=tmp_path)
    assert fake.calls == 1 and np.array_equal(a, b) and a.dtype == np.float32
    c = embed(texts[:5] + ["a new text", "a new text"], cache_dir=tmp_path)
    assert fake.calls == 2 and fake.texts == 11  # only the one new distinct text was encoded
    assert np.array_equal(c[:5], a[:5]) and np.array_equal(c[5], c[6])
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert embed([], cache_dir=tmp_path).shape == (0, 256)


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
