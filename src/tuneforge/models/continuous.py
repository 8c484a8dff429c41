"""Continuous batching for offline generation (eval, chat, the training demo): no row waits for its batch's longest.

At most `batch_size` rows decode together over one KV cache (`decoding.DecodeBatch`). A row leaves as soon as it
ends (a stop id, `max_new_tokens`, or a stop string in its text) and the next waiting prompt joins in its place, so
the batch stays full and finished rows cost nothing. Static batches (`model.generate` per batch) instead keep every
row of a batch in the forward pass until the batch's longest answer ends.

Prompts that start with the same long token head (few-shot examples: GSM8K's 5-shot head is ~800 tokens) share
that head's KV cache: it is computed once (`DecodeBatch.prefill_prefix`) and each joining row is prefilled on its
own suffix only, at the positions a full forward would give it.

When one row is left decoding (the batch's tail, or chat), each forward also checks up to `LOOKUP` draft tokens
copied from the row's own context (prompt lookup); greedy keeps exactly the drafts it would have produced, so the
tokens do not change while a long answer needs fewer forwards.

Stop strings are checked on the decoded tail of a row (the last tokens that can hold the longest stop string,
plus two for context), not on the whole sequence every step; a tail hit is confirmed on the row's full text
once, so the row stops exactly where the full-text check (and lm-eval's) would stop it.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Callable, Sequence

from tuneforge.models.decoding import DecodeBatch, Prefix, Sampling, pick_tokens

MIN_PREFIX = 32  # shorter shared heads do not pay for the extra forward and the cache copies
LOOKUP = 6  # draft tokens per step for the last row (prompt lookup); 0 = one token per step

# generation_config settings that change which token greedy decoding picks, with their neutral values: a model
# that sets any of them is decoded by `model.generate` (which applies them), not by this loop
_LOGIT_SETTINGS: dict[str, Any] = {
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "min_length": 0, "min_new_tokens": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "sequence_bias": None, "exponential_decay_length_penalty": None,
    "guidance_scale": None, "watermarking_config": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "typical_p": 1.0, "min_p": None,
}


def can_decode_continuously(model: Any, sampling: Sampling, prompts: Sequence[Sequence[int]]) -> bool:
    """True for decoder-only models without beam search or logit processors in their generation_config."""
    if getattr(model.config, "is_encoder_decoder", False) or sampling.num_beams > 1:
        return False
    if sampling.max_new_tokens < 1 or not prompts or any(len(p) == 0 for p in prompts):
        return False
    gc = getattr(model, "generation_config", None)
    return all(getattr(gc, k, None) in (None, neutral) for k, neutral in _LOGIT_SETTINGS.items())


def shared_prefix_len(prompts: Sequence[Sequence[int]], min_prefix: int = MIN_PREFIX) -> int:
    """Length of the token head all prompts share (leaving each at least one own token), or 0 when too short."""
    if len(prompts) < 2:
        return 0
    lists = [list(p) for p in prompts]
    n = min(len(os.path.commonprefix(lists)), min(len(p) for p in lists) - 1)
    return n if n >= min_prefix else 0


class StopStrings:
    """Does a row's text contain a stop string yet? Decodes only the row's last few tokens per step."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        # each token adds at least one character, so a stop string completed by the newest token lies within
        # its last len(stop) tokens; two more keep the tail's first token (decoded without its left context) out
        self.window = max((len(s) for s in self.stops), default=0) + 2

    def _text(self, tokens: Sequence[int]) -> str:
        # special tokens spelled out, as model.generate's stop_strings and lm-eval's `until` see them: a stop
        # string "</s>" or "<|im_end|>" matches that special token
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def hit(self, tokens: Sequence[int]) -> bool:
        if not self.stops or not any(s in self._text(tokens[-self.window:]) for s in self.stops):
            return False
        full = self._text(tokens)  # once per tail hit: a stop is where the full text has one
        return any(s in full for s in self.stops)


def generate_continuous(model: Any, prompts: Sequence[Sequence[int]], *, pad_id: int, sampling: Sampling,
                        stop_ids: Sequence[int] = (), end_ids: Sequence[int] = (), batch_size: int = 8,
                        stop_strings: Sequence[str] = (), tokenizer: Any = None,
                        on_tokens: Callable[[int, list[int]], None] | None = None,
                        on_done: Callable[[int], None] | None = None, min_prefix: int = MIN_PREFIX,
                        lookup: int = LOOKUP) -> list[list[int]] | None:
    """New token ids per prompt, in input order, ending with the id that ended the row if any (as `model.generate`
    returns them); None when this model's KV cache cannot take new rows while others decode (sliding-window /
    recurrent layers): the caller then decodes in static batches.

    A stop id or an end id ends a row; `on_tokens(prompt index, [token])` is called after every new token except
    stop ids (the streaming view of the row's text), `on_done(number finished)` after every finished row.
    Sampled rows draw from their own generator seeded with `sampling.seed + prompt index`, so a seeded run gives
    the same text whatever the batch size or the order rows finish in."""
    import torch

    if stop_strings and tokenizer is None:
        raise ValueError("stop strings need the tokenizer")
    batch = DecodeBatch(model, pad_id)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # longest first, like the static path
    waiting = collections.deque(order)
    head = shared_prefix_len(prompts, min_prefix)
    prefix: Prefix | None = batch.prefill_prefix(prompts[0][:head]) if head else None
    if head and prefix is None:
        return None  # the cache is not plain per-layer keys/values, so rows cannot merge either
    stops = StopStrings(tokenizer, stop_strings) if stop_strings else None
    stop_set, end_set = set(stop_ids), set(end_ids)
    gens: dict[int, Any] = {}
    out: list[list[int]] = [[] for _ in prompts]
    rows: list[int] = []  # prompt index of each batch row
    finished = 0

    def emit(i: int, tok: int) -> bool:
        """Append `tok` to row `i`; False when it ends the row."""
        out[i].append(tok)
        if on_tokens is not None and tok not in stop_set:
            on_tokens(i, [tok])
        return (tok not in stop_set and tok not in end_set and len(out[i]) < sampling.max_new_tokens
                and not (stops and stops.hit(out[i])))

    def finish(i: int) -> bool:
        nonlocal finished
        finished += 1
        gens.pop(i, None)
        if on_done is not None:
            on_done(finished)
        return False

    while waiting or rows:
        if waiting and len(rows) < batch_size:
            new = [waiting.popleft() for _ in range(min(batch_size - len(rows), len(waiting)))]
            for i in new:  # one prompt per prefill: no padding columns to compute, no mask (flash attention)
                batch.join([prompts[i]], [batch.active_adapter], prefix=prefix)
                if not batch.can_join_running:
                    return None
            if not sampling.greedy and sampling.seed is not None:
                for i in new:
                    gens[i] = torch.Generator(device=batch.logits.device).manual_seed(sampling.seed + i)
            rows += new
        if sampling.greedy:
            tokens = batch.logits.argmax(-1).tolist()
        else:
            tokens = pick_tokens(batch.logits, [sampling] * len(rows), [gens.get(i) for i in rows])[0]
        keep = [r for r, (i, tok) in enumerate(zip(rows, tokens)) if emit(i, tok) or finish(i)]
        rows = [rows[r] for r in keep]
        batch.keep(keep)
        if len(rows) == 1 and lookup and sampling.greedy:  # a row decoding alone checks drafts
            rows = _lookup_step(batch, rows[0], prompts[rows[0]], out[rows[0]], lookup, emit, finish)
        elif rows:
            batch.step([out[i][-1] for i in rows])
    return out


def lookup_draft(context: Sequence[int], k: int, ngrams: Sequence[int] = (3, 2)) -> list[int]:
    """Up to `k` tokens that followed the latest earlier occurrence of the context's last n tokens (prompt lookup:
    answers copy names, numbers and phrases from the question and the few-shot examples)."""
    for n in ngrams:
        if len(context) <= n:
            continue
        tail = list(context[-n:])
        for j in range(len(context) - n - 1, -1, -1):
            if context[j] == tail[0] and list(context[j: j + n]) == tail:
                return list(context[j + n: j + n + k])
    return []


def _lookup_step(batch: DecodeBatch, i: int, prompt: Sequence[int], row: list[int], k: int,
                 emit: Callable[[int, int], bool], finish: Callable[[int], bool]) -> list[int]:
    """The last row decodes alone: feed its newest token plus a prompt-lookup draft in one forward and keep the
    draft tokens greedy decoding would have chosen (so the text is unchanged). Decoding one row is bound by
    reading the weights, so checking k tokens costs about as much as producing one. Returns the rows left."""
    draft = lookup_draft(list(prompt) + row, k)
    if not draft:
        batch.step([row[-1]])
        return [i]
    fed = [row[-1]] + draft
    logits = batch.step_tokens(fed)
    preds = logits.argmax(-1).tolist()
    kept = 0
    while kept < len(draft) and draft[kept] == preds[kept]:
        kept += 1
        if not emit(i, draft[kept - 1]):
            finish(i)
            batch.keep([])
            return []
    batch.accept(len(fed), 1 + kept, logits[kept])
    return [i]
