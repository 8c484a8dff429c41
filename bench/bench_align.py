"""DPO LoRA vs SFT LoRA on the same model and pairs: pairs/s, peak RSS (the reference must not be a second model
copy), and held-out preference accuracy / margin at the start and the end. Each run is its own process (its own
peak RSS); the load average is recorded before and after, since the machine may be shared.

    python bench/bench_align.py --model builtin:smollm2 --steps 10 --cutoff 384
    # the acceptance run (~1 hour on 2 CPU cores): two held-out sets of 30 pairs, 2 epochs on the other 240
    python bench/bench_align.py --data ../shared/data/llamafactory_demo/dpo_en_demo.json --two-heldout \
        --epochs 2 --lr 1e-4 --cutoff 384 --sft-steps 20

Data: LLaMA-Factory's dpo_en_demo (examples/data/dpo_en_demo.jsonl, 100 pairs, or --data for the full file),
10 % held out by data.eval_split. With --two-heldout the file is shuffled as data.eval_split shuffles it (seed 0):
the first 30 pairs (the 10 % split earlier runs were judged on) are the held-out set the run evaluates, the next 30
a second held-out set scored once after training with `tuneforge eval`, the other 240 the training pairs. The SFT
run trains on the same prompts + chosen answers.
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
                 "data.template=auto", f"data.cutoff_len={args.cutoff}",
                 f"data.eval={args.eval_data}" if args.eval_data and stage == "dpo" else "data.eval_split=0.1",
                 *(["data.eval_split=0"] if args.no_eval else []),
                 *([f"train.epochs={args.epochs}"] if args.epochs and stage == "dpo" else [f"train.max_steps={steps}"]),
                 f"train.batch_size={batch}", f"train.lr={args.lr}",
                 "train.logging_steps=1", f"output.dir={out_dir}", f"output.name={stage}", "output.overwrite=true",
                 "data.packing=false"]
    code = ("import json,sys; from tuneforge.config import load_config; from tuneforge.train.run import run_training;"
            "out = run_training(load_config(None, sys.argv[1:])); print('RESULT', json.dumps(out, default=str))")
    t0 = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Peak RSS of this child alone: RUSAGE_CHILDREN's ru_maxrss is the largest over every child waited for so far,
    # so a second run would report the first one's peak when its own is lower.
    rss_file = out_dir / f"{stage}.maxrss"
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), sys.executable, "-c", code,
                           *overrides], capture_output=True, text=True, cwd=REPO, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{stage} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    metrics = (out_dir / stage / "metrics.jsonl").read_text().splitlines()
    result["steps_run"] = max((json.loads(ln).get("step", 0) for ln in metrics if ln.strip()), default=0)
    peak_kib = int(rss_file.read_text().split()[-1])
    return {"result": result, "wall_s": round(time.time() - t0, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)}


def eval_pairs(run_dir: Path, files: list[str], cutoff: int, beta: float = 0.1) -> dict:
    """`tuneforge eval` preference tasks on the finished DPO run (implicit reward against the base, adapter
    disabled): reward_acc / reward_margin / logp_acc and n per file, with the training cutoff."""
    cfg = run_dir.parent / "eval_pairs.yaml"
    tasks = "".join(f"    - {{name: {Path(f).stem}, type: preference, file: {f}, beta: {beta}}}\n" for f in files)
    cfg.write_text(f"eval:\n  max_length: {cutoff}\n  tasks:\n{tasks}")
    out = run_dir / "eval_pairs"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "tuneforge"), "eval", str(run_dir), "-c", str(cfg), "-o",
                           str(out), "--force"], capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode:
        raise SystemExit(f"eval failed:\n{proc.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    return {"command": " ".join(proc.args), "results": results.get("tasks", results)}


def two_heldout(data: Path, out: Path) -> tuple[Path, Path, Path]:
    """(train, heldout1, heldout2) JSONL files: data.eval_split's seed-0 shuffle, first 30 / next 30 / the rest."""
    import random

    rows = [json.loads(ln) for ln in data.read_text(encoding="utf-8").splitlines() if ln.strip()]
    idx = list(range(len(rows)))
    random.Random(0).shuffle(idx)  # the same draw as data/load.py's eval_split with data.mix_seed 0
    parts = {"heldout1": sorted(idx[:30]), "heldout2": sorted(idx[30:60]), "train": sorted(idx[60:])}
    for name, ids in parts.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(rows[i], ensure_ascii=False) + "\n" for i in ids),
                                            encoding="utf-8")
    return out / "train.jsonl", out / "heldout1.jsonl", out / "heldout2.jsonl"


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
    ap.add_argument("--epochs", type=float, default=None, help="train this many epochs instead of --steps")
    ap.add_argument("--eval-data", default=None, help="held-out pairs file (default: 10 %% of --data)")
    ap.add_argument("--no-eval", action="store_true", help="no held-out evaluation (a peak-RSS-only run)")
    ap.add_argument("--two-heldout", action="store_true", help="hold out two sets of 30 pairs (see above)")
    ap.add_argument("--also-eval", default="", help="comma-separated pairs files scored after training with "
                    "`tuneforge eval` (preference tasks), e.g. a second held-out set the recipe was not chosen on")
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
    if args.two_heldout:
        data, first, second = two_heldout(data, out)
        args.eval_data, args.also_eval = str(first), ",".join(filter(None, [str(second), args.also_eval]))
    load0 = os.getloadavg()
    runs = {"sft_lora": child(args, "sft", sft_copy(data, out / "sft.jsonl"), out, args.sft_steps or args.steps,
                              args.sft_batch or 2 * args.batch),
            "dpo_lora": child(args, "dpo", str(data), out, args.steps, args.batch)}
    dpo = runs["dpo_lora"]["result"]
    report = {
        "args": vars(args), "load_before": load0, "load_after": os.getloadavg(), "runs": runs,
        "dpo_steps": dpo["steps_run"],
        "dpo_s_per_step": round(float(dpo["train_runtime"]) / max(1, dpo["steps_run"]), 2),
        "rss_ratio_dpo_over_sft": round(runs["dpo_lora"]["peak_rss_mib"] / runs["sft_lora"]["peak_rss_mib"], 3),
        "heldout_accuracy": [dpo.get("start_eval_rewards/accuracies"), dpo.get("eval_rewards/accuracies")],
        "heldout_margin": [dpo.get("start_eval_rewards/margins"), dpo.get("eval_rewards/margins")],
    }
    if args.also_eval:
        report["also_eval"] = eval_pairs(out / "dpo", args.also_eval.split(","), args.cutoff)
    dest = REPO / "bench" / "results" / f"bench_align-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2, default=str))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
