"""Rows for the task stages (cls, qa, seq2seq): reading local files with file:line, train/eval splits, column lookup,
token-length statistics for `tuneforge data check`.

Field names are resolved per dataset in this order: the dataset's `columns` map (canonical name -> file column), the
`task.*_column` setting, then the usual names of each task.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable

from tuneforge.data.readers import Row, read_rows
from tuneforge.errors import ConfigError, DataError

Rows = list[tuple[Row, Any]]  # each row with the DatasetSpec it came from


def load_rows(specs: Iterable[Any], skipped: list[DataError] | None = None) -> Rows:
    """Rows of every DatasetSpec (capped by its `max_samples`), each paired with its spec. With `skipped` (the
    caller's `data.invalid: skip`), unreadable rows are appended there instead of stopping the run."""
    out: Rows = []
    for spec in specs:
        if not Path(spec.path).exists():
            raise DataError("data file or directory not found", file=spec.path,
                            hint="task stages read local json/jsonl/csv/parquet files")
        n = 0
        for row in read_rows(spec.path, on_invalid=skipped.append if skipped is not None else None):
            if spec.max_samples is not None and n >= spec.max_samples:
                break
            out.append((row, spec))
            n += 1
        if n == 0:
            raise DataError("no records", file=spec.path)
    return out


def task_splits(cfg: Any, skipped: list[DataError] | None = None) -> tuple[Rows, Rows]:
    """(train, eval) rows: data.eval when given, else a seeded `data.eval_split` hold-out of train."""
    if not cfg.data.train:
        raise ConfigError("data.train is empty", hint="add data: {train: [path/to/train.jsonl]}")
    train = load_rows(cfg.data.train, skipped)
    if cfg.data.max_samples:
        train = train[: cfg.data.max_samples]
    if cfg.data.eval:
        evals = load_rows(cfg.data.eval, skipped)
    else:
        train, evals = split_holdout(train, cfg.data.eval_split, cfg.data.mix_seed)
    if cfg.task.max_eval_samples:
        evals = evals[: cfg.task.max_eval_samples]
    return train, evals


def split_holdout(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic (train, eval) split of a list; eval gets `fraction` of the items (at least one)."""
    if not 0 < fraction < 1:
        return items, []
    idx = list(range(len(items)))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, int(round(len(items) * fraction)))
    held = set(idx[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def column(row: Row, spec: Any, canonical: str, configured: str | None, candidates: tuple[str, ...] = ()) -> str | None:
    """The file's column for a canonical field: spec.columns, then the task setting, then the first candidate present."""
    cols = getattr(spec, "columns", None) or {}
    if canonical in cols:
        return cols[canonical]
    if configured:
        return configured
    return next((c for c in candidates if c in row.data), None)


def text_field(row: Row, key: str | None, what: str, required: bool = True) -> str | None:
    """A string field of a row, or a DataError naming file:line and the fields that are there."""
    val = row.data.get(key) if key else None
    if val is None:
        if not required:
            return None
        raise DataError(f"missing {what} field '{key or '?'}'", file=row.file, line=row.line,
                        hint=f"fields present: {sorted(row.data)}; set task.*_column or the dataset's columns")
    if not isinstance(val, str):
        raise DataError(f"{what} field '{key}' must be a string, got {type(val).__name__}", file=row.file, line=row.line)
    return val


def token_length_stats(out: dict, warnings: list, tok: Any, texts: list[str], pairs: list | None, limit: int,
                  key: str) -> None:
    lengths = [len(x) for x in tok(texts, pairs)["input_ids"]] if texts else []
    over = sum(n > limit for n in lengths)
    out[f"{key}.p50/p95/max"] = f"{percentile(lengths, 50)}/{percentile(lengths, 95)}/{max(lengths, default=0)}"
    out[f"{key}.truncated"] = over
    if over:
        warnings.append(f"{over} of {len(lengths)} samples exceed {limit} tokens ({key}) and will be truncated")


def percentile(values: list[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q / 100))]
