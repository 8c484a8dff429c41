import pytest
import torch

from tuneforge.eval.mcq import McqScorer, summarize, _result
from tuneforge.eval.tasks import McqSample


@pytest.fixture(scope="module")
def lm(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama)


SAMPLES = [
    McqSample("0", "f", 1, "Question: What happens as water levels rise?\nAnswer:",
              ["fish swim more", "homes are built", "land is taller", "beaches shrink"], 3),
    McqSample("1", "f", 2, "The sun is a", ["star", "planet made of cheese", "moon"], 0),
    McqSample("2", "f", 3, "Answer with a letter. Which is a mammal?\nA. trout\nB. whale\nAnswer:", ["A", "B"], 1),
    McqSample("3", "f", 4, "Pick one  ", ["x y z", "the quick brown fox jumps"], 1),  # trailing spaces
]


def brute_force(model, tok, context, continuation):
    """Log-likelihood of continuation given context, one plain forward pass (lm-eval's definition)."""
    ctx = context.rstrip()
    cont = context[len(ctx):] + continuation
    ctx_ids = tok.encode(ctx)
    cont_ids = tok.encode(ctx + cont)[len(ctx_ids):]
    ids = torch.tensor([ctx_ids + cont_ids])
    with torch.no_grad():
        logp = model(ids).logits[0].log_softmax(-1)
    return sum(logp[len(ctx_ids) - 1 + j, t].item() for j, t in enumerate(cont_ids))


@pytest.mark.parametrize("mode,batch", [("shared", 1), ("shared", 3), ("separate", 2), ("separate", 16)])
def test_loglikelihoods_match_a_plain_forward(lm, mode, batch):
    model, tok = lm
    scores = McqScorer(model, tok, batch_size=batch, mode=mode).score(SAMPLES)
    for s, r in zip(SAMPLES, scores):
        want = [brute_force(model, tok, s.context, " " + c) for c in s.choices]
        assert r.loglikelihoods == pytest.approx(want, abs=2e-3)
    # a random model still separates the choices clearly, so equal log-likelihoods would mean a bug
    assert len({round(x, 2) for x in scores[0].loglikelihoods}) == 4


def test_encode_moves_trailing_space_and_handles_empty_context(lm):
    _, tok = lm
    sc = McqScorer(lm[0], tok)
    e = sc.encode("Pick one ", ["yes"])
    assert e.context == tok.encode("Pick one")
    assert e.continuations[0] == tok.encode("Pick one yes")[len(e.context):]
    e = sc.encode("", [" hello world"])
    assert e.context == [tok.bos_token_id] and e.continuations[0] == tok.encode(" hello world", add_special_tokens=False)


def _forward_ll(model, ids, n_cont):
    with torch.no_grad():
        logp = model(torch.tensor([ids[:-1]])).logits[0].log_softmax(-1)
    return sum(logp[len(ids) - 1 - n_cont + j, t].item() for j, t in enumerate(ids[-n_cont:]))


def test_truncation_keeps_the_end_of_the_context(lm):
    model, tok = lm
    s = McqSample("t", "f", 1, "word " * 80 + "and finally the answer is", ["yes", "no thanks a lot"], 0)
    sc = McqScorer(model, tok, mode="shared", max_length=24)
    enc = sc.encode(s.context, [" " + c for c in s.choices])
    longest = max(len(c) for c in enc.continuations)
    assert longest > 1 and len(enc.context) > 24
    r_shared, = sc.score([s])
    r_sep, = McqScorer(model, tok, mode="separate", max_length=24).score([s])
    for i, cont in enumerate(enc.continuations):
        # shared: one cut for all choices so the longest fits; separate: lm-eval's per-choice cut
        shared_ids = enc.context[-(25 - longest):] + cont
        assert r_shared.loglikelihoods[i] == pytest.approx(_forward_ll(model, shared_ids, len(cont)), abs=2e-3)
        sep_ids = (enc.context + cont)[-25:]
        assert r_sep.loglikelihoods[i] == pytest.approx(_forward_ll(model, sep_ids, len(cont)), abs=2e-3)


class IgnoresCustomMasks(torch.nn.Module):
    """A model whose attention silently ignores 4D masks (plain causal attention)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config

    @property
    def device(self):
        return self.inner.device

    @property
    def dtype(self):
        return self.inner.dtype

    def forward(self, input_ids, attention_mask=None, **kw):
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = None
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kw)


def test_auto_falls_back_when_the_model_ignores_the_mask(lm, caplog):
    model, tok = lm
    wrapped = IgnoresCustomMasks(model)
    sc = McqScorer(wrapped, tok, mode="auto")
    scores = sc.score(SAMPLES)
    assert sc.mode == "separate" and "one row per choice" in caplog.text
    ref = McqScorer(model, tok, mode="separate").score(SAMPLES)
    assert [r.pred for r in scores] == [r.pred for r in ref]
    good = McqScorer(model, tok, mode="auto")
    good.score(SAMPLES)
    assert good.mode == "shared"


def test_acc_norm_divides_by_characters():
    s = McqSample("x", "f", 1, "c", ["ab", "abcdefgh"], 1)
    r = _result(s, [-2.0, -4.0], [False, False])
    assert (r.pred, r.pred_norm, r.acc, r.acc_norm) == (0, 1, 0.0, 1.0)
    assert summarize([r, r]) == {"acc": 0.0, "acc_norm": 1.0}


HEAD = "The following are multiple choice questions (with answers) about the sun and the sea.\n\n"
SHARED_HEAD = [McqSample(str(i), "f", i, HEAD + q, ch, 0) for i, (q, ch) in enumerate([
    ("What is the sun?\nAnswer:", ["a star", "a planet", "a moon made of rock"]),
    ("What is in the sea?\nAnswer:", ["water", "sand and stones"]),
    ("What colour is the sea?\nA. blue\nB. red\nAnswer:", ["A", "B"]),
    ("Is the sun hot?\nAnswer:", ["yes", "no", "only at night"]),
])]


def test_prefix_groups_share_long_heads_only():
    from tuneforge.eval.prefix import prefix_groups

    head = list(range(100, 130))
    ctxs = [head + [1, 2, 3], head + [1, 2, 4], head + [5], [7] * 20, [8] * 3]
    groups = prefix_groups(ctxs)
    assert {tuple(sorted(m)): p for p, m in groups} == {(0, 1, 2): 30, (3,): 0, (4,): 0}
    # the prefix always leaves one context token to predict the first answer token
    assert prefix_groups([head, head + [1]]) == [(29, [0, 1])]


@pytest.mark.parametrize("batch", [1, 3])
def test_cached_prefix_gives_the_same_loglikelihoods(lm, batch):
    model, tok = lm
    sc = McqScorer(model, tok, batch_size=batch, mode="shared")
    plan = list(sc._plan([sc.encode(s.context, [" " + c for c in s.choices]) for s in SHARED_HEAD]))
    assert all(p and all(x and x[0] >= 10 for x in p) for p, _ in plan)  # the head really is reused
    cached = sc.score(SHARED_HEAD)
    for s, r in zip(SHARED_HEAD, cached):
        want = [brute_force(model, tok, s.context, " " + c) for c in s.choices]
        assert r.loglikelihoods == pytest.approx(want, abs=2e-3)


def test_the_shared_scoring_check_runs_once_per_model(lm, monkeypatch):
    from tuneforge.eval import mcq

    model, tok = lm
    calls = []
    real = McqScorer._check_shared
    monkeypatch.setattr(McqScorer, "_check_shared", lambda self, enc: calls.append(1) or real(self, enc))
    monkeypatch.setattr(mcq, "_VERDICTS", type(mcq._VERDICTS)())
    first = McqScorer(model, tok, mode="auto")
    first.score(SAMPLES)
    second = McqScorer(model, tok, mode="auto")
    second.score(SAMPLES[:2])
    assert len(calls) == 1 and (second.mode, second.prefix_cache) == (first.mode, first.prefix_cache)
    McqScorer(IgnoresCustomMasks(model), tok, mode="auto").score(SAMPLES)  # another model object: checked again
    assert len(calls) == 2


def test_questions_without_a_shared_prefix_share_forwards(lm):
    """Lone contexts are batched together (a regression ran one forward per question)."""
    model, tok = lm
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        McqScorer(model, tok, mode="shared", batch_size=8).score(SAMPLES)
        assert len(calls) == 1
        calls.clear()
        McqScorer(model, tok, mode="shared", batch_size=2).score(SAMPLES)
        assert len(calls) == 3  # the longest row goes alone (token budget), the other three in two forwards
    finally:
        hook.remove()


def test_questions_of_different_heads_share_a_batch(lm):
    """Heads that fit in memory together are all cached; batches mix questions of different heads (and none), each
    row continuing after its own head, with the same log-likelihoods as full forwards."""
    model, tok = lm
    other = "Here are questions about the moon, the planets and the stars, with answers.\n\n"
    samples = SHARED_HEAD + [McqSample(str(9 + i), "f", 9 + i, other + q, ch, 0) for i, (q, ch) in enumerate([
        ("What is the moon?\nAnswer:", ["a rock", "a star"]), ("Is Mars red?\nAnswer:", ["yes", "no"])])]
    samples.append(McqSample("20", "f", 20, "No head here at all?\nAnswer:", ["right", "wrong"], 0))
    sc = McqScorer(model, tok, batch_size=8, mode="shared", batch_tokens=10**6)
    plan = list(sc._plan([sc.encode(s.context, [" " + c for c in s.choices]) for s in samples]))
    assert len(plan) == 1 and len({p[0] for p in plan[0][0] if p}) == 2 and None in plan[0][0]
    for s, r in zip(samples, sc.score(samples)):
        want = [brute_force(model, tok, s.context, " " + c) for c in s.choices]
        assert r.loglikelihoods == pytest.approx(want, abs=2e-3)


def test_long_rows_go_in_smaller_batches(lm):
    """Default token budget: batch_size rows of the mean length; a few long rows don't pad a batch of short ones."""
    model, tok = lm
    sc = McqScorer(model, tok, batch_size=4, mode="shared", prefix_cache=False)
    samples = [McqSample(str(i), "f", i, ("word " * n) + "?", ["a", "b"], 0) for i, n in
               enumerate([60, 5, 6, 5, 7, 6, 5, 6])]
    plan = list(sc._plan([sc.encode(s.context, [" " + c for c in s.choices]) for s in samples]))
    assert [len(b) for _, b in plan] == [1, 4, 3] and plan[0][1] == [0]
    big = McqScorer(model, tok, batch_size=4, mode="shared", prefix_cache=False, batch_tokens=10**6)
    assert [len(b) for _, b in big._plan([big.encode(s.context, [" " + c for c in s.choices]) for s in samples])
            ] == [4, 4]


def test_a_short_head_is_not_worth_splitting_batches_for_when_heads_are_scored_one_at_a_time(lm, monkeypatch):
    """Over the memory budget, heads are scored one group at a time; then a prefix under MIN_PREFIX_SHARE of its
    rows is scored in full, in one batch with everything else."""
    from tuneforge.eval import prefix

    monkeypatch.setattr(prefix, "PREFIX_BUDGET_BYTES", 0)
    model, tok = lm
    long_tail = " ".join(["the waves and the tides and the currents of the open sea"] * 4)
    samples = [McqSample(str(i), "f", i, HEAD + f"{q} {long_tail}?\nAnswer:", ["yes", "no"], 0)
               for i, q in enumerate(["Why", "How", "When", "Where"])]
    sc = McqScorer(model, tok, batch_size=8, mode="shared")
    plan = list(sc._plan([sc.encode(s.context, [" " + c for c in s.choices]) for s in samples]))
    assert [(p, len(b)) for p, b in plan] == [(None, 4)]
    plan = list(sc._plan([sc.encode(s.context, [" " + c for c in s.choices]) for s in SHARED_HEAD]))
    assert len(plan) == 1 and all(p and p[1] is plan[0][0][0][1] for p in plan[0][0])  # a long head: reused
