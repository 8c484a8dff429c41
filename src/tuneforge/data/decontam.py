"""Benchmark decontamination (Platypus-style): find training records that leak benchmark questions, drop them.

Three detectors, each run over every (training record, benchmark item) pair it can reach:
- exact:     the normalised question (case, whitespace and punctuation removed) equals a benchmark question;
- ngram:     the record's question + answer share at least one word n-gram (default 13, as in GPT-3/LLaMA
             contamination studies) with a benchmark question; benchmark questions shorter than n words (but at
             least ``NGRAM_MIN_WORDS``) count as one n-gram of their own length;
- embedding: cosine similarity of the questions' sentence embeddings >= threshold (0.8, Platypus), found with a
             faiss nearest-neighbour search (see ``embed_index``).
Each flagged pair is then put in one of Platypus's review categories by ``categorize`` (rules in docs/decontam.md).
``decontaminate_records`` is the entry point for the training pipeline; ``decontaminate`` works on QAs.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np

from tuneforge.data.decontam_report import CATEGORIES, DecontamReport, FlaggedPair
from tuneforge.data.embed_index import embed, search
from tuneforge.data.qa_fields import QA, FieldSpec, normalize, rows_to_qas, words
from tuneforge.data.readers import Row, read_rows
from tuneforge.errors import DataError

METHODS = ("exact", "ngram", "embedding")
NGRAM_MIN_WORDS = 6  # shorter benchmark questions ("Who wrote Hamlet?") are left to exact/embedding matching

# Category rules (documented in docs/decontam.md): a question is "the same" when its lexical similarity to the
# benchmark question is >= SAME_QUESTION (or it contains >= SAME_QUESTION of the benchmark words); lengths differ
# by "extra context" when the ratio is outside EXTRA_CONTEXT; answers "agree" when overlap >= SAME_ANSWER.
SAME_QUESTION = 0.9
EXTRA_CONTEXT = (0.8, 1.25)
SAME_ANSWER = 0.5


@dataclass
class DecontamSettings:
    """Knobs of one decontamination run; written into the report."""

    methods: tuple[str, ...] = METHODS
    threshold: float = 0.8
    ngram: int = 13
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


@dataclass
class _Pair:
    methods: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)


def exact_matches(train: list[QA], bench: list[QA]) -> dict[tuple[int, int], float]:
    """(train i, bench j) -> 1.0 where the normalised questions are equal."""
    by_text: dict[str, list[int]] = {}
    for j, b in enumerate(bench):
        key = normalize(b.question)
        if key:
            by_text.setdefault(key, []).append(j)
    return {(i, j): 1.0 for i, t in enumerate(train) for j in by_text.get(normalize(t.question), [])}


def ngram_matches(train: list[QA], bench: list[QA], n: int = 13) -> dict[tuple[int, int], float]:
    """(train i, bench j) -> fraction of bench j's question n-grams found in record i (only pairs sharing one)."""
    index: dict[tuple[str, ...], list[int]] = {}
    totals: list[int] = []
    sizes: set[int] = set()
    for j, b in enumerate(bench):
        toks = words(b.question)
        size = min(n, len(toks))
        grams = {tuple(toks[s:s + size]) for s in range(len(toks) - size + 1)} if size >= NGRAM_MIN_WORDS else set()
        totals.append(len(grams))
        if grams:
            sizes.add(size)
        for g in grams:
            index.setdefault(g, []).append(j)
    out: dict[tuple[int, int], float] = {}
    for i, t in enumerate(train):
        toks = words(t.text)
        hits: Counter[int] = Counter()
        for size in sizes:
            for g in {tuple(toks[s:s + size]) for s in range(len(toks) - size + 1)}:
                for j in index.get(g, ()):
                    hits[j] += 1
        for j, c in hits.items():
            out[(i, j)] = c / totals[j]
    return out


def embedding_matches(train_vecs: np.ndarray, bench_vecs: np.ndarray, s: DecontamSettings
                      ) -> tuple[dict[tuple[int, int], float], np.ndarray, str]:
    """Pairs with cosine >= threshold among each record's k nearest benchmark questions, plus every record's
    best cosine (for the histogram) and the index kind used."""
    nb = search(train_vecs, bench_vecs, k=s.k, kind=s.index)
    pairs = {(i, int(j)): float(sc) for i in range(len(nb.ids)) for j, sc in zip(nb.ids[i], nb.scores[i])
             if j >= 0 and sc >= s.threshold}
    best = nb.scores[:, 0] if nb.scores.size else np.zeros(len(train_vecs), np.float32)
    return pairs, best, nb.index_kind


def _lexical(a: str, b: str) -> float:
    return SequenceMatcher(None, normalize(a), normalize(b), autojunk=False).ratio()


def _containment(part: list[str], whole: list[str]) -> float:
    if not part:
        return 0.0
    have = Counter(whole)
    return sum(min(c, have[w]) for w, c in Counter(part).items()) / len(part)


def answer_overlap(train_answer: str, bench_answer: str) -> float | None:
    """max(token F1, share of the benchmark answer's words found in the record's answer); None if one is empty."""
    a, b = words(train_answer), words(bench_answer)
    if not a or not b:
        return None
    common = sum((Counter(a) & Counter(b)).values())
    f1 = 0.0 if common == 0 else 2 * common / (len(a) + len(b))
    return max(f1, _containment(b, a))


def categorize(train: QA, bench: QA, cosine: float | None, threshold: float) -> tuple[str, dict[str, float]]:
    """Platypus review category of a flagged pair, with the features the rules used."""
    lex = _lexical(train.question, bench.question)
    tq, bq = words(train.question), words(bench.question)
    contained = _containment(bq, tq)
    ratio = len(tq) / max(1, len(bq))
    ans = answer_overlap(train.answer, bench.answer)
    same_answer = ans is None or ans >= SAME_ANSWER
    same_length = EXTRA_CONTEXT[0] <= ratio <= EXTRA_CONTEXT[1]
    same_question = lex >= SAME_QUESTION or contained >= SAME_QUESTION
    if lex >= SAME_QUESTION and same_length and same_answer:
        category = "duplicate"
    elif same_question or (cosine is not None and cosine >= threshold and ans is not None and same_answer):
        category = "gray-area"
    else:
        category = "similar-but-different"
    feats = {"question_lexical": round(lex, 4), "question_containment": round(contained, 4),
             "length_ratio": round(ratio, 3)}
    if ans is not None:
        feats["answer_overlap"] = round(ans, 4)
    return category, feats


def decontaminate(train: list[QA], bench: list[QA], settings: DecontamSettings | None = None) -> DecontamReport:
    """Flag contaminated (train, bench) pairs and decide which training records to drop."""
    s = settings or DecontamSettings()
    if not train:
        raise DataError("the training data is empty: nothing to decontaminate")
    if not bench:
        raise DataError("the benchmark data is empty: nothing to decontaminate against")
    t0 = time.perf_counter()
    found: dict[tuple[int, int], _Pair] = {}

    def add(method: str, hits: dict[tuple[int, int], float]) -> None:
        for key, score in hits.items():
            p = found.setdefault(key, _Pair())
            p.methods.add(method)
            p.scores[method] = round(score, 4)

    timings: dict[str, float] = {}
    if "exact" in s.methods:
        add("exact", exact_matches(train, bench))
        timings["exact_s"] = time.perf_counter() - t0
    if "ngram" in s.methods:
        t = time.perf_counter()
        add("ngram", ngram_matches(train, bench, s.ngram))
        timings["ngram_s"] = time.perf_counter() - t
    best, tv, bv, index_kind = None, None, None, None
    if "embedding" in s.methods:
        t = time.perf_counter()
        tv = embed([q.question for q in train], s.model, s.batch_size, s.cache_dir)
        bv = embed([q.question for q in bench], s.model, s.batch_size, s.cache_dir)
        timings["embed_s"] = time.perf_counter() - t
        t = time.perf_counter()
        hits, best, index_kind = embedding_matches(tv, bv, s)
        timings["search_s"] = time.perf_counter() - t
        add("embedding", hits)

    pairs = []
    for (i, j), p in sorted(found.items()):
        cosine = p.scores.get("embedding")
        if cosine is None and tv is not None:
            cosine = round(float(tv[i] @ bv[j]), 4)  # pairs found by other methods get a cosine too
            p.scores["cosine"] = cosine
        elif cosine is not None:
            p.scores["cosine"] = p.scores.pop("embedding")
        category, feats = categorize(train[i], bench[j], cosine, s.threshold)
        pairs.append(FlaggedPair(i, j, sorted(p.methods, key=METHODS.index), {**p.scores, **feats}, category,
                                 train[i], bench[j]))
    removed = sorted({p.train_index for p in pairs if p.category in s.drop})
    timings["total_s"] = time.perf_counter() - t0
    return DecontamReport(pairs=pairs, n_train=len(train), n_bench=len(bench), removed=removed,
                          best_cosine=best, settings=s, index_kind=index_kind,
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
                          threshold: float = 0.8, ngram: int = 13, model: str = "builtin:minilm",
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
