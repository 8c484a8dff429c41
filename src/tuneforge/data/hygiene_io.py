"""Inputs and outputs of the data-hygiene commands: read a dataset (file, dir, config, registry name) as Rows and
write the rows that survive back in the same format as each source file (.json list, .jsonl, .csv/.tsv,
.parquet, .txt)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from tuneforge.config.load import load_config
from tuneforge.data.registry import resolve_spec
from tuneforge.data.readers import SUFFIXES, Row, read_rows
from tuneforge.errors import DataError

CONFIG_SUFFIXES = (".yaml", ".yml")


def is_config(path: str | Path) -> bool:
    return Path(path).suffix in CONFIG_SUFFIXES


def config_inputs(path: str | Path) -> tuple[list[str], list[str]]:
    """(training dataset paths, data.decontaminate_against) of a YAML config; registry names resolved."""
    cfg = load_config(path)
    if not cfg.data.train:
        raise DataError("config has no data.train datasets", file=str(path))
    paths = [resolve_spec(spec, cfg.data.dataset_dir).path for spec in cfg.data.train]
    return paths, list(cfg.data.decontaminate_against)


def read_dataset(paths: list[str | Path]) -> list[Row]:
    """All rows of the given files/dirs; DataError if a path is missing or the whole input is empty."""
    rows: list[Row] = []
    for p in paths:
        if not Path(p).exists():
            raise DataError("dataset not found", file=str(p), hint="give a data file, a directory or a config .yaml")
        got = list(read_rows(p))
        if not got:
            raise DataError("dataset has no records (empty input)", file=str(p))
        rows += got
    if not rows:
        raise DataError("no input datasets given")
    return rows


def check_same_format(src: str | Path, dst: str | Path) -> None:
    if Path(src).suffix != Path(dst).suffix:
        raise DataError(f"output format '{Path(dst).suffix or '(none)'}' does not match the input format "
                        f"'{Path(src).suffix}'", file=str(dst), hint="the filtered dataset keeps the input's format")


def write_rows(rows: list[Row], dst: str | Path, like: str | Path) -> Path:
    """Write rows' data to `dst` in the format of the source file `like` (atomic replace)."""
    dst, like = Path(dst), Path(like)
    check_same_format(like, dst)
    if dst.resolve() == like.resolve():
        raise DataError("refusing to overwrite the input file", file=str(dst), hint="choose another --out")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    records = [r.data for r in rows]
    suffix = like.suffix
    if suffix == ".json":
        tmp.write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    elif suffix == ".jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    elif suffix in (".csv", ".tsv"):
        header = _csv_header(like) or (list(records[0]) if records else [])
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header, delimiter="\t" if suffix == ".tsv" else ",")
            w.writeheader()
            w.writerows(records)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(like)
        pq.write_table(pa.Table.from_pylist(records, schema=schema), tmp)
    elif suffix == ".txt":
        tmp.write_text("".join(str(rec.get("text", "")) + "\n" for rec in records), encoding="utf-8")
    else:
        raise DataError(f"cannot write '{suffix}' files", file=str(dst), hint=f"supported: {', '.join(SUFFIXES)}")
    os.replace(tmp, dst)
    return dst


def _csv_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.reader(f, delimiter="\t" if path.suffix == ".tsv" else ","), [])


def write_by_source(rows: list[Row], sources: list[str], out_dir: str | Path, suffix: str = "") -> list[Path]:
    """One output file per source file (`out_dir/<name><suffix><ext>`), each with that file's surviving rows."""
    out: list[Path] = []
    names: set[str] = set()
    for src in sources:
        p = Path(src)
        name = f"{p.stem}{suffix}{p.suffix}"
        if name in names:  # same file name from two dirs: keep both
            name = f"{p.parent.name}_{name}"
        names.add(name)
        out.append(write_rows([r for r in rows if r.file == src], Path(out_dir) / name, p))
    return out


def source_files(rows: list[Row]) -> list[str]:
    """Distinct source files in first-seen order."""
    return list(dict.fromkeys(r.file for r in rows))
