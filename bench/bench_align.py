"""DPO LoRA vs SFT LoRA on the same model and pairs: pairs/s, peak RSS (the reference must not be a second model
copy), and held-out preference accuracy / margin at the start and the end. Each run is its own process (its own
peak RSS); the load average is recorded before and after, since the machine may be shared.

    python bench/bench_align.py --model builtin:smollm2 --steps 10 --cutoff 384
    # the acceptance run (long on a CPU): --steps 135 --batch 2 (one epoch of the 270 training pairs)

Data: LLaMA-Factory's dpo_en_demo (examples/data/dpo_en_demo.jsonl, 100 pairs, or --data for the full file),
10 % held out by data.eval_split. The SFT run trains on the same prompts + chosen answers.
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


def child(args: argparse.Namespace, stage: str, data: str, out_dir: Path, steps: int, batch: int) -> dict:
    """One training run in a fresh interpreter; its results.json plus peak RSS and wall time."""
    overrides = [f"stage={stage}", "method=lora", f"model.path={args.model}", f"data.train={data}",
                 "data.template=auto", f"data.cutoff_len={args.cutoff}", "data.eval_split=0.1",
                 f"train.max_steps={steps}", f"train.batch_size={batch}", f"train.lr={args.lr}",
                 "train.logging_steps=1", f"output.dir={out_dir}", f"output.name={stage}", "output.overwrite=true",
                 "data.packing=false"]
    code = ("import json,sys; from tuneforge.config import load_config; from tuneforge.train.run import run_training;"
            "out = run_training(load_config(None, sys.argv[1:])); print('RESULT', json.dumps(out, default=str))")
    t0 = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", code, *overrides], capture_output=True, text=True, cwd=REPO,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{stage} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    return {"result": result, "wall_s": round(time.time() - t0, 1), "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)}


def sft_copy(pairs: Path, out: Path) -> str:
    """The same prompts with their chosen answer, as sharegpt chats (what an SFT run on these pairs trains)."""
    rows = []
    for line in pairs.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.append({"conversations": r["conversations"] + [r["chosen"]]})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:smollm2")
    ap.add_argument("--data", default=str(REPO / "examples" / "data" / "dpo_en_demo.jsonl"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--cutoff", type=int, default=384)
    ap.add_argument("--lr", type=float, default=5e-5)
    # The SFT baseline sees as many sequences per step as DPO (a pair is a chosen and a rejected sequence), and its
    # peak RSS is reached within a few steps when most sequences fill data.cutoff_len: it need not run as long.
    ap.add_argument("--sft-steps", type=int, default=None, help="default: --steps")
    ap.add_argument("--sft-batch", type=int, default=None, help="default: 2 x --batch")
    ap.add_argument("--out", default="/tmp/tuneforge-bench-align")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    if data.suffix == ".json":  # the LF file is one JSON list: the same rows as JSONL
        jsonl = out / "pairs.jsonl"
        jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in json.loads(data.read_text())))
        data = jsonl
    load0 = os.getloadavg()
    runs = {"sft_lora": child(args, "sft", sft_copy(data, out / "sft.jsonl"), out, args.sft_steps or args.steps,
                              args.sft_batch or 2 * args.batch),
            "dpo_lora": child(args, "dpo", str(data), out, args.steps, args.batch)}
    dpo = runs["dpo_lora"]["result"]
    report = {
        "args": vars(args), "load_before": load0, "load_after": os.getloadavg(), "runs": runs,
        "dpo_pairs_per_s": round(args.steps * args.batch / float(dpo["train_runtime"]), 4),
        "rss_ratio_dpo_over_sft": round(runs["dpo_lora"]["peak_rss_mib"] / runs["sft_lora"]["peak_rss_mib"], 3),
        "heldout_accuracy": [dpo.get("start_eval_rewards/accuracies"), dpo.get("eval_rewards/accuracies")],
        "heldout_margin": [dpo.get("start_eval_rewards/margins"), dpo.get("eval_rewards/margins")],
    }
    dest = REPO / "bench" / "results" / f"bench_align-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2, default=str))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
