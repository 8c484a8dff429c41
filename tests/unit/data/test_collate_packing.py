"""Padding-free packing: collator layout, segment-aware attention, token-budget batches, chunked loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tuneforge.data.batching import TokenBudgetBatchSampler
from tuneforge.data.collate import PackedCollator, PadCollator, make_collator
from tuneforge.data.tokenize import IGNORE
from tuneforge.models.attention import segment_lengths, varlen_sdpa_forward
from tuneforge.train.loss import chunked_linear_cross_entropy, shift_labels


def _sample(n: int, start: int, prompt: int = 2) -> dict:
    ids = list(range(start, start + n))
    labels = [IGNORE] * prompt + ids[prompt:]
    return {"input_ids": np.array(ids), "labels": np.array(labels)}


def test_packed_layout_restarts_positions_and_shifts_inside_each_sample():
    batch = [_sample(4, 10), _sample(3, 20, prompt=0), _sample(5, 30)]
    out = PackedCollator()(batch)
    assert out["input_ids"].shape == (1, 12) and "attention_mask" not in out
    assert out["position_ids"][0].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]
    assert out["cu_seq_lens_q"].tolist() == [0, 4, 7, 12] and out["max_length_q"] == 5
    assert out["use_cache"] is False
    s = out["shift_labels"][0].tolist()
    # Within a sample, position t targets token t+1; the last token of every sample has no target, so the first
    # token of sample 2 (20) and of sample 3 (30) are never targets of the previous sample.
    assert s == [IGNORE, 12, 13, IGNORE, 21, 22, IGNORE, IGNORE, 32, 33, 34, IGNORE]
    assert 20 not in s and 30 not in s


def test_packed_targets_equal_padded_targets():
    batch = [_sample(6, 10), _sample(3, 40, prompt=1), _sample(9, 70, prompt=4)]
    packed = PackedCollator()(batch)["shift_labels"][0]
    padded = PadCollator(pad_id=0)(batch)
    pad_targets = shift_labels(padded["labels"])[padded["attention_mask"].bool()]
    assert torch.equal(packed, pad_targets)


def test_make_collator_follows_the_resolved_packing_mode():
    class Tok:
        pad_token_id = 3

    assert isinstance(make_collator(True, Tok), PackedCollator)
    pad = make_collator(False, Tok)
    assert isinstance(pad, PadCollator) and pad.pad_id == 3


def test_segment_lengths_from_positions_and_cumulative_lengths():
    pos = torch.tensor([0, 1, 2, 0, 1, 0, 1, 2, 3])
    assert segment_lengths(position_ids=pos) == [3, 2, 4]
    assert segment_lengths(cu_seq_lens=torch.tensor([0, 3, 5, 9])) == [3, 2, 4]
    assert segment_lengths(position_ids=torch.arange(7)) == [7]
    # A continuation (positions not starting at 0) is still one sample.
    assert segment_lengths(position_ids=torch.arange(5, 9)) == [4]
    with pytest.raises(ValueError):
        segment_lengths(cu_seq_lens=torch.tensor([0, 3, 5]), total=9)


class _Attn(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 2


def _qkv(t: int, heads: int = 4, kv: int = 2, d: int = 8, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, heads, t, d, generator=g), torch.randn(batch, kv, t, d, generator=g),
            torch.randn(batch, kv, t, d, generator=g))


def _reference(q, k, v, lens):
    """Each sample alone through plain causal attention (GQA by repeating kv heads)."""
    rep = q.shape[1] // k.shape[1]
    outs, a = [], 0
    for n in lens:
        kk = k[:, :, a:a + n].repeat_interleave(rep, dim=1)
        vv = v[:, :, a:a + n].repeat_interleave(rep, dim=1)
        outs.append(F.scaled_dot_product_attention(q[:, :, a:a + n], kk, vv, is_causal=True))
        a += n
    return torch.cat(outs, dim=2).transpose(1, 2)


def test_varlen_attention_isolates_samples():
    lens = [5, 3, 8]
    q, k, v = _qkv(sum(lens))
    pos = torch.cat([torch.arange(n) for n in lens])[None]
    out, _ = varlen_sdpa_forward(_Attn(), q, k, v, None, position_ids=pos)
    ref = _reference(q, k, v, lens)
    assert out.shape == (1, 16, 4, 8)
    assert torch.allclose(out, ref, atol=1e-5)
    # The same row with plain causal attention (samples attending to earlier samples) differs: the test can fail.
    cross = _reference(q, k, v, [sum(lens)])
    assert not torch.allclose(cross[:, 5:], ref[:, 5:], atol=1e-3)
    via_cu, _ = varlen_sdpa_forward(_Attn(), q, k, v, None, cu_seq_lens_q=torch.tensor([0, 5, 8, 16]))
    assert torch.allclose(via_cu, ref, atol=1e-6)


def test_varlen_attention_gradients_match_per_sample():
    lens = [4, 7, 2]
    q, k, v = (x.requires_grad_() for x in _qkv(sum(lens), seed=1))
    pos = torch.cat([torch.arange(n) for n in lens])[None]
    varlen_sdpa_forward(_Attn(), q, k, v, None, position_ids=pos)[0].pow(2).sum().backward()
    got = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    _reference(q, k, v, lens).pow(2).sum().backward()
    for g, x in zip(got, (q, k, v)):
        assert torch.allclose(g, x.grad, atol=1e-5)


def test_varlen_attention_several_rows():
    q, k, v = _qkv(6, batch=2, seed=2)
    pos = torch.tensor([[0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 4, 5]])
    out, _ = varlen_sdpa_forward(_Attn(), q, k, v, None, position_ids=pos)
    assert torch.allclose(out[:1], _reference(q[:1], k[:1], v[:1], [3, 3]), atol=1e-5)
    assert torch.allclose(out[1:], _reference(q[1:], k[1:], v[1:], [6]), atol=1e-5)


def test_varlen_attention_falls_back_to_sdpa_with_a_padding_mask():
    q, k, v = _qkv(5, seed=3)
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool).tril()
    mask[..., 3:, :] = torch.tensor([True, True, True, True, False])  # last key masked for the last queries
    out, _ = varlen_sdpa_forward(_Attn(), q, k, v, mask, position_ids=torch.tensor([[0, 1, 0, 1, 2]]))
    rep = 2
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), attn_mask=mask)
    assert torch.allclose(out, ref.transpose(1, 2), atol=1e-5)


def test_token_budget_batches_cover_every_sample_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, size=300)
    s = TokenBudgetBatchSampler(lengths, max_tokens=512, seed=7)
    batches = list(s)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(300))
    assert all(sum(lengths[b]) <= 512 for b in batches if len(b) > 1)
    assert len(s) == len(batches)
    assert [list(b) for b in TokenBudgetBatchSampler(lengths, 512, seed=7)] == batches  # deterministic
    s.set_epoch(1)
    again = list(s)
    assert again != batches  # a new order every epoch ...
    assert len(again) == len(s) and sorted(map(sorted, again)) == sorted(map(sorted, batches))  # ... same batches


def test_token_budget_padded_cost_and_length_grouping():
    rng = np.random.default_rng(1)
    lengths = rng.integers(10, 300, size=400)
    plain = TokenBudgetBatchSampler(lengths, 1024, seed=0, pad=True)
    grouped = TokenBudgetBatchSampler(lengths, 1024, seed=0, pad=True, window=64)
    for s in (plain, grouped):
        assert all(max(lengths[b]) * len(b) <= 1024 for b in s if len(b) > 1)
        assert sorted(i for b in s for i in b) == list(range(400))

    def padding(s):
        return sum(max(lengths[b]) * len(b) - sum(lengths[b]) for b in s)

    assert padding(grouped) < 0.5 * padding(plain)


def test_token_budget_rejects_zero_budget():
    with pytest.raises(ValueError):
        TokenBudgetBatchSampler([3, 4], 0)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunked_linear_cross_entropy_matches_full_logits(chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(10, 6, generator=g, requires_grad=True)
    w = torch.randn(11, 6, generator=g, requires_grad=True)
    t = torch.randint(0, 11, (10,), generator=g)
    got = chunked_linear_cross_entropy(h, w, t, chunk)
    (got * 0.5).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy(h @ w.T, t, reduction="sum")
    (ref * 0.5).backward()
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(gh, h.grad, atol=1e-5) and torch.allclose(gw, w.grad, atol=1e-5)


def test_chunked_loss_frozen_head_gets_no_gradient():
    h = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(5, 3)
    chunked_linear_cross_entropy(h, w, torch.tensor([0, 1, 2, 4]), 2).backward()
    assert h.grad is not None and w.grad is None
