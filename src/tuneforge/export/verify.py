"""Measurements that prove an export: logit differences, perplexity, latency per token, size and sparsity.

Samples run one at a time (no padding), so a difference is the model's, never the batching's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, TuneforgeError

# Held-out style English prose plus chat-shaped text; small enough to run in a test, varied enough to hit every
# weight (digits, punctuation, common words, template tokens when the tokenizer has them).
SAMPLE_TEXTS = (
    "The capital of France is Paris. It lies on the Seine and has about two million inhabitants.",
    "def add(a, b):\n    return a + b  # 1 + 2 = 3",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the leaves of plants.",
    "Q: What is 12 times 7? A: 84. Q: Name a primary colour. A: Red.",
)
SAMPLE_CHAT = [{"role": "user", "content": "Give me three words that rhyme with cat."},
               {"role": "assistant", "content": "Hat, bat and mat."}]


class VerificationError(TuneforgeError):
    """An exported model does not match its source within the tolerance (nothing was written)."""

    exit_code = 4


def check(what: str, value: float, tolerance: float) -> None:
    """Raise VerificationError when `value` exceeds `tolerance` (NaN counts as over)."""
    if not value <= tolerance:
        raise VerificationError(f"{what} = {value:.3g} is above the tolerance {tolerance:g}; output not written",
                                hint="--tolerance raises the limit if this is expected")


def load_texts(path: str | None, limit: int = 32) -> list[str]:
    """Sample texts from a .txt (one per blank-line-separated paragraph) or .jsonl (`text` or first string field)."""
    if not path:
        return list(SAMPLE_TEXTS)
    p = Path(path)
    if not p.is_file():
        raise DataError("sample text file not found", file=str(p))
    if p.suffix == ".jsonl":
        texts = []
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"not JSON ({e.msg})", file=str(p), line=i) from None
            text = row.get("text") if isinstance(row, dict) else None
            text = text or next((v for v in (row.values() if isinstance(row, dict) else []) if isinstance(v, str)), "")
            if text.strip():
                texts.append(text)
            if len(texts) >= limit:
                break
    else:
        texts = [t.strip() for t in p.read_text(encoding="utf-8").split("\n\n") if t.strip()][:limit]
    if not texts:
        raise DataError("no text found", file=str(p))
    return texts


def sample_ids(tokenizer, texts: Sequence[str], max_len: int = 128, chat: bool = True) -> list[list[int]]:
    """Token ids of each text (cut at `max_len`), plus one chat-rendered sample when the tokenizer has a template."""
    rows = [tokenizer(t, add_special_tokens=True)["input_ids"][:max_len] for t in texts]
    if chat and getattr(tokenizer, "chat_template", None):
        try:
            rows.append(list(tokenizer.apply_chat_template(SAMPLE_CHAT, tokenize=True, return_dict=False))[:max_len])
        except (ValueError, TypeError, KeyError) as e:  # a template needing fields we do not give: prose is enough
            print(f"note: chat sample skipped ({type(e).__name__}: {e})")
    return [r for r in rows if len(r) >= 2]


def all_logits(model, rows: Sequence[Sequence[int]], as_float32: bool = True) -> list[Any]:
    """Logits of each row, computed alone (no padding); float32 unless `as_float32` is off (the model's dtype)."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        out = [model(input_ids=torch.tensor([r], device=device)).logits[0] for r in rows]
    return [(x.float() if as_float32 else x).cpu() for x in out]


def exact_logits(model, rows: Sequence[Sequence[int]]) -> list[Any] | None:
    """float64 logits of a float64 copy of `model` (same weights, exact arithmetic to ~1e-15), or None when two
    float64 copies would not fit comfortably in free memory. Used to separate what a merge changes from float32's
    own rounding: through 30 layers, float32 forwards of one model in two algebraically equal forms (x@W + x@A@B
    vs x@(W+BA)) differ by ~1e-4 on SmolLM2's logits even when the weights agree to the last bit that matters."""
    import copy

    import torch

    need = 8 * sum(p.numel() for p in model.parameters())
    if need > 0.3 * _free_memory_bytes():
        return None
    twin = copy.deepcopy(model).to(torch.float64)
    try:
        return all_logits(twin, rows, as_float32=False)
    finally:
        del twin


def _free_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); elsewhere the physical memory size."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def max_abs_diff(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Largest absolute difference between two lists of logits (vocab padding rows of either side ignored)."""
    worst = 0.0
    for x, y in zip(a, b):
        v = min(x.shape[-1], y.shape[-1])
        worst = max(worst, float((x[..., :v].double() - y[..., :v].double()).abs().max()))
    return worst


def perplexity(logits: Sequence[Any], rows: Sequence[Sequence[int]]) -> float:
    """Token-weighted perplexity of next-token prediction over all rows."""
    import math

    import torch

    nll, n = 0.0, 0
    for lg, r in zip(logits, rows):
        target = torch.tensor(r[1:])
        nll += float(torch.nn.functional.cross_entropy(lg[:-1], target, reduction="sum"))
        n += len(r) - 1
    return math.exp(nll / max(n, 1))


def is_causal_lm(model) -> bool:
    return hasattr(model, "generate") and getattr(model, "can_generate", lambda: False)()


def latency_ms_per_token(model, tokenizer, new_tokens: int = 16, repeats: int = 2) -> float:
    """Milliseconds per generated token (greedy, batch 1); for encoders: per input token of one forward pass."""
    import torch

    prompt = tokenizer(SAMPLE_TEXTS[0], return_tensors="pt")["input_ids"]
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first pass warms up kernels and caches
            t0 = time.perf_counter()
            if is_causal_lm(model):
                out = model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
                n = out.shape[1] - prompt.shape[1]
            else:
                model(input_ids=prompt)
                n = prompt.shape[1]
            best = min(best, (time.perf_counter() - t0) * 1000 / max(n, 1))
    return best


def weight_stats(model) -> dict:
    """Parameter count and the fraction of exact zeros in the Linear weights (what pruning sets; the embeddings
    and output head are not pruned, so they are not counted)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    total = sum(p.numel() for p in model.parameters())
    zeros = matrix = 0
    for m in model.modules():
        w = getattr(m, "weight", None)
        if isinstance(m, torch.nn.Linear) and m is not head and type(w.data) is torch.Tensor:  # not quantized
            matrix += w.numel()
            zeros += int((w.data == 0).sum())
    return {"parameters": total, "sparsity": round(zeros / matrix, 4) if matrix else 0.0}


def path_size(path: str | Path) -> int:
    """Bytes of a file, or of the weight files in a dir (safetensors / gguf)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.suffix in (".safetensors", ".gguf"))
