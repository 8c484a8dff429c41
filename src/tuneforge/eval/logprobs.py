"""Batched scoring of (prompt, answer) token sequences: summed answer log-probs of a causal LM, or the scalar score
of a sequence-classification (reward) model. Padding never changes a number: a batch gives what each sequence
gives alone (tests/unit/eval/test_eval_preference.py).

Log-probs: rows are `prompt + answer[:-1]`, left-padded with position ids counted over real tokens only, so every
answer ends at the last position and the LM head runs on the last `longest answer` positions (`logits_to_keep`).
Scores: rows are right-padded, as the reward model was trained (TRL's collator); the head reads the last non-pad
token.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from tuneforge.models.registry import base_model

Pair = tuple[Sequence[int], Sequence[int]]  # (prompt ids, answer ids)


def _batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices in batches of `size`, longest first (similar lengths together: little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i: i + size] for i in range(0, len(order), size)]


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def answer_logprobs(model: Any, tokenizer: Any, seqs: Sequence[Pair], batch_size: int = 8,
                    done: Callable[[int], None] | None = None) -> list[float]:
    """Sum of log p(answer token | everything before it) over each sequence's answer tokens."""
    import torch

    for prompt, answer in seqs:
        if not prompt or not answer:
            raise ValueError("each sequence needs at least one prompt token and one answer token")
    keep_kw = "logits_to_keep" in inspect.signature(base_model(model).forward).parameters
    out = [0.0] * len(seqs)
    for batch in _batches([len(p) + len(a) for p, a in seqs], batch_size):
        rows = [list(seqs[i][0]) + list(seqs[i][1])[:-1] for i in batch]
        answers = [list(seqs[i][1]) for i in batch]
        width, keep = max(map(len, rows)), max(map(len, answers))
        ids = torch.full((len(rows), width), _pad_id(tokenizer), dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r):] = torch.tensor(r)
            att[b, width - len(r):] = 1
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        kw = {"logits_to_keep": keep} if keep_kw else {}
        dev = model.device
        with torch.inference_mode():
            logits = model(input_ids=ids.to(dev), attention_mask=att.to(dev), position_ids=pos.to(dev),
                           use_cache=False, **kw).logits[:, -keep:, :]
            logp = logits.float().log_softmax(-1)
        for b, (i, ans) in enumerate(zip(batch, answers)):
            # the answer's tokens are predicted by the last len(ans) positions of the (left-padded) row
            picked = logp[b, keep - len(ans):, :].gather(-1, torch.tensor(ans, device=dev)[:, None])
            out[i] = float(picked.sum())
        if done:
            done(len(batch))
    return out


def sequence_scores(model: Any, tokenizer: Any, seqs: Sequence[Sequence[int]], batch_size: int = 8,
                    done: Callable[[int], None] | None = None) -> list[float]:
    """The one-logit head's score of each whole sequence (prompt + answer)."""
    import torch

    pad = _pad_id(tokenizer)
    out = [0.0] * len(seqs)
    for batch in _batches([len(s) for s in seqs], batch_size):
        width = max(len(seqs[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for b, i in enumerate(batch):
            ids[b, : len(seqs[i])] = torch.tensor(list(seqs[i]))
            att[b, : len(seqs[i])] = 1
        dev = model.device
        with torch.inference_mode():
            scores = model(input_ids=ids.to(dev), attention_mask=att.to(dev)).logits[:, 0].float()
        for b, i in enumerate(batch):
            out[i] = float(scores[b])
        if done:
            done(len(batch))
    return out


def is_reward_model(model: Any) -> bool:
    """A sequence-classification model with one output: its logit is a reward score."""
    base = base_model(model)
    return type(base).__name__.endswith("ForSequenceClassification") and base.config.num_labels == 1
