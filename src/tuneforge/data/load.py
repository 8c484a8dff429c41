"""Load, validate, mix and split the datasets of a config. Every sample kept or dropped is counted."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.schema import Config, DatasetSpec
from tuneforge.data.decontam import decontaminate_records
from tuneforge.data.formats import Sample, SampleKind, to_sample
from tuneforge.data.readers import Row
from tuneforge.data.registry import iter_rows, resolve_spec
from tuneforge.errors import DataError

Convert = Callable[[Row, DatasetSpec], Any]  # a row -> a sample of the stage's own kind, or None (dropped, counted)


@dataclass
class DataReport:
    """What happened to the data; printed by `data check` and saved in the run dir."""

    read: int = 0
    invalid: int = 0
    capped: int = 0  # dropped by max_samples
    decontaminated: int = 0
    unanswerable: int = 0  # `format: qa` questions with no answer: nothing to train a reply on
    per_dataset: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        counts = {"read": self.read, "invalid": self.invalid, "capped_by_max_samples": self.capped,
                  "decontaminated": self.decontaminated}
        if self.unanswerable:
            counts["unanswerable_skipped"] = self.unanswerable
        return {**counts, "per_dataset": self.per_dataset, "warnings": self.warnings[:50]}


def load_samples(spec: DatasetSpec, cfg: Config, report: DataReport, kind: SampleKind = "chat",
                 convert: Convert | None = None) -> list:
    """Validated samples of one dataset; `convert(row, spec)` replaces the chat/text reader (preference pairs,
    feedback, prompts) and may return None for a row it dropped and counted itself."""
    spec = resolve_spec(spec, cfg.data.dataset_dir)
    samples: list = []

    def skip(e: DataError) -> None:  # unreadable rows (bad JSON line, bad UTF-8) count like invalid records
        report.read += 1
        report.invalid += 1
        report.warnings.append(f"skipped {e.message}")

    for row in iter_rows(spec, on_invalid=skip if cfg.data.invalid == "skip" else None):
        report.read += 1
        try:
            if convert:
                sample = convert(row, spec)
            else:
                sample = to_sample(row, spec.format, spec.columns, spec.tags, kind)
                report.unanswerable += sample is None
            if sample is not None:
                samples.append(sample)
        except DataError as e:
            if cfg.data.invalid == "error":
                raise
            report.invalid += 1
            report.warnings.append(f"skipped {e.message}")
        if spec.max_samples and len(samples) >= spec.max_samples:
            break
    if not samples:
        raise DataError("dataset has no usable samples", file=spec.path,
                        hint=f"{report.invalid} invalid rows" if report.invalid else "the file is empty")
    report.per_dataset[spec.path] = len(samples)
    return samples


def mix(parts: list[tuple[DatasetSpec, list[Sample]]], seed: int) -> list[Sample]:
    """Weighted mix: weight w keeps round(w * n) samples of a dataset (w > 1 repeats, w < 1 subsamples)."""
    rng = random.Random(seed)
    out: list[Sample] = []
    for spec, samples in parts:
        n = max(1, round(spec.weight * len(samples)))
        if n <= len(samples):
            out += rng.sample(samples, n) if n < len(samples) else samples
        else:
            out += samples * (n // len(samples)) + rng.sample(samples, n % len(samples))
    if len(parts) > 1:
        rng.shuffle(out)
    return out


def load_datasets(cfg: Config, kind: SampleKind = "chat", report_dir=None, convert: Convert | None = None
                  ) -> tuple[list[Sample], list[Sample], DataReport]:
    """Train and eval samples (`kind`: chats or plain text, as the stage needs) after validation, mixing,
    max_samples and eval split.

    `report_dir` (a run dir) receives the decontamination report when `data.decontaminate_against` is set.
    """
    if not cfg.data.train:
        raise DataError("no training data: set data.train to a file, directory or dataset name")
    report = DataReport()
    train = mix([(s, load_samples(s, cfg, report, kind, convert)) for s in cfg.data.train], cfg.data.mix_seed)
    evals = [x for s in cfg.data.eval for x in load_samples(s, cfg, report, kind, convert)]
    if cfg.data.max_samples and len(train) > cfg.data.max_samples:
        report.capped += len(train) - cfg.data.max_samples
        train = train[: cfg.data.max_samples]
    if cfg.data.decontaminate_against and convert is not None:
        raise DataError("data.decontaminate_against works on chat/text samples only, not on this stage's records")
    if cfg.data.decontaminate_against:
        before = len(train)
        train, _ = decontaminate_records(train, against=cfg.data.decontaminate_against,
                                         report_dir=f"{report_dir}/decontam" if report_dir else None)
        report.decontaminated = before - len(train)
    if not evals and cfg.data.eval_split > 0:
        rng = random.Random(cfg.data.mix_seed)
        idx = list(range(len(train)))
        rng.shuffle(idx)
        n_eval = max(1, int(len(train) * cfg.data.eval_split))
        eval_idx = set(idx[:n_eval])
        evals = [train[i] for i in sorted(eval_idx)]
        train = [s for i, s in enumerate(train) if i not in eval_idx]
    return train, evals, report
