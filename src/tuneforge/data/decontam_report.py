"""The decontamination report: flagged pairs and per-record verdicts as JSONL, a markdown review sheet with the
differing words highlighted, and a similarity histogram PNG."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.qa_fields import QA, normalize
from tuneforge.runs import atomic_json, atomic_jsonl, atomic_write

CATEGORIES = ("duplicate", "gray-area", "similar-but-different")
SEVERITY = {c: n for n, c in enumerate(CATEGORIES)}  # a record's category is its most severe pair's
CATEGORY_HELP = {
    "duplicate": "the benchmark question copied (stem alone, with its choices in any order, lightly edited, or "
                 "inside a longer prompt) and answered the same way, or not answered. Contamination.",
    "gray-area": "the question reworded (an embedding neighbour) with the same answer or the same choices. "
                 "Treated as contamination by default (Platypus removed these).",
    "similar-but-different": "the benchmark question copied or reworded, but with a different answer or changed "
                             "numbers: the item's template leaked, not its solution. Removed by default; "
                             "`--keep-similar` keeps them.",
}


@dataclass
class FlaggedPair:
    """One (training record, benchmark item) pair judged contaminated."""

    train_index: int
    bench_index: int
    methods: list[str]  # the evidence that matched: stem, ngram, choices, answer, embedding
    scores: dict[str, Any]  # the pair's features (decontam_match.pair_features) and its score
    category: str
    train: QA
    bench: QA
    found_by: list[str] = field(default_factory=list)  # the candidate searches that proposed the pair

    def to_json(self) -> dict[str, Any]:
        return {"train_index": self.train_index, "train_file": self.train.file, "train_line": self.train.line,
                "bench_index": self.bench_index, "bench_file": self.bench.file, "bench_line": self.bench.line,
                "category": self.category, "evidence": self.methods, "found_by": self.found_by,
                "scores": self.scores, "train_question": self.train.question, "bench_question": self.bench.question,
                "train_answer": self.train.answer, "bench_answer": self.bench.answer}


@dataclass
class RecordVerdict:
    """The decision for one flagged training record: its most severe pair decides the category."""

    train_index: int
    category: str
    removed: bool
    score: float
    pair: FlaggedPair  # the deciding pair
    n_pairs: int

    @staticmethod
    def from_pairs(pairs: list[FlaggedPair], drop: tuple[str, ...]) -> list[RecordVerdict]:
        by_record: dict[int, list[FlaggedPair]] = {}
        for p in pairs:
            by_record.setdefault(p.train_index, []).append(p)
        out = []
        for i, ps in sorted(by_record.items()):
            top = min(ps, key=lambda p: (SEVERITY[p.category], -p.scores.get("score", 0.0)))
            out.append(RecordVerdict(i, top.category, top.category in drop, top.scores.get("score", 0.0), top,
                                     len(ps)))
        return out


@dataclass
class DecontamReport:
    """What a run found. `removed` are indices into the training records that were dropped."""

    pairs: list[FlaggedPair]
    n_train: int
    n_bench: int
    removed: list[int]
    records: list[RecordVerdict] = field(default_factory=list)
    best_cosine: np.ndarray | None = None  # every training record's highest cosine to any benchmark question
    settings: Any = None
    index_kind: str | None = None
    n_candidates: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def category_counts(self) -> dict[str, int]:
        """Flagged *records* per category (a record counts once, under its most severe pair)."""
        c = Counter(r.category for r in self.records)
        return {k: c.get(k, 0) for k in CATEGORIES}

    def pair_category_counts(self) -> dict[str, int]:
        c = Counter(p.category for p in self.pairs)
        return {k: c.get(k, 0) for k in CATEGORIES}

    def method_counts(self) -> dict[str, int]:
        """Flagged pairs per kind of evidence."""
        return dict(Counter(m for p in self.pairs for m in p.methods))

    def flagged_records(self) -> list[int]:
        return [r.train_index for r in self.records]

    def summary(self) -> dict[str, Any]:
        s = self.settings
        return {"n_train": self.n_train, "n_bench": self.n_bench, "n_candidate_pairs": self.n_candidates,
                "n_pairs": len(self.pairs), "n_flagged_records": len(self.records), "n_removed": len(self.removed),
                "n_kept": self.n_train - len(self.removed), "records_by_category": self.category_counts(),
                "pairs_by_category": self.pair_category_counts(), "pairs_by_evidence": self.method_counts(),
                "index": self.index_kind, "timings": self.timings,
                "settings": None if s is None else {
                    "methods": list(s.methods), "threshold": s.threshold, "ngram": s.ngram, "model": s.model,
                    "k": s.k, "index": s.index, "drop": list(s.drop)},
                "outputs": self.outputs}

    def write(self, out_dir: str | Path) -> dict[str, str]:
        """Write report.jsonl (pairs), records.jsonl (one verdict per flagged record), report.md,
        similarity_hist.png (when embeddings ran) and summary.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"jsonl": out / "report.jsonl", "records": out / "records.jsonl", "markdown": out / "report.md",
                 "summary": out / "summary.json"}
        atomic_jsonl(paths["jsonl"], [p.to_json() for p in self.pairs])
        atomic_jsonl(paths["records"], [{"train_index": r.train_index, "train_file": r.pair.train.file,
                                         "train_line": r.pair.train.line, "category": r.category,
                                         "removed": r.removed, "score": r.score, "n_pairs": r.n_pairs,
                                         "bench_file": r.pair.bench.file, "bench_line": r.pair.bench.line,
                                         "evidence": r.pair.methods} for r in self.records])
        if self.best_cosine is not None and len(self.best_cosine):
            paths["histogram"] = out / "similarity_hist.png"
            self._histogram(paths["histogram"])
        self.outputs.update({k: str(v) for k, v in paths.items()})
        atomic_write(paths["markdown"], self.markdown())
        atomic_json(paths["summary"], self.summary())
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
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)

    def markdown(self, per_category: int = 30) -> str:
        s = self.summary()
        lines = ["# Decontamination report", "",
                 f"- training records: {self.n_train}; benchmark items: {self.n_bench}",
                 f"- **records**: flagged {s['n_flagged_records']}, removed {s['n_removed']}, kept {s['n_kept']}",
                 (f"- **pairs** (record, benchmark item): {s['n_candidate_pairs']} candidates measured, "
                  f"{s['n_pairs']} judged contaminated"),
                 f"- evidence in those pairs: {_counts(s['pairs_by_evidence'])}"]
        if s["settings"]:
            st = s["settings"]
            lines.append(f"- settings: searches {','.join(st['methods'])}, paraphrase cosine {st['threshold']}, "
                         f"unique {st['ngram']}-grams, model {st['model']}, index {self.index_kind or '-'}, "
                         f"removed categories {', '.join(st['drop']) or 'none'}")
        if "histogram" in self.outputs:
            lines.append(f"- histogram of each record's best cosine: `{Path(self.outputs['histogram']).name}`")
        lines += ["", "## Categories", "", "| category | records | pairs | meaning |", "| --- | --- | --- | --- |"]
        pc = s["pairs_by_category"]
        lines += [f"| {c} | {n} | {pc[c]} | {CATEGORY_HELP[c]} |" for c, n in s["records_by_category"].items()]
        lines += ["", "## Records", "", "Differing words are in **bold**. Full pairs with every feature: report.jsonl.",
                  "", ("| record (file:line) | decision | category | score | evidence | benchmark item | "
                       "record question | benchmark question | record answer | benchmark answer |"),
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        shown = Counter()
        for r in sorted(self.records, key=lambda r: (SEVERITY[r.category], -r.score)):
            shown[r.category] += 1
            if shown[r.category] > per_category:
                continue
            p = r.pair
            mine, theirs = highlight_diff(p.train.stem_text, p.bench.stem_text)
            lines.append(f"| {_loc(p.train)} | {'removed' if r.removed else 'kept'} | {r.category} | {r.score:.2f} | "
                         f"{'+'.join(p.methods)} | {_loc(p.bench)} | {mine} | {theirs} | {_cell(p.train.answer)} | "
                         f"{_cell(p.bench.answer)} |")
        hidden = sum(max(0, n - per_category) for n in shown.values())
        if hidden:
            lines.append(f"\n…and {hidden} more records in records.jsonl.")
        return "\n".join(lines) + "\n"


def highlight_diff(a: str, b: str, limit: int = 600) -> tuple[str, str]:
    """Both texts as table cells with the words that differ in **bold** (word-level alignment, linear memory)."""
    from rapidfuzz.distance import Indel

    wa, wb = a.split(), b.split()
    na, nb = [normalize(w) for w in wa], [normalize(w) for w in wb]
    ma, mb = [False] * len(wa), [False] * len(wb)
    for op in Indel.opcodes(na, nb):
        if op.tag != "equal":
            ma[op.src_start:op.src_end] = [True] * (op.src_end - op.src_start)
            mb[op.dest_start:op.dest_end] = [True] * (op.dest_end - op.dest_start)
    return _marked(wa, ma, limit), _marked(wb, mb, limit)


def _marked(words: list[str], marks: list[bool], limit: int) -> str:
    out = " ".join(f"**{w}**" if m else w for w, m in zip(words, marks)).replace("****", "")
    return _cell(out, limit)


def _counts(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items()) or "none"


def _loc(q: QA) -> str:
    return f"{Path(q.file).name}:{q.line}" if q.file else "-"


def _cell(text: str, limit: int = 300) -> str:
    t = " ".join(text.split()).replace("|", "\\|")
    return t if len(t) <= limit else t[: limit - 1] + "…"
