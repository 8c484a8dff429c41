"""Turn start/end logits over token windows into answer strings (n-best span decoding).

For each example, every window proposes its `n_best` best start and end tokens; pairs inside the context, with
start <= end and at most `max_answer_len` tokens, are scored start_logit + end_logit. The best span over all windows
wins. With `allow_unanswerable`, the no-answer score is the smallest [CLS] start+end score over the windows, and ""
is predicted when it beats the best span by more than `null_threshold` (SQuAD v2 convention).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def decode_answers(examples: list[Any], features: Any, start_logits: np.ndarray, end_logits: np.ndarray, *,
                   n_best: int = 20, max_answer_len: int = 30, allow_unanswerable: bool = False,
                   null_threshold: float = 0.0) -> list[dict]:
    """One dict per example: id, prediction, score, null_score, n_best [{text, score, start}]."""
    by_example: dict[int, list[int]] = {}
    for f, ex_idx in enumerate(features.example_index):
        by_example.setdefault(ex_idx, []).append(f)
    out = []
    for ex_idx, ex in enumerate(examples):
        cands: list[dict] = []
        null_score = None
        for f in by_example.get(ex_idx, []):
            s_log, e_log, offsets = start_logits[f], end_logits[f], features.offsets[f]
            n_tok = len(offsets)
            s_log, e_log = s_log[:n_tok], e_log[:n_tok]  # logits are padded to the batch length
            cls_score = float(s_log[0] + e_log[0])
            null_score = cls_score if null_score is None else min(null_score, cls_score)
            cands.extend(_window_spans(ex.context, s_log, e_log, offsets, n_best, max_answer_len))
        cands.sort(key=lambda c: c["score"], reverse=True)
        cands = _dedupe(cands)[:n_best]
        best = cands[0] if cands else {"text": "", "score": float("-inf"), "start": -1}
        pred = best["text"]
        if allow_unanswerable and null_score is not None and null_score - best["score"] > null_threshold:
            pred = ""
        out.append({"id": ex.id, "prediction": pred, "score": best["score"],
                    "null_score": null_score if null_score is not None else float("nan"), "n_best": cands})
    return out


def _window_spans(context: str, s_log: np.ndarray, e_log: np.ndarray, offsets: list, n_best: int,
                  max_len: int) -> list[dict]:
    starts = np.argsort(s_log)[::-1][:n_best]
    ends = np.argsort(e_log)[::-1][:n_best]
    spans = []
    for s in starts:
        if offsets[s] is None:
            continue
        for e in ends:
            if offsets[e] is None or e < s or e - s + 1 > max_len:
                continue
            c0, c1 = offsets[s][0], offsets[e][1]
            spans.append({"text": context[c0:c1], "score": float(s_log[s] + e_log[e]), "start": int(c0)})
    return spans


def _dedupe(cands: list[dict]) -> list[dict]:
    seen, out = set(), []
    for c in cands:
        key = (c["start"], c["text"])
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
