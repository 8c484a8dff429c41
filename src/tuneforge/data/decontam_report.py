"""The decontamination report: flagged pairs as JSONL, a markdown review sheet and a similarity histogram PNG."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.qa_fields import QA

CATEGORIES = ("duplicate", "gray-area", "similar-but-different")
CATEGORY_HELP = {
    "duplicate": "the benchmark question copied, at most lightly edited (typos, casing, word order), "
                 "with the same answer (or no answer to compare). Contamination.",
    "gray-area": "the same question with different or extra context or a different answer, or the question "
                 "reworded with the same answer. Treated as contamination by default (Platypus removed them).",
    "similar-but-different": "semantically close (cosine >= threshold or a shared n-gram) but worded differently "
                             "and answered differently; usually a different question on the same topic. Review.",
}


@dataclass
class FlaggedPair:
    """One (training record, benchmark item) pair that a detector flagged."""

    train_index: int
    bench_index: int
    methods: list[str]
    scores: dict[str, float]  # exact / ngram / cosine + the category features
    category: str
    train: QA
    bench: QA

    def to_json(self) -> dict[str, Any]:
        return {"train_index": self.train_index, "train_file": self.train.file, "train_line": self.train.line,
                "bench_index": self.bench_index, "bench_file": self.bench.file, "bench_line": self.bench.line,
                "category": self.category, "methods": self.methods, "scores": self.scores,
                "train_question": self.train.question, "bench_question": self.bench.question,
                "train_answer": self.train.answer, "bench_answer": self.bench.answer}


@dataclass
class DecontamReport:
    """What a run found. `removed` are indices into the training records that were dropped."""

    pairs: list[FlaggedPair]
    n_train: int
    n_bench: int
    removed: list[int]
    best_cosine: np.ndarray | None = None  # every training record's highest cosine to any benchmark question
    settings: Any = None
    index_kind: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def category_counts(self) -> dict[str, int]:
        c = Counter(p.category for p in self.pairs)
        return {k: c.get(k, 0) for k in CATEGORIES}

    def method_counts(self) -> dict[str, int]:
        return dict(Counter(m for p in self.pairs for m in p.methods))

    def flagged_records(self) -> list[int]:
        return sorted({p.train_index for p in self.pairs})

    def summary(self) -> dict[str, Any]:
        s = self.settings
        return {"n_train": self.n_train, "n_bench": self.n_bench, "n_pairs": len(self.pairs),
                "n_flagged_records": len(self.flagged_records()), "n_removed": len(self.removed),
                "n_kept": self.n_train - len(self.removed), "categories": self.category_counts(),
                "methods": self.method_counts(), "index": self.index_kind, "timings": self.timings,
                "settings": None if s is None else {
                    "methods": list(s.methods), "threshold": s.threshold, "ngram": s.ngram, "model": s.model,
                    "k": s.k, "index": s.index, "drop": list(s.drop)},
                "outputs": self.outputs}

    def write(self, out_dir: str | Path) -> dict[str, str]:
        """Write report.jsonl, report.md, similarity_hist.png (when embeddings ran) and summary.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"jsonl": out / "report.jsonl", "markdown": out / "report.md", "summary": out / "summary.json"}
        with open(paths["jsonl"], "w", encoding="utf-8") as f:
            for p in self.pairs:
                f.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
        if self.best_cosine is not None and len(self.best_cosine):
            paths["histogram"] = out / "similarity_hist.png"
            self._histogram(paths["histogram"])
        self.outputs.update({k: str(v) for k, v in paths.items()})
        paths["markdown"].write_text(self.markdown(), encoding="utf-8")
        paths["summary"].write_text(json.dumps(self.summary(), indent=2), encoding="utf-8")
        return dict(self.outputs)

    def _histogram(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.hist(np.clip(self.best_cosine, -1, 1), bins=50, range=(min(0.0, float(self.best_cosine.min())), 1.0),
                color="#4477aa")
        thr = self.settings.threshold if self.settings is not None else 0.8
        ax.axvline(thr, color="#cc3311", linestyle="--", label=f"threshold {thr}")
        ax.set_yscale("log")
        ax.set_xlabel("highest cosine similarity to any benchmark question")
        ax.set_ylabel("training records (log)")
        ax.set_title(f"{self.n_train} training records vs {self.n_bench} benchmark items")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def markdown(self, per_category: int = 20) -> str:
        s = self.summary()
        lines = ["# Decontamination report", "",
                 f"- training records: {self.n_train}; benchmark items: {self.n_bench}",
                 f"- flagged pairs: {s['n_pairs']} ({s['n_flagged_records']} training records); "
                 f"removed: {s['n_removed']}; kept: {s['n_kept']}",
                 f"- methods: {', '.join(f'{k} {v}' for k, v in s['methods'].items()) or 'no hits'}"]
        if s["settings"]:
            st = s["settings"]
            lines.append(f"- settings: methods {','.join(st['methods'])}, cosine threshold {st['threshold']}, "
                         f"{st['ngram']}-grams, model {st['model']}, index {self.index_kind or '-'}, "
                         f"dropped categories {', '.join(st['drop']) or 'none'}")
        if "histogram" in self.outputs:
            lines.append(f"- histogram of each record's best cosine: `{Path(self.outputs['histogram']).name}`")
        lines += ["", "## Categories", "", "| category | pairs | meaning |", "| --- | --- | --- |"]
        lines += [f"| {c} | {n} | {CATEGORY_HELP[c]} |" for c, n in s["categories"].items()]
        for cat in CATEGORIES:
            rows = sorted((p for p in self.pairs if p.category == cat),
                          key=lambda p: -p.scores.get("cosine", p.scores.get("ngram", 1.0)))
            if not rows:
                continue
            lines += ["", f"## {cat} ({len(rows)})", "",
                      "| train (file:line) | benchmark (file:line) | methods | cosine | answer overlap | "
                      "train question | benchmark question |", "| --- | --- | --- | --- | --- | --- | --- |"]
            for p in rows[:per_category]:
                cos, ans = p.scores.get("cosine"), p.scores.get("answer_overlap")
                lines.append(f"| {_loc(p.train)} | {_loc(p.bench)} | {'+'.join(p.methods)} | "
                             f"{'-' if cos is None else f'{cos:.3f}'} | {'-' if ans is None else f'{ans:.2f}'} | "
                             f"{_cell(p.train.question)} | {_cell(p.bench.question)} |")
            if len(rows) > per_category:
                lines.append(f"\n…and {len(rows) - per_category} more in report.jsonl.")
        return "\n".join(lines) + "\n"


def _loc(q: QA) -> str:
    return f"{Path(q.file).name}:{q.line}" if q.file else "-"


def _cell(text: str, limit: int = 160) -> str:
    t = " ".join(text.split()).replace("|", "\\|")
    return t if len(t) <= limit else t[: limit - 1] + "…"
