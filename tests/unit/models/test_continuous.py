"""Continuous batching with a shared prompt head (`models/continuous.py`) decodes exactly what plain
`model.generate` decodes for each prompt alone: greedy tokens, stop ids, stop strings split across tokens,
max_new_tokens; rows refill while others decode; seeded sampling does not depend on the batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tuneforge.models.continuous import (
    StopStrings,
    can_decode_continuously,
    generate_continuous,
    lookup_draft,
    shared_prefix_len,
)
from tuneforge.models.decoding import DecodeBatch
from tuneforge.models.generate import Sampling, cut_at_stop, generate_ids, generate_text

HEAD = "Reverse the word. Sort the letters. Count the items. Repeat after me. " * 3
QUESTIONS = ["apple banana", "one two three four five six seven eight nine", "Hi", "0 1 2 + 3 = ?",
             "lemon mirror island jungle kettle", "ten", "The answer is"]
NEW = 12


@pytest.fixture(scope="module")
def lm(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture(scope="module")
def prompts(lm):
    _, tok = lm
    return [tok.encode(HEAD + q) for q in QUESTIONS]


def _alone(model, tok, prompt, new=NEW, **kw):
    """Reference: transformers' own generate on one unpadded prompt."""
    x = torch.tensor([prompt])
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False,
                         pad_token_id=tok.pad_token_id, **kw)
    return out[0, x.shape[1]:].tolist()


def test_refilled_rows_over_a_shared_head_match_generate_alone(lm, prompts):
    model, tok = lm
    head = shared_prefix_len(prompts)
    assert head >= 32 and head < min(map(len, prompts))
    assert can_decode_continuously(model, Sampling(max_new_tokens=NEW), prompts)
    fed = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: fed.append(kw["input_ids"].numel()), with_kwargs=True)
    try:
        got = generate_ids(model, prompts, pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=NEW),
                           batch_size=3)
    finally:
        hook.remove()
    assert got == [_alone(model, tok, p) for p in prompts]
    # the head went through the model once, each row's own suffix once, then one token per row per step
    assert sum(fed) <= head + sum(len(p) - head for p in prompts) + NEW * len(prompts) < sum(map(len, prompts))


def test_stop_ids_and_stop_strings_split_across_tokens(lm, prompts):
    model, tok = lm
    ref = [_alone(model, tok, p) for p in prompts]
    stop_id = ref[0][3]  # ends row 0 after 3 tokens and any other row that produces it
    got = generate_ids(model, prompts, pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=NEW),
                       stop_ids=[stop_id], batch_size=2)
    assert got == [r[: r.index(stop_id)] if stop_id in r else r for r in ref]
    # a stop string made of the end of one token and the start of the next
    pieces = [tok.decode([t]) for t in ref[1]]
    j = next(j for j in range(1, len(pieces)) if len(pieces[j - 1]) > 1 and pieces[j])
    stop = pieces[j - 1][-1] + pieces[j][0]
    texts = generate_text(model, tok, prompts, sampling=Sampling(max_new_tokens=NEW), stop_strings=[stop],
                          batch_size=3)
    want = [cut_at_stop(tok.decode(r, skip_special_tokens=True), [stop]).strip() for r in ref]
    assert texts == want and texts[1] != tok.decode(ref[1], skip_special_tokens=True).strip()
    # the static path (model.generate with stop_strings) gives the same texts
    static = [tok.decode(r, skip_special_tokens=True) for r in generate_ids(
        model, prompts, pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=NEW), stop_strings=[stop],
        tokenizer=tok, batch_size=3, continuous=False)]
    assert [cut_at_stop(t, [stop]).strip() for t in static] == want


def test_stop_strings_are_found_in_the_tail_and_confirmed_on_the_full_text(lm):
    _, tok = lm
    ids = tok.encode("one two three. Question: four")
    check = StopStrings(tok, ["Question:"])
    cut = next(n for n in range(1, len(ids) + 1) if "Question:" in tok.decode(ids[:n]))
    assert not check.hit(ids[: cut - 1]) and check.hit(ids[:cut])
    assert check.window == len("Question:") + 2


def test_suffix_positions_continue_after_the_head(lm, prompts):
    """A joined row's logits over the cached head equal a full forward; restarting positions at 0 would not."""
    model, tok = lm
    head = shared_prefix_len(prompts)
    batch = DecodeBatch(model, tok.pad_token_id)
    prefix = batch.prefill_prefix(prompts[1][:head])
    batch.join([prompts[1]], prefix=prefix)
    batch.join([prompts[2]], prefix=prefix)  # shorter suffix: left padding between head and suffix, masked
    with torch.inference_mode():
        full = [model(input_ids=torch.tensor([p])).logits[0, -1] for p in prompts[1:3]]
        suffix = torch.tensor([prompts[1][head:]])
        from tuneforge.models.kv_cache import new_cache

        wrong = model(input_ids=suffix, past_key_values=new_cache(model.config, prefix.layers),
                      position_ids=torch.arange(suffix.shape[1]).unsqueeze(0)).logits[0, -1]
    assert torch.allclose(batch.logits[0], full[0], atol=1e-4) and torch.allclose(batch.logits[1], full[1], atol=1e-4)
    assert not torch.allclose(wrong, full[0], atol=1e-2)


def test_seeded_sampling_is_reproducible_whatever_the_batch_size(lm, prompts):
    model, tok = lm
    s = Sampling(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    one = generate_ids(model, prompts, pad_id=tok.pad_token_id, sampling=s, batch_size=1)
    three = generate_ids(model, prompts, pad_id=tok.pad_token_id, sampling=s, batch_size=3)
    other = generate_ids(model, prompts, pad_id=tok.pad_token_id, sampling=replace(s, seed=8), batch_size=3)
    assert one == three and other != one


def test_logit_settings_in_generation_config_keep_the_static_path(lm, prompts):
    model, tok = lm
    model.generation_config.repetition_penalty = 1.5
    try:
        assert not can_decode_continuously(model, Sampling(max_new_tokens=NEW), prompts)
        got = generate_ids(model, prompts[:2], pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=NEW))
        assert got[1] == _alone(model, tok, prompts[1])  # the penalty applied, as model.generate applies it
    finally:
        model.generation_config.repetition_penalty = 1.0


def test_prompt_lookup_drafts_for_a_lone_row_keep_greedy_tokens(lm):
    assert lookup_draft([1, 2, 3, 4, 9, 2, 3], 3) == [4, 9, 2]  # after the latest earlier "2 3"
    assert lookup_draft([5, 6, 7], 3) == []
    model, tok = lm
    prompt = tok.encode("apple banana apple banana apple banana apple")
    fed = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: fed.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        got = generate_ids(model, [prompt], pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=120),
                           batch_size=1)[0]
        drafted = len(fed)
        fed.clear()
        plain = generate_continuous(model, [prompt], pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=120),
                                    lookup=0)[0]
    finally:
        hook.remove()
    assert got == plain == _alone(model, tok, prompt, new=120)
    assert len(fed) == 120 and drafted < 120  # some drafts were accepted: fewer forwards than tokens


def test_a_sliding_window_cache_falls_back_to_static_batches():
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2, num_key_value_heads=1, sliding_window=4,
                                             pad_token_id=0, eos_token_id=1)).eval()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    s = Sampling(max_new_tokens=5)
    assert generate_continuous(model, prompts, pad_id=0, sampling=s) is None  # rows cannot merge
    got = generate_ids(model, prompts, pad_id=0, sampling=s, batch_size=2)
    assert got == generate_ids(model, prompts, pad_id=0, sampling=s, batch_size=2, continuous=False) and any(got)
