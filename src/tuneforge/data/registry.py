"""Resolve dataset names: local paths, LLaMA-Factory `dataset_info.json` entries, HF `datasets` (saved or hub)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Iterator

from tuneforge.config.schema import DatasetSpec
from tuneforge.data.readers import OnInvalid, Row, read_rows
from tuneforge.errors import DataError

# LLaMA-Factory column keys → our canonical field names.
LF_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
              "system": "system", "messages": "messages"}


def load_registry(dataset_dir: str | None) -> dict:
    if not dataset_dir:
        return {}
    path = Path(dataset_dir) / "dataset_info.json"
    if not path.is_file():
        raise DataError("no dataset_info.json in data.dataset_dir", file=str(Path(dataset_dir)))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON: {e.msg}", file=str(path), line=e.lineno) from None


def resolve_spec(spec: DatasetSpec, dataset_dir: str | None) -> DatasetSpec:
    """Turn a registry name into a concrete file spec (columns/format/tags taken from the entry)."""
    if Path(spec.path).exists():
        return spec
    registry = load_registry(dataset_dir)
    entry = registry.get(spec.path)
    if entry is None:
        if registry:
            close = difflib.get_close_matches(spec.path, list(registry), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "not a file and not in dataset_info.json"
            raise DataError(f"dataset '{spec.path}' not found", hint=hint)
        return spec  # maybe a hub dataset id; iter_rows decides
    if "file_name" not in entry:
        hub = entry.get("hf_hub_url") or entry.get("ms_hub_url") or entry.get("script_url")
        return spec.model_copy(update={"path": hub or spec.path})
    columns = {LF_COLUMNS.get(k, k): v for k, v in (entry.get("columns") or {}).items()}
    fmt = spec.format
    if fmt == "auto":
        fmt = entry.get("formatting", "alpaca")
        if fmt == "alpaca" and set(columns) == {"instruction"}:
            fmt = "text"  # LF pre-training entries map the document to `prompt`
            columns = {"text": columns["instruction"]}
    return spec.model_copy(update={
        "path": str(Path(dataset_dir) / entry["file_name"]),
        "format": fmt,
        "columns": {**columns, **spec.columns},
        "tags": {**(entry.get("tags") or {}), **spec.tags},
    })


def iter_rows(spec: DatasetSpec, on_invalid: OnInvalid = None) -> Iterator[Row]:
    """Rows of a local file/dir, a `save_to_disk` dir, or a hub dataset (only with network allowed); unreadable
    rows of local files go to `on_invalid` when given (see readers.read_rows)."""
    p = Path(spec.path)
    if p.is_dir() and ((p / "state.json").exists() or (p / "dataset_dict.json").exists()):
        yield from _hf_rows(spec, from_disk=True)
    elif p.exists():
        yield from read_rows(p, on_invalid)
    else:
        yield from _hf_rows(spec, from_disk=False)


def _hf_rows(spec: DatasetSpec, from_disk: bool) -> Iterator[Row]:
    try:
        import datasets
    except ImportError:  # pragma: no cover
        raise DataError(f"'{spec.path}' is not a local file and `datasets` is not installed") from None
    try:
        if from_disk:
            ds = datasets.load_from_disk(spec.path)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[spec.split]
        else:
            ds = datasets.load_dataset(spec.path, split=spec.split)
    except Exception as e:
        raise DataError(f"dataset '{spec.path}' is not a local file and could not be loaded with `datasets` "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                        hint="check the path; hub datasets need TUNEFORGE_ALLOW_NETWORK=1") from None
    for i, rec in enumerate(ds, 1):
        yield Row(dict(rec), f"{spec.path}[{spec.split}]", i)
