"""Preference tasks on a tiny random Llama: batched scoring equals one sequence at a time (and a plain forward),
what a target without reference reports, dropped pairs in the results, file:line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.evaluation import EvalConfig
from tuneforge.config.schema import ModelConfig
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.logprobs import sequence_scores
from tuneforge.eval.mcq import Encoded, McqScorer
from tuneforge.eval.run import Target, evaluate, prepare_tasks


def _model(path, auto=None, **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = (auto or AutoModelForCausalLM).from_pretrained(path, **kw).eval()
    return model, tok


def _sequences(tok) -> list[tuple[list[int], list[int]]]:
    texts = [("Question: what is one plus one?\nAnswer:", " two"),
             ("Hi", " The quick brown fox jumps over the lazy dog again and again."),
             ("Which number is prime, the first or the second one of these?", " 7"),
             ("Say something.", " one two three four five six")]
    return [(tok.encode(p), tok.encode(a, add_special_tokens=False)) for p, a in texts]


def _plain(model, prompt, answer) -> float:
    """Sum of answer log-probs from one unpadded forward of prompt + answer."""
    import torch

    ids = torch.tensor([prompt + answer])
    with torch.inference_mode():
        logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
    return float(sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(answer)))


def _answer_logprobs(model, tok, seqs, batch_size):
    """What preference tasks score: each answer's summed log-probs after its prompt, by the MCQ scorer."""
    lls, _ = McqScorer(model, tok, batch_size=batch_size).score_encoded([Encoded(list(p), [list(a)]) for p, a in seqs])
    return [ll[0] for ll in lls]


def test_batched_answer_logprobs_equal_one_by_one_and_a_plain_forward(tiny_llama):
    model, tok = _model(tiny_llama)
    seqs = _sequences(tok)
    assert len({len(p) + len(a) for p, a in seqs}) == len(seqs)  # different lengths: real padding in the batch
    batched = _answer_logprobs(model, tok, seqs, batch_size=8)
    alone = [_answer_logprobs(model, tok, [s], batch_size=1)[0] for s in seqs]
    plain = [_plain(model, p, a) for p, a in seqs]
    assert batched == pytest.approx(alone, abs=1e-4) and batched == pytest.approx(plain, abs=1e-4)
    assert len({round(x, 3) for x in batched}) == len(seqs)  # distinct values, not a constant


def test_batched_reward_scores_equal_one_by_one(tiny_llama):
    from transformers import AutoModelForSequenceClassification

    model, tok = _model(tiny_llama, AutoModelForSequenceClassification, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    seqs = [p + a for p, a in _sequences(tok)]
    batched = sequence_scores(model, tok, seqs, batch_size=8)
    alone = [sequence_scores(model, tok, [s], batch_size=1)[0] for s in seqs]
    assert batched == pytest.approx(alone, abs=1e-4) and len({round(x, 4) for x in batched}) == len(seqs)


def _pairs(path: Path, extra: list[dict] = ()) -> str:
    rows = [{"prompt": f"Name {i} fruit.", "chosen": "apple banana", "rejected": f"dragon {i} kettle"}
            for i in range(5)]
    rows.insert(2, {"instruction": "Name a fruit.", "input": "", "chosen": "cherry", "rejected": "mirror"})  # alpaca
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *extra]), encoding="utf-8")
    return str(path)


def _eval(tmp_path, model_path, **task) -> dict:
    cfg = EvalConfig(tasks=[{"name": "pref", "type": "preference", **task}], bootstrap_samples=50, progress="off")
    target = Target("tiny", ModelConfig(path=str(model_path)), tmp_path / "out")
    return evaluate(target, cfg, log=lambda m: None)


def test_no_reference_reports_loglikelihood_accuracy_only_and_counts_drops(tiny_llama, tmp_path):
    file = _pairs(tmp_path / "pairs.jsonl", [{"prompt": "Same.", "chosen": "x y", "rejected": "x y"},
                                             {"prompt": "Empty.", "chosen": "ok", "rejected": " "}])
    res = _eval(tmp_path, tiny_llama, file=file)["tasks"]["pref"]
    assert list(res["metrics"]) == ["logp_acc"] and res["main"] == "logp_acc" and res["scoring"] == "log-likelihood"
    assert res["n"] == 6 and res["pairs_read"] == 6
    assert res["dropped"] == {"identical_pair": 1, "empty_response": 1}
    recs = [json.loads(x) for x in (tmp_path / "out" / "predictions" / "pref.jsonl").read_text().splitlines()]
    assert res["metrics"]["logp_acc"] == sum(r["logp_chosen"] > r["logp_rejected"] for r in recs) / 6
    assert recs[2]["line"] == 3 and recs[2]["prompt"][-1]["content"] == "Name a fruit."
    md = (tmp_path / "out" / "results.md").read_text()
    assert "no reference" in md and "identical pair 1" in md and "empty response 1" in md


def test_a_reference_equal_to_the_model_gives_zero_rewards(tiny_llama, tmp_path):
    res = _eval(tmp_path, tiny_llama, file=_pairs(tmp_path / "pairs.jsonl"), reference=str(tiny_llama), beta=0.5)
    t = res["tasks"]["pref"]
    assert list(t["metrics"]) == ["reward_acc", "reward_margin", "logp_acc"] and t["beta"] == 0.5
    assert t["metrics"]["reward_acc"] == 0.0 and t["metrics"]["reward_margin"] == pytest.approx(0.0, abs=1e-5)


def test_a_bad_pair_is_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                    + json.dumps({"prompt": "a", "chosen": "b"}) + "\n", encoding="utf-8")
    cfg = EvalConfig(tasks=[{"file": str(path), "type": "preference"}])
    with pytest.raises(DataError) as e:
        prepare_tasks(cfg)
    assert str(e.value).startswith(f"{path}:2: missing field 'rejected'") and "\n" not in str(e.value)


def test_prompt_fields_do_not_apply_to_a_preference_task(tmp_path):
    cfg = EvalConfig(tasks=[{"file": _pairs(tmp_path / "p.jsonl"), "type": "preference", "prompt": "{x}"}])
    with pytest.raises(ConfigError, match="prompt do not apply"):
        prepare_tasks(cfg)
    cfg = EvalConfig(tasks=[{"file": _pairs(tmp_path / "p.jsonl"), "type": "preference", "metrics": ["acc"]}])
    with pytest.raises(ConfigError, match="acc do not apply"):
        prepare_tasks(cfg)
