#!/usr/bin/env python
"""Multi-process training on real GPUs: single process vs DDP vs FSDP2 vs DeepSpeed ZeRO-3, same global batch.

Runs `tuneforge train` through its real CLI (`--nproc N [--launch-config F]`), one run after another, on a config
you choose (default: SmolLM2-135M full fine-tune on the bundled identity data), and writes
bench/results/bench_distributed-<stamp>.{json,md}: tokens/s, seconds per step, peak GPU memory per rank (from the
Trainer's logs), final loss, and each run's loss curve distance to the single-process run (same global batch, so
they should agree up to bf16/all-reduce rounding).

    python bench/bench_distributed.py                          # all engines, all visible GPUs, 30 steps
    python bench/bench_distributed.py --nproc 2 --only ddp,fsdp2 --steps 50 -- data.cutoff_len=1024

Needs CUDA (exits 0 with one line otherwise); ZeRO-3 needs `pip install 'tuneforge[deepspeed]'` (skipped with a
line if missing). On CPU the same parity is covered by tests/integration/test_distributed.py (gloo, 2 processes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "examples" / "distributed"
ENGINES = {"single": None, "ddp": None, "fsdp2": DIST / "fsdp2.yaml", "zero3": DIST / "ds_z3.json"}


def run(name: str, nproc: int, launch: Path | None, base: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *base, f"output.dir={out}", f"output.name={name}",
           "output.overwrite=true"]
    if name != "single":
        cmd += ["--nproc", str(nproc)] + (["--launch-config", str(launch)] if launch else [])
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.time() - t0
    if p.returncode != 0:
        return {"engine": name, "error": (p.stderr.strip().splitlines() or ["?"])[-1][:300], "wall_s": round(wall, 1)}
    rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [r for r in rows if "loss" in r]
    final = next((r for r in reversed(rows) if "train_runtime" in r and "loss" not in r), {})
    return {"engine": name, "processes": 1 if name == "single" else nproc, "wall_s": round(wall, 1),
            "train_runtime_s": final.get("train_runtime"),
            "tokens_per_s": round(steps[-1]["tokens_seen"] / final["train_runtime"], 1) if final else None,
            "final_loss": steps[-1]["loss"] if steps else None, "losses": [r["loss"] for r in steps],
            "resolved": (json.loads(json.dumps(_resolved(out / name))))}


def _resolved(run_dir: Path) -> dict:
    import yaml

    tree = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return (tree.get("resolved") or {}).get("distributed", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=0, help="processes (default: every visible GPU)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--config", default="builtin:identity")
    ap.add_argument("--only", default=",".join(ENGINES))
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_distributed: no CUDA device; nothing to measure (CPU parity: tests/integration/test_distributed.py)")
        return
    nproc = args.nproc or torch.cuda.device_count()
    # Same global batch everywhere: one process does N micro-batches of accumulation, N processes one each.
    common = [args.config, "method=full", f"train.max_steps={args.steps}", "train.batch_size=4", "train.save_steps=0",
              "eval.after_train=false", *args.overrides]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = REPO / "bench" / "results" / f"distributed-runs-{stamp}"
    results = []
    for name in args.only.split(","):
        launch = ENGINES[name]
        if name == "zero3" and importlib.util.find_spec("deepspeed") is None:
            results.append({"engine": name, "error": "deepspeed not installed (pip install 'tuneforge[deepspeed]')"})
            continue
        accum = nproc if name == "single" else 1
        results.append(run(name, nproc, launch, [*common, f"train.grad_accum={accum}"], out))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "losses"}), flush=True)
    ref = next((r for r in results if r["engine"] == "single" and "losses" in r), None)
    for r in results:
        if ref and "losses" in r and len(r["losses"]) == len(ref["losses"]):
            r["max_rel_loss_diff_vs_single"] = max(abs(a - b) / abs(b) for a, b in zip(r["losses"], ref["losses"]))
    meta = {"gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], "nproc": nproc,
            "steps": args.steps, "config": args.config, "overrides": args.overrides, "load": os.getloadavg()}
    dest = REPO / "bench" / "results" / f"bench_distributed-{stamp}.json"
    dest.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = ["| engine | procs | tok/s | train s | final loss | max rel. loss diff vs single | type |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['engine']} | {r.get('processes', '')} | {r.get('tokens_per_s', '')} | "
                     f"{r.get('train_runtime_s', '')} | {r.get('final_loss', r.get('error', ''))} | "
                     f"{r.get('max_rel_loss_diff_vs_single', '')} | {r.get('resolved', {}).get('type', '')} |")
    dest.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
