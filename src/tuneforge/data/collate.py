"""Batch collation: right-pad to the longest sample (rounded up to a multiple of 8)."""

from __future__ import annotations

from dataclasses import dataclass

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


def make_collator(cfg, tokenizer):
    """The collator a config asks for (padding now; packing plugs in here)."""
    return PadCollator(pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
