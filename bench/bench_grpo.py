"""GRPO on arithmetic word problems with a verifiable reward: CPU-minutes of the whole training process and the
held-out mean reward before and after, on the config's held-out file (which the run itself evaluates) and on a
second held-out file that no recipe choice looked at (examples/data/arith_heldout2.jsonl, bench/make_arith.py).

    python bench/bench_grpo.py                         # examples/align_grpo.yaml, 2 threads
    python bench/bench_grpo.py --set train.max_steps=10 # any config override

Held-out reward = one greedy answer per prompt (the run's own eval, train/online_eval.py); the second file is scored
the same way here, for the base model and for the trained adapter, after the timed training process has exited.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(config: str, out: Path, threads: int, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", config, f"output.dir={out}", "output.name=grpo",
           "output.overwrite=true", f"train.threads={threads}", *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"training failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"cmd": " ".join(cmd[1:]), "wall_s": round(time.time() - t0, 1),
            "cpu_min": round((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 60, 2),
            "peak_rss_mib": round(after.ru_maxrss / 1024, 1)}


def greedy_reward(run: Path, path: Path, adapter: bool, threads: int) -> dict:
    """Mean exact_number and format reward of one greedy answer per prompt in `path`."""
    import torch

    from tuneforge.data.templates import render_prompt, stop_token_ids
    from tuneforge.eval.run import load_for_eval
    from tuneforge.models.decoding import Sampling
    from tuneforge.models.generate import generate_text
    from tuneforge.runs import RunDir
    from tuneforge.train.rewards import exact_number, format_reward

    torch.set_num_threads(threads)
    cfg = RunDir(run).read_config()
    model_cfg, template, _ = RunDir(run).model_config()
    if not adapter:
        model_cfg = model_cfg.model_copy(update={"adapter": None})
    model, tok = load_for_eval(model_cfg)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = [render_prompt(tok, [{"role": "user", "content": r["prompt"]}], template) for r in rows]
    with torch.no_grad():
        out = generate_text(model, tok, prompts, stop_ids=stop_token_ids(tok, template), batch_size=16,
                            sampling=Sampling(max_new_tokens=cfg.align.max_completion_length))
    exact = exact_number(out, [r["answer"] for r in rows])
    fmt = format_reward(r"^\s*-?\d+\s*$")(out)
    return {"exact_number": sum(exact) / len(exact), "format": sum(fmt) / len(fmt), "n": len(rows),
            "examples": [{"prompt": r["prompt"], "answer": r["answer"], "reply": o} for r, o in zip(rows[:5], out)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="examples/align_grpo.yaml")
    ap.add_argument("--heldout2", default="examples/data/arith_heldout2.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/tuneforge-bench-grpo")
    ap.add_argument("--set", action="append", default=[], help="config override, repeatable")
    args = ap.parse_args()
    out = Path(args.out)
    load0 = os.getloadavg()
    timing = train(args.config, out, args.threads, args.set)
    load1 = os.getloadavg()
    run = out / "grpo"
    results = json.loads((run / "results.json").read_text())
    metrics = results.get("metrics", results)
    held = {k: v for k, v in metrics.items() if "reward" in k and "eval" in k}
    second = {"base": greedy_reward(run, REPO / args.heldout2, False, args.threads),
              "tuned": greedy_reward(run, REPO / args.heldout2, True, args.threads)}
    report = {"args": vars(args), "load_before": load0, "load_after_training": load1, "training": timing,
              "heldout_run_metrics": held, "heldout2": second,
              "gain_heldout": round(held.get("eval_reward", 0) - held.get("start_eval_reward", 0), 4),
              "gain_heldout2_exact": round(second["tuned"]["exact_number"] - second["base"]["exact_number"], 4)}
    dest = REPO / "bench" / "results" / f"bench_grpo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "heldout2"}, indent=2))
    print("heldout2:", {k: {m: v[m] for m in ("exact_number", "format")} for k, v in second.items()})
    print("written", dest)


if __name__ == "__main__":
    main()
