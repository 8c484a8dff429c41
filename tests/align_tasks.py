"""Tiny learnable alignment tasks: answers built from fruit words are preferred over answers built from other
words. Train and held-out files use different prompts and word combinations."""

from __future__ import annotations

import json
import random

GOOD = ["apple", "banana", "cherry", "lemon"]
BAD = ["dragon", "eagle", "falcon", "harbor", "island", "jungle", "kettle", "mirror"]


def _answer(rng: random.Random, words: list[str]) -> str:
    return " ".join(rng.choice(words) for _ in range(3))


def write_pairs(path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    rows = [{"prompt": f"Say {i} things.", "chosen": _answer(rng, GOOD), "rejected": _answer(rng, BAD)}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_feedback(path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        rows.append({"prompt": f"Say {i} things.", "completion": _answer(rng, GOOD if good else BAD), "label": good})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_prompts(path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    rows = [{"prompt": f"Say {rng.randint(0, 999)} things."} for _ in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)
