"""Benchmark decontamination (Platypus-style): find training records that leak benchmark items, drop them.

Candidates (training record, benchmark item) come from three searches:
- exact:     the normalised stems (question without lettered choices) are equal;
- ngram:     the record contains word n-grams (default 8) that occur in exactly one benchmark item; n-grams
             shared by several items (templates, shared passages) are not evidence (``decontam_match.BenchStats``);
- embedding: the k nearest benchmark items by cosine of the sentence embeddings of the stems' *cores* (the stem
             without benchmark boilerplate; generic MCQ stems keep their choices), found with faiss.
Every candidate is then measured through several views (stem core, choices, answer, numbers) and ``decide``
combines the evidence: a copied stem or unique n-grams remove the record; an embedding neighbour removes it only
with the same answer (or the same choices), or at a very high cosine. The category follows from the evidence
(rules in docs/decontam.md). ``decontaminate_records`` is the entry point for the training pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneforge.data.decontam_match import (
    MIN_CORE_WORDS,
    PARAPHRASE_COSINE,
    UNIQUE_N,
    BenchStats,
    Views,
    decide,
    pair_features,
)
from tuneforge.data.decontam_report import (
    CATEGORIES,
    DecontamReport,
    FlaggedPair,
    RecordVerdict,
)
from tuneforge.data.embed_index import embed, search
from tuneforge.data.qa_fields import QA, FieldSpec, rows_to_qas
from tuneforge.data.readers import Row, read_rows
from tuneforge.errors import DataError

METHODS = ("exact", "ngram", "embedding")
CANDIDATE_COSINE = 0.5  # embedding neighbours below this are not even measured


@dataclass
class DecontamSettings:
    """Knobs of one decontamination run; written into the report."""

    methods: tuple[str, ...] = METHODS
    threshold: float = PARAPHRASE_COSINE
    ngram: int = UNIQUE_N
    model: str = "builtin:minilm"
    k: int = 5
    index: str = "auto"
    batch_size: int = 64
    cache_dir: str | None = None
    drop: tuple[str, ...] = CATEGORIES

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        self.drop = tuple(self.drop)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise DataError(f"unknown decontamination method(s) {bad or '(none)'}", hint=f"use {','.join(METHODS)}")
        bad = [c for c in self.drop if c not in CATEGORIES]
        if bad:
            raise DataError(f"unknown category {bad}", hint=f"use {', '.join(CATEGORIES)}")
        if not 0 < self.threshold <= 1:
            raise DataError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.index not in ("auto", "flat", "hnsw", "brute"):
            raise DataError(f"unknown index '{self.index}'", hint="use auto, flat, hnsw or brute")
        if self.ngram < 1:
            raise DataError(f"n-gram size must be >= 1, got {self.ngram}")


def embedding_text(v: Views, with_choices: bool) -> str:
    """What gets embedded: the stem core, plus the choices when the core alone is generic (or asked for)."""
    generic = len(v.core.split()) < MIN_CORE_WORDS
    return " ".join([v.core if not generic else v.stem, *(v.choices if (with_choices or generic) else ())])


def _embedding_candidates(tv: list[Views], bv: list[Views], s: DecontamSettings
                          ) -> tuple[dict[tuple[int, int], float], np.ndarray, str, float]:
    """(i, j) -> cosine for each record's k nearest items (core view, and core + choices view for MCQ records),
    each record's best cosine (histogram), the index kind and the embedding time."""
    t_texts = [embedding_text(v, False) for v in tv]
    c_rows = [i for i, v in enumerate(tv) if v.choices]
    c_texts = [embedding_text(v, True) for i, v in enumerate(tv) if v.choices]
    b_texts = [embedding_text(v, False) for v in bv]
    unique = list(dict.fromkeys(t_texts + c_texts + b_texts))  # each distinct text embedded once
    t0 = time.perf_counter()
    vecs = embed(unique, s.model, s.batch_size, s.cache_dir)
    embed_s = time.perf_counter() - t0
    pos = {t: n for n, t in enumerate(unique)}
    b_vecs = vecs[[pos[t] for t in b_texts]]
    pairs: dict[tuple[int, int], float] = {}
    best = np.zeros(len(tv), np.float32)
    kind = "none"
    for rows, texts in ((list(range(len(tv))), t_texts), (c_rows, c_texts)):
        if not rows:
            continue
        nb = search(vecs[[pos[t] for t in texts]], b_vecs, k=s.k, kind=s.index)
        kind = nb.index_kind
        for r, i in enumerate(rows):
            best[i] = max(best[i], nb.scores[r, 0])
            for j, sc in zip(nb.ids[r], nb.scores[r]):
                if j >= 0 and sc >= CANDIDATE_COSINE:
                    key = (i, int(j))
                    pairs[key] = max(pairs.get(key, -1.0), float(sc))
    return pairs, best, kind, embed_s


def decontaminate(train: list[QA], bench: list[QA], settings: DecontamSettings | None = None) -> DecontamReport:
    """Measure every candidate (record, item) pair, decide which records leak benchmark items, and report."""
    s = settings or DecontamSettings()
    if not train:
        raise DataError("the training data is empty: nothing to decontaminate")
    if not bench:
        raise DataError("the benchmark data is empty: nothing to decontaminate against")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    stats = BenchStats(bench, s.ngram)
    tv = [stats.views_of(q) for q in train]
    bv = stats.views
    timings["views_s"] = time.perf_counter() - t0
    found: dict[tuple[int, int], set[str]] = {}
    hits_by_pair: dict[tuple[int, int], int] = {}
    t = time.perf_counter()
    if "exact" in s.methods:
        by_stem: dict[str, list[int]] = {}
        for j, v in enumerate(bv):
            by_stem.setdefault(v.stem, []).append(j)
        for i, v in enumerate(tv):
            for j in by_stem.get(v.stem, []):
                found.setdefault((i, j), set()).add("exact")
    if "ngram" in s.methods:
        for i, v in enumerate(tv):
            for j, c in stats.unique_hits(v.text).items():
                found.setdefault((i, j), set()).add("ngram")
                hits_by_pair[(i, j)] = c
    timings["lexical_s"] = time.perf_counter() - t
    cosines: dict[tuple[int, int], float] = {}
    best, index_kind = None, None
    if "embedding" in s.methods:
        t = time.perf_counter()
        cosines, best, index_kind, timings["embed_s"] = _embedding_candidates(tv, bv, s)
        timings["search_s"] = time.perf_counter() - t - timings["embed_s"]
        for key in cosines:
            found.setdefault(key, set()).add("embedding")
    t = time.perf_counter()
    pairs = []
    for (i, j), via in sorted(found.items()):
        feats = pair_features(tv[i], bv[j], stats, j, hits_by_pair.get((i, j), 0), cosines.get((i, j)))
        d = decide(feats, s.threshold)
        if d.removed:
            pairs.append(FlaggedPair(i, j, d.evidence, {**feats, "score": d.score}, d.category, train[i], bench[j],
                                     found_by=sorted(via, key=METHODS.index)))
    records = RecordVerdict.from_pairs(pairs, s.drop)
    removed = sorted(r.train_index for r in records if r.removed)
    timings["decide_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    return DecontamReport(pairs=pairs, n_train=len(train), n_bench=len(bench), removed=removed, records=records,
                          best_cosine=best, settings=s, index_kind=index_kind, n_candidates=len(found),
                          timings={k: round(v, 3) for k, v in timings.items()})


def load_benchmarks(paths: list[str | Path], field: FieldSpec | None = None) -> list[QA]:
    """QAs of benchmark files/dirs; each path must hold at least one record."""
    if not paths:
        raise DataError("no benchmark files given", hint="pass --against FILE (repeatable)")
    out: list[QA] = []
    for p in paths:
        rows = list(read_rows(p))
        if not rows:
            raise DataError("benchmark file has no records", file=str(p))
        out += rows_to_qas(rows, field)
    return out


def _as_row(rec: object, source: str, n: int) -> Row:
    """Raw dicts, readers' Rows and formats' Samples (messages or text, with file/line) as Rows."""
    if isinstance(rec, Row):
        return rec
    if isinstance(rec, dict):
        return Row(rec, source, n)
    messages, text = getattr(rec, "messages", None), getattr(rec, "text", None)
    if messages or text is not None:
        data = {"messages": messages} if messages else {"text": text}
        return Row(data, getattr(rec, "file", source) or source, getattr(rec, "line", n) or n)
    raise DataError(f"record {n} is a {type(rec).__name__}, expected a dict or a sample", file=source)


def decontaminate_records(records: list, against: list[str | Path], *, methods: tuple[str, ...] = METHODS,
                          threshold: float = PARAPHRASE_COSINE, ngram: int = UNIQUE_N, model: str = "builtin:minilm",
                          field: str | None = None, train_field: str | None = None,
                          cache_dir: str | None = None, report_dir: str | Path | None = None,
                          source: str = "<records>") -> tuple[list, DecontamReport]:
    """Drop training records that leak benchmark items. Returns (kept records, in order and unchanged; report).

    `records`: raw dicts of any layout `qa_fields` knows (alpaca, sharegpt, openai, ...), `readers.Row`s, or
    `formats.Sample`s (question = first user turn, answer = first assistant turn). `against`: benchmark
    files/dirs. `field`/`train_field` override the text fields as "question[:answer]" dotted paths.
    `report_dir` (e.g. ``run_dir / "decontam"``) receives report.jsonl, report.md, similarity_hist.png and
    summary.json; or call ``report.write(dir)`` yourself.
    """
    if not records:
        raise DataError("no training records to decontaminate (empty input)", file=source)
    rows = [_as_row(r, source, n) for n, r in enumerate(records, 1)]
    train = rows_to_qas(rows, FieldSpec.parse(train_field))
    bench = load_benchmarks(list(against), FieldSpec.parse(field))
    settings = DecontamSettings(methods=tuple(methods), threshold=threshold, ngram=ngram, model=model,
                                cache_dir=cache_dir)
    report = decontaminate(train, bench, settings)
    if report_dir is not None:
        report.write(report_dir)
    drop = set(report.removed)
    return [r for n, r in enumerate(records) if n not in drop], report
