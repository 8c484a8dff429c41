"""Samples → token ids + labels, with truncation accounting and a content-addressed cache.

The cache key covers everything the result depends on (data, tokenizer, template, cutoff, masking options), so a
re-run with the same inputs skips preprocessing. Arrays are stored as `.npz` (loaded with allow_pickle=False).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge import __version__
from tuneforge.config.schema import DataConfig
from tuneforge.data.formats import Sample, SampleKind
from tuneforge.data.templates import encode_conversation
from tuneforge.errors import DataError
from tuneforge.runs import atomic_write

IGNORE = -100


@dataclass
class TokenizedData:
    """Ragged token ids/labels in two flat arrays plus offsets (cheap to cache and to index)."""

    ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray  # len n+1
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {"input_ids": self.ids[a:b], "labels": self.labels[a:b]}

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items())[:50000:97]).encode())
    h.update(str(len(tokenizer)).encode())
    h.update(str(getattr(tokenizer, "chat_template", "") or "").encode())
    h.update(str(tokenizer.all_special_tokens).encode())
    return h.hexdigest()[:16]


def samples_fingerprint(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps(s.messages, ensure_ascii=False).encode() if s.messages else (s.text or "").encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def cache_key(samples: list[Sample], tokenizer, d: DataConfig, kind: SampleKind) -> str:
    parts = [__version__, kind, samples_fingerprint(samples), _tokenizer_fingerprint(tokenizer), d.template,
             str(d.system), str(d.cutoff_len), d.overlong, str(d.train_on_prompt), str(d.mask_history)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def cache_dir(d: DataConfig) -> Path:
    if d.cache_dir:
        return Path(d.cache_dir)
    if os.environ.get("TUNEFORGE_DATA_CACHE"):
        return Path(os.environ["TUNEFORGE_DATA_CACHE"])
    root = os.environ.get("TUNEFORGE_CACHE") or Path.home() / ".cache" / "tuneforge"
    return Path(root) / "data"


def tokenize_samples(samples: list[Sample], tokenizer, d: DataConfig, kind: SampleKind = "chat",
                     use_cache: bool = True) -> TokenizedData:
    """Tokenize (or load from cache): chats with the template and label mask, or documents cut into blocks of
    `cutoff_len` tokens (`kind="text"`). Raises DataError for overlong chats when data.overlong=error."""
    path = cache_dir(d) / f"{cache_key(samples, tokenizer, d, kind)}.npz"
    if use_cache and path.exists():
        with np.load(path, allow_pickle=False) as z:
            stats = json.loads(str(z["stats"]))
            stats["cache"] = "hit"
            return TokenizedData(z["ids"], z["labels"], z["offsets"], stats)
    data = _pack_text(samples, tokenizer, d) if kind == "text" else _encode_chats(samples, tokenizer, d)
    if use_cache:
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
                np.savez(f, ids=data.ids, labels=data.labels, offsets=data.offsets, stats=json.dumps(data.stats))

        atomic_write(path, save)  # a killed run never leaves a half-written cache entry
    data.stats["cache"] = "miss"
    return data


def _finish(ids_list: list[list[int]], labels_list: list[list[int]], stats: dict) -> TokenizedData:
    lengths = np.array([len(x) for x in ids_list], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat_ids = np.fromiter((t for x in ids_list for t in x), dtype=np.int32, count=int(offsets[-1]))
    flat_labels = np.fromiter((t for x in labels_list for t in x), dtype=np.int32, count=int(offsets[-1]))
    if len(lengths):
        stats["tokens"] = int(offsets[-1])
        stats["trained_tokens"] = int((flat_labels != IGNORE).sum())
        stats["length_percentiles"] = {f"p{q}": int(np.percentile(lengths, q)) for q in (5, 50, 90, 95, 99, 100)}
    return TokenizedData(flat_ids, flat_labels, offsets, stats)


def _encode_chats(samples: list[Sample], tokenizer, d: DataConfig) -> TokenizedData:
    ids_list, labels_list = [], []
    stats = {"samples_in": len(samples), "kept": 0, "truncated": 0, "dropped_overlong": 0,
             "dropped_no_target": 0, "warnings": []}
    for s in samples:
        ids, labels = encode_conversation(tokenizer, s.messages, d.template, train_on_prompt=d.train_on_prompt,
                                          mask_history=d.mask_history, system=d.system)
        if len(ids) > d.cutoff_len:
            if d.overlong == "error":
                raise DataError(f"sample has {len(ids)} tokens > data.cutoff_len={d.cutoff_len}", file=s.file,
                                line=s.line, hint="raise data.cutoff_len or set data.overlong: truncate | drop")
            if d.overlong == "drop":
                stats["dropped_overlong"] += 1
                stats["warnings"].append(f"{s.file}:{s.line}: dropped, {len(ids)} tokens > {d.cutoff_len}")
                continue
            stats["truncated"] += 1
            ids, labels = ids[: d.cutoff_len], labels[: d.cutoff_len]
        if all(x == IGNORE for x in labels[1:]):
            # Truncation cut away every response token: the sample would teach nothing.
            stats["dropped_no_target"] += 1
            stats["warnings"].append(f"{s.file}:{s.line}: dropped, no response tokens left after truncation")
            continue
        ids_list.append(ids)
        labels_list.append(labels)
        stats["kept"] += 1
    stats["warnings"] = stats["warnings"][:50]
    if not ids_list:
        raise DataError("no samples left after tokenization", hint=f"{stats}")
    return _finish(ids_list, labels_list, stats)


def _pack_text(samples: list[Sample], tokenizer, d: DataConfig) -> TokenizedData:
    """Continued pre-training: documents + EOS, concatenated and cut into blocks of cutoff_len tokens."""
    block = d.cutoff_len
    eos = tokenizer.eos_token_id
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and tokenizer.bos_token_id != eos else []
    stream: list[int] = []
    for s in samples:
        stream += bos + tokenizer(s.text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
    n_blocks = max(1, len(stream) // block) if len(stream) >= block else 1
    blocks = [stream[i * block:(i + 1) * block] for i in range(n_blocks)]
    dropped_tail = len(stream) - sum(len(b) for b in blocks)
    stats = {"samples_in": len(samples), "kept": len(samples), "blocks": len(blocks),
             "tail_tokens_dropped": dropped_tail, "truncated": 0, "dropped_overlong": 0, "warnings": []}
    return _finish(blocks, [list(b) for b in blocks], stats)
