"""Decoding building blocks shared by the generation loops: `Sampling` settings, `DecodeBatch` (rows that decode
together over one KV cache and join / leave between steps: continuous batching), `Prefix` (one shared prompt head's
KV cache, prefilled once) and `pick_tokens` (greedy or seeded sampling, per row).

Used by `models/continuous.py` (eval / chat generation) and `serve/engine.py` (the API server).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

from tuneforge.models.kv_cache import is_plain, merge_rows, new_cache


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; temperature 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def pad_rows(rows: list[Sequence[int]], pad_id: int, left: bool):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[b, sl] = torch.tensor(list(r), dtype=torch.long)
        att[b, sl] = 1
    return ids, att


@dataclass(frozen=True)
class Prefix:
    """A prompt head shared by many prompts, with its per-layer (keys, values) for one row."""

    ids: tuple[int, ...]
    layers: list[tuple[Any, Any]]


class DecodeBatch:
    """Rows that decode together over one KV cache; rows join and leave between steps (continuous batching).

    `join` prefills new prompts (left padded) and merges their cache into the running one (the shorter side is
    padded on the left with masked zeros, so every row keeps its own positions); `step` feeds one new token per row;
    `keep` drops finished or cancelled rows. `logits` always holds each row's next-token logits. Rows can use
    different LoRA adapters of one peft model (`adapter`: a name, or None for the base) in the same forward pass.
    Models whose cache is not a plain per-layer key/value tensor (sliding windows, state-space layers) cannot merge:
    `can_join_running` is False for them and the caller waits until the batch is empty.
    """

    def __init__(self, model: Any, pad_id: int):
        self.model, self.pad_id = model, pad_id
        self.cache: Any = None
        self.mask: Any = None      # (rows, columns) 1 where a column holds a real token of that row
        self.logits: Any = None    # (rows, vocab) next-token logits
        self.adapters: list[str | None] = []
        self.can_join_running = True
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._active = getattr(model, "active_adapter", None) if base is not model else None
        # transformers renamed `past_key_values` to `cache` (5.2x); pass whichever this version takes
        self._cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    def __len__(self) -> int:
        return len(self.adapters)

    @property
    def active_adapter(self) -> str | None:
        """The adapter a plain forward of this model uses (pass it as a row's adapter to keep the model as is)."""
        return self._active

    def _forward(self, ids, mask, cache, adapters: list[str | None], keep: int = 1):
        import torch

        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        kw: dict[str, Any] = {}
        if set(adapters) != {self._active}:  # peft's mixed-adapter batch; "__base__" = adapters off for that row
            kw["adapter_names"] = [a if a is not None else "__base__" for a in adapters]
        with torch.inference_mode():
            kw[self._cache_kw] = cache
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=keep, **kw)
        logits = out.logits[:, -keep:, :].float()
        return getattr(out, self._cache_kw), logits[:, -1, :] if keep == 1 else logits

    def prefill_prefix(self, ids: Sequence[int]) -> Prefix | None:
        """The KV cache of one shared prompt head (None when this model's cache cannot be reused: see class doc)."""
        import torch

        x = torch.tensor([list(ids)], dtype=torch.long, device=self.model.device)
        cache, _ = self._forward(x, torch.ones_like(x), new_cache(self.model.config), [self._active])
        if not is_plain(cache) or any(lay.keys.shape[-2] != len(ids) for lay in cache.layers):
            return None
        return Prefix(tuple(ids), [(lay.keys, lay.values) for lay in cache.layers])

    def join(self, prompts: Sequence[Sequence[int]], adapters: Sequence[str | None] | None = None,
             prefix: Prefix | None = None) -> None:
        """Prefill `prompts` and add them as the last rows.

        With `prefix` (every prompt starts with `prefix.ids` and is longer), only each prompt's own suffix is
        computed, over a copy of the prefix's cache: row = [prefix][left padding][suffix]. The padding columns are
        masked and positions come from the mask, so each row sees exactly the positions of a full forward."""
        import torch

        adapters = list(adapters) if adapters is not None else [None] * len(prompts)
        device = self.model.device
        if prefix is None:
            ids, mask = pad_rows(list(prompts), self.pad_id, left=True)
            start = new_cache(self.model.config)
        else:
            n = len(prefix.ids)
            if any(tuple(p[:n]) != prefix.ids or len(p) <= n for p in prompts) or set(adapters) != {self._active}:
                raise ValueError("every prompt must extend the prefix, with the model's active adapter")
            ids, mask = pad_rows([p[n:] for p in prompts], self.pad_id, left=True)
            mask = torch.cat([torch.ones((len(prompts), n), dtype=mask.dtype), mask], dim=1)
            rows = len(prompts)
            start = new_cache(self.model.config, [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
                                                  for k, v in prefix.layers])
        ids, mask = ids.to(device), mask.to(device)
        cache, logits = self._forward(ids, mask, start, adapters)
        if self.cache is None:
            self.cache, self.mask, self.logits, self.adapters = cache, mask, logits, adapters
            self.can_join_running = is_plain(cache)
            return
        if not self.can_join_running:
            raise RuntimeError("this model's cache cannot take new rows while others decode")
        width = max(self.mask.shape[1], mask.shape[1])
        self.cache = merge_rows(self.model.config, [self.cache, cache], width)
        self.mask = torch.cat([_left_pad(self.mask, width, dim=1), _left_pad(mask, width, dim=1)])
        self.logits = torch.cat([self.logits, logits])
        self.adapters += adapters

    def step(self, tokens: Sequence[int]) -> None:
        """Feed one token per row (in row order) and compute the next logits."""
        import torch

        ids = torch.tensor(list(tokens), dtype=torch.long, device=self.mask.device).unsqueeze(1)
        self.mask = torch.cat([self.mask, torch.ones_like(ids)], dim=1)
        self.cache, self.logits = self._forward(ids, self.mask, self.cache, self.adapters)

    def step_tokens(self, tokens: Sequence[int]) -> Any:
        """One-row batch: feed several tokens at once; returns the logits after each of them (tokens, vocab).
        `logits` is left unset: the caller picks the row (`accept`) once it knows how many tokens it keeps."""
        import torch

        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.mask.device)
        self.mask = torch.cat([self.mask, torch.ones_like(ids)], dim=1)
        self.cache, logits = self._forward(ids, self.mask, self.cache, self.adapters, keep=len(tokens))
        return logits[0]

    def accept(self, fed: int, kept: int, logits: Any) -> None:
        """After `step_tokens` fed `fed` tokens: keep the first `kept` (drop the rest from the cache) and make
        `logits` (those after the last kept token) the next-token logits."""
        if kept < fed:
            self.cache.crop(kept - fed)  # kv_cache.GrowingLayer: a shorter view of the same buffer
            self.mask = self.mask[:, : kept - fed]
        self.logits = logits.unsqueeze(0)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only `rows` (indices into the current rows, in the new order), and trim all-padding columns."""
        import torch

        if len(rows) == len(self.adapters) and list(rows) == list(range(len(rows))):
            return
        if not rows:
            self.cache = self.mask = self.logits = None
            self.adapters = []
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.logits = self.mask[index], self.logits[index]
        self.adapters = [self.adapters[r] for r in rows]
        first = int(self.mask.any(0).float().argmax())  # leading columns that no remaining row uses
        if first and self.can_join_running:
            for lay in self.cache.layers:
                if hasattr(lay, "trim_left"):  # kv_cache.GrowingLayer: a view, no copy
                    lay.trim_left(first)
                else:
                    lay.keys, lay.values = lay.keys[:, :, first:], lay.values[:, :, first:]
            self.mask = self.mask[:, first:]


def _left_pad(t: Any, width: int, dim: int = 2) -> Any:
    import torch

    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def pick_tokens(logits: Any, samplings: Sequence[Sampling], generators: Sequence[Any],
                top_logprobs: int = 0) -> tuple[list[int], list[float], list[list[tuple[int, float]]]]:
    """One next token per row under that row's settings: (tokens, their log-probabilities, top alternatives).

    Log-probabilities are the model's (before temperature / top-p), as OpenAI reports them. `generators` holds a
    seeded `torch.Generator` per row (or None) so a request's `seed` reproduces its sample whatever else is batched.
    """
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    tokens = logits.argmax(-1).tolist()
    for r, s in enumerate(samplings):
        if s.greedy:
            continue
        row = logits[r] / s.temperature
        if s.top_k > 0:
            kth = torch.topk(row, min(s.top_k, row.shape[-1])).values[-1]
            row = row.masked_fill(row < kth, float("-inf"))
        probs = torch.softmax(row, -1)
        if s.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > s.top_p  # keep the smallest set whose mass reaches top_p
            probs = probs.index_fill(0, order[drop], 0.0)
        tokens[r] = int(torch.multinomial(probs, 1, generator=generators[r]).item())
    index = torch.tensor(tokens, device=logp.device).unsqueeze(1)
    chosen = logp.gather(1, index).squeeze(1).tolist()
    alts: list[list[tuple[int, float]]] = [[] for _ in tokens]
    if top_logprobs > 0:
        vals, ids = logp.topk(top_logprobs, dim=-1)
        alts = [list(zip(i, v)) for i, v in zip(ids.tolist(), vals.tolist())]
    return tokens, chosen, alts
