"""Export numbers on the packaged SmolLM2-135M-Instruct (issue 15), one invocation, JSON in bench/results/.

    PYTHONPATH=<dir with torchao> python bench/bench_export.py [--data ../shared/data] [--work /tmp/export-bench]

Steps: SmolLM2 (builtin GGUF, de-quantized) saved as a HF dir; a LoRA "fine-tune" with random non-zero B on every
projection (so the merge has something to get wrong); then export hf (fp32 logit diff), export gguf f32 (logit
diff) and q8_0 (perplexity on held-out wiki text), quantize int8 with OpenBookQA + MMLU (zero-shot, shared subsets)
before/after, and a 25 % MLP-channel prune (latency). Reports of each step stay in the work dir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/export-bench")
    ap.add_argument("--steps", default="hf,gguf_f32,gguf_q8_0,int8,prune")
    ap.add_argument("--eval-limit", type=int, default=100, help="0: no OpenBookQA/MMLU before/after int8")
    ap.add_argument("--texts", type=int, default=30, help="held-out wiki texts (<= 128 tokens each) for the checks")
    ap.add_argument("--run", default=None, help="a trained SmolLM2 LoRA run dir to export (e.g. the README demo's); "
                    "default: a random rank-8 adapter on every projection, a harsher merge test than training gives")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from export_runs import lora_run
    from tuneforge.config.schema import ModelConfig
    from tuneforge.models.load import load_model, load_tokenizer

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = work / "smollm2-hf"
    if not (base / "config.json").exists():
        mc = ModelConfig(path="builtin:smollm2", dtype="float32")
        load_model(mc).save_pretrained(base)
        load_tokenizer(mc).save_pretrained(base)
    run = Path(args.run) if args.run else work / "runs" / "smollm2-lora"
    if args.run and not (run / "adapter").is_dir():
        raise SystemExit(f"--run {run}: no adapter/ in it (a LoRA run dir is expected)")
    if not (run / "adapter").exists():
        lora_run(work / "runs", str(base), "smollm2-lora", seed=0, template="auto", rank=8)
    wiki_rows = (Path(args.data) / "wiki_demo_text" / "wiki_demo.jsonl").read_text(encoding="utf-8").splitlines()
    wiki = str(work / f"wiki-{args.texts}.jsonl")
    Path(wiki).write_text("\n".join(wiki_rows[: args.texts]) + "\n", encoding="utf-8")
    eval_cfg = work / "eval.yaml"
    eval_cfg.write_text(
        "eval:\n  batch_size: 8\n  tasks:\n"
        f"    - {{name: openbookqa, preset: openbookqa, file: {args.data}/openbookqa/openbookqa_dev_subset.jsonl,"
        f" limit: {args.eval_limit}}}\n"
        f"    - {{name: mmlu, preset: mmlu, file: {args.data}/mmlu/test_dev_subset.jsonl, limit: {args.eval_limit}}}\n",
        encoding="utf-8")
    out: dict = {"load_avg_before": os.getloadavg(), "torch_threads": torch.get_num_threads(), "steps": {}}
    steps = args.steps.split(",")

    def timed(name, fn, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        report = fn(**kw)
        out["steps"][name] = {"wall_s": round(time.perf_counter() - t0, 1),
                              "cpu_s": round(time.process_time() - c0, 1), "report": report}
        print(f"== {name}: {json.dumps(report.get('checks'))}", flush=True)

    if "hf" in steps:
        from tuneforge.export.merge import export_hf
        timed("hf", export_hf, source=str(run), out=str(work / "hf"), sample_file=wiki)
    if "gguf_f32" in steps:
        from tuneforge.export.export_gguf import export_gguf
        timed("gguf_f32", export_gguf, source=str(run), out=str(work / "gguf-f32"), quant="f32", sample_file=wiki)
    if "gguf_q8_0" in steps:
        from tuneforge.export.export_gguf import export_gguf
        timed("gguf_q8_0", export_gguf, source=str(run), out=str(work / "gguf-q8_0"), quant="q8_0", sample_file=wiki)
    if "int8" in steps:
        from tuneforge.export.quantize import quantize_model
        timed("int8", quantize_model, source=str(run), out=str(work / "int8"), bits=8, sample_file=wiki,
              eval_config=str(eval_cfg) if args.eval_limit else None)
    if "prune" in steps:
        from tuneforge.export.prune import prune_model
        timed("prune_mlp25", prune_model, source=str(run), out=str(work / "pruned"), mlp=0.25, sample_file=wiki)
    out["load_avg_after"] = os.getloadavg()
    dest = REPO / "bench" / "results" / f"bench_export-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
