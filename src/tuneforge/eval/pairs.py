"""The pairs of a preference task file, read and validated by the dpo stage's reader (any layout it accepts):
loading only, so task resolution (`eval/tasks.py`) needs none of the scoring (`eval/preference.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config.schema import DatasetSpec
from tuneforge.data.preference import PairReader, PairSample
from tuneforge.data.readers import read_rows
from tuneforge.errors import DataError


@dataclass
class PairSamples:
    """The pairs of a task file (each with a stable id: its row number) and the rows dropped on reading."""

    pairs: list[tuple[str, PairSample]]
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)


def load_pairs(path: str, limit: int | None = None) -> PairSamples:
    """Validate every row of a preference file (file:line errors); keep the first `limit` pairs."""
    if not Path(path).is_file():
        raise DataError("eval task file not found", file=path)
    reader, spec = PairReader(), DatasetSpec(path=path)
    pairs, n_rows = [], 0
    for i, row in enumerate(read_rows(path)):
        n_rows += 1
        sample = reader(row, spec)
        if sample is not None:
            pairs.append((str(i), sample))
    counts = reader.counts.as_dict()
    if not pairs:
        raise DataError("no preference pairs in the file" if not n_rows else "every pair was dropped", file=path,
                        hint=None if not n_rows else str({k: v for k, v in counts.items() if k != "warnings"}))
    dropped = {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_") and v}
    return PairSamples(pairs[:limit] if limit else pairs, dropped, counts["warnings"])
