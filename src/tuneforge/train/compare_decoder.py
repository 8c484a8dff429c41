"""Decoder routes to a classification answer for `compare-approaches`: label words scored by log-likelihood
(zero-shot, k-shot in context, or after SFT on "text -> label word" pairs), with eval/mcq.py's scorer.

The prompt is plain text for the base routes (lm-eval's layout) and the model's chat template after SFT, so the
scored continuation is exactly what training taught the model to reply."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tuneforge.data.task_data import ClsExample, LabelMap
from tuneforge.eval.cls_metrics import classification_report
from tuneforge.eval.mcq import McqScorer
from tuneforge.eval.tasks import McqSample
from tuneforge.runs import atomic_jsonl


def instruction(words: list[str]) -> str:
    return f"Classify the text as one of: {', '.join(words)}. Answer with the label only.\n\n"


def _text(ex: ClsExample) -> str:
    return f"Text: {ex.text}" + (f"\nText 2: {ex.text_pair}" if ex.text_pair else "")


def draw_shots(train: list[ClsExample], label_map: LabelMap, k: int, seed: int) -> list[ClsExample]:
    """k training examples, classes taken in turn (a balanced context), in a seeded random order."""
    rng = random.Random(seed)
    by_class: dict[int, list[ClsExample]] = {}
    for ex in train:
        by_class.setdefault(label_map.encode(ex), []).append(ex)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by_class.items())]
    shots: list[ClsExample] = []
    while len(shots) < k and any(pools):
        for pool in pools:
            if pool and len(shots) < k:
                shots.append(pool.pop())
    rng.shuffle(shots)
    return shots


def plain_context(ex: ClsExample, words: list[str], shots: list[ClsExample], label_map: LabelMap) -> str:
    """Instruction + k × (text, label word) + the text; the label word follows 'Label:' after one space."""
    parts = [instruction(words)]
    parts += [f"{_text(s)}\nLabel: {words[label_map.encode(s)]}\n\n" for s in shots]
    return "".join(parts) + f"{_text(ex)}\nLabel:"


def sft_rows(examples: list[ClsExample], words: list[str], label_map: LabelMap) -> list[dict]:
    """Alpaca rows teaching the label word as the whole reply."""
    return [{"instruction": instruction(words) + _text(e), "output": words[label_map.encode(e)]} for e in examples]


def write_sft_data(path: Path, examples: list[ClsExample], words: list[str], label_map: LabelMap) -> Path:
    atomic_jsonl(path, sft_rows(examples, words, label_map))
    return path


def chat_context(tokenizer, ex: ClsExample, words: list[str], template: str, system: str | None) -> str:
    """The SFT prompt rendered by the run's chat template, up to the assistant header."""
    from tuneforge.data.templates import render_prompt

    ids = render_prompt(tokenizer, [{"role": "user", "content": instruction(words) + _text(ex)}], template, system)
    return tokenizer.decode(ids, skip_special_tokens=False)


def score_label_words(model, tokenizer, contexts: list[str], examples: list[ClsExample], words: list[str],
                      label_map: LabelMap, delimiter: str, batch_size: int = 8) -> dict:
    """Accuracy / macro-F1 of argmax log-likelihood over the label words, and the time it took per 1k texts."""
    samples = [McqSample(str(i), e.file, e.line, c, list(words), label_map.encode(e))
               for i, (c, e) in enumerate(zip(contexts, examples))]
    t0 = time.perf_counter()
    scores = McqScorer(model, tokenizer, batch_size=batch_size).score(samples, delimiter=delimiter)
    seconds = time.perf_counter() - t0
    rep = classification_report([s.gold for s in samples], [s.pred for s in scores], label_map.names)
    return {"eval_accuracy": rep["accuracy"], "eval_f1_macro": rep["f1_macro"], "report": rep,
            "infer_s_per_1k": round(1000 * seconds / max(len(samples), 1), 3)}
