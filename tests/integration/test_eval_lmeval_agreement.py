"""Our MCQ accuracy vs lm-evaluation-harness on the same local files and the same (tiny random) model.

A random model is a strict test: accuracies are near chance, so only identical per-sample choices give equal
numbers. Prompts for the presets are written in lm-eval's own Jinja (see tuneforge/eval/lmeval.py), so prompt
building, few-shot assembly, tokenisation and scoring are all compared.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "eval"))

from tiny_lm import build_tiny_llama  # noqa: E402

from shared_paths import DATA  # noqa: E402
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DATA.exists(), reason="shared benchmark data not present")]
lm_eval = pytest.importorskip("lm_eval")


def test_accuracy_and_per_sample_choices_match_lm_eval(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.config.evaluation import EvalTaskConfig as T
    from tuneforge.eval.lmeval import run_lmeval
    from tuneforge.eval.mcq import McqScorer, summarize
    from tuneforge.eval.tasks import load_samples, resolve_task

    path = build_tiny_llama(tmp_path_factory.mktemp("agree"), seed=1)
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    obqa = str(DATA / "openbookqa/openbookqa_dev_subset.jsonl")
    tasks = [
        T(name="arc_style_2shot", file=obqa, preset="openbookqa", fewshot=2, fewshot_sampler="first_n", limit=60),
        T(name="hellaswag_style", file=obqa, preset="hellaswag_obqa", limit=60),
        T(name="mmlu_0shot", file=str(DATA / "mmlu/test_dev_subset.jsonl"), preset="mmlu", limit=60),
        T(name="truthfulqa_mc1", file=str(DATA / "truthfulqa/truthfulqa_dev_subset.jsonl"), preset="truthfulqa_mc1",
          limit=40),
    ]
    theirs = run_lmeval(model, tok, tasks, batch_size=8)
    for t in tasks:
        ours = McqScorer(model, tok, batch_size=8).score(load_samples(resolve_task(t)))
        ref = theirs[t.name]
        assert len(ours) == ref["n"]
        same = sum(a.pred == b for a, b in zip(ours, ref["pred"])) / len(ours)
        same_norm = sum(a.pred_norm == b for a, b in zip(ours, ref["pred_norm"])) / len(ours)
        acc = summarize(ours)
        print(f"{t.name}: ours acc {acc['acc']:.4f} acc_norm {acc['acc_norm']:.4f} | lm-eval acc {ref['acc']:.4f} "
              f"acc_norm {ref['acc_norm']:.4f} | same choice {same:.3f}/{same_norm:.3f}")
        assert same >= 0.99 and same_norm >= 0.99, t.name
        assert abs(acc["acc"] - ref["acc"]) <= 0.005 and abs(acc["acc_norm"] - ref["acc_norm"]) <= 0.005, t.name
        worst = max(abs(x - y) for a, b in zip(ours, ref["loglikelihoods"]) for x, y in zip(a.loglikelihoods, b))
        assert worst < 1e-2, (t.name, worst)
