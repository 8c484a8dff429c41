"""Distillation and pruning-recovery numbers on SST-2 with a fine-tuned 6-layer MiniLM teacher (issue 15).

    OMP_NUM_THREADS=1 python bench/bench_distill.py --teacher RUN_DIR [--data ../shared/data/sst2] \
        [--parts kd,prune] [--seeds 42] [--work /tmp/distill-bench]

kd:    a 3-layer student built from the teacher (blocks 0, 2, 5) trained with KD (alpha 0.5, T 2) and without
       (alpha 0), same data order, same steps (1 epoch of train.jsonl, batch 32, lr 1e-4: examples/distill_minilm.yaml);
       plus the same pair with the pretrained (not fine-tuned) 3-layer MiniLM as the student (`--students`).
prune: 50 % unstructured magnitude pruning of the teacher (`tuneforge prune --sparsity 0.5`), accuracy before any
       recovery, after a 100-step recovery fine-tune with train.keep_sparsity (zeros stay zero) and, for contrast,
       the same run without it (dense again).
Accuracy is measured on validation.jsonl by one scorer for every model (argmax -> id2label == label_text).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src")]


def predictions(model_dir: Path, rows: list[dict]) -> list[str]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), 64):
            enc = tok([r["sentence"] for r in rows[i:i + 64]], padding=True, truncation=True, max_length=128,
                      return_tensors="pt")
            out += [model.config.id2label[p] for p in model(**enc).logits.argmax(-1).tolist()]
    return out


def accuracy(model_dir: Path, rows: list[dict]) -> float:
    return sum(p == r["label_text"] for p, r in zip(predictions(model_dir, rows), rows)) / len(rows)


def score(run_dirs: list[str], teacher: Path, rows: list[dict]) -> None:
    """Accuracy and agreement with the teacher's predictions of finished runs (`--score RUN ...`)."""
    ref = predictions(teacher, rows)
    for run in run_dirs:
        pred = predictions(Path(run) / "model", rows)
        print(json.dumps({"run_dir": run, "accuracy": sum(p == r["label_text"] for p, r in zip(pred, rows)) / len(rows),
                          "teacher_agreement": sum(p == t for p, t in zip(pred, ref)) / len(rows)}), flush=True)


def linear_sparsity(model_dir: Path) -> float:
    from safetensors.torch import load_file

    ws = [v for k, v in load_file(str(model_dir / "model.safetensors")).items()
          if ".encoder.layer." in k and k.endswith(".weight") and v.ndim == 2]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train(overrides: list[str]) -> tuple[dict, float, float]:
    from tuneforge.config.load import load_config
    from tuneforge.train.run import run_training

    c0, t0 = cpu_s(), time.time()
    out = run_training(load_config(overrides=overrides))
    return out, round(cpu_s() - c0, 1), round(time.time() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True, help="a cls run dir (e.g. examples/sentiment_minilm.yaml's)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sst2"))
    ap.add_argument("--parts", default="kd,prune")
    ap.add_argument("--students", default="teacher,builtin:minilm", help="student sources for the kd part")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--student-layers", type=int, default=3)
    ap.add_argument("--kd-steps", type=int, default=-1, help="-1: one epoch")
    ap.add_argument("--recovery-steps", type=int, default=100)
    ap.add_argument("--recovery", default="keep,dense", help="recovery runs: keep (train.keep_sparsity), dense")
    ap.add_argument("--work", default="/tmp/distill-bench")
    ap.add_argument("--score", nargs="*", help="only score these finished run dirs (accuracy, teacher agreement)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    data = Path(args.data)
    train_file, val_file = data / "train.jsonl", data / "validation.jsonl"
    val = [json.loads(x) for x in val_file.read_text().splitlines() if x.strip()]
    teacher_model = Path(args.teacher) / "model"
    if args.score:
        return score(args.score, teacher_model, val)
    common = [f"data.train=[{train_file}]", f"data.eval=[{val_file}]", "data.cutoff_len=128",
              "task.text_column=sentence", "train.batch_size=32", "train.scheduler=linear", "train.warmup_ratio=0.1",
              "train.weight_decay=0.01", "train.threads=1", "train.logging_steps=10", f"output.dir={work}",
              "output.overwrite=true", "output.plot=false", "task.write_predictions=false"]
    results: dict = {"teacher": args.teacher, "train_rows": sum(1 for _ in train_file.open()),
                     "validation_rows": len(val), "load_avg_start": os.getloadavg(),
                     "teacher_accuracy": accuracy(teacher_model, val), "runs": []}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_file = REPO / "bench" / "results" / f"bench_distill-{stamp}.json"

    def record(**row):
        row["load_avg"] = os.getloadavg()
        results["runs"].append(row)
        print(json.dumps(row), flush=True)
        out_file.write_text(json.dumps(results, indent=1))

    if "kd" in args.parts:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for student in args.students.split(","):
                for alpha in (0.5, 0.0):  # interleaved: KD then its no-KD twin, same seed
                    name = f"kd-{student.replace(':', '_')}-a{alpha}-s{seed}"
                    out, cpu, wall = train(["stage=distill", "method=full", f"distill.teacher={args.teacher}",
                                            f"distill.student_layers={args.student_layers}",
                                            f"distill.alpha={alpha}", "distill.temperature=2.0", "train.lr=1e-4",
                                            "train.epochs=1", f"train.max_steps={args.kd_steps}",
                                            f"train.seed={seed}", f"output.name={name}", *common,
                                            *([f"model.path={student}"] if student != "teacher" else [])])
                    record(part="kd", student=student, alpha=alpha, seed=seed, cpu_s=cpu, wall_s=wall,
                           eval_accuracy=out.get("eval_accuracy"), teacher_eval_accuracy=out.get("teacher_eval_accuracy"),
                           accuracy=accuracy(Path(out["run_dir"]) / "model", val), run_dir=out["run_dir"])

    if "prune" in args.parts:
        from tuneforge.export.prune import prune_model

        pruned = work / "pruned-50"
        prune_model(args.teacher, str(pruned), sparsity=0.5, latency=False)
        record(part="prune", step="dense", accuracy=results["teacher_accuracy"],
               sparsity=linear_sparsity(teacher_model))
        record(part="prune", step="pruned, no recovery", accuracy=accuracy(pruned, val),
               sparsity=linear_sparsity(pruned))
        for keep in [mode == "keep" for mode in args.recovery.split(",")]:
            name = f"recover-{'keep' if keep else 'dense'}"
            out, cpu, wall = train(["stage=cls", "method=full", f"model.path={pruned}", "train.lr=5e-5",
                                    f"train.max_steps={args.recovery_steps}", f"train.keep_sparsity={keep}",
                                    f"output.name={name}", *common])
            model = Path(out["run_dir"]) / "model"
            record(part="prune", step=f"recovery {args.recovery_steps} steps, keep_sparsity={keep}", cpu_s=cpu,
                   wall_s=wall, accuracy=accuracy(model, val), eval_accuracy=out.get("eval_accuracy"),
                   sparsity=linear_sparsity(model), run_dir=out["run_dir"])
    results["load_avg_end"] = os.getloadavg()
    out_file.write_text(json.dumps(results, indent=1))
    print(f"wrote {out_file}")


if __name__ == "__main__":
    main()
