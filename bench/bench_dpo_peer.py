"""DPO LoRA, tuneforge vs LLaMA-Factory 0.9.5 (`stage: dpo`), same model, pairs, batch and steps, one after the other.

    python bench/bench_dpo_peer.py --steps 8 --batch 2           # machine idle; LF from ../shared/bench/peer's venv

Fairness: every arm trains exactly one pass over the same `steps x batch` pairs of LLaMA-Factory's dpo_en_demo, chosen
so that prompt + the longer answer fit `--cutoff` under the chat template (nobody truncates or drops anything), so
the tools see the same tokens in their own shuffled order. Same weights (the built-in SmolLM2-135M-Instruct as an
fp32 HF directory), LoRA r 8 / alpha 16 on all linear layers, lr, beta 0.1, sigmoid loss, 2 threads. LLaMA-Factory
runs with its defaults (activation checkpointing on). Arms: LLaMA-Factory, tuneforge with the shared-prompt forward
(default), and tuneforge with `align.share_prompt=false` (TRL's padded batch) to show what that forward is worth.
Reported per arm: train runtime and pairs/s, process CPU seconds, peak RSS, loss / margin / accuracy per step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LF_PY = Path(os.environ.get("LF_VENV", Path.home() / ".cache/tuneforge-peer/lf-venv")) / "bin" / "python"
DEMO = REPO.parent / "shared" / "data" / "llamafactory_demo" / "dpo_en_demo.json"


def hf_model_dir() -> str:
    """The built-in model as a plain HF directory (the de-quantized copy tuneforge caches on first load)."""
    from pathlib import Path as P

    from tuneforge.config import load_config
    from tuneforge.models.load import gguf_cache_dir, load_model, resolve_model_path

    cached = gguf_cache_dir(P(resolve_model_path("builtin:smollm2")))
    if not (cached / "model.safetensors").exists():
        load_model(load_config(None, ["model.path=builtin:smollm2"]).model)
    return str(cached)


def pick_pairs(model_dir: str, n: int, cutoff: int) -> list[dict]:
    """The first n pairs whose templated prompt + longer answer fit the cutoff (with room for template tokens)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    picked = []
    for row in json.loads(DEMO.read_text(encoding="utf-8")):
        msgs = [{"role": role[m["from"]], "content": m["value"]} for m in row["conversations"]]
        longest = max((row["chosen"], row["rejected"]), key=lambda m: len(m["value"]))
        text = tok.apply_chat_template(msgs + [{"role": "assistant", "content": longest["value"]}], tokenize=False)
        if len(tok(text, add_special_tokens=False)["input_ids"]) <= cutoff - 8:
            picked.append(row)
        if len(picked) == n:
            return picked
    raise SystemExit(f"only {len(picked)} pairs fit cutoff {cutoff}")


def timed(cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> dict:
    """Run under /usr/bin/time -v; wall, CPU and peak RSS of the whole process."""
    t0 = time.time()
    with log.open("w") as fh:
        rc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, check=False).returncode
    text = log.read_text(errors="replace")
    if rc:
        raise SystemExit(f"{cmd[0]} failed (rc {rc}); see {log}")

    def field(name: str) -> float:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(name))
        return float(line.rsplit(":", 1)[1])

    return {"wall_s": round(time.time() - t0, 1), "cpu_s": round(field("User time") + field("System time"), 1),
            "peak_rss_mib": round(field("Maximum resident set size") / 1024, 1)}


def curve(history: list[dict]) -> list[dict]:
    keys = ("step", "loss", "rewards/margins", "rewards/accuracies")
    return [{k: h[k] for k in keys if k in h} for h in history if "loss" in h and "step" in h]


def run_lf(args, model_dir: str, work: Path) -> dict:
    d = work / "lf"
    d.mkdir(parents=True, exist_ok=True)
    (d / "dataset_info.json").write_text(json.dumps({"pairs": {
        "file_name": "pairs.json", "ranking": True, "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}))
    (d / "pairs.json").write_text(json.dumps(args.pairs, ensure_ascii=False))
    cfg = {"model_name_or_path": model_dir, "trust_remote_code": False, "stage": "dpo", "do_train": True,
           "finetuning_type": "lora", "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_target": "all",
           "pref_beta": 0.1, "pref_loss": "sigmoid", "dataset": "pairs", "dataset_dir": str(d),
           "template": "smollm2", "cutoff_len": args.cutoff, "overwrite_cache": True,
           "preprocessing_num_workers": 1, "dataloader_num_workers": 0, "output_dir": str(d / "out"),
           "logging_steps": 1, "save_strategy": "no", "plot_loss": False, "overwrite_output_dir": True,
           "report_to": "none", "per_device_train_batch_size": args.batch, "gradient_accumulation_steps": 1,
           "learning_rate": args.lr, "max_steps": args.steps, "lr_scheduler_type": "cosine", "warmup_ratio": 0.0,
           "bf16": False, "seed": 42}
    (d / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
    out = timed([str(LF_PY.parent / "llamafactory-cli"), "train", "config.yaml"], d, d / "run.log",
                {"OMP_NUM_THREADS": str(args.threads), "CUDA_VISIBLE_DEVICES": ""})
    state = json.loads((d / "out" / "trainer_state.json").read_text())
    results = json.loads((d / "out" / "all_results.json").read_text())
    return {**out, "train_runtime_s": results["train_runtime"], "curve": curve(state["log_history"])}


def run_ours(args, model_dir: str, work: Path, share: bool) -> dict:
    name = "tuneforge" if share else "tuneforge_padded"
    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in args.pairs), encoding="utf-8")
    cmd = [str(REPO / ".venv" / "bin" / "tuneforge"), "train", "-", "stage=dpo", "method=lora",
           f"model.path={model_dir}", f"data.train={data}", "data.template=auto", f"data.cutoff_len={args.cutoff}",
           "data.packing=false", f"train.max_steps={args.steps}", f"train.batch_size={args.batch}",
           f"train.lr={args.lr}", "train.logging_steps=1", f"train.threads={args.threads}", "lora.r=8",
           "lora.alpha=16", "lora.dropout=0.0", f"align.share_prompt={str(share).lower()}", f"output.dir={work}",
           f"output.name={name}", "output.overwrite=true"]
    out = timed(cmd, REPO, work / f"{name}.log")
    run = work / name
    kept = json.loads((run / "data_report.json").read_text())["train"]
    cut = kept.get("truncated", 0)
    if kept["kept"] != len(args.pairs) or cut:  # the arms must see the same, whole pairs
        raise SystemExit(f"{name}: {kept['kept']} of {len(args.pairs)} pairs kept, {cut} truncated")
    results = json.loads((run / "results.json").read_text())
    history = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return {**out, "train_runtime_s": results["train_runtime"], "curve": curve(history)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--cutoff", type=int, default=384)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default="lf,tuneforge,tuneforge_padded")
    ap.add_argument("--work", default="/tmp/tuneforge-bench-dpo-peer")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = hf_model_dir()
    args.pairs = pick_pairs(model_dir, args.steps * args.batch, args.cutoff)
    arms = args.arms.split(",")
    load0 = os.getloadavg()
    report = {"what": __doc__.split("\n")[0], "model_dir": model_dir, "load_before": load0}
    for arm in arms:
        print(f"== {arm} {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}", flush=True)
        report[arm] = run_lf(args, model_dir, work) if arm == "lf" else run_ours(args, model_dir, work,
                                                                                 share=arm == "tuneforge")
        print(json.dumps({k: v for k, v in report[arm].items() if k != "curve"}), flush=True)
    report["load_after"] = os.getloadavg()
    pairs = args.steps * args.batch
    for arm in arms:
        report[arm]["pairs_per_s"] = round(pairs / report[arm]["train_runtime_s"], 4)
        report[arm]["step1_loss"] = report[arm]["curve"][0]["loss"] if report[arm]["curve"] else None
    if "lf" in arms:
        lf = report["lf"]
        report["ratios_vs_lf"] = {arm: {"pairs_per_s": round(report[arm]["pairs_per_s"] / lf["pairs_per_s"], 3),
                                        "cpu": round(lf["cpu_s"] / report[arm]["cpu_s"], 3),
                                        "peak_rss": round(report[arm]["peak_rss_mib"] / lf["peak_rss_mib"], 3)}
                                  for arm in arms if arm != "lf"}
    report["args"] = {k: v for k, v in vars(args).items() if k != "pairs"}
    dest = REPO / "bench" / "results" / f"bench_dpo_peer-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report.get("ratios_vs_lf", {}), indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
