#!/usr/bin/env python
"""Training throughput / memory / start-up of tuneforge vs LLaMA-Factory and TRL, side by side, in one invocation.

Same model, data and hyper-parameters as the peer harness in ../shared/bench/peer (tiny Llama 31.6 M, 2000 alpaca
examples, batch 4, LoRA r8 all-linear, lr 2e-4 cosine, fp32, seed 42). Every run is a separate process, timed with
/usr/bin/time -v, strictly one after another. tuneforge runs go through its real CLI (`tuneforge train cfg.yaml`);
peers through the harness's own scripts (run_trl_lora.sh, run_llamafactory_lora.sh), whose parse_run.py numbers
we read back. Writes bench/results/bench_train-<stamp>.{json,md} and prints the markdown.

    python bench/bench_train.py                     # all runs, 40 steps each (~20 min on 2 cores)
    python bench/bench_train.py --steps 20 --only tf_lora_packed,trl_lora_nogc
    python bench/bench_train.py --reuse-peers DIR   # take peer numbers from an earlier invocation's DIR

Needs the peer venv ($PEER_ROOT/lf-venv, `bash ../shared/bench/peer/setup_venv.sh`) for the peer runs and for
building the model/data when missing. Helpers: bench/train_runs.py (run + parse), bench/train_report.py (tables).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_report import build_report  # noqa: E402
from train_runs import (PEER_RUNS, TF_RUNS, ensure_inputs, matmul_peak, peer_bench_dir, peer_root,  # noqa: E402
                        import_floor, preprocess_times, run_peer, run_tuneforge)

REPO = Path(__file__).resolve().parents[1]
ORDER = ["trl_lora_nogc", "tf_lora_unpacked", "tf_lora_packed", "lf_lora_packing_nogc", "tf_lora_packed_2k",
         "trl_full_nogc", "tf_full_packed", "lf_lora_default"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps for every run (all tools equally)")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--skip-peers", action="store_true", help="tuneforge runs only")
    ap.add_argument("--reuse-peers", default=None, help="out dir of an earlier invocation: reuse its peer results")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="where the JSON/markdown go")
    ap.add_argument("--matmul-seconds", type=float, default=3.0, help="seconds per GEMM shape for the peak (0: reuse)")
    args = ap.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(args.out) / "tmp" / f"bench_train-{stamp}"  # run dirs, logs, models: git-ignored
    work.mkdir(parents=True, exist_ok=True)
    root, bench = peer_root(), peer_bench_dir()
    model_dir, data_file = ensure_inputs(root, bench)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]

    peak = matmul_peak(bench, work, args.matmul_seconds)
    prep = preprocess_times(model_dir, data_file, work)
    floor = import_floor()
    runs: dict[str, dict] = {}
    peers = [] if args.skip_peers else [n for n in PEER_RUNS if not only or n in only]
    if args.reuse_peers:
        for p in Path(args.reuse_peers).glob("peer_results/*.json"):
            if p.stem in PEER_RUNS:
                runs[p.stem] = json.loads(p.read_text())
        peers = [n for n in peers if n not in runs]
    # Interleave peers and tuneforge so that a drifting machine load does not favour one side.
    for name in ORDER:
        if name in peers:
            runs[name] = run_peer(name, args.steps, root, bench, work)
        elif name in TF_RUNS and (not only or name in only):
            runs[name] = run_tuneforge(name, args.steps, model_dir, data_file, work, peak)

    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    meta = {"steps": args.steps, "stamp": stamp, "peak_gflops": peak, "preprocess": prep, "import_floor": floor,
            "loadavg_before": load_before, "loadavg_after": load_after, "cpus": os.cpu_count(),
            "model_dir": str(model_dir), "data": str(data_file)}
    report, markdown = build_report(runs, meta)
    out_json = Path(args.out) / f"bench_train-{stamp}.json"
    out_md = Path(args.out) / f"bench_train-{stamp}.md"
    out_json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    out_md.write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {out_json} and {out_md}")


if __name__ == "__main__":
    main()
