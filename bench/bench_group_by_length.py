"""Does length-grouped batching speed up a classification epoch without hurting accuracy?

    python bench/bench_group_by_length.py                    # 2 interleaved pairs, 1 torch thread
    python bench/bench_group_by_length.py --pairs 3 --max-train 1000
    python bench/bench_group_by_length.py --example topics --max-train 1250 --out bench/results/group_by_length_agnews.json
    python bench/bench_group_by_length.py --pairs 1 --set method=lora --out bench/results/group_by_length_lora.json

Runs examples/sentiment_minilm.yaml (bundled SST-2; `--example topics`: examples/topics_minilm.yaml, bundled AG News
with 20 % held out; packaged MiniLM-L6, full fine-tune, 1 epoch) with
`train.group_by_length` false and true, alternating (off, on, off, on, ...) so both see the same machine load, each
in its own process. Records the Trainer's train_runtime, process CPU time, eval accuracy and the load average, and
writes bench/results/group_by_length.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


EXAMPLES = {
    "sentiment": ("examples/sentiment_minilm.yaml", "examples/data/sst2_train.jsonl",
                  "examples/data/sst2_validation.jsonl"),
    "topics": ("examples/topics_minilm.yaml", "examples/data/ag_news_train.jsonl", None),  # eval_split 0.2
}


def one_run(group: bool, out_dir: Path, args) -> dict:
    name = f"gbl-{int(group)}-{time.time_ns()}"
    config, train, evals = EXAMPLES[args.example]
    data = [f"data.train=[{{path: {train}, max_samples: {args.max_train}}}]"]
    if evals:
        data.append(f"data.eval=[{{path: {evals}, max_samples: {args.max_eval}}}]")
    cmd = [str(Path(sys.executable).parent / "tuneforge"), "train", config,
           f"train.group_by_length={str(group).lower()}", "train.threads=1", f"train.seed={args.seed}", *data,
           f"output.dir={out_dir}", f"output.name={name}", "output.plot=false", "eval.after_train=false", *args.set]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    res = json.loads((out_dir / name / "results.json").read_text())
    return {"group_by_length": group, "train_runtime_s": res["train_runtime"],
            "process_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "eval_accuracy": res["eval_accuracy"], "eval_f1_macro": res["eval_f1_macro"],
            "load_avg_1m_before": round(load, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", choices=sorted(EXAMPLES), default="sentiment")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="extra override for both settings, e.g. method=lora")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--max-eval", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "group_by_length.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf_gbl_") as tmp:
        for i in range(args.pairs):
            for group in ((False, True) if i % 2 == 0 else (True, False)):
                rows.append(one_run(group, Path(tmp), args))
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for group in (False, True):
        sel = [r for r in rows if r["group_by_length"] == group]
        summary["on" if group else "off"] = {k: round(statistics.mean(r[k] for r in sel), 4)
                                             for k in ("train_runtime_s", "process_cpu_s", "eval_accuracy",
                                                       "eval_f1_macro")}
    summary["train_runtime_ratio_on_over_off"] = round(summary["on"]["train_runtime_s"] /
                                                       summary["off"]["train_runtime_s"], 3)
    summary["cpu_ratio_on_over_off"] = round(summary["on"]["process_cpu_s"] / summary["off"]["process_cpu_s"], 3)
    out = {"setup": vars(args) | {"config": EXAMPLES[args.example][0], "threads": 1, "epochs": 1},
           "runs": rows, "summary": summary, "load_avg_end": os.getloadavg()}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
