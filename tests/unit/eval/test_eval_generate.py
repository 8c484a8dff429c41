import json

import pytest

from tuneforge.config.evaluation import EvalTaskConfig
from tuneforge.eval import metrics as M
from tuneforge.models.generate import cut_at_stop
from tuneforge.eval.generate import (GenSettings, corpus_stats, generate, score_from_stats,
                                     score_generations)
from tuneforge.eval.tasks import GenSample, TaskSpec, resolve_task


def _spec(**kw) -> TaskSpec:
    return resolve_task(EvalTaskConfig(file="x.jsonl", type="generate", prompt="{q}", target="a", **kw))


def _samples(refs):
    return [GenSample(str(i), "f", i + 1, "p", r) for i, r in enumerate(refs)]


def test_cut_at_stop():
    assert cut_at_stop("42\nQuestion: next", ["Question:", "\n\n"]) == "42\n"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"


def test_gsm8k_preset_scores_like_lm_eval():
    spec = resolve_task(EvalTaskConfig(file="x.jsonl", preset="gsm8k"))
    assert (spec.fewshot, spec.fewshot_sampler, spec.max_new_tokens) == (5, "lm_eval", 256)
    refs = [["so 3 + 4 = 7\n#### 7"], ["5 * 240 = 1200\n#### 1,200"], ["#### 5"]]
    outs = ["3 + 4 = 7\n#### 7", "The answer is 1,200.", "I do not know"]
    summary, per = score_generations(spec, _samples(refs), outs)
    assert summary == {"strict_match": pytest.approx(1 / 3), "flexible_extract": pytest.approx(2 / 3)}
    assert [p["scores"]["flexible_extract"] for p in per] == [1.0, 1.0, 0.0]


def test_gsm8k_style_number_accuracy():
    spec = resolve_task(EvalTaskConfig(file="x.jsonl", preset="gsm8k", metrics=["accuracy"], extract="number"))
    refs = [["so 3 + 4 = 7\n#### 7"], ["#### 1,200"], ["#### 5"]]
    outs = ["3 + 4 = 7. The answer is 7.", "It costs $1,200.00 in total", "I do not know"]
    summary, per = score_generations(spec, _samples(refs), outs)
    assert summary == {"accuracy": pytest.approx(2 / 3)}
    assert [p["extracted"] for p in per] == ["7", "1200", ""]
    assert [p["scores"]["accuracy"] for p in per] == [1.0, 1.0, 0.0]


def test_em_f1_rouge_and_corpus_metrics():
    spec = _spec(metrics=["exact_match", "f1", "rouge", "bleu", "chrf", "ter"])
    refs = [["The Eiffel Tower"], ["Paris", "in Paris"], [""]]
    outs = ["eiffel tower", "Paris, France", ""]
    summary, per = score_generations(spec, _samples(refs), outs)
    assert summary["exact_match"] == pytest.approx(M.exact_match(outs, refs)) == pytest.approx(2 / 3)
    assert summary["f1"] == pytest.approx(M.token_f1(outs, refs))
    assert summary["rouge1"] == pytest.approx(M.rouge(outs, refs)["rouge1"])
    for name in ("bleu", "chrf", "ter"):
        summed = [sum(col) for col in zip(*[p["stats"][name] for p in per])]
        assert score_from_stats(name, summed) == pytest.approx(summary[name])
        assert summary[name] == pytest.approx(getattr(M, name)(outs, refs))


def test_corpus_stats_sum_to_the_corpus_score():
    hyps = ["a man is riding a horse", "two dogs play in the snow", "a child eats"]
    refs = [["a man rides a horse"], ["two dogs are playing in snow"], ["a kid is eating"]]
    for name in ("bleu", "chrf", "ter"):
        rows = corpus_stats(name, hyps, refs)
        assert len(rows) == 3
        assert score_from_stats(name, [sum(c) for c in zip(*rows)]) == pytest.approx(getattr(M, name)(hyps, refs))


@pytest.fixture(scope="module")
def lm(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AutoTokenizer.from_pretrained(tiny_llama)


PROMPTS = ["Question: What is two plus two?\nAnswer:", "The capital of France is",
           "Translate English to German.\nEnglish: A dog runs.\nGerman:", "Hi"]


def test_greedy_generation_is_batch_invariant_and_cut(lm):
    """Left padding + attention mask must not change greedy outputs (padding bugs show up here)."""
    model, tok = lm
    samples = [GenSample(str(i), "f", i, p, ["x"]) for i, p in enumerate(PROMPTS)]
    one = generate(model, tok, samples, GenSettings(batch_size=1, max_new_tokens=8))
    four = generate(model, tok, samples, GenSettings(batch_size=4, max_new_tokens=8))
    assert one == four and any(one)
    # reference: plain HF greedy decode of the first prompt, unbatched
    ids = tok(PROMPTS[0], return_tensors="pt")
    ref = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert one[0] == tok.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    stop = one[1][1:3] or one[1][:1]
    cut = generate(model, tok, samples[1:2], GenSettings(max_new_tokens=8), stop=[stop])
    assert stop not in cut[0] and one[1].startswith(cut[0])


def test_sampling_is_seeded(lm):
    model, tok = lm
    samples = [GenSample(str(i), "f", i, p, ["x"]) for i, p in enumerate(PROMPTS)]
    s = GenSettings(batch_size=2, max_new_tokens=6, do_sample=True, temperature=1.0, seed=3)
    assert generate(model, tok, samples, s) == generate(model, tok, samples, s)


def test_chat_prompts_use_the_chat_template(lm):
    from tuneforge.eval.generate import encode_prompt

    _, tok = lm
    ids = encode_prompt(tok, GenSample("0", "f", 1, "hello", ["x"], chat=True))
    assert tok.decode(ids).startswith("Human: hello") and tok.decode(ids).endswith("Assistant:")


def test_chat_prompts_carry_the_runs_system_prompt(lm):
    """A run tuned with data.system is evaluated with the same system turn (else generation tasks would ask it
    differently from how it was taught)."""
    from tuneforge.eval.generate import encode_prompt

    _, tok = lm
    sample = GenSample("0", "f", 1, "hello", ["x"], chat=True)
    plain = tok.decode(encode_prompt(tok, sample))
    with_system = tok.decode(encode_prompt(tok, sample, system="Answer in German."))
    assert "Answer in German." in with_system and "Answer in German." not in plain
    assert with_system.endswith(plain.split("hello")[-1])


def test_chat_few_shot_examples_are_turns(tmp_path, lm):
    """A chat model gets each solved example as a user turn and its assistant reply (lm-eval's fewshot_as_multiturn),
    not as text glued into one user message; the description opens the first turn."""
    from tuneforge.data.templates import render_prompt
    from tuneforge.eval.generate import encode_prompt
    from tuneforge.eval.tasks import load_samples, resolve_task

    _, tok = lm
    rows = [{"q": f"question {i}", "a": f"answer {i}"} for i in range(4)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = EvalTaskConfig(file=str(path), type="generate", prompt="{q}", target="a", chat=True, fewshot=2,
                          fewshot_sampler="first_n", description="Answer briefly.\n")
    samples = load_samples(resolve_task(task))
    last = samples[3]
    assert last.prompt == "question 3"
    assert last.turns == [("Answer briefly.\nquestion 0", "answer 0"), ("question 1", "answer 1")]
    expected = render_prompt(tok, [{"role": "user", "content": "Answer briefly.\nquestion 0"},
                                   {"role": "assistant", "content": "answer 0"},
                                   {"role": "user", "content": "question 1"},
                                   {"role": "assistant", "content": "answer 1"},
                                   {"role": "user", "content": "question 3"}])
    assert encode_prompt(tok, last) == expected
    plain = load_samples(resolve_task(task.model_copy(update={"chat": False})))[3]
    assert not plain.turns and plain.prompt.startswith("Answer briefly.\nquestion 0 answer 0")
