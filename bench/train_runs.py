"""Run definitions and runners for bench_train.py: tuneforge through its CLI, peers through the shared harness."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# tuneforge runs: (method, overrides, what it shows). All share BASE below (the peer harness's hyper-parameters).
TF_RUNS = {
    "tf_lora_unpacked": ("lora", {}, "right-padded batches of 4 (reference: same batches as the unpacked peers)"),
    "tf_lora_packed": ("lora", {"data": {"packing": True}},
                       "padding-free packing, the same 4 samples per step, isolated from each other"),
    "tf_lora_packed_2k": ("lora", {"data": {"packing": True}, "train": {"batch_tokens": 2048}},
                          "padding-free packing, 2048-token budget per step (LF packing's 4 x 512 tokens)"),
    "tf_full_packed": ("full", {"data": {"packing": True}}, "full fine-tuning, padding-free, 4 samples per step"),
}

# peer runs: harness script + environment. Names are ours; the harness writes <name>.json with them.
PEER_RUNS = {
    "trl_lora_nogc": ("run_trl_lora.sh", {"GC": "0"}, "trl", "lora"),
    "lf_lora_packing_nogc": ("run_llamafactory_lora.sh", {"VARIANT": "packing_nogc"}, "llamafactory", "lora"),
    "trl_full_nogc": ("run_trl_lora.sh", {"GC": "0", "METHOD": "full"}, "trl", "full"),
    "lf_lora_default": ("run_llamafactory_lora.sh", {"VARIANT": "default"}, "llamafactory", "lora"),
}


def peer_root() -> Path:
    return Path(os.environ.get("PEER_ROOT", Path.home() / ".cache" / "tuneforge-peer"))


def peer_bench_dir() -> Path:
    return Path(os.environ.get("PEER_BENCH", REPO.parent / "shared" / "bench" / "peer"))


def _peer_python(root: Path) -> Path:
    return root / "lf-venv" / "bin" / "python"


def _parse_run_module(bench: Path):
    sys.path.insert(0, str(bench))
    import parse_run  # the harness's own parser: same /usr/bin/time fields, same FLOP formula

    return parse_run


def ensure_inputs(root: Path, bench: Path) -> tuple[Path, Path]:
    """The harness's tiny model and alpaca data (built with its scripts if missing; both are deterministic)."""
    model_dir, data_dir = root / "models" / "tiny-llama", root / "data"
    py = _peer_python(root)
    py = py if py.exists() else Path(sys.executable)
    env = {**os.environ, "PEER_ROOT": str(root), "HF_HUB_OFFLINE": "1"}
    if not (model_dir / "model.safetensors").exists():
        subprocess.run([str(py), str(bench / "make_tiny_llama.py"), "--out", str(model_dir)], check=True, env=env)
    if not (data_dir / "sft.json").exists():
        subprocess.run([str(py), str(bench / "make_sft_data.py"), "--tokenizer", str(model_dir), "--out-dir",
                        str(data_dir)], check=True, env=env)
    return model_dir, data_dir / "sft.json"


def matmul_peak(bench: Path, work: Path, seconds: float) -> float:
    """Sustained fp32 GEMM GFLOP/s measured now (the harness's bench_matmul.py); 69.8 if not measured."""
    out = work / "peer_results" / "matmul.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if seconds > 0:
        subprocess.run([sys.executable, str(bench / "bench_matmul.py"), "--seconds", str(seconds), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    else:
        out.write_text(json.dumps({"peak_for_mfu_gflops": 69.8, "note": "RESULTS.md value, not re-measured"}))
    return json.loads(out.read_text())["peak_for_mfu_gflops"]


PREPROCESS_SNIPPET = r"""
import json, sys, tempfile, time
t0 = time.perf_counter()
from tuneforge.config.load import load_config
from tuneforge.data.load import load_datasets
from tuneforge.data.tokenize import tokenize_samples
from tuneforge.models.load import load_tokenizer
cfg = load_config(sys.argv[1], ["data.cache_dir=" + tempfile.mkdtemp()])
tok = load_tokenizer(cfg.model)
t1 = time.perf_counter()
samples, _, _ = load_datasets(cfg)
data = tokenize_samples(samples, tok, cfg.data, use_cache=True)
t2 = time.perf_counter()
samples, _, _ = load_datasets(cfg)
again = tokenize_samples(samples, tok, cfg.data, use_cache=True)
t3 = time.perf_counter()
print(json.dumps({"imports_and_tokenizer_s": round(t1 - t0, 3), "cold_s": round(t2 - t1, 3),
                  "cached_s": round(t3 - t2, 3), "cache": again.stats.get("cache"), "samples": len(data),
                  "tokens": int(data.lengths().sum())}))
"""


def preprocess_times(model_dir: Path, data_file: Path, work: Path) -> dict:
    """Load + template + tokenize the 2000 examples in one process: cold (no cache) and from the token cache."""
    cfg = work / "preprocess.yaml"
    cfg.write_text(yaml.safe_dump(_config("lora", {}, model_dir, data_file, 1, work / "unused")))
    out = subprocess.run([sys.executable, "-c", PREPROCESS_SNIPPET, str(cfg)], capture_output=True, text=True,
                         env=_env())
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


IMPORT_FLOOR_SNIPPET = (
    "import os\n"
    "import torch, peft\n"
    "from transformers import AutoModelForCausalLM, Trainer\n"
    "import transformers.models.llama.modeling_llama\n"
    "os._exit(0)\n"  # skip interpreter teardown (~1 s with these modules): launch -> imports done
)


def import_floor(repeats: int = 3) -> dict:
    """Launch -> done for a process that only imports what any transformers+peft trainer must (best of N).

    This is the start-up no training tool built on these libraries can go below; it puts the launch -> first
    step ratio in context.
    """
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORT_FLOOR_SNIPPET], check=True, env=_env())
        times.append(round(time.perf_counter() - t0, 2))
    return {"imports": "torch, peft, transformers AutoModelForCausalLM + Trainer + Llama modeling",
            "best_s": min(times), "all_s": times}


def _env() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    # Same for every tool: byte-code caching as on a normal install (the peers' code is pre-compiled in
    # site-packages; an editable tuneforge would otherwise be re-compiled at every launch).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _config(method: str, overrides: dict, model_dir: Path, data_file: Path, steps: int, out_dir: Path) -> dict:
    base = {
        "stage": "sft", "method": method,
        "model": {"path": str(model_dir), "dtype": "float32"},
        "data": {"train": str(data_file), "template": "default", "cutoff_len": 512, "packing": False,
                 "cache_dir": str(out_dir.parent / "tf_cache")},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target": "all-linear"},
        "train": {"lr": 2.0e-4, "batch_size": 4, "grad_accum": 1, "max_steps": steps, "scheduler": "cosine",
                  "warmup_ratio": 0.0, "weight_decay": 0.0, "seed": 42, "logging_steps": 1},
        "output": {"dir": str(out_dir), "name": "run", "overwrite": True, "plot": False},
    }
    return _merge(base, overrides)


class _Watcher:
    """Timestamps every output line (like the harness's tslog.py) and notices the first logged optimizer step."""

    def __init__(self, proc, log_path: Path, metrics_path: Path, t0: float):
        self.proc, self.t0, self.first_step_s = proc, t0, None
        self.metrics_path = metrics_path
        self.log = open(log_path, "w", encoding="utf-8")
        self.threads = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._poll, daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            for line in re.split(r"[\r\n]", raw.decode("utf-8", "replace")):
                if line.strip():
                    self.log.write(f"[{time.perf_counter() - self.t0:9.3f}] {line}\n")
        self.log.flush()

    def _poll(self):
        while self.proc.poll() is None and self.first_step_s is None:
            try:
                if self.metrics_path.exists() and '"step": 1' in self.metrics_path.read_text(encoding="utf-8"):
                    self.first_step_s = round(time.perf_counter() - self.t0, 2)
                    return
            except OSError:
                pass
            time.sleep(0.02)

    def join(self):
        for t in self.threads:
            t.join(timeout=5)
        self.log.close()


def run_tuneforge(name: str, steps: int, model_dir: Path, data_file: Path, work: Path, peak: float) -> dict:
    method, overrides, what = TF_RUNS[name]
    rd = work / "tf_runs" / name
    rd.mkdir(parents=True, exist_ok=True)
    cfg_path = rd / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(method, overrides, model_dir, data_file, steps, rd)), encoding="utf-8")
    exe = Path(sys.executable).parent / "tuneforge"
    cmd = ["/usr/bin/time", "-v", "-o", str(rd / "time.txt"), str(exe), "train", str(cfg_path)]
    print(f"== {name}: {' '.join(cmd[4:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), cwd=rd)
    watcher = _Watcher(proc, rd / "run.log", rd / "run" / "metrics.jsonl", t0)
    rc = proc.wait()
    watcher.join()
    rec = parse_tuneforge(rd, name, method, model_dir, peak)
    rec.update({"exit_code": rc, "launch_to_first_step_s": watcher.first_step_s, "what": what})
    (work / "tf_results").mkdir(exist_ok=True)
    (work / "tf_results" / f"{name}.json").write_text(json.dumps(rec, indent=2))
    print(json.dumps({k: rec.get(k) for k in ("tokens_per_s", "peak_rss_mib", "launch_to_first_step_s",
                                                "final_loss", "exit_code")}), flush=True)
    return rec


def parse_tuneforge(rd: Path, name: str, method: str, model_dir: Path, peak: float) -> dict:
    parse_run = _parse_run_module(peer_bench_dir())
    rec = {"name": name, "tool": "tuneforge", "method": method}
    rec.update(parse_run.read_time(str(rd / "time.txt")))
    run = rd / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()] \
        if (run / "metrics.jsonl").exists() else []
    steps = [x for x in lines if "loss" in x and "train_loss" not in x]
    res = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() else {}
    report = json.loads((run / "data_report.json").read_text()) if (run / "data_report.json").exists() else {}
    rec["token_cache"] = (report.get("train") or {}).get("cache")
    rec["steps"] = steps[-1]["step"] if steps else 0
    rec["train_runtime_s"] = res.get("train_runtime")
    rec["tokens_non_pad"] = res.get("num_input_tokens_seen") or (steps[-1].get("num_input_tokens_seen") if steps else None)
    rec["loss_by_step"] = {s["step"]: s["loss"] for s in steps}
    if steps:
        rec["first_loss"], rec["final_loss"] = steps[0]["loss"], steps[-1]["loss"]
        last5 = [s["loss"] for s in steps[-5:]]
        rec["final_loss_last5_mean"] = round(sum(last5) / len(last5), 4)
    if rec["tokens_non_pad"] and rec["train_runtime_s"]:
        rec["tokens_per_s"] = round(rec["tokens_non_pad"] / rec["train_runtime_s"], 1)
    k = 5
    if len(steps) > k + 1 and "train_runtime" in steps[k - 1]:
        dt = steps[-1]["train_runtime"] - steps[k - 1]["train_runtime"]
        dtok = steps[-1]["num_input_tokens_seen"] - steps[k - 1]["num_input_tokens_seen"]
        if dt > 0:
            rec["steady_tokens_per_s"] = round(dtok / dt, 1)
    fpt, n = parse_run.flops_per_token(str(model_dir), method)
    rec["flops_per_token"], rec["n_nonembed_params"], rec["peak_gflops"] = fpt, n, peak
    for src, dst in (("tokens_per_s", "mfu"), ("steady_tokens_per_s", "mfu_steady")):
        if rec.get(src):
            rec[dst] = round(fpt * rec[src] / (peak * 1e9), 4)
    return rec


def _first_logged_step(log_path: Path) -> float | None:
    """Seconds since launch of the first logged training loss in a harness run.log."""
    if not log_path.exists():
        return None
    for line in log_path.read_text(errors="replace").splitlines():
        m = re.match(r"\[\s*([\d.]+)\]\s?(.*)$", line)
        if m and re.search(r"['\"]loss['\"]\s*:", m.group(2)):
            return float(m.group(1))
    return None


def run_peer(name: str, steps: int, root: Path, bench: Path, work: Path) -> dict:
    script, env_extra, tool, method = PEER_RUNS[name]
    runs, results = work / "peer_runs", work / "peer_results"
    env = {**_env(), **env_extra, "PEER_ROOT": str(root), "MAX_STEPS": str(steps), "NAME": name,
           "RUNS_DIR": str(runs), "RESULTS_DIR": str(results)}
    print(f"== {name}: {script} {env_extra}", flush=True)
    subprocess.run(["bash", str(bench / script)], env=env, check=False)
    out = results / f"{name}.json"
    if "packing" in name and out.exists():
        # LF marks the pack pad tail as attended: correct the token count with LF's own packing fill ratio.
        subprocess.run([str(_peer_python(root)), str(bench / "packing_fill.py"), "--run-json", str(out)],
                       env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = json.loads(out.read_text()) if out.exists() else {"name": name, "error": "no result"}
    rec["launch_to_first_step_s"] = _first_logged_step(runs / name / "run.log")
    rec["loss_by_step"] = _peer_losses(runs / name / "out" / "trainer_state.json")
    out.write_text(json.dumps(rec, indent=2)) if out.exists() else None
    print(json.dumps({k: rec.get(k) for k in ("tokens_per_s", "peak_rss_mib", "launch_to_first_step_s",
                                                "final_loss")}), flush=True)
    return rec


def _peer_losses(state_path: Path) -> dict:
    if not state_path.exists():
        return {}
    hist = json.loads(state_path.read_text())["log_history"]
    return {h["step"]: h["loss"] for h in hist if "loss" in h}
