"""The before/after report every export command prints and writes (`export_report.json` + `export_report.md`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneforge.eval.run import Target, evaluate, load_eval_config
from tuneforge.export.verify import (
    all_logits,
    is_causal_lm,
    latency_ms_per_token,
    path_size,
    perplexity,
    weight_stats,
)
from tuneforge.runs import atomic_json, atomic_write

Log = Callable[[str], None]


def measure(model, tokenizer, path: str | Path | None, rows: Sequence[Sequence[int]], *, label: str,
            eval_config: str | None = None, eval_out: Path | None = None, template: str = "auto",
            latency: bool = True, logits: Sequence[Any] | None = None, log: Log = print) -> dict[str, Any]:
    """Size on disk, parameters, sparsity, perplexity on the sample rows (from `logits` when already computed),
    ms/token and the user's eval metrics."""
    row: dict[str, Any] = {"label": label, **weight_stats(model)}
    if path is not None:
        row["file_bytes"] = path_size(path)
    if is_causal_lm(model) and rows:
        row["perplexity"] = round(perplexity(logits if logits is not None else all_logits(model, rows), rows), 4)
    if latency:
        row["ms_per_token"] = round(latency_ms_per_token(model, tokenizer), 3)
    if eval_config:
        row["eval"] = run_eval(model, tokenizer, eval_config, eval_out or Path("."), label, template, log)
    return row


def run_eval(model, tokenizer, eval_config: str, out: Path, label: str, template: str, log: Log) -> dict:
    """Main metric of each task of the `eval:` section of `eval_config` (through `tuneforge eval`'s runner)."""
    cfg = load_eval_config(eval_config, [])
    target = Target(label, cfg.model, out / f"eval-{label}", template)
    results = evaluate(target, cfg.eval, log=log, model=model, tokenizer=tokenizer)
    return {name: {"metric": t["main"], "value": t["metrics"][t["main"]], "n": t["n"]}
            for name, t in results["tasks"].items()}


def write_report(out_dir: Path, command: str, source: str, before: dict, after: dict, checks: dict,
                 extra: dict | None = None, log: Log = print) -> dict:
    """Write export_report.json / .md next to the output and print the table."""
    report = {"command": command, "source": source, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
              "before": before, "after": after, "checks": checks, **(extra or {})}
    md = markdown(report)
    atomic_json(out_dir / "export_report.json", report)
    atomic_write(out_dir / "export_report.md", md)
    log(md)
    return report


def _ratio(a: Any, b: Any) -> str:
    return f"{b / a:.3f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else ""


def markdown(report: dict) -> str:
    before, after = report["before"], report["after"]
    lines = [f"# {report['command']}: {report['source']}", "", "| | before | after | after/before |",
             "|---|---|---|---|"]
    for key in ("file_bytes", "parameters", "sparsity", "perplexity", "ms_per_token"):
        if key in before or key in after:
            b, a = before.get(key, ""), after.get(key, "")
            lines.append(f"| {key} | {b} | {a} | {_ratio(b, a)} |")
    for task in sorted({*before.get("eval", {}), *after.get("eval", {})}):
        b, a = before.get("eval", {}).get(task, {}), after.get("eval", {}).get(task, {})
        metric = a.get("metric") or b.get("metric")
        lines.append(f"| {task} {metric} | {b.get('value', '')} | {a.get('value', '')} | |")
    lines += ["", "## checks", ""]
    for name, c in report["checks"].items():
        lines.append(f"- {name}: {c['value']:.3g} (tolerance {c['tolerance']:g}) {'ok' if c['ok'] else 'FAILED'}")
    return "\n".join(lines) + "\n"
