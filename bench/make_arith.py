"""Arithmetic word problems with a verifiable answer (the number), for GRPO/RLOO with `align.rewards:
[exact_number]`. Seeded; train and held-out sets use different seeds and never share a question.

    python bench/make_arith.py --train 200 --heldout 50 --out examples/data

arith_heldout2.jsonl (seed 2) is a second held-out set, written after the GRPO recipe was chosen and only scored
by bench/bench_grpo.py at the end of a run: nothing was tuned on it.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goro", "Hana", "Ivan", "Jade"]
THINGS = ["apples", "books", "coins", "pencils", "stickers", "marbles", "cookies", "stamps"]


def problem(rng: random.Random) -> tuple[str, int]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    kind = rng.choice(["add", "sub", "mul"])
    if kind == "add":
        return f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?", a + b
    if kind == "sub":
        a, b = max(a, b), min(a, b)
        return f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?", a - b
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return f"{name} buys {a} bags with {b} {thing} in each bag. How many {thing} is that in total?", a * b


def write(path: Path, n: int, seed: int, avoid: set[str]) -> set[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = []
    while len(rows) < n:
        q, ans = problem(rng)
        if q in avoid or q in seen:
            continue
        seen.add(q)
        rows.append({"prompt": q + " Answer with the number only.", "answer": str(ans)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--heldout", type=int, default=50)
    ap.add_argument("--out", default="examples/data")
    a = ap.parse_args()
    out = Path(a.out)
    seen = write(out / "arith_train.jsonl", a.train, 0, set())
    seen |= write(out / "arith_heldout.jsonl", a.heldout, 1, seen)
    write(out / "arith_heldout2.jsonl", a.heldout, 2, seen)


if __name__ == "__main__":
    main()
