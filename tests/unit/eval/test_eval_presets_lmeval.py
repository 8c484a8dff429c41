"""Preset defaults reproduce lm-eval's standard setups (checked against lm-eval's own code where it is cheap)."""

import json

import pytest

from tuneforge.config.evaluation import EvalTaskConfig
from tuneforge.errors import DataError
from tuneforge.eval.tasks import load_samples, resolve_task


def _jsonl(tmp_path, rows, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(p)


ROWS = [{"q": f"question {i}", "opts": ["a", "b", "c"], "ans": i % 3} for i in range(15)]


@pytest.mark.parametrize("same_file", [True, False])
def test_lm_eval_sampler_draws_what_lm_eval_draws(tmp_path, same_file):
    samplers = pytest.importorskip("lm_eval.api.samplers")
    test = _jsonl(tmp_path, ROWS)
    shots = _jsonl(tmp_path, [dict(r, q="shot " + r["q"]) for r in ROWS], "shots.jsonl")
    cfg = EvalTaskConfig(file=test, prompt="Q: {q}\nA:", choices="opts", gold="ans", fewshot=3, limit=9,
                         **({} if same_file else {"fewshot_file": shots}))
    ours = load_samples(resolve_task(cfg), seed=1234)
    pool = ROWS if same_file else [dict(r, q="shot " + r["q"]) for r in ROWS]
    theirs = samplers.ContextSampler(pool, rnd=1234)  # lm-eval: one RNG per task, asked in document order
    for row, sample in zip(ROWS, ours):
        want = theirs.sample(3, eval_doc=row if same_file else None)
        got = [line[3:] for line in sample.context.split("\n") if line.startswith("Q: ")][:-1]
        assert got == [d["q"] for d in want]


def test_presets_default_to_lm_evals_setup():
    mmlu = resolve_task(EvalTaskConfig(file="x.jsonl", preset="mmlu"))
    assert (mmlu.fewshot, mmlu.fewshot_sampler, mmlu.metrics) == (0, "first_n", ["acc"])
    assert mmlu.description.startswith("The following are multiple choice questions")
    off = resolve_task(EvalTaskConfig(file="x.jsonl", preset="mmlu", description=""))
    assert off.description == ""  # "" switches the preset's description off
    arc = resolve_task(EvalTaskConfig(file="x.jsonl", preset="arc", fewshot=25))
    assert (arc.fewshot, arc.fewshot_sampler, arc.metrics) == (25, "lm_eval", ["acc", "acc_norm"])
    gsm = resolve_task(EvalTaskConfig(file="x.jsonl", preset="gsm8k", fewshot=0, max_new_tokens=32))
    assert (gsm.fewshot, gsm.max_new_tokens, gsm.stop) == (0, 32, ["Question:", "</s>", "<|im_end|>"])


def test_hellaswag_preprocessing_is_lm_evals(tmp_path):
    utils = pytest.importorskip("lm_eval.tasks.hellaswag.utils")
    row = {"activity_label": "Baking cookies [header]", "ctx_a": "A woman  mixes flour.",
           "ctx_b": "then she [title] puts the tray", "endings": [" in the oven [step] now.", "on the  floor."],
           "label": "0"}
    s, = load_samples(resolve_task(EvalTaskConfig(file=_jsonl(tmp_path, [row]), preset="hellaswag")))
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    assert s.context == utils.preprocess(row["activity_label"] + ": " + ctx)
    assert s.choices == [utils.preprocess(e) for e in row["endings"]] and s.gold == 0


def test_mc2_is_lm_evals_true_probability_mass():
    utils = pytest.importorskip("lm_eval.tasks.truthfulqa.utils")
    from tuneforge.eval.mcq import mc2_score

    lls, labels = [-1.5, -0.7, -3.0, -2.2], [1, 0, 1, 0]
    want = utils.process_results_mc2({"mc2_targets": {"labels": labels}}, [(x, False) for x in lls])["acc"]
    assert mc2_score(lls, labels) == pytest.approx(want)


def test_readable_errors_for_fewshot_file_and_string_choices(tmp_path):
    f = _jsonl(tmp_path, ROWS)
    with pytest.raises(DataError, match="few-shot file .*not found"):
        load_samples(resolve_task(EvalTaskConfig(file=f, prompt="{q}", choices="opts", gold="ans", fewshot=1,
                                                 fewshot_file=str(tmp_path / "nope.jsonl"))))
    bad = _jsonl(tmp_path, [{"question": "q", "choices": "a; b", "answer": 0, "subject": "x"}], "m.jsonl")
    with pytest.raises(DataError, match=r"m\.jsonl:1: .*'choices' must be a list"):
        load_samples(resolve_task(EvalTaskConfig(file=bad, preset="mmlu")))


def test_acc_norm_is_dropped_only_when_it_must_repeat_acc():
    from tuneforge.eval.mcq import mcq_metric_names
    from tuneforge.eval.tasks import McqSample

    spec = resolve_task(EvalTaskConfig(file="x.jsonl", prompt="{q}", choices="c", gold="g"))
    letters = [McqSample("0", "f", 1, "c", ["A", "B"], 0)]
    words = [McqSample("0", "f", 1, "c", ["yes", "maybe"], 0)]
    assert mcq_metric_names(spec, letters) == ["acc"]
    assert mcq_metric_names(spec, words) == ["acc", "acc_norm"]


def test_progress_lines_are_plain_and_unwrapped(monkeypatch):
    from tuneforge.eval import progress as P

    lines = []
    monkeypatch.setattr(P, "LINE_EVERY_S", 0.0)
    bar = P.TaskProgress("[model] a_task_with_a_rather_long_name_" + "x" * 80, 10, "lines", lines.append)
    bar(4)
    bar(10)
    bar.close()
    assert len(lines) == 1 and "\n" not in lines[0] and " 4/10 (40%) " in lines[0] and "ETA" in lines[0]
