"""Data hygiene jobs behind `tuneforge decontam`, `tuneforge data dedup` and `tuneforge data filter`.

Each command writes into an output directory: the surviving records (one file per input file, same name and
format), a JSONL of what was dropped and why, and a summary.json. Embedding models load only when a method needs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from tuneforge import run_lock
from tuneforge.data.decontam import DecontamSettings, decontaminate, load_benchmarks
from tuneforge.data.decontam_report import CATEGORIES
from tuneforge.data.dedup import dedup
from tuneforge.data.hygiene_io import config_inputs, is_config, read_dataset, source_files, write_by_source
from tuneforge.data.qa_fields import FieldSpec, rows_to_qas
from tuneforge.data.quality import QualityRules, filter_quality
from tuneforge.errors import ConfigError, DataError


def _inputs(paths: list[str]) -> tuple[list[str], list[str]]:
    """(dataset paths, benchmark paths from configs) for files, dirs and config .yaml files."""
    if not paths:
        raise DataError("no input dataset given")
    data, against = [], []
    for p in paths:
        if is_config(p):
            d, a = config_inputs(p)
            data += d
            against += a
        else:
            data.append(p)
    return data, against


def _default_out(first: str, what: str) -> Path:
    return Path(f"{Path(first).stem or 'data'}_{what}")


def _print(lines: list[str]) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    for line in lines:
        console.print(line)


def run_decontam(train: list[str], against: list[str], methods: list[str], threshold: Optional[float],
                 ngram: Optional[int], model: str, field: Optional[str], train_field: Optional[str], index: str, k: int,
                 keep_similar: bool, out: Optional[str], cache_dir: Optional[str]) -> dict:
    data, cfg_against = _inputs(train)
    against = against or cfg_against
    if not against:
        raise DataError("no benchmark files to compare against",
                        hint="pass --against FILE (or set data.decontaminate_against in the config)")
    if k < 1:  # checked before any work, so summary.json never records a value that was not used
        raise ConfigError(f"--k must be at least 1 (got {k})", hint="the number of nearest benchmark questions "
                          "checked per training record, e.g. --k 5")
    out_dir = Path(out) if out else _default_out(data[0], "decontam")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("--out must be a directory, but this is an existing file", file=str(out_dir),
                        hint="choose a new directory name for the filtered data and report")
    run_lock.acquire(out_dir, "decontam output dir")  # one writer per output dir, held until the process ends
    drop = tuple(c for c in CATEGORIES if not (keep_similar and c == "similar-but-different"))
    knobs = {k: v for k, v in (("threshold", threshold), ("ngram", ngram)) if v is not None}
    settings = DecontamSettings(methods=tuple(methods), model=model, k=k, index=index, cache_dir=cache_dir,
                                drop=drop, **knobs)
    rows = read_dataset(data)
    qas = rows_to_qas(rows, FieldSpec.parse(train_field))
    bench = load_benchmarks(against, FieldSpec.parse(field))
    report = decontaminate(qas, bench, settings)
    removed = set(report.removed)
    files = write_by_source([r for i, r in enumerate(rows) if i not in removed], source_files(rows), out_dir)
    report.outputs["filtered"] = ", ".join(str(f) for f in files)
    outputs = report.write(out_dir)
    s = report.summary()
    _print([f"decontam: {s['n_train']} records vs {s['n_bench']} benchmark items: removed {s['n_removed']} "
            f"records, kept {s['n_kept']} ({s['n_pairs']} contaminated record-item pairs)",
            "  records by category: " + ", ".join(f"{c} {n}" for c, n in s["records_by_category"].items()),
            f"  filtered data: {outputs['filtered']}", f"  report: {outputs['markdown']}"])
    return s


def _write_hygiene_outputs(rows, keep: list[int], dropped: list[dict], summary: dict, out_dir: Path) -> dict:
    files = write_by_source([rows[i] for i in keep], source_files(rows), out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "removed.jsonl", "w", encoding="utf-8") as f:
        for d in dropped:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    summary = {**summary, "outputs": {"data": [str(p) for p in files], "removed": str(out_dir / "removed.jsonl")}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def run_dedup(inputs: list[str], methods: list[str], threshold: Optional[float], field: Optional[str], model: str,
              out: Optional[str], cache_dir: Optional[str]) -> dict:
    data, _ = _inputs(inputs)
    rows = read_dataset(data)
    qas = rows_to_qas(rows, FieldSpec.parse(field))
    result = dedup(qas, tuple(methods), threshold, model=model, cache_dir=cache_dir)
    dropped = [{"file": rows[d.index].file, "line": rows[d.index].line, "duplicate_of": rows[d.of].where,
                "method": d.method, "score": d.score, "question": qas[d.index].question[:200]}
               for d in result.removed]
    summary = {"n_in": len(rows), "n_kept": len(result.kept), "n_removed": len(result.removed),
               "by_method": result.counts(), "methods": methods, "threshold": threshold}
    summary = _write_hygiene_outputs(rows, result.kept, dropped, summary, Path(out) if out else
                                     _default_out(data[0], "dedup"))
    _print([f"dedup: {summary['n_in']} records, removed {summary['n_removed']} duplicates "
            f"({', '.join(f'{k} {v}' for k, v in summary['by_method'].items()) or 'none'}), kept {summary['n_kept']}",
            f"  data: {', '.join(summary['outputs']['data'])}"])
    return summary


def run_filter(inputs: list[str], rules_kw: dict, field: Optional[str], out: Optional[str]) -> dict:
    data, _ = _inputs(inputs)
    rows = read_dataset(data)
    qas = rows_to_qas(rows, FieldSpec.parse(field))
    result = filter_quality(qas, QualityRules(**rules_kw))
    dropped = [{"file": rows[i].file, "line": rows[i].line, "reasons": reasons, "question": qas[i].question[:200]}
               for i, reasons in result.dropped]
    summary = {"n_in": len(rows), "n_kept": len(result.kept), "n_removed": len(result.dropped),
               "by_reason": result.counts(), "rules": rules_kw}
    summary = _write_hygiene_outputs(rows, result.kept, dropped, summary, Path(out) if out else
                                     _default_out(data[0], "filtered"))
    _print([f"filter: {summary['n_in']} records, removed {summary['n_removed']} "
            f"({', '.join(f'{k} {v}' for k, v in summary['by_reason'].items()) or 'none'}), kept {summary['n_kept']}",
            f"  data: {', '.join(summary['outputs']['data'])}"])
    return summary
