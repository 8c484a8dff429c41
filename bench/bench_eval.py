#!/usr/bin/env python
"""MCQ scoring throughput (samples/s) and agreement: tuneforge eval vs lm-evaluation-harness, same model, same run.

Both sides get the same already-loaded model object and tokenizer, the same local task files and batch size, and
are timed end to end per task (task building + tokenisation + scoring). Runs alternate (ours, lm-eval, ours, ...)
and the median of `--repeats` is reported, because shared CPUs make single timings noisy. Agreement: accuracy
and per-sample chosen answer, ours vs lm-eval. Writes bench/results/bench_eval-<model>-<time>.json.

    python bench/bench_eval.py                            # SmolLM2-135M-Instruct (packaged GGUF), 3 tasks
    python bench/bench_eval.py --model /path/to/hf_dir --limit 50 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("TUNEFORGE_SHARED_DATA", "/work/shared/data"))


def task_list(limit: int | None):
    from tuneforge.config.evaluation import EvalTaskConfig as T

    obqa = str(DATA / "openbookqa/openbookqa_dev_subset.jsonl")
    return [
        T(name="arc_style", file=obqa, preset="openbookqa", limit=limit),
        T(name="hellaswag_style", file=obqa, preset="hellaswag_obqa", limit=limit),
        T(name="mmlu_0shot", file=str(DATA / "mmlu/test_dev_subset.jsonl"), preset="mmlu", limit=limit),
    ]


def run_ours(model, tok, task, batch_size: int, mode: str):
    from tuneforge.eval.mcq import McqScorer, summarize
    from tuneforge.eval.tasks import load_samples, resolve_task

    t0 = time.perf_counter()
    samples = load_samples(resolve_task(task))
    scorer = McqScorer(model, tok, batch_size=batch_size, mode=mode)
    scores = scorer.score(samples, delimiter=task.target_delimiter)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "n": len(samples), "mode": scorer.mode, **summarize(scores),
            "pred": [s.pred for s in scores], "pred_norm": [s.pred_norm for s in scores]}


def run_theirs(model, tok, task, batch_size: int):
    from tuneforge.eval.lmeval import run_lmeval

    r = run_lmeval(model, tok, [task], batch_size=batch_size)[task.name]
    return {k: r[k] for k in ("seconds", "n", "acc", "acc_norm", "pred", "pred_norm")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:smollm2", help="model path / .gguf / builtin:smollm2")
    ap.add_argument("--limit", type=int, default=None, help="samples per task (default: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", nargs="*", default=None, help="subset of: arc_style hellaswag_style mmlu_0shot")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--separate", action="store_true", help="also time our one-row-per-choice mode")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()

    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(k, "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from tuneforge.config.schema import ModelConfig
    from tuneforge.eval.run import load_for_eval

    t0 = time.perf_counter()
    model, tok = load_for_eval(ModelConfig(path=args.model))
    load_s = time.perf_counter() - t0
    tasks = [t for t in task_list(args.limit) if not args.tasks or t.name in args.tasks]

    report = {"model": args.model, "batch_size": args.batch_size, "repeats": args.repeats, "limit": args.limit,
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_seconds": round(load_s, 1), "platform": platform.platform(),
              "load_average_start": os.getloadavg(), "tasks": {}}
    for task in tasks:
        runs = {"ours_shared": [], "lm_eval": [], **({"ours_separate": []} if args.separate else {})}
        last = {}
        for _ in range(args.repeats):  # interleaved so load spikes hit every side alike
            last["ours_shared"] = run_ours(model, tok, task, args.batch_size, "shared")
            last["lm_eval"] = run_theirs(model, tok, task, args.batch_size)
            if args.separate:
                last["ours_separate"] = run_ours(model, tok, task, args.batch_size, "separate")
            for k, v in last.items():
                runs[k].append(v["seconds"])
        n = last["lm_eval"]["n"]
        med = {k: statistics.median(v) for k, v in runs.items()}
        ours, theirs = last["ours_shared"], last["lm_eval"]
        entry = {
            "n": n,
            "seconds_median": {k: round(v, 3) for k, v in med.items()},
            "seconds_all": {k: [round(x, 3) for x in v] for k, v in runs.items()},
            "samples_per_s": {k: round(n / v, 2) for k, v in med.items()},
            "speedup_vs_lm_eval": round(med["lm_eval"] / med["ours_shared"], 2),
            **({"speedup_separate_vs_lm_eval": round(med["lm_eval"] / med["ours_separate"], 2)} if args.separate else {}),
            "acc": {"ours": ours["acc"], "lm_eval": theirs["acc"],
                    "diff_pp": round(100 * (ours["acc"] - theirs["acc"]), 3)},
            "acc_norm": {"ours": ours["acc_norm"], "lm_eval": theirs["acc_norm"],
                         "diff_pp": round(100 * (ours["acc_norm"] - theirs["acc_norm"]), 3)},
            "same_choice": sum(a == b for a, b in zip(ours["pred"], theirs["pred"])) / n,
            "same_choice_norm": sum(a == b for a, b in zip(ours["pred_norm"], theirs["pred_norm"])) / n,
        }
        report["tasks"][task.name] = entry
        print(f"{task.name:16s} n={n:4d}  ours {entry['samples_per_s']['ours_shared']:7.2f}/s  "
              f"lm-eval {entry['samples_per_s']['lm_eval']:7.2f}/s  speedup {entry['speedup_vs_lm_eval']:.2f}x  "
              f"acc {100 * ours['acc']:.1f} vs {100 * theirs['acc']:.1f}  acc_norm {100 * ours['acc_norm']:.1f} vs "
              f"{100 * theirs['acc_norm']:.1f}  same choice {entry['same_choice']:.3f}", flush=True)
    tot = {k: sum(t["seconds_median"][k] for t in report["tasks"].values()) for k in ("ours_shared", "lm_eval")}
    report["overall_speedup_vs_lm_eval"] = round(tot["lm_eval"] / tot["ours_shared"], 2)
    report["load_average_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.model).stem.replace(":", "_")
    path = out / f"bench_eval-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"overall speedup vs lm-eval: {report['overall_speedup_vs_lm_eval']}x -> {path}")


if __name__ == "__main__":
    main()
