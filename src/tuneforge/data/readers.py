"""Read rows from local files with their origin (file, line), so every later error can point at the source."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tuneforge.errors import DataError

SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt")

# Called with the error of a row that cannot be read (malformed JSON line, bad UTF-8, extra CSV fields...) when
# the caller skips invalid rows (`data.invalid: skip`); None: the first such row raises.
OnInvalid = Callable[[DataError], None] | None


def _report(err: DataError, on_invalid: OnInvalid) -> None:
    if on_invalid is None:
        raise err
    on_invalid(err)


@dataclass
class Row:
    data: dict
    file: str
    line: int  # 1-based line (JSONL/CSV/TXT), index+1 of the record (JSON list / parquet)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def read_rows(path: str | Path, on_invalid: OnInvalid = None) -> Iterator[Row]:
    """Yield rows of a file, or of every supported file in a directory (sorted, non-recursive).

    Per-row errors go to `on_invalid` (and the row is skipped) when given; whole-file errors always raise."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in SUFFIXES and f.name != "dataset_info.json")
        if not files:
            raise DataError(f"no data files ({', '.join(SUFFIXES)}) in directory", file=str(p))
        for f in files:
            yield from read_rows(f, on_invalid)
        return
    if not p.exists():
        raise DataError("data file not found", file=str(p))
    reader = {".json": _json, ".jsonl": _jsonl, ".csv": _csv, ".tsv": _csv, ".parquet": _parquet,
              ".txt": _txt}.get(p.suffix)
    if reader is None:
        raise DataError(f"unsupported file type '{p.suffix}'", file=str(p), hint=f"use one of {', '.join(SUFFIXES)}")
    yield from reader(p, on_invalid)


def _lines(p: Path, on_invalid: OnInvalid = None) -> Iterator[tuple[int, str]]:
    with open(p, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                yield i, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _report(DataError(f"not valid UTF-8 (byte {e.start})", file=str(p), line=i,
                                  hint="re-encode the file as UTF-8"), on_invalid)


def _jsonl(p: Path, on_invalid: OnInvalid = None) -> Iterator[Row]:
    for i, text in _lines(p, on_invalid):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            _report(DataError(f"malformed JSON: {e.msg} (column {e.colno})", file=str(p), line=i), on_invalid)
            continue
        if not isinstance(obj, dict):
            _report(DataError(f"each line must be a JSON object, got {type(obj).__name__}", file=str(p), line=i),
                    on_invalid)
            continue
        yield Row(obj, str(p), i)


def _json(p: Path, on_invalid: OnInvalid = None) -> Iterator[Row]:
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte {e.start})", file=str(p), line=line) from None
    stripped = text.lstrip()
    if stripped and stripped[0] == "{" and "\n{" in stripped.strip():
        # A .json file that is really JSON Lines.
        yield from _jsonl(p, on_invalid)
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON: {e.msg} (column {e.colno})", file=str(p), line=e.lineno) from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]  # {"data": [...]} wrappers (e.g. SQuAD)
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise DataError("top level must be a list of records", file=str(p))
    starts = _record_lines(text, len(obj))
    for i, rec in enumerate(obj):
        if not isinstance(rec, dict):
            _report(DataError(f"record {i} is a {type(rec).__name__}, expected an object", file=str(p),
                              line=starts[i]), on_invalid)
            continue
        yield Row(rec, str(p), starts[i])


def _record_lines(text: str, n: int) -> list[int]:
    """Line number where each top-level list element starts (cheap scan, good enough for messages)."""
    starts, depth, line, in_str, esc = [], 0, 1, False, False
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            if depth == 1:
                starts.append(line)
            depth += 1
        elif ch in "]}":
            depth -= 1
    return starts + [0] * (n - len(starts)) if len(starts) < n else starts[:n]


def _csv(p: Path, on_invalid: OnInvalid = None) -> Iterator[Row]:
    delim = "\t" if p.suffix == ".tsv" else ","
    numbered = list(_lines(p, on_invalid))  # (file line, text): skipped lines keep the numbers honest
    reader = csv.DictReader((text for _, text in numbered), delimiter=delim)
    for rec in reader:
        line = numbered[reader.line_num - 1][0] if 0 < reader.line_num <= len(numbered) else reader.line_num
        if None in rec:
            _report(DataError(f"row has more fields than the header ({len(reader.fieldnames or [])})",
                              file=str(p), line=line), on_invalid)
            continue
        yield Row(dict(rec), str(p), line)


def _parquet(p: Path, on_invalid: OnInvalid = None) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise DataError("reading parquet needs pyarrow (pip install pyarrow)", file=str(p)) from None
    try:
        table = pq.read_table(p)
    except Exception as e:
        raise DataError(f"unreadable parquet: {e}", file=str(p)) from None
    for i, rec in enumerate(table.to_pylist(), 1):
        yield Row(rec, str(p), i)


def _txt(p: Path, on_invalid: OnInvalid = None) -> Iterator[Row]:
    for i, text in _lines(p, on_invalid):
        if text.strip():
            yield Row({"text": text.rstrip("\n")}, str(p), i)
