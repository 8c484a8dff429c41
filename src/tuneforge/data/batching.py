"""Batch samplers that size micro-batches by tokens instead of by sample count.

`TokenBudgetBatchSampler` walks a seeded shuffle of the data and closes a batch when the next sample would push it
over `max_tokens`. With padding-free packing the cost of a batch is its token count, so every step does about the
same work; with padding (`pad=True`) the cost is `rows x longest`, and `window` sorts samples by length inside
windows of the shuffle first (length grouping) so that rows in one batch are of similar length.

The batches are composed once; each epoch visits them in a new seeded order. A fixed batch count matters: the
Trainer sizes the run (epochs x batches per epoch) up front and would silently drop the batches of an epoch that
happened to pack into more of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class TokenBudgetBatchSampler:
    """Yields lists of dataset indices whose (packed or padded) size stays within `max_tokens`."""

    def __init__(self, lengths, max_tokens: int, seed: int = 0, shuffle: bool = True, pad: bool = False,
                 window: int = 0, drop_last: bool = False):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if max_tokens <= 0:
            raise ValueError("max_tokens must be positive")
        self.max_tokens = int(max_tokens)
        self.seed, self.shuffle, self.pad, self.window, self.drop_last = seed, shuffle, pad, window, drop_last
        self.epoch = 0
        self._composed: list[list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        n = len(self.lengths)
        order = np.random.default_rng(self.seed).permutation(n) if self.shuffle else np.arange(n)
        if self.window > 1:
            # Sort by length inside each window (longest first), keeping the windows in shuffled order.
            parts = [w[np.argsort(-self.lengths[w], kind="stable")] for w in np.array_split(order, -(-n // self.window))]
            order = np.concatenate(parts) if parts else order
        return order

    def _compose(self) -> list[list[int]]:
        out: list[list[int]] = []
        cur: list[int] = []
        used = longest = 0
        for i in self._order().tolist():
            n = int(self.lengths[i])
            new_longest = max(longest, n)
            cost = new_longest * (len(cur) + 1) if self.pad else used + n
            if cur and cost > self.max_tokens:
                out.append(cur)
                cur, used, new_longest = [], 0, n
            cur.append(i)
            used += n
            longest = new_longest
        if cur and not self.drop_last:
            out.append(cur)
        return out

    def batches(self) -> list[list[int]]:
        """This epoch's batches: the fixed composition, in an order drawn from (seed, epoch)."""
        if self._composed is None:
            self._composed = self._compose()
        if not self.shuffle:
            return self._composed
        # Epoch 0 keeps the composition order unless length grouping made it long-first per window.
        if self.epoch == 0 and self.window <= 1:
            return self._composed
        perm = np.random.default_rng((self.seed, self.epoch, 1)).permutation(len(self._composed))
        return [self._composed[j] for j in perm]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        if self._composed is None:
            self._composed = self._compose()
        return len(self._composed)
