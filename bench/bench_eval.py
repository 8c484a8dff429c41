#!/usr/bin/env python
"""Eval throughput (samples/s) and agreement: tuneforge eval vs lm-evaluation-harness, same model, same run.

Both sides get the same already-loaded model object and tokenizer, the same local task files, presets' default
setups and batch size, and are timed end to end per task (task building + tokenisation + scoring/generation).
Runs alternate (ours, lm-eval, ours, ...) so load spikes from other users hit both sides; the median of
`--repeats` wall times is reported together with CPU-time ratios (process CPU seconds, less sensitive to a shared
machine) and the load average around every run. Generation tasks also time plain batched `model.generate`
(HF stop strings, same batches) as the floor any wrapper pays. Agreement: per-sample chosen answer (MCQ) or
generated text (greedy). Writes bench/results/bench_eval-<model>-<time>.json.

    python bench/bench_eval.py                                  # SmolLM2-135M-Instruct, all tasks
    python bench/bench_eval.py --tasks mmlu_0shot mmlu_5shot --limit 100 --repeats 3 --threads 1
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
GEN_LIMIT = 16  # generation is ~100x slower per sample than MCQ scoring on a CPU


def task_list(limit: int | None, gen_limit: int | None = GEN_LIMIT):
    from tuneforge.config.evaluation import EvalTaskConfig as T

    obqa, mmlu = str(DATA / "openbookqa/openbookqa_dev_subset.jsonl"), str(DATA / "mmlu/test_dev_subset.jsonl")
    return [
        T(name="arc_style", file=obqa, preset="openbookqa", limit=limit),
        T(name="hellaswag_style", file=obqa, preset="hellaswag_obqa", limit=limit),
        T(name="mmlu_0shot", file=mmlu, preset="mmlu", limit=limit),
        T(name="mmlu_5shot", file=mmlu, preset="mmlu", fewshot=5, fewshot_file=str(DATA / "mmlu/dev.jsonl"),
          limit=limit),
        T(name="gsm8k_5shot", file=str(DATA / "gsm8k/test_dev_subset.jsonl"), preset="gsm8k",
          fewshot_file=str(DATA / "gsm8k/train.jsonl"), limit=gen_limit),
    ]


def _timed(fn):
    c0, t0, load0 = time.process_time(), time.perf_counter(), os.getloadavg()[0]
    out = fn()
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0,
               load=round((load0 + os.getloadavg()[0]) / 2, 2))
    return out


def run_ours(model, tok, task, batch_size: int, mode: str = "auto"):
    from tuneforge.eval.generate import GenSettings, generate
    from tuneforge.eval.mcq import McqScorer
    from tuneforge.eval.tasks import load_samples, resolve_task

    def go():
        spec = resolve_task(task)
        samples = load_samples(spec)
        if spec.type == "generate":
            outs = generate(model, tok, samples, GenSettings(batch_size=batch_size), stop=spec.stop,
                            max_new_tokens=spec.max_new_tokens)
            return {"n": len(samples), "outputs": outs}
        scorer = McqScorer(model, tok, batch_size=batch_size, mode=mode)
        scores = scorer.score(samples, delimiter=task.target_delimiter)
        return {"n": len(samples), "mode": scorer.mode, "pred": [s.pred for s in scores],
                "pred_norm": [s.pred_norm for s in scores], "acc": sum(s.acc for s in scores) / len(scores),
                "acc_norm": sum(s.acc_norm for s in scores) / len(scores)}
    return _timed(go)


def run_theirs(model, tok, task, batch_size: int):
    from tuneforge.eval.lmeval import run_lmeval

    def go():
        r = run_lmeval(model, tok, [task], batch_size=batch_size)[task.name]
        if "outputs" in r:
            return {"n": r["n"], "outputs": [o.strip() for o in r["outputs"]]}
        return {k: r[k] for k in ("n", "acc", "acc_norm", "pred", "pred_norm")}
    return _timed(go)


def run_plain_generate(model, tok, task, batch_size: int):
    """Plain HF: tokenizer(prompts, padding=left) -> model.generate(stop_strings) per length-sorted batch."""
    import torch

    from tuneforge.eval.tasks import load_samples, resolve_task
    from tuneforge.models.generate import cut_at_stop

    def go():
        spec = resolve_task(task)
        samples = load_samples(spec)
        order = sorted(range(len(samples)), key=lambda i: -len(samples[i].prompt))
        outs = [""] * len(samples)
        tok.padding_side = "left"
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b: b + batch_size]
                enc = tok([samples[i].prompt for i in idx], return_tensors="pt", padding=True)
                gen = model.generate(**enc, max_new_tokens=spec.max_new_tokens, do_sample=False,
                                     stop_strings=spec.stop, tokenizer=tok, pad_token_id=tok.pad_token_id)
                for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:]):
                    outs[i] = cut_at_stop(tok.decode(row, skip_special_tokens=True), spec.stop).strip()
        return {"n": len(samples), "outputs": outs}
    return _timed(go)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:smollm2", help="model path / .gguf / builtin:smollm2")
    ap.add_argument("--limit", type=int, default=None, help="samples per task (default: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", nargs="*", default=None,
                    help="subset of: arc_style hellaswag_style mmlu_0shot mmlu_5shot gsm8k_5shot")
    ap.add_argument("--gen-limit", type=int, default=GEN_LIMIT, help="samples for generation tasks")
    ap.add_argument("--threads", type=int, default=None)
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
    with torch.inference_mode():  # untimed: the first forwards of a process pay one-off allocator / kernel set-up,
        for width in (16, 64, 256):  # which would land on whichever side runs first
            model(input_ids=torch.full((8, width), tok.eos_token_id or 0, dtype=torch.long))
    tasks = [t for t in task_list(args.limit, args.gen_limit) if not args.tasks or t.name in args.tasks]

    report = {"model": args.model, "batch_size": args.batch_size, "repeats": args.repeats, "limit": args.limit,
              "gen_limit": args.gen_limit, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_seconds": round(load_s, 1), "platform": platform.platform(),
              "load_average_start": os.getloadavg(), "tasks": {}}
    name = Path(args.model).stem.replace(":", "_")
    path = Path(args.out) / f"bench_eval-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for task in tasks:
        gen = task.preset == "gsm8k"
        sides = {"ours": lambda: run_ours(model, tok, task, args.batch_size),
                 "lm_eval": lambda: run_theirs(model, tok, task, args.batch_size)}
        if gen:
            sides["plain_generate"] = lambda: run_plain_generate(model, tok, task, args.batch_size)
        runs: dict[str, list[dict]] = {k: [] for k in sides}
        for _ in range(args.repeats):  # interleaved so load spikes hit every side alike
            for k, fn in sides.items():
                runs[k].append(fn())
        report["tasks"][task.name] = entry = summarise(runs)
        ours, theirs = runs["ours"][-1], runs["lm_eval"][-1]
        if gen:
            entry["same_output"] = sum(a == b for a, b in zip(ours["outputs"], theirs["outputs"])) / ours["n"]
            entry["same_output_as_plain"] = sum(
                a == b for a, b in zip(ours["outputs"], runs["plain_generate"][-1]["outputs"])) / ours["n"]
            agree = f"same output {entry['same_output']:.3f}"
        else:
            entry["acc"] = {"ours": ours["acc"], "lm_eval": theirs["acc"]}
            entry["acc_norm"] = {"ours": ours["acc_norm"], "lm_eval": theirs["acc_norm"]}
            entry["same_choice"] = sum(a == b for a, b in zip(ours["pred"], theirs["pred"])) / ours["n"]
            entry["same_choice_norm"] = sum(a == b for a, b in zip(ours["pred_norm"], theirs["pred_norm"])) / ours["n"]
            entry["scoring"] = ours["mode"]
            agree = f"same choice {entry['same_choice']:.3f}/{entry['same_choice_norm']:.3f}"
        print(f"{task.name:16s} n={entry['n']:4d}  ours {entry['samples_per_s']['ours']:7.2f}/s  lm-eval "
              f"{entry['samples_per_s']['lm_eval']:7.2f}/s  wall {entry['speedup_vs_lm_eval']:.2f}x  "
              f"cpu {entry['cpu_speedup_vs_lm_eval']:.2f}x  {agree}  load {entry['load_mean']}", flush=True)
        save(report, path)  # after every task: a long run that is stopped keeps what it measured
    tot = {k: sum(t["seconds_median"][k] for t in report["tasks"].values()) for k in ("ours", "lm_eval")}
    report["overall_speedup_vs_lm_eval"] = round(tot["lm_eval"] / tot["ours"], 2)
    report["load_average_end"] = os.getloadavg()
    save(report, path)
    print(f"overall speedup vs lm-eval: {report['overall_speedup_vs_lm_eval']}x -> {path}")


def save(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")


def summarise(runs: dict[str, list[dict]]) -> dict:
    n = runs["ours"][-1]["n"]
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu_seconds"] for r in v) for k, v in runs.items()}
    entry = {"n": n, "seconds_median": {k: round(v, 3) for k, v in med.items()},
             "cpu_seconds_median": {k: round(v, 3) for k, v in cpu.items()},
             "seconds_all": {k: [round(r["seconds"], 3) for r in v] for k, v in runs.items()},
             "load_all": {k: [r["load"] for r in v] for k, v in runs.items()},
             "samples_per_s": {k: round(n / v, 3) for k, v in med.items()},
             "speedup_vs_lm_eval": round(med["lm_eval"] / med["ours"], 2),
             "cpu_speedup_vs_lm_eval": round(cpu["lm_eval"] / cpu["ours"], 2),
             "load_mean": round(statistics.mean(r["load"] for v in runs.values() for r in v), 2)}
    if "plain_generate" in runs:
        entry["speedup_vs_plain_generate"] = round(med["plain_generate"] / med["ours"], 2)
        entry["cpu_speedup_vs_plain_generate"] = round(cpu["plain_generate"] / cpu["ours"], 2)
    return entry


if __name__ == "__main__":
    main()
