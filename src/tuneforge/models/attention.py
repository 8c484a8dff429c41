"""Segment-aware attention for padding-free packed batches, registered through transformers' `AttentionInterface`.

A packed batch is one row holding several samples back to back; `position_ids` restart at 0 for each sample
(`data/collate.py:PackedCollator`). Each sample must only attend to itself. transformers can express that with a
dense block-diagonal mask, but on CPU a dense (T x T) masked SDPA costs far more than the samples themselves
(TRL's padding-free run in shared/bench/peer is slower than unpacked training for that reason). Here every
segment gets its own causal SDPA call on a `split` view of q/k/v, so the work is sum(len_i^2), not T^2, and the
fast fused CPU kernel (is_causal, no mask) is used. `split` (not slicing) keeps the backward linear in T.

A layer's sliding window (Mistral, Qwen2, Gemma 2/3) and logit soft-capping (Gemma 2) are applied inside each
segment (a band mask, or eager math for soft-capping), so the packed result equals each sample run alone.

Segments come from `cu_seq_lens_q` when the collator provides it (flash-attention convention), else from
`position_ids` restarting. A segment whose positions restart at p > 0 (not 0) after a segment that started at 0 is a
*branch*: it continues the first p tokens of that sample, so it also attends to them (a preference pair's chosen and
rejected answers after one copy of their prompt: `train/shared_prompt.py`). Anything that is not a packed
training forward (a padding mask, decoding with a cache) falls back to transformers' own SDPA path, so a model left
on this implementation still generates correctly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tuneforge.models.registry import base_model

NAME = "tuneforge_varlen"
_registered = False


def segment_lengths(position_ids: torch.Tensor | None = None, cu_seq_lens: torch.Tensor | None = None,
                    total: int | None = None) -> list[int] | None:
    """Sample lengths inside one packed row: from cumulative lengths, or from where `position_ids` restart.

    Returns None when neither is given.
    """
    if cu_seq_lens is not None:
        lens = torch.diff(cu_seq_lens.reshape(-1).to(torch.long)).tolist()
    elif position_ids is not None:
        pos = position_ids.reshape(-1)
        # A new sample starts wherever the position does not continue the previous one (same rule as transformers'
        # find_packed_sequence_indices).
        starts = torch.nonzero(pos[1:] != pos[:-1] + 1).reshape(-1) + 1
        bounds = [0, *starts.tolist(), pos.numel()]
        lens = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        return None
    if total is not None and sum(lens) != total:
        raise ValueError(f"packed segments cover {sum(lens)} tokens but the row has {total}")
    return lens


def branch_prefixes(position_ids: torch.Tensor, lens: list[int]) -> list[tuple[int, int]]:
    """(start of the sample's first segment, tokens of it seen) for each segment of one row; (0, 0) = no prefix.

    A segment starting at position p > 0 after a segment that started at 0 (and is at least p long) is a branch of
    that sample: it sees the sample's first p tokens. A row that opens with p > 0 (a sample cut across rows) has
    nothing to branch from and stays on its own, as before.
    """
    pos = position_ids.reshape(-1)
    out, root, start = [], None, 0
    for n in lens:
        first = int(pos[start])
        if first == 0:
            root = (start, n)
            out.append((0, 0))
        elif root is not None and first <= root[1]:
            out.append((root[0], first))
        else:
            out.append((0, 0))
        start += n
    return out


def _row_segments(kwargs: dict, batch: int, q_len: int) -> list[list[tuple[int, int, int]]] | None:
    """(length, prefix start, prefix length) of every segment of every row, or None when no row holds more than one
    sample."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None and batch == 1:
        rows = [[(n, 0, 0) for n in segment_lengths(cu_seq_lens=cu, total=q_len)]]
    else:
        pos = kwargs.get("position_ids")
        if pos is None:
            return None
        pos = pos.expand(batch, -1) if pos.shape[0] != batch else pos
        rows = []
        for p in pos:
            lens = segment_lengths(position_ids=p, total=q_len)
            rows.append([(n, *pre) for n, pre in zip(lens, branch_prefixes(p, lens))])
    return rows if any(len(r) > 1 for r in rows) else None


def _segment_attention(q, k, v, dropout: float, scaling, window: int | None, softcap: float | None,
                       prefix_k=None, prefix_v=None):
    """Causal attention inside one sample, honouring the layer's sliding window and logit soft-capping; a branch
    also attends to all of its sample's first tokens (`prefix_k` / `prefix_v`), which come before it."""
    gqa = q.shape[1] != k.shape[1]
    n = q.shape[2]
    p = 0 if prefix_k is None else prefix_k.shape[2]
    windowed = bool(window) and n + p > window
    if not softcap and not windowed and not p:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True,
                                              enable_gqa=gqa)
    if p:
        k, v = torch.cat([prefix_k, k], dim=2), torch.cat([prefix_v, v], dim=2)
    i = torch.arange(n, device=q.device) + p  # query positions inside the sample
    j = torch.arange(n + p, device=q.device)  # key positions: the prefix, then the branch itself
    allowed = j[None, :] <= i[:, None]
    if windowed:  # transformers' rule: key j is visible from query i when i - j < window
        allowed &= (i[:, None] - j[None, :]) < window
    if not softcap:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout, scale=scaling,
                                              enable_gqa=gqa)
    # Soft-capping (Gemma 2) changes the logits before softmax, which SDPA cannot do: eager math per sample.
    if gqa:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scaling if scaling is not None else q.shape[-1] ** -0.5)
    scores = torch.tanh(scores / softcap) * softcap
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1, dtype=torch.float32).to(q.dtype)
    return F.dropout(probs, p=dropout, training=dropout > 0) @ v


def varlen_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        is_causal=None, **kwargs):
    """Attention function with the `AttentionInterface` signature; q/k/v are (batch, heads, tokens, head_dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, _, q_len, _ = query.shape
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    rows = None
    if attention_mask is None and causal and key.shape[2] == q_len and q_len > 1:
        rows = _row_segments(kwargs, batch, q_len)
    if rows is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    window, softcap = kwargs.get("sliding_window"), kwargs.get("softcap")
    out_rows = []
    for segs, q_row, k_row, v_row in zip(rows, query.split(1), key.split(1), value.split(1)):
        lens = [n for n, _, _ in segs]
        outs = []
        for (_, at, seen), q, k, v in zip(segs, q_row.split(lens, dim=2), k_row.split(lens, dim=2),
                                          v_row.split(lens, dim=2)):
            pk = k_row.narrow(2, at, seen) if seen else None
            pv = v_row.narrow(2, at, seen) if seen else None
            outs.append(_segment_attention(q, k, v, dropout, scaling, window, softcap, pk, pv))
        out_rows.append(torch.cat(outs, dim=2) if len(outs) > 1 else outs[0])
    out = torch.cat(out_rows, dim=0) if batch > 1 else out_rows[0]
    return out.transpose(1, 2).contiguous(), None


def _varlen_mask(*args, attention_mask=None, **kwargs):
    """Mask builder paired with the attention function: no dense mask for padding-free rows.

    A row without a padding mask needs none (segments are read from position_ids by the attention function); a
    padded batch (evaluation, generation) gets the regular SDPA mask and is handled by the SDPA fallback. So does a
    forward after cached tokens (more keys than queries): "no mask" would reach SDPA as is_causal, which aligns the
    triangle to the first key, so a multi-token step after a cache (a prompt after a shared head, draft tokens)
    would not see most of the cache.
    """
    from transformers.masking_utils import sdpa_mask

    no_cache = kwargs.get("q_length") == kwargs.get("kv_length") and not kwargs.get("kv_offset")
    if no_cache and (attention_mask is None or bool(attention_mask.all())):
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> str:
    """Register the attention + mask functions under NAME (idempotent); returns NAME."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(NAME, varlen_sdpa_forward)
        AttentionMaskInterface.register(NAME, _varlen_mask)
        _registered = True
    return NAME


def use_varlen_attention(model) -> bool:
    """Switch `model` (or the model inside a PeftModel) to segment-aware attention; False if it cannot switch.

    A model that cannot switch still trains packed batches correctly: transformers derives a block-diagonal mask
    from the restarting position_ids (slower, same result).
    """
    base = base_model(model)
    if not hasattr(base, "set_attn_implementation"):
        return False
    register()
    try:
        base.set_attn_implementation(NAME)
    except (ValueError, ImportError, NotImplementedError):
        return False
    return getattr(base.config, "_attn_implementation", None) == NAME
