"""Shared token prefixes: group questions whose contexts start with the same tokens, and reuse the prefix's KV cache.

Benchmarks repeat long context heads: MMLU's per-subject description (0-shot) or description + 5 solved examples
(5-shot, ~600 tokens) is identical for every question of a subject. The prefix is found on token ids (the longest
common prefix of the exact lm-eval encodings), so reusing it cannot change what the model sees: the rest of each
row attends to the cached keys/values at the same positions a full forward would use.
"""

from __future__ import annotations

from typing import Any, Sequence

MIN_PREFIX = 8  # shorter shared heads are not worth an extra forward


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_groups(contexts: Sequence[Sequence[int]], min_prefix: int = MIN_PREFIX) -> list[tuple[int, list[int]]]:
    """[(prefix length, member indices)]: contexts sorted by token ids, neighbours grouped while they share a prefix.

    A group keeps growing while the shared prefix stays >= `min_prefix` and >= 90% of what the group shared so far
    (so a 600-token 5-shot head is not diluted to the 10 tokens all MMLU descriptions share). The prefix always
    leaves at least one context token per member (its logits predict the first answer token). Lone contexts
    come back as (0, [i])."""
    order = sorted(range(len(contexts)), key=lambda i: list(contexts[i]))
    groups: list[tuple[int, list[int]]] = []
    members: list[int] = []
    shared = 0
    for i in order:
        if members:
            p = min(shared, common_prefix_len(contexts[members[-1]], contexts[i]), len(contexts[i]) - 1)
            if p >= min_prefix and (len(members) == 1 or p >= 0.9 * shared):
                members.append(i)
                shared = p
                continue
            groups.append((shared if len(members) > 1 else 0, members))
        members, shared = [i], len(contexts[i]) - 1
    if members:
        groups.append((shared if len(members) > 1 else 0, members))
    return groups


def compute_prefix(model: Any, ids: Sequence[int], keep_kw: bool = True) -> list[tuple[Any, Any]] | None:
    """Per-layer (key, value) tensors of one prefix row, or None when the model's cache is not a plain
    per-layer KV cache (sliding-window / recurrent / hybrid layers: those score without prefix reuse)."""
    import torch

    x = torch.tensor([list(ids)], device=model.device)
    kw = {"logits_to_keep": 1} if keep_kw else {}
    out = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True, **kw)
    cache = out.past_key_values
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
        return None
    if any(getattr(layer, "keys", None) is None or layer.keys.shape[-2] != len(ids) for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def expand_cache(prefix: list[tuple[Any, Any]], rows: int) -> Any:
    """A fresh cache holding the prefix for `rows` rows (the forward appends to it; the prefix stays intact)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix])
