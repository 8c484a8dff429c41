"""The shared-prompt DPO forward equals TRL's padded fused head: log-probs, metrics fields and gradients."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from transformers import AutoModelForCausalLM  # noqa: E402
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402
from trl.trainer.utils import add_fused_lm_head  # noqa: E402

from tuneforge.train.shared_prompt import install_shared_prompt_head, pack_pairs  # noqa: E402

OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")


def _pairs(vocab: int, seed: int = 0):
    """Pairs with prompts and answers of different lengths (one answer a single token, one prompt a single token)."""
    g = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    shapes = [(7, 5, 9), (1, 3, 1), (12, 8, 8), (4, 1, 6)]
    return [{"prompt_ids": ids(p), "chosen_ids": ids(c), "rejected_ids": ids(r)} for p, c, r in shapes]


def _batch(vocab: int):
    batch = DataCollatorForPreference(pad_token_id=0)(_pairs(vocab))
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, labels


def _model(path: str, lora: bool):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    if lora:
        from peft import LoraConfig, get_peft_model

        # init_lora_weights=False: a non-zero B, so the adapter changes the outputs and disabling it matters
        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    return model


def _run(model, inputs, labels):
    model.zero_grad()
    out = model(**inputs, labels=labels, use_cache=False, fused_lm_head=True)
    (out.log_probs.sum() + 0.1 * out.entropy.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_qwen2"])
@pytest.mark.parametrize("lora", [False, True])
def test_shared_prompt_forward_equals_the_padded_fused_head(arch, lora, request):
    model = _model(request.getfixturevalue(arch), lora)
    base = model.get_base_model() if lora else model
    add_fused_lm_head(base, outputs=OUTPUTS)
    inputs, labels = _batch(base.config.vocab_size)
    want, want_grads = _run(model, inputs, labels)
    assert install_shared_prompt_head(base, OUTPUTS)
    got, got_grads = _run(model, inputs, labels)

    assert got.log_probs.shape == want.log_probs.shape
    for name in OUTPUTS:
        a, b = getattr(got, name), getattr(want, name)
        if name == "is_top1":
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
    assert torch.equal(got.label_mask, want.label_mask)
    assert set(got_grads) == set(want_grads) and got_grads
    for n in want_grads:
        torch.testing.assert_close(got_grads[n], want_grads[n], atol=2e-5, rtol=1e-3, msg=n)
    if lora:  # the reference pass of a LoRA policy: the same model with the adapter disabled
        with torch.no_grad(), model.disable_adapter():
            ref = model(**inputs, labels=labels, use_cache=False, fused_lm_head=True).log_probs
        assert not torch.allclose(ref, got.log_probs, atol=1e-3)
        base.forward = base.__class__.forward.__get__(base)  # back to the plain model: TRL's head again
        add_fused_lm_head(base, outputs=OUTPUTS)
        with torch.no_grad(), model.disable_adapter():
            torch.testing.assert_close(ref, model(**inputs, labels=labels, use_cache=False,
                                                  fused_lm_head=True).log_probs, atol=2e-5, rtol=1e-4)


def test_pack_pairs_layout_and_refusals():
    inputs, labels = _batch(50)
    ids, pos, source = pack_pairs(inputs["input_ids"], inputs["attention_mask"], labels)
    # prompt + chosen + rejected per pair, no padding
    assert ids.shape[1] == sum(p + c + r for p, c, r in [(7, 5, 9), (1, 3, 1), (12, 8, 8), (4, 1, 6)])
    assert pos[0, :21].tolist() == list(range(12)) + list(range(7, 16))  # pair 1: the rejected branch restarts at 7
    assert int((source >= 0).sum()) == int((labels[:, 1:] != -100).sum())
    # every scored token is predicted by the packed state whose next token is that token
    for r, t in torch.nonzero(source >= 0).tolist():
        assert ids[0, source[r, t] + 1] == labels[r, t + 1] or pos[0, source[r, t]] + 1 == pos[0, source[r, t] + 1]

    bad = labels.clone()
    bad_ids = inputs["input_ids"].clone()
    bad_ids[4, 0] = (bad_ids[4, 0] + 1) % 50  # the rejected row's prompt differs from its chosen row's
    assert pack_pairs(bad_ids, inputs["attention_mask"], bad) is None
    assert pack_pairs(inputs["input_ids"][:3], inputs["attention_mask"][:3], labels[:3]) is None  # odd rows
    left = inputs["attention_mask"].flip(1)  # left padding is not the collator's layout
    assert pack_pairs(inputs["input_ids"], left, labels) is None


def test_a_batch_that_is_not_pairs_goes_to_trl_head(tiny_llama):
    model = _model(tiny_llama, lora=False)
    add_fused_lm_head(model, outputs=OUTPUTS)
    inputs, labels = _batch(model.config.vocab_size)
    inputs["input_ids"] = inputs["input_ids"].clone()
    inputs["input_ids"][4, 0] = (inputs["input_ids"][4, 0] + 1) % model.config.vocab_size
    labels = inputs["input_ids"].masked_fill(labels == -100, -100)
    with torch.no_grad():
        want = model(**inputs, labels=labels, fused_lm_head=True).log_probs
        install_shared_prompt_head(model, OUTPUTS)
        got = model(**inputs, labels=labels, fused_lm_head=True).log_probs
    torch.testing.assert_close(got, want)


def test_an_attention_that_ignores_branches_keeps_trl_head(tiny_llama, monkeypatch):
    """The install-time probe: stock SDPA without a mask would let the rejected answer see the chosen one; the probe
    notices and TRL's head stays."""
    from tuneforge.train import shared_prompt

    monkeypatch.setattr(shared_prompt, "use_varlen_attention", lambda model: True)  # claims, but does not switch
    model = _model(tiny_llama, lora=False)
    add_fused_lm_head(model, outputs=OUTPUTS)
    trl_forward = model.forward
    assert not install_shared_prompt_head(model, OUTPUTS)
    assert model.forward is trl_forward
