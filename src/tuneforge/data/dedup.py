"""Near-duplicate removal inside one dataset. The first occurrence is kept; later copies are dropped.

- exact:     equal after normalisation (case, whitespace, punctuation) of question + answer;
- minhash:   Jaccard similarity of character 5-gram shingles of the normalised text >= threshold (default 0.8;
             characters, not words, because instruction data is short: one changed word in a 20-word prompt
             keeps ~85% of character shingles but only ~60% of word 5-grams), candidates from datasketch's
             MinHash LSH and confirmed on the real shingle sets (so the LSH estimate never decides alone);
- embedding: cosine of sentence embeddings of question + answer >= threshold (default 0.95), faiss search.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneforge.data.qa_fields import QA, normalize
from tuneforge.data.embed_index import embed, search
from tuneforge.errors import DataError

DEDUP_METHODS = ("exact", "minhash", "embedding")
DEFAULT_THRESHOLD = {"minhash": 0.8, "embedding": 0.95}
SHINGLE = 5
NUM_PERM = 128


@dataclass
class Duplicate:
    index: int
    of: int  # index of the kept record it duplicates
    method: str
    score: float


@dataclass
class DedupResult:
    kept: list[int]
    removed: list[Duplicate] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.removed:
            out[d.method] = out.get(d.method, 0) + 1
        return out


def shingles(text: str, size: int = SHINGLE) -> set[str]:
    """Character `size`-grams of the normalised text (the whole text when shorter)."""
    t = normalize(text)
    if len(t) <= size:
        return {t} if t else set()
    return {t[i:i + size] for i in range(len(t) - size + 1)}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _minhash_dups(qas: list[QA], alive: list[int], threshold: float, seed: int = 1) -> list[Duplicate]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    sets: dict[int, set[str]] = {}
    out = []
    for i in alive:
        sh = shingles(qas[i].text)
        if not sh:
            continue
        mh = MinHash(num_perm=NUM_PERM, seed=seed)
        mh.update_batch([s.encode("utf-8") for s in sh])
        best = max(((_jaccard(sh, sets[j]), j) for j in lsh.query(mh)), default=None)
        if best is not None and best[0] >= threshold:
            out.append(Duplicate(i, best[1], "minhash", round(best[0], 4)))
            continue
        sets[i] = sh
        lsh.insert(i, mh)
    return out


def _embedding_dups(qas: list[QA], alive: list[int], threshold: float, model: str,
                    cache_dir: str | None, k: int = 10) -> list[Duplicate]:
    vecs = embed([qas[i].text for i in alive], model, cache_dir=cache_dir)
    nb = search(vecs, vecs, k=k + 1)
    removed: set[int] = set()
    out = []
    for pos, i in enumerate(alive):
        # an earlier record that is itself kept; neighbours come sorted by score
        for j, score in zip(nb.ids[pos], nb.scores[pos]):
            if 0 <= j < pos and score >= threshold and alive[j] not in removed:
                removed.add(i)
                out.append(Duplicate(i, alive[j], "embedding", round(float(score), 4)))
                break
    return out


def dedup(qas: list[QA], methods: tuple[str, ...] = ("exact", "minhash"), threshold: float | None = None,
          model: str = "builtin:minilm", cache_dir: str | None = None) -> DedupResult:
    """Indices to keep (in order) and the duplicates removed, each pointing at the record it repeats."""
    bad = [m for m in methods if m not in DEDUP_METHODS]
    if bad or not methods:
        raise DataError(f"unknown dedup method(s) {bad or '(none)'}", hint=f"use {','.join(DEDUP_METHODS)}")
    if threshold is not None and not 0 < threshold <= 1:
        raise DataError(f"threshold must be in (0, 1], got {threshold}")
    if not qas:
        raise DataError("no records to deduplicate (empty input)")
    removed: list[Duplicate] = []
    alive = list(range(len(qas)))
    if "exact" in methods:
        first: dict[str, int] = {}
        for i in alive:
            key = normalize(qas[i].text)
            if key in first:
                removed.append(Duplicate(i, first[key], "exact", 1.0))
            else:
                first[key] = i
    for method in ("minhash", "embedding"):
        if method not in methods:
            continue
        gone = {d.index for d in removed}
        alive = [i for i in alive if i not in gone]
        thr = threshold if threshold is not None else DEFAULT_THRESHOLD[method]
        removed += (_minhash_dups(qas, alive, thr) if method == "minhash"
                    else _embedding_dups(qas, alive, thr, model, cache_dir))
    gone = {d.index for d in removed}
    return DedupResult([i for i in range(len(qas)) if i not in gone], sorted(removed, key=lambda d: d.index))
