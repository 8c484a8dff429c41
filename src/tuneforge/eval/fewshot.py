"""Few-shot example selection, three ways (`fewshot_sampler`):

- `lm_eval`: lm-eval's default sampler, reproduced draw for draw: one `random.Random(seed)` per task (per
  `fewshot_match` group, since lm-eval runs e.g. each MMLU subject as its own task), asked in file order for
  k examples — k + 1 when the examples come from the evaluated file, then every row equal to the sample is
  dropped and the first k kept. A sample's examples therefore depend on the samples before it (as in lm-eval).
- `first_n`: the first k rows of the pool (minus rows equal to the sample), lm-eval's MMLU/GSM8K setup.
- `random`: one RNG per sample, seeded by (seed, task, file, line): a sample's examples don't depend on
  `limit`, order or which other samples run.
"""

from __future__ import annotations

import random
from typing import Any, Protocol, Sequence

from tuneforge.errors import DataError


class _Row(Protocol):
    file: str
    line: int
    row: dict
    raw: dict


class FewshotSampler:
    def __init__(self, task: str, k: int, method: str, pool: Sequence[Any], same_file: bool, seed: int,
                 match: str | None = None):
        self.task, self.k, self.method, self.pool, self.same_file = task, k, method, list(pool), same_file
        self.seed, self.match = seed, match
        self._rngs: dict[Any, random.Random] = {}
        self._pools: dict[Any, list[Any]] = {}

    def _candidates(self, sample: _Row) -> tuple[Any, list[Any]]:
        if not self.match:
            return None, self.pool
        key = sample.row.get(self.match)
        if key not in self._pools:
            self._pools[key] = [q for q in self.pool if q.row.get(self.match) == key]
        return key, self._pools[key]

    def draw(self, sample: _Row) -> list[Any]:
        """The k examples for one sample (call in file order for `lm_eval`)."""
        key, pool = self._candidates(sample)
        others = [q for q in pool if q.raw != sample.raw] if self.same_file else pool
        if len(others) < self.k:
            raise DataError(f"task '{self.task}' wants {self.k} few-shot examples but only {len(others)} are "
                            "available" + (f" with the same '{self.match}'" if self.match else ""),
                            file=sample.file, line=sample.line)
        if self.method == "first_n":
            return others[: self.k]
        if self.method == "random":
            rng = random.Random(f"{self.seed}|{self.task}|{sample.file}|{sample.line}")
            return rng.sample(others, self.k)
        rng = self._rngs.setdefault(key, random.Random(self.seed))
        if not self.same_file:
            return rng.sample(pool, self.k)
        picked = [q for q in rng.sample(pool, min(self.k + 1, len(pool))) if q.raw != sample.raw][: self.k]
        if len(picked) < self.k:  # duplicates of the sample were drawn: lm-eval redraws without them
            picked = rng.sample(others, self.k)
        return picked
