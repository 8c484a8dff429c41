import pytest

from tuneforge.eval import metrics as m


def test_squad_normalisation_and_best_reference():
    assert m.normalize_answer("The  Cat, sat!") == "cat sat"
    assert m.exact_match(["the cat"], [["dog", "Cat."]]) == 1.0
    assert m.exact_match(["a cat"], ["dog"]) == 0.0
    # "big red dog" vs "red dog": precision 2/3, recall 1 → F1 0.8
    assert m.token_f1(["big red dog"], ["red dog"]) == pytest.approx(0.8)
    assert m.squad_scores(["x", "red dog"], ["y", ["cat", "red dog"]]) == {"exact_match": 0.5, "f1": 0.5}


def test_squad_v2_no_answer():
    assert m.per_sample_em_f1("", []) == (1.0, 1.0)
    assert m.per_sample_em_f1("France", []) == (0.0, 0.0)
    assert m.per_sample_em_f1("", ["France"]) == (0.0, 0.0)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        m.exact_match(["a", "b"], ["a"])


def test_sacrebleu_scores_match_sacrebleu_directly():
    import sacrebleu

    hyps = ["the cat sat on the mat", "a dog runs in the park"]
    refs = ["the cat sat on a mat", ["a dog is running in the park", "the dog runs in a park"]]
    streams = [["the cat sat on a mat", "a dog is running in the park"],
               ["the cat sat on a mat", "the dog runs in a park"]]
    assert m.bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)
    assert m.chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score)
    assert m.ter(hyps, refs) == pytest.approx(sacrebleu.corpus_ter(hyps, streams).score)
    assert m.bleu(["same words here ok"], ["same words here ok"]) == pytest.approx(100.0)


def test_rouge():
    r = m.rouge(["the cat sat"], ["the cat sat down"])
    assert r["rouge1"] == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert r["rouge2"] == pytest.approx(0.8)
    assert m.rouge(["x"], [["y", "x"]])["rougeL"] == 1.0


def test_classification_metrics_match_sklearn():
    from sklearn.metrics import precision_recall_fscore_support

    y = [0, 1, 2, 2, 1, 0, 2, 1]
    p = [0, 2, 2, 2, 1, 1, 0, 1]
    assert m.accuracy(p, y) == pytest.approx(5 / 8)
    for avg in ("macro", "micro", "weighted"):
        ours = m.precision_recall_f1(p, y, average=avg)
        ref = precision_recall_fscore_support(y, p, average=avg, zero_division=0)
        assert [ours["precision"], ours["recall"], ours["f1"]] == pytest.approx(list(ref[:3])), avg
    yb, pb = [1, 0, 1, 1, 0], [1, 1, 0, 1, 0]
    ref = precision_recall_fscore_support(yb, pb, average="binary", zero_division=0)
    ours = m.precision_recall_f1(pb, yb, average="binary")
    assert [ours["precision"], ours["recall"], ours["f1"]] == pytest.approx(list(ref[:3]))
    assert set(m.classification_scores(p, y)) == {"accuracy", "precision", "recall", "f1"}


@pytest.mark.parametrize("text,expected", [
    ("She pays 3 x $68 = $204.\n#### 694", "694"),
    ("so the total is 1,000.50 dollars", "1000.5"),
    ("The answer is -3.0", "-3"),
    ("#### $1,234", "1234"),
    ("no digits here", None),
])
def test_extract_number(text, expected):
    assert m.extract_number(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("The answer is (B).", "B"), ("C. Paris", "C"), ("(D)", "D"), ("A man walks in", None),
    ("answer: e", None), ("Answer: a", "A"),
])
def test_extract_choice(text, expected):
    assert m.extract_choice(text) == expected
