"""Small builders shared by integration tests (data files and configs for tiny-model runs)."""

from __future__ import annotations

import json
import random

WORDS = "apple banana cherry dragon eagle falcon garden harbor island jungle kettle lemon mirror".split()


def write_copy_task(path, n: int = 64, seed: int = 0) -> str:
    """Alpaca records whose answer is a deterministic function of the prompt (learnable by a tiny model)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(WORDS, 3)
        rows.append({"instruction": "Repeat after me: " + " ".join(words), "input": "",
                     "output": " ".join(words)})
    path.write_text(json.dumps(rows), encoding="utf-8")
    return str(path)


def losses(run_dir) -> list[float]:
    from tuneforge.train.plots import read_metrics

    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
