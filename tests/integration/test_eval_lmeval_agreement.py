"""Every preset vs lm-evaluation-harness on the same local files and the same (tiny random) model, per sample.

A random model is a strict test: accuracies are near chance, so only identical per-sample choices (and, for
generation, identical generated text) give equal numbers. lm-eval's side is lm-eval's own task definition where
it ships the benchmark (hellaswag, gsm8k YAMLs; MMLU as one task per subject) or its Jinja prompts
(see tuneforge/eval/lmeval.py), so prompt building, few-shot sampling, tokenisation and scoring are all compared.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "eval"))

from tiny_lm import build_tiny_llama  # noqa: E402

from shared_paths import DATA  # noqa: E402
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DATA.exists(), reason="shared benchmark data not present")]
lm_eval = pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_llama(tmp_path_factory.mktemp("agree"), seed=1)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _hellaswag_file(tmp: Path) -> str:
    """HellaSwag's layout (activity_label, ctx_a, ctx_b, endings, label) built from OpenBookQA rows, with the
    WikiHow artefacts lm-eval's preprocessing removes ([title], [step], double spaces)."""
    rows = []
    for i, line in enumerate((DATA / "openbookqa/openbookqa_dev_subset.jsonl").read_text().splitlines()[:40]):
        r = json.loads(line)
        words = r["question"]["stem"].split()
        ends = [c["text"] + (" [title] more  text" if i % 3 == 0 else "") for c in r["question"]["choices"]]
        rows.append({"activity_label": "Science [step]", "ctx_a": " ".join(words[: len(words) // 2]),
                     "ctx_b": " ".join(words[len(words) // 2:]), "endings": ends,
                     "label": str("ABCD".index(r["answerKey"]))})
    p = tmp / "hellaswag.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def _mcq_tasks(tmp: Path):
    from tuneforge.config.evaluation import EvalTaskConfig as T

    obqa, mmlu = str(DATA / "openbookqa/openbookqa_dev_subset.jsonl"), str(DATA / "mmlu/test_dev_subset.jsonl")
    tqa = str(DATA / "truthfulqa/truthfulqa_dev_subset.jsonl")
    return [
        T(name="arc_style_2shot", file=obqa, preset="openbookqa", fewshot=2, limit=20),  # lm-eval's sampler
        T(name="hellaswag_obqa", file=obqa, preset="hellaswag_obqa", limit=20),
        T(name="hellaswag", file=_hellaswag_file(tmp), preset="hellaswag", fewshot=1, limit=20),
        T(name="mmlu_0shot", file=mmlu, preset="mmlu", limit=20),
        T(name="mmlu_2shot", file=mmlu, preset="mmlu", fewshot=2, fewshot_file=str(DATA / "mmlu/dev.jsonl"),
          limit=20),
        T(name="truthfulqa_mc1", file=tqa, preset="truthfulqa_mc1", limit=12),
        T(name="truthfulqa_mc2", file=tqa, preset="truthfulqa_mc2", limit=12),
    ]


def test_mcq_presets_choose_what_lm_eval_chooses(tiny, tmp_path):
    from tuneforge.eval.lmeval import run_lmeval
    from tuneforge.eval.mcq import McqScorer, mc2_score
    from tuneforge.eval.tasks import load_samples, resolve_task

    model, tok = tiny
    tasks = _mcq_tasks(tmp_path)
    theirs = run_lmeval(model, tok, tasks, batch_size=8)
    for t in tasks:
        samples = load_samples(resolve_task(t))
        ours = McqScorer(model, tok, batch_size=8).score(samples)
        ref = theirs[t.name]
        assert len(ours) == ref["n"], t.name
        if t.preset == "truthfulqa_mc2":  # lm-eval's own MC2 scoring on our log-likelihoods' choices
            mc2 = sum(mc2_score(o.loglikelihoods, s.gold_labels) for o, s in zip(ours, samples)) / len(ours)
            assert mc2 == pytest.approx(ref["acc"], abs=1e-3), t.name
        assert [o.pred for o in ours] == ref["pred"], t.name
        assert [o.pred_norm for o in ours] == ref["pred_norm"], t.name
        worst = max(abs(x - y) for a, b in zip(ours, ref["loglikelihoods"]) for x, y in zip(a.loglikelihoods, b))
        assert worst < 1e-2, (t.name, worst)


def test_generation_presets_generate_what_lm_eval_generates(tiny, tmp_path):
    from tuneforge.config.evaluation import EvalTaskConfig as T
    from tuneforge.eval.generate import GenSettings, generate, score_generations
    from tuneforge.eval.lmeval import run_lmeval
    from tuneforge.eval.tasks import load_samples, resolve_task

    model, tok = tiny
    gsm = T(name="gsm8k", file=str(DATA / "gsm8k/test_dev_subset.jsonl"), preset="gsm8k", fewshot=2,
            fewshot_file=str(DATA / "gsm8k/train.jsonl"), limit=5, max_new_tokens=16)
    rows = [json.loads(x) for x in (DATA / "gsm8k/test_dev_subset.jsonl").read_text().splitlines()[:5]]
    generic = tmp_path / "qa.jsonl"
    generic.write_text("".join(json.dumps({"input": f"Q: {r['question']}\nA:", "target": r["answer"]}) + "\n"
                               for r in rows))
    until = T(name="generate_until", file=str(generic), preset="generate_until", max_new_tokens=12, fewshot=1)
    theirs = run_lmeval(model, tok, [gsm, until], batch_size=4)
    for t in (gsm, until):
        spec = resolve_task(t)
        samples = load_samples(spec)
        outs = generate(model, tok, samples, GenSettings(batch_size=4), stop=spec.stop,
                        max_new_tokens=spec.max_new_tokens)
        ref = theirs[t.name]
        assert outs == [o.strip() for o in ref["outputs"]], t.name
        assert len(set(outs)) > 1, t.name  # a random model still says different things
        if t.preset == "gsm8k":
            summary, _ = score_generations(spec, samples, outs)
            assert summary["strict_match"] == pytest.approx(ref["metrics"]["exact_match,strict-match"])
            assert summary["flexible_extract"] == pytest.approx(ref["metrics"]["exact_match,flexible-extract"])
