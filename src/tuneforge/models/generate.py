"""The one generation loop, for eval, chat, the training demo, seq2seq prediction and the API server.

Prompts come in as token ids (rendering a chat template is the caller's job: `data.templates.render_prompt`), so
this module needs no tokenizer except to decode. A row stops at any of `stop_ids` (eos + the template's
end-of-turn ids, `data.templates.stop_token_ids`) or stop string, and new tokens can be reported as they are
produced (`on_tokens`). Decoder-only models decode with continuous batching over an in-place KV cache, a shared
prompt head computed once (`models/continuous.py`); encoder-decoders, beam search and models whose
generation_config or cache rule that out use static batches of similar length through `model.generate` (left
padding for decoder LMs, right padding for encoder inputs). Both give the same greedy tokens.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tuneforge.models.continuous import can_decode_continuously, generate_continuous
from tuneforge.models.decoding import (
    DecodeBatch,
    Prefix,
    Sampling,
    pad_rows,
    pick_tokens,
)

__all__ = ["DecodeBatch", "OnTokens", "Prefix", "Sampling", "cut_at_stop", "generate_ids", "generate_text",
           "pick_tokens", "stream_text"]

OnTokens = Callable[[int, list[int]], None]  # (prompt index, new token ids) after every decoding step


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
                 on_batch: Callable[[int], None] | None = None, continuous: bool | None = None) -> list[list[int]]:
    """New token ids per prompt (prompt removed, cut before the first stop id), in input order.

    Decoder-only models decode with continuous batching and a shared prompt head's KV cache reused
    (`models/continuous.py`); encoder-decoders, beam search, models with logit processors in their
    generation_config and caches that cannot take rows mid-flight use static batches through `model.generate`.
    `continuous`: None = choose as above, False = always static, True = continuous where possible."""
    stops = set(stop_ids)
    if continuous is not False and can_decode_continuously(model, sampling, prompts):
        # like model.generate: without explicit stop ids the model's own eos ends a row (and is streamed)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ends = () if stop_ids else ([eos] if isinstance(eos, int) else list(eos or ()))
        was_training = model.training
        model.eval()
        try:
            got = generate_continuous(model, prompts, pad_id=pad_id, sampling=sampling, stop_ids=stop_ids,
                                      end_ids=ends, batch_size=batch_size, stop_strings=stop_strings,
                                      tokenizer=tokenizer, on_tokens=on_tokens, on_done=on_batch)
        finally:
            if was_training:
                model.train()
        if got is not None:
            return [_cut(row, stops, pad_id) for row in got]
    return _generate_static(model, prompts, pad_id=pad_id, sampling=sampling, stop_ids=stop_ids,
                            batch_size=batch_size, stop_strings=stop_strings, tokenizer=tokenizer,
                            on_tokens=on_tokens, on_batch=on_batch)


def _generate_static(model: Any, prompts: Sequence[Sequence[int]], *, pad_id: int, sampling: Sampling,
                     stop_ids: Sequence[int], batch_size: int, stop_strings: Sequence[str], tokenizer: Any,
                     on_tokens: OnTokens | None, on_batch: Callable[[int], None] | None) -> list[list[int]]:
    """`model.generate` on length-sorted static batches (every row of a batch decodes until its longest ends)."""
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
                ids, att = pad_rows([prompts[i] for i in idx], pad_id, left=not encoder_decoder)
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
