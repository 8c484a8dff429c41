"""Batched scores of a sequence-classification (reward) model: the scalar score of each (prompt + answer) token
sequence. Padding never changes a number: a batch gives what each sequence gives alone
(tests/unit/eval/test_eval_preference.py). Rows are right-padded, as the reward model was trained (TRL's collator);
the head reads the last non-pad token. (Answer log-probs of a causal LM come from `eval/mcq.py`'s McqScorer: a
preference pair is a context with two continuations.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tuneforge.models.registry import base_model


def _batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices in batches of `size`, longest first (similar lengths together: little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i: i + size] for i in range(0, len(order), size)]


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


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
