"""The one generation loop: batch invariance, stop ids, the streaming hook, encoder-decoders, train mode restored."""

from __future__ import annotations

import pytest
import torch

from tuneforge.models.generate import Sampling, generate_ids, generate_text, stream_text


@pytest.fixture(scope="module")
def lm(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AutoTokenizer.from_pretrained(tiny_llama)


def _prompts(tok):
    return [tok.encode(t) for t in ("The capital of France is", "Hi", "one two three four five six")]


def test_rows_stop_at_a_stop_id_and_batches_match_single_rows(lm):
    model, tok = lm
    prompts = _prompts(tok)
    free = generate_ids(model, prompts, pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=8), batch_size=1)
    assert all(len(r) == 8 for r in free)  # a random tiny model does not emit eos within 8 tokens here
    stop = free[0][3]
    cut = generate_ids(model, prompts, pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=8),
                       stop_ids=[stop], batch_size=3)
    assert cut[0] == free[0][: free[0].index(stop)]  # cut before the stop id, batched like the single run
    for full, short in zip(free[1:], cut[1:]):
        assert short == (full[: full.index(stop)] if stop in full else full)


def test_streaming_hook_sees_exactly_the_final_tokens(lm):
    model, tok = lm
    prompt = _prompts(tok)[0]
    pieces: list[str] = []
    final = stream_text(model, tok, prompt, sampling=Sampling(max_new_tokens=10), on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == final
    assert final.strip() == generate_text(model, tok, [prompt], sampling=Sampling(max_new_tokens=10))[0]


def test_training_mode_is_restored(lm):
    model, tok = lm
    model.train()
    generate_ids(model, _prompts(tok)[:1], pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=2))
    assert model.training
    model.eval()


def test_encoder_decoder_prompts_are_right_padded_and_start_token_dropped():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                                num_heads=2, decoder_start_token_id=0, pad_token_id=0,
                                                eos_token_id=1)).eval()
    prompts = [[5, 6, 7, 8, 9, 1], [10, 11, 1]]
    one = [generate_ids(model, [p], pad_id=0, sampling=Sampling(max_new_tokens=5))[0] for p in prompts]
    both = generate_ids(model, prompts, pad_id=0, sampling=Sampling(max_new_tokens=5), batch_size=2)
    assert both == one and all(len(r) <= 5 for r in both) and any(both)
    ref = model.generate(input_ids=torch.tensor([prompts[0]]), max_new_tokens=5, do_sample=False)[0, 1:].tolist()
    assert one[0] == [t for t in ref if t != 0][: len(one[0])]
