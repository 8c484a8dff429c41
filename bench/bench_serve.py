#!/usr/bin/env python
"""API server load: generated tokens/s, p50/p99 latency and errors at 1..200 concurrent clients, loopback only.

Servers, each started as a subprocess on 127.0.0.1 and measured in this one invocation:
  - `tuneforge serve` with dynamic batching (`--max-batch 32`),
  - `tuneforge serve --max-batch 1` (one by one: the baseline batching must beat),
  - LLaMA-Factory 0.9.5 `llamafactory-cli api` (HF engine, its `MAX_CONCURRENT` default) from the peer venv
    (../shared/bench/peer/setup_venv.sh), on the same weights (the safetensors dir tuneforge converts the packaged
    SmolLM2-135M-Instruct GGUF into), when that venv exists.
Every client sends one chat request (distinct prompt, greedy, `max_tokens`); tokens are the servers' own `usage`
counts. Server CPU seconds (from /proc) are recorded too: on a shared CPU, tokens per CPU-second is the steadier
ratio. Writes bench/results/bench_serve-<time>.json.

    python bench/bench_serve.py                                  # 1, 8, 32, 200 clients, max_tokens 32
    python bench/bench_serve.py --levels 1,4,8 --skip-peer
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
PEER_VENV = Path(os.environ.get("LF_VENV", Path.home() / ".cache/tuneforge-peer/lf-venv"))
TOPICS = "river mountain robot garden ocean library winter market violin comet forest bridge lantern desert".split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_dir() -> str:
    """The safetensors dir of the packaged SmolLM2 (converted once by tuneforge), shared by every server."""
    from tuneforge.config.schema import ModelConfig
    from tuneforge.models.load import load_tokenizer, resolve_model_path, gguf_cache_dir

    load_tokenizer(ModelConfig(path="builtin:smollm2"))  # converts on first use
    path = Path(resolve_model_path("builtin:smollm2"))
    gguf = path if path.suffix == ".gguf" else next(path.glob("*.gguf"))
    return str(gguf_cache_dir(gguf))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], port: int, env: dict, log: Path) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"server did not come up; see {log}")


async def one(client, url: str, model: str, i: int, max_tokens: int) -> tuple[float, int, str | None]:
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": f"Write a short story about a {TOPICS[i % len(TOPICS)]} "
                                                     f"and the number {i}."}]}
    t0 = time.perf_counter()
    try:
        r = await client.post(url, json=body)
        if r.status_code != 200:
            return time.perf_counter() - t0, 0, f"{r.status_code}: {r.text[:120]}"
        return time.perf_counter() - t0, r.json()["usage"]["completion_tokens"], None
    except Exception as e:  # noqa: BLE001  (a failed request is a counted error, not a crash of the bench)
        return time.perf_counter() - t0, 0, f"{type(e).__name__}: {e}"[:160]


async def level(port: int, model: str, clients: int, max_tokens: int, pid: int) -> dict:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:
        results = await asyncio.gather(*(one(client, url, model, i, max_tokens) for i in range(clients)))
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    lat = sorted(r[0] for r in results if r[2] is None)
    tokens = sum(r[1] for r in results)
    errors = [r[2] for r in results if r[2]]
    return {"clients": clients, "requests": clients, "errors": len(errors), "error_samples": errors[:3],
            "generated_tokens": tokens, "wall_s": round(wall, 2), "server_cpu_s": round(cpu, 2),
            "tokens_per_s": round(tokens / wall, 2), "tokens_per_cpu_s": round(tokens / max(cpu, 1e-9), 2),
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "p99_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3) if lat else None,
            "loadavg_after": os.getloadavg()}


def run_server(name: str, cmd: list[str], env: dict, port: int, model: str, levels: list[int], max_tokens: int,
               out: Path, rows: list[dict], save) -> None:
    """Measure one server at each client count; `save()` after every level so a cut-short run keeps its rows."""
    proc = start(cmd, port, env, out / f"{name}.log")
    try:
        asyncio.run(level(port, model, 1, 4, proc.pid))  # warm-up (first forward pass, allocator)
        for c in levels:
            row = {"server": name, **asyncio.run(level(port, model, c, max_tokens, proc.pid))}
            print(json.dumps({k: row[k] for k in ("server", "clients", "errors", "tokens_per_s", "tokens_per_cpu_s",
                                                  "p50_s", "p99_s")}), flush=True)
            rows.append(row)
            save()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--stress-levels", default="200", help="Batched-only client counts, run last (0 errors expected).")
    ap.add_argument("--serial-levels", default="1,8", help="Client counts for the one-by-one baseline.")
    ap.add_argument("--peer-levels", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP_NUM_THREADS for every server (0: library default). On a CPU shared with other jobs, 1 "
                         "avoids OpenMP threads spinning for a descheduled partner; the same value goes to the peer.")
    ap.add_argument("--out", default=str(ROOT / "bench/results"))
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",") if x and int(x) > 0]  # noqa: E731  ("0": none)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    logs = out / f"bench_serve-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    mdir = model_dir()
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    rows: list[dict] = []
    path = out / f"bench_serve-{stamp}.json"
    report = {"stamp": stamp, "model": mdir, "max_tokens": args.max_tokens, "cpus": os.cpu_count(),
              "threads": args.threads or "default",
              "loadavg_start": os.getloadavg(), "rows": rows}

    def save() -> None:
        report["ratios"] = ratios(rows)
        path.write_text(json.dumps(report, indent=2))

    ours = [sys.executable, "-m", "tuneforge.cli", "serve", f"smollm2={mdir}", "--max-queue", "512"]

    def run_ours(name: str, max_batch: int, levels: list[int]) -> None:
        port = free_port()
        run_server(name, ours + ["--max-batch", str(max_batch), "--port", str(port)], env, port, "smollm2", levels,
                   args.max_tokens, logs, rows, save)

    run_ours("tuneforge_batched", 32, ints(args.levels))
    peer = PEER_VENV / "bin/llamafactory-cli"
    if not args.skip_peer and peer.exists():  # before the one-by-one baseline: the peer ratio matters more
        port = free_port()
        cfg = logs / "lf_api.yaml"
        cfg.write_text(f"model_name_or_path: {mdir}\ntemplate: smollm2\ninfer_backend: huggingface\n"
                       "infer_dtype: float32\n")
        lf_env = {**env, "API_HOST": "127.0.0.1", "API_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        run_server("llamafactory_api", [str(peer), "api", str(cfg)], lf_env, port, "smollm2",
                   ints(args.peer_levels), args.max_tokens, logs, rows, save)
    elif not args.skip_peer:
        print(f"peer venv not found at {PEER_VENV}: run ../shared/bench/peer/setup_venv.sh", flush=True)
    run_ours("tuneforge_one_by_one", 1, ints(args.serial_levels))
    if ints(args.stress_levels):
        run_ours("tuneforge_batched", 32, ints(args.stress_levels))
    save()
    print(json.dumps(report["ratios"], indent=2))
    print(f"wrote {path}")


def ratios(rows: list[dict]) -> dict:
    """Batched throughput over our single-client rate, over one-by-one, and over the peer, per client count."""
    by = {(r["server"], r["clients"]): r for r in rows}
    single = by.get(("tuneforge_batched", 1))
    out = {}
    for (server, c), r in by.items():
        if server != "tuneforge_batched":
            continue
        entry = {}
        if single:
            entry["vs_own_single_client"] = round(r["tokens_per_s"] / max(single["tokens_per_s"], 1e-9), 2)
        for other in ("tuneforge_one_by_one", "llamafactory_api"):
            o = by.get((other, c))
            if o and o["tokens_per_s"]:
                entry[f"vs_{other}"] = round(r["tokens_per_s"] / o["tokens_per_s"], 2)
                entry[f"vs_{other}_per_cpu_s"] = round(r["tokens_per_cpu_s"] / max(o["tokens_per_cpu_s"], 1e-9), 2)
        out[str(c)] = entry
    return out


if __name__ == "__main__":
    main()
