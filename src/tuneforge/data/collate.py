"""Batch collation: right-pad to the longest sample, or pack samples padding-free into one row.

Packed batches carry `position_ids` that restart at 0 for every sample, `cu_seq_lens_*` (the flash-attention
convention) and `shift_labels` (next-token targets shifted *inside* each sample, so the last token of one sample
never learns to predict the first token of the next). With `models/attention.py` the samples do not attend to each
other; without it transformers derives the same isolation from the restarting position ids (slower). There is no
`attention_mask`: a mask of ones would switch that fallback off and let samples attend to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tuneforge.data.tokenize import IGNORE


@dataclass
class PadCollator:
    pad_id: int
    multiple_of: int = 8

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(x["input_ids"]) for x in batch)
        width = -(-longest // self.multiple_of) * self.multiple_of
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, x in enumerate(batch):
            n = len(x["input_ids"])
            ids[i, :n] = torch.as_tensor(x["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.as_tensor(x["labels"], dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PackedCollator:
    """Padding-free packing: all samples of a batch back to back in one row, isolated from each other."""

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor | int]:
        lengths = [len(x["input_ids"]) for x in batch]
        ids = np.concatenate([np.asarray(x["input_ids"], dtype=np.int64) for x in batch])
        labels = np.concatenate([np.asarray(x["labels"], dtype=np.int64) for x in batch])
        # shift_labels[t] = labels[t + 1] within a sample; the last token of each sample has no target.
        shifted = np.full_like(labels, IGNORE)
        shifted[:-1] = labels[1:]
        ends = np.cumsum(lengths)
        shifted[ends - 1] = IGNORE
        positions = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
        cu = torch.from_numpy(np.concatenate([[0], ends]).astype(np.int32))
        longest = max(lengths)
        return {
            "input_ids": torch.from_numpy(ids)[None],
            "labels": torch.from_numpy(labels)[None],
            "shift_labels": torch.from_numpy(shifted)[None],
            "position_ids": torch.from_numpy(positions)[None],
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": longest,
            "max_length_k": longest,
            # No KV cache: with one, transformers skips deriving per-sample masks from position_ids.
            "use_cache": False,
        }


def make_collator(packing: bool, tokenizer):
    """Padding-free packing (as resolved for the model, see `train/sft.py`), else right-padding."""
    if packing:
        return PackedCollator()
    return PadCollator(pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
