"""Task heads benchmark: tuneforge (full fine-tune, LoRA, feature extraction) vs a hand-written HF Trainer script,
on the same data, model (all-MiniLM-L6-v2), hyper-parameters and epochs; reports the metric and wall time.

    python bench/bench_tasks.py                       # cls (SST-2) + qa (SQuAD subset), writes bench/results/tasks.json
    python bench/bench_tasks.py --tasks cls --max-train 500 --threads 1

Every system runs in its own process (same thread count), one after the other; wall time is the whole process
(imports, model load, training, evaluation). Data:
- cls: first --max-train rows of shared sst2/train.jsonl, first --max-eval rows of sst2/validation.jsonl.
- qa: shared squad_v2_shared.jsonl split by article: Normans + Computational_complexity_theory for training,
  Southern_California held out; answerable questions only (SQuAD v1 style) on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
QA_TRAIN_TITLES = "Normans,Computational_complexity_theory"
QA_EVAL_TITLES = "Southern_California"


def run_proc(cmd: list[str], threads: int, log: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return time.time() - t0


def tuneforge(config: str, overrides: list[str], work: Path, name: str, threads: int) -> dict:
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", config, *overrides, f"output.dir={work}",
           f"output.name={name}", "output.overwrite=true", f"train.threads={threads}"]
    wall = run_proc(cmd, threads, work / f"{name}.log")
    res = json.loads((work / name / "results.json").read_text())
    # features: "training" = embedding the train set once + fitting the head
    train_s = res.get("train_runtime", (res.get("embed_train_s") or 0) + (res.get("head_train_s") or 0))
    return {**res, "wall_s": wall, "train_s": train_s}


def baseline(task: str, args: list[str], work: Path, threads: int) -> dict:
    out = work / f"hf_{task}.json"
    cmd = [sys.executable, "bench/hf_trainer_baseline.py", task, *args, "--threads", str(threads),
           "--work", str(work / f"hf_{task}"), "--out", str(out)]
    wall = run_proc(cmd, threads, work / f"hf_{task}.log")
    return {**json.loads(out.read_text()), "wall_s": wall}


def bench_cls(a, work: Path) -> list[dict]:
    hp = dict(lr=1e-4, epochs=a.epochs, batch=32)
    common = [f"data.train=[{{path: {SHARED}/sst2/train.jsonl, max_samples: {a.max_train}}}]",
              f"data.eval=[{{path: {SHARED}/sst2/validation.jsonl, max_samples: {a.max_eval}}}]",
              f"train.lr={hp['lr']}", f"train.epochs={hp['epochs']}", f"train.batch_size={hp['batch']}",
              "train.seed=42", "data.cutoff_len=128"]
    cfg = "examples/sentiment_minilm.yaml"
    rows = []
    base = baseline("cls", ["--train", f"{SHARED}/sst2/train.jsonl", "--eval", f"{SHARED}/sst2/validation.jsonl",
                            "--text", "sentence", "--max-train", str(a.max_train), "--max-eval", str(a.max_eval),
                            "--lr", str(hp["lr"]), "--epochs", str(hp["epochs"]), "--batch-size", str(hp["batch"])],
                    work, a.threads)
    rows.append(_row("cls", "hf_trainer (hand-written)", base["accuracy"], base))
    for system, extra in [("tuneforge full", ["method=full"]),
                          ("tuneforge lora", ["method=lora", "train.lr=2e-3"]),
                          ("tuneforge features", ["method=features"])]:
        res = tuneforge(cfg, common + extra, work, system.replace(" ", "_"), a.threads)
        rows.append(_row("cls", system, res["eval_accuracy"], res))
    return rows


def bench_qa(a, work: Path) -> list[dict]:
    src = [json.loads(x) for x in (SHARED / "squad_v2_subset" / "squad_v2_shared.jsonl").read_text().splitlines()]
    train_f, eval_f = work / "qa_train.jsonl", work / "qa_eval.jsonl"
    for path, titles in ((train_f, QA_TRAIN_TITLES), (eval_f, QA_EVAL_TITLES)):
        keep = set(titles.split(","))
        path.write_text("".join(json.dumps(r) + "\n" for r in src if r["title"] in keep), encoding="utf-8")
    hp = dict(lr=2e-4, epochs=a.qa_epochs, batch=16, max_len=128, stride=32)
    base = baseline("qa", ["--train", str(train_f), "--eval", str(eval_f), "--lr", str(hp["lr"]),
                           "--epochs", str(hp["epochs"]), "--batch-size", str(hp["batch"]), "--max-len",
                           str(hp["max_len"]), "--stride", str(hp["stride"])], work, a.threads)
    rows = [_row("qa", "hf_trainer (hand-written)", base["f1"], base, em=base["exact_match"])]
    common = [f"data.train=[{train_f}]", f"data.eval=[{eval_f}]", f"train.lr={hp['lr']}",
              f"train.epochs={hp['epochs']}", f"train.batch_size={hp['batch']}", f"data.cutoff_len={hp['max_len']}",
              f"task.doc_stride={hp['stride']}", "train.seed=42"]
    systems = [("tuneforge full", ["method=full"])]
    if a.qa_lora:
        systems.append(("tuneforge lora", ["method=lora", "train.lr=2e-3"]))
    for system, extra in systems:
        res = tuneforge("examples/qa_minilm.yaml", common + extra, work, "qa_" + system.replace(" ", "_"), a.threads)
        rows.append(_row("qa", system, res["eval_f1"], res, em=res["eval_exact_match"]))
    return rows


def _row(task: str, system: str, metric: float, res: dict, em: float | None = None) -> dict:
    row = {"task": task, "system": system, "metric": "f1" if task == "qa" else "accuracy", "value": round(metric, 4),
           "train_s": round(float(res.get("train_s") or 0), 1), "wall_s": round(res["wall_s"], 1)}
    if em is not None:
        row["exact_match"] = round(em, 4)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="cls,qa")
    p.add_argument("--max-train", type=int, default=1000)
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--qa-epochs", type=float, default=2.0)
    p.add_argument("--qa-lora", action="store_true", help="also run LoRA on QA")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every system (same for all)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "tasks.json"))
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_tasks_"))
    rows: list[dict] = []
    for task in a.tasks.split(","):
        rows += bench_cls(a, work) if task == "cls" else bench_qa(a, work)
        for r in rows:
            print(json.dumps(r))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(a), "rows": rows}, indent=1), encoding="utf-8")
    print(f"\n| task | system | metric | value | EM | train s | wall s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['system']} | {r['metric']} | {r['value']:.4f} | {r.get('exact_match', '')} | "
              f"{r['train_s']} | {r['wall_s']} |")


if __name__ == "__main__":
    main()
