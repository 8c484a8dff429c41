import json
import random

import pytest

from tuneforge.eval.report import compare, mean_ci, paired_diff_ci, results_markdown, stats_ci, wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100, 0.95)  # textbook: [0.4038, 0.5962]
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(10, 10)[1] == 1.0
    assert mean_ci([1, 0, 1, 1], method="wilson") == wilson_interval(3, 4)


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n():
    rng = random.Random(0)
    small = [float(rng.random() < 0.3) for _ in range(50)]
    big = [float(rng.random() < 0.3) for _ in range(2000)]
    for v in (small, big):
        lo, hi = mean_ci(v, n_boot=500)
        assert lo <= sum(v) / len(v) <= hi
    assert (mean_ci(big)[1] - mean_ci(big)[0]) < (mean_ci(small)[1] - mean_ci(small)[0]) / 3
    assert mean_ci(small, seed=1) == mean_ci(small, seed=1)


def test_paired_diff_ci():
    a = [0.0] * 50 + [1.0] * 50
    same = paired_diff_ci(a, a)
    assert same == (0.0, 0.0)
    better = [1.0] * 100  # fixes every wrong answer: +50 points for sure
    lo, hi = paired_diff_ci(a, better)
    assert 0.35 < lo <= 0.5 <= hi < 0.65


def test_stats_ci_for_bleu():
    from tuneforge.eval.generate import corpus_stats
    from tuneforge.eval.metrics import bleu

    hyps = ["a man rides a horse", "two dogs play", "the cat is on the mat", "a kid eats food"] * 5
    refs = [["a man is riding a horse"], ["two dogs are playing"], ["the cat sat on the mat"], ["a child eats"]] * 5
    lo, hi = stats_ci("bleu", corpus_stats("bleu", hyps, refs), n_boot=200)
    assert lo <= bleu(hyps, refs) <= hi and hi - lo > 1


def _entry(label, accs):
    recs = [{"id": str(i), "pred": int(a), "scores": {"acc": a}} for i, a in enumerate(accs)]
    m = sum(accs) / len(accs)
    res = {"label": label, "model": label, "tasks": {"arc": {"n": len(accs), "metrics": {"acc": m}, "main": "acc",
                                                              "ci": {"acc": list(mean_ci(accs))}}}}
    return {"label": label, "results": res, "records": {"arc": recs}}


def test_compare_writes_table_and_chart(tmp_path):
    base = _entry("base", [0.0, 1.0] * 20)
    tuned = _entry("tuned", [1.0, 1.0] * 20)
    path = compare([base, tuned], tmp_path, n_boot=200)
    md = path.read_text()
    assert "| acc | 50.0 [" in md and "| Δ tuned − base |" in md and "+50.0 [" in md
    assert "n = 40 samples" in md
    assert (tmp_path / "compare_arc.png").stat().st_size > 1000
    assert json.loads((tmp_path / "compare.json").read_text())["tasks"]["arc"]["acc"] == {"base": 0.5, "tuned": 1.0}
    assert "- tuned vs base: 20 of 40 answers changed (20 now right, 0 now wrong)" in md
    assert json.loads((tmp_path / "compare.json").read_text())["tasks"]["arc"]["answers_changed"]["tuned"] == {
        "common": 40, "changed": 20, "fixed": 20, "broken": 0}
    assert "| arc | acc * | 50.0 |" in results_markdown(base["results"])
    base["results"]["tasks"]["arc"].update(fewshot=5, fewshot_sampler="first_n", limit=40, seconds=2.5,
                                           samples_per_s=16.0)
    assert "| 40 | 5 (first_n) | 40 | 2.5 | 16.0 |" in results_markdown(base["results"])
