"""The one generation loop, for eval, chat, the training demo, seq2seq prediction and the API server.

Prompts come in as token ids (rendering a chat template is the caller's job: `data.templates.render_prompt`), so
this module needs no tokenizer except to decode. It batches prompts of similar length (left padding for decoder
LMs, right padding for encoder inputs), stops a row at any of `stop_ids` (eos + the template's end-of-turn ids,
`data.templates.stop_token_ids`) or stop string, and can report new tokens as they are produced (`on_tokens`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

OnTokens = Callable[[int, list[int]], None]  # (prompt index, new token ids) after every decoding step


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


def _generate_kwargs(s: Sampling, pad_id: int, stop_ids: Sequence[int]) -> dict[str, Any]:
    kw: dict[str, Any] = dict(max_new_tokens=s.max_new_tokens, num_beams=s.num_beams, pad_token_id=pad_id,
                              use_cache=True, do_sample=not s.greedy)
    if stop_ids:
        kw["eos_token_id"] = list(stop_ids)
    if s.greedy:  # neutralise sampling knobs a model's generation_config may carry
        kw.update(temperature=None, top_p=None, top_k=None)
    else:
        kw.update(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k)
    return kw


class _StepStreamer:
    """transformers streamer protocol: the first `put` is the prompt, every later one a column of new tokens."""

    def __init__(self, rows: list[int], on_tokens: OnTokens):
        self.rows, self.on_tokens, self.started, self.done = rows, on_tokens, False, set()
        self.stop_ids: set[int] = set()

    def put(self, value) -> None:
        if not self.started:
            self.started = True
            return
        for b, tok in enumerate(value.reshape(-1).tolist()):
            if b in self.done:
                continue
            if tok in self.stop_ids:
                self.done.add(b)
                continue
            self.on_tokens(self.rows[b], [tok])

    def end(self) -> None:
        pass


def generate_ids(model: Any, prompts: Sequence[Sequence[int]], *, pad_id: int, sampling: Sampling = Sampling(),
                 stop_ids: Sequence[int] = (), batch_size: int = 8, stop_strings: Sequence[str] = (),
                 tokenizer: Any = None, on_tokens: OnTokens | None = None,
                 on_batch: Callable[[int], None] | None = None) -> list[list[int]]:
    """New token ids per prompt (prompt removed, cut before the first stop id), in input order."""
    import torch

    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    kw = _generate_kwargs(sampling, pad_id, stop_ids)
    if stop_strings:
        kw.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    stops = set(stop_ids)
    was_training = model.training
    model.eval()
    done = 0
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start: start + batch_size]
                ids, att = _pad([prompts[i] for i in idx], pad_id, left=not encoder_decoder)
                streamer = None
                if on_tokens is not None:
                    streamer = _StepStreamer(idx, on_tokens)
                    streamer.stop_ids = stops
                gen = model.generate(input_ids=ids.to(model.device), attention_mask=att.to(model.device),
                                     streamer=streamer, **kw)
                # decoder LMs return prompt + new tokens; encoder-decoders the decoder start token + new tokens
                new = gen[:, 1:] if encoder_decoder else gen[:, ids.shape[1]:]
                for b, i in enumerate(idx):
                    out[i] = _cut(new[b].tolist(), stops, pad_id)
                done += len(idx)
                if on_batch is not None:
                    on_batch(done)
    finally:
        if was_training:
            model.train()
    return out


def _pad(rows: list[Sequence[int]], pad_id: int, left: bool):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[b, sl] = torch.tensor(list(r), dtype=torch.long)
        att[b, sl] = 1
    return ids, att


def _cut(tokens: list[int], stops: set[int], pad_id: int) -> list[int]:
    for j, t in enumerate(tokens):
        if t in stops:
            return tokens[:j]
    while tokens and tokens[-1] == pad_id and pad_id not in stops:
        tokens = tokens[:-1]
    return tokens


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text before the first stop string."""
    cut = len(text)
    for s in stop:
        i = text.find(s) if s else -1
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def generate_text(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], *, sampling: Sampling = Sampling(),
                  stop_ids: Sequence[int] = (), stop_strings: Sequence[str] = (), batch_size: int = 8,
                  on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Decoded continuation per prompt (special tokens skipped, cut at stop strings, stripped)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = generate_ids(model, prompts, pad_id=pad, sampling=sampling, stop_ids=stop_ids, batch_size=batch_size,
                       stop_strings=stop_strings, tokenizer=tokenizer if stop_strings else None, on_batch=on_batch)
    return [cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), stop_strings).strip() for row in ids]


def stream_text(model: Any, tokenizer: Any, prompt: Sequence[int], *, sampling: Sampling = Sampling(),
                stop_ids: Sequence[int] = (), on_text: Callable[[str], None]) -> str:
    """Generate one reply, calling `on_text(piece)` as text becomes final; returns the whole reply."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    got: list[int] = []
    shown = [""]

    def on_tokens(_row: int, new: list[int]) -> None:
        got.extend(new)
        text = tokenizer.decode(got, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
            return
        on_text(text[len(shown[0]):])
        shown[0] = text

    ids = generate_ids(model, [prompt], pad_id=pad, sampling=sampling, stop_ids=stop_ids, batch_size=1,
                       on_tokens=on_tokens)[0]
    final = tokenizer.decode(ids, skip_special_tokens=True)
    if len(final) > len(shown[0]):
        on_text(final[len(shown[0]):])
    return final


# ------------------------------------------------------------------------------ continuous batching (the server)

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

    def _forward(self, ids, mask, cache, adapters: list[str | None]):
        import torch

        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        kw: dict[str, Any] = {}
        if set(adapters) != {self._active}:  # peft's mixed-adapter batch; "__base__" = adapters off for that row
            kw["adapter_names"] = [a if a is not None else "__base__" for a in adapters]
        with torch.inference_mode():
            kw[self._cache_kw] = cache
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=1, **kw)
        return getattr(out, self._cache_kw), out.logits[:, -1, :].float()

    def join(self, prompts: Sequence[Sequence[int]], adapters: Sequence[str | None] | None = None) -> None:
        """Prefill `prompts` and add them as the last rows."""
        import torch
        from transformers import DynamicCache

        adapters = list(adapters) if adapters is not None else [None] * len(prompts)
        ids, mask = _pad(list(prompts), self.pad_id, left=True)
        device = self.model.device
        ids, mask = ids.to(device), mask.to(device)
        cache, logits = self._forward(ids, mask, DynamicCache(config=self.model.config), adapters)
        if self.cache is None:
            self.cache, self.mask, self.logits, self.adapters = cache, mask, logits, adapters
            self.can_join_running = _mergeable(cache)
            return
        if not self.can_join_running:
            raise RuntimeError("this model's cache cannot take new rows while others decode")
        width = max(self.mask.shape[1], mask.shape[1])
        layers = []
        for old, new in zip(self.cache.layers, cache.layers):
            layers.append((torch.cat([_left_pad(old.keys, width), _left_pad(new.keys, width)]),
                           torch.cat([_left_pad(old.values, width), _left_pad(new.values, width)])))
        self.cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
        self.mask = torch.cat([_left_pad(self.mask, width, dim=1), _left_pad(mask, width, dim=1)])
        self.logits = torch.cat([self.logits, logits])
        self.adapters += adapters

    def step(self, tokens: Sequence[int]) -> None:
        """Feed one token per row (in row order) and compute the next logits."""
        import torch

        ids = torch.tensor(list(tokens), dtype=torch.long, device=self.mask.device).unsqueeze(1)
        self.mask = torch.cat([self.mask, torch.ones_like(ids)], dim=1)
        self.cache, self.logits = self._forward(ids, self.mask, self.cache, self.adapters)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only `rows` (indices into the current rows, in the new order), and trim all-padding columns."""
        import torch
        from transformers import DynamicCache

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
        if first and self.can_join_running:  # DynamicCache has no left crop: rebuild it from the kept columns
            layers = [(lay.keys[:, :, first:], lay.values[:, :, first:]) for lay in self.cache.layers]
            self.cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
            self.mask = self.mask[:, first:]


def _mergeable(cache: Any) -> bool:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(lay) is DynamicLayer and getattr(lay, "keys", None) is not None
                                for lay in layers)


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
