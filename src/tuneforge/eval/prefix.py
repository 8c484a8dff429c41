"""Shared token prefixes: group questions whose contexts start with the same tokens, and reuse the prefix's KV cache.

Benchmarks repeat long context heads: MMLU's per-subject description (0-shot) or description + 5 solved examples
(5-shot, ~600 tokens) is identical for every question of a subject. The prefix is found on token ids (the longest
common prefix of the exact lm-eval encodings), so reusing it cannot change what the model sees: the rest of each
row attends to the cached keys/values at the same positions a full forward would use.
"""

from __future__ import annotations

from typing import Any, Sequence

MIN_PREFIX = 8  # shorter shared heads are not worth an extra forward
# Heads whose caches fit in this many bytes together are all kept while scoring, so questions of different heads can
# share a batch (MMLU 0-shot: 10 questions per subject; batches cut at subject borders ran 8 + 2 rows)
PREFIX_BUDGET_BYTES = 512 * 2**20


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
    return compute_prefixes(model, [ids], keep_kw)[0]


def compute_prefixes(model: Any, heads: Sequence[Sequence[int]], keep_kw: bool = True
                     ) -> list[list[tuple[Any, Any]] | None]:
    """compute_prefix for several heads in one forward (left-padded, masked): a 16-token head alone runs at a third
    of a full batch's tokens/s on a CPU, and MMLU has one per subject."""
    import torch

    width = max(map(len, heads))
    ids = torch.zeros((len(heads), width), dtype=torch.long)
    att = torch.zeros((len(heads), width), dtype=torch.long)
    for b, h in enumerate(heads):
        ids[b, width - len(h):] = torch.tensor(list(h))
        att[b, width - len(h):] = 1
    kw = {"logits_to_keep": 1} if keep_kw else {}
    if len(heads) > 1:
        kw["position_ids"] = (att.cumsum(-1) - 1).clamp(min=0).to(model.device)
    out = model(input_ids=ids.to(model.device), attention_mask=att.to(model.device), use_cache=True, **kw)
    layers = getattr(out.past_key_values, "layers", None)
    if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
        return [None] * len(heads)
    if any(getattr(layer, "keys", None) is None or layer.keys.shape[-2] != width for layer in layers):
        return [None] * len(heads)
    if len(heads) == 1:
        return [[(layer.keys, layer.values) for layer in layers]]
    return [[(layer.keys[b:b + 1, :, width - len(h):].clone(), layer.values[b:b + 1, :, width - len(h):].clone())
             for layer in layers] for b, h in enumerate(heads)]


def expand_cache(prefix: list[tuple[Any, Any]], rows: int) -> Any:
    """A fresh cache holding the prefix for `rows` rows (the forward appends to it; the prefix stays intact)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix])


def row_cache(prefixes: Sequence[tuple[int, Any] | None]) -> tuple[int, Any]:
    """(slots, cache) for a batch whose row b continues after prefixes[b] = (length, per-layer KV) or after nothing.

    Row b's prefix fills the *last* prefixes[b][0] of `slots` cache slots (left padding, like the rows themselves);
    the caller masks the empty slots. One prefix shared by every row is expanded, not copied."""
    from transformers import DynamicCache

    present = [p for p in prefixes if p]
    if not present:
        return 0, None
    slots = max(p[0] for p in present)
    first = present[0][1]
    if len(present) == len(prefixes) and all(p[1] is first for p in present):
        return slots, expand_cache(first, len(prefixes))
    layers = []
    for li, (k0, v0) in enumerate(first):
        k = k0.new_zeros((len(prefixes), k0.shape[1], slots, k0.shape[3]))
        v = v0.new_zeros((len(prefixes), v0.shape[1], slots, v0.shape[3]))
        for b, p in enumerate(prefixes):
            if p:
                k[b, :, slots - p[0]:] = p[1][li][0][0]
                v[b, :, slots - p[0]:] = p[1][li][1][0]
        layers.append((k, v))
    return slots, DynamicCache(ddp_cache_data=layers)


class PrefixStore:
    """The KV caches of shared heads: computed when a batch first needs one, dropped after its last question."""

    def __init__(self, model: Any, contexts: Sequence[Sequence[int]], groups: list[tuple[int, list[int]]],
                 keep_kw: bool = True):
        self.model, self.keep_kw = model, keep_kw
        self.groups = [(p, m) for p, m in groups if p]
        self.owner = {i: g for g, (_, members) in enumerate(self.groups) for i in members}
        self.heads = [list(contexts[m[0]][:p]) for p, m in self.groups]
        self.left = [len(m) for _, m in self.groups]
        self.kv: dict[int, Any] = {}

    def plen(self, i: int) -> int:
        g = self.owner.get(i)
        return 0 if g is None else self.groups[g][0]

    def get(self, i: int) -> tuple[int, Any] | None:
        """(prefix length, KV) for question i, or None: no shared head, or a cache layout that can't be reused."""
        g = self.owner.get(i)
        if g is None:
            return None
        if g not in self.kv:
            self.kv[g] = compute_prefix(self.model, self.heads[g], self.keep_kw)
        return None if self.kv[g] is None else (self.groups[g][0], self.kv[g])

    def done(self, scored: Sequence[int]) -> None:
        for i in scored:
            g = self.owner.get(i)
            if g is not None:
                self.left[g] -= 1
                if not self.left[g]:
                    self.kv.pop(g, None)

    def prefetch(self, rows: int = 8, upto: int | None = None) -> None:
        """Compute the heads not computed yet (of the first `upto` groups; all by default), `rows` per forward."""
        todo = [g for g in range(len(self.groups))[:upto] if g not in self.kv]
        for k in range(0, len(todo), rows):
            chunk = todo[k:k + rows]
            for g, kv in zip(chunk, compute_prefixes(self.model, [self.heads[g] for g in chunk], self.keep_kw)):
                self.kv[g] = kv

    def all_fit(self, budget: int | None = None, rows: int = 8) -> bool:
        """Whether every head's cache fits in `budget` bytes at once (measured on the first head, computed here
        with the next rows - 1); when they do, all the others are computed too."""
        budget = PREFIX_BUDGET_BYTES if budget is None else budget
        if not self.groups:
            return True
        self.prefetch(rows, upto=rows)
        if self.kv[0] is None:
            return False
        per_token = sum(k.nbytes + v.nbytes for k, v in self.kv[0]) / self.groups[0][0]
        if per_token * sum(p for p, _ in self.groups) > budget:
            return False
        self.prefetch(rows)
        return True
