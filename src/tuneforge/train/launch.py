"""`tuneforge train --nproc N [--launch-config F]`: the same `tuneforge train` command, re-launched on N processes.

We own no launcher: plain DDP (and DeepSpeed JSON files) go through torchrun's elastic agent, accelerate YAML files
(FSDP, DeepSpeed via accelerate, multi-node) through `accelerate launch`. Every rank then runs the ordinary command;
`runs.open_run` decides the run dir once on rank 0 and only rank 0 writes. The training config is validated here,
once, before any process starts.

Launch configs are LLaMA-Factory's layout, accepted as they are: an accelerate YAML (`distributed_type: FSDP`, ...)
or a DeepSpeed JSON (`zero_optimization`, "auto" values filled in by transformers from the `train:` section).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from tuneforge.errors import ConfigError, TrainingError
from tuneforge.train.run import resolve_config_arg
from tuneforge.train.stages import load_training_config


def launch_kind(path: str) -> str:
    """'accelerate' for an accelerate config YAML, 'deepspeed' for a DeepSpeed JSON; ConfigError otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--launch-config: {path} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        tree = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"--launch-config: {path} does not parse: {str(e).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"--launch-config: {path} is not a mapping")
    if "zero_optimization" in tree or ("train_micro_batch_size_per_gpu" in tree and "distributed_type" not in tree):
        return "deepspeed"
    if "distributed_type" in tree:
        return "accelerate"
    raise ConfigError(f"--launch-config: {path} is neither an accelerate config (distributed_type: ...) nor a "
                      "DeepSpeed config (zero_optimization: ...)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(train_argv: list[str], nproc: int, launch_config: str | None, port: int) -> list[str]:
    """The launcher command line that runs `tuneforge <train_argv>` on `nproc` local processes."""
    module = ["-m", "tuneforge.cli", *train_argv]
    if launch_config and launch_kind(launch_config) == "accelerate":
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", launch_config,
                "--num_processes", str(nproc), "--num_machines", "1", "--main_process_port", str(port), *module]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
            "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", uuid.uuid4().hex[:8],
            *module]


def engine(launch_config: str | None) -> str:
    """DDP, FSDP or DEEPSPEED: what the launch config asks for."""
    if not launch_config:
        return "DDP"
    if launch_kind(launch_config) == "deepspeed":
        return "DEEPSPEED"
    tree = yaml.safe_load(Path(launch_config).read_text(encoding="utf-8")) or {}
    kind = str(tree.get("distributed_type", "")).upper()
    return kind if kind in ("FSDP", "DEEPSPEED") else "DDP"


def check_engine(launch_config: str | None) -> None:
    """Refuse, in one line, what would fail on every rank or silently run as something else."""
    kind = engine(launch_config)
    if kind == "DEEPSPEED":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"--launch-config {launch_config}: DeepSpeed is not installed",
                              hint="pip install 'tuneforge[deepspeed]' (needs CUDA); FSDP2 needs no extra package: "
                                   "examples/distributed/fsdp2.yaml")
    if kind in ("FSDP", "DEEPSPEED"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--launch-config {launch_config}: {kind} needs CUDA devices (accelerate enables it "
                              "only on accelerators; on CPU it would silently run as plain DDP)",
                              hint="on CPU use --nproc N without --launch-config (DDP over gloo)")


def _run_launcher(cmd: list[str], env: dict) -> int:
    """Run the launcher and wait for it. torchrun starts every rank in its own session, so the launcher must stop
    them itself: Ctrl-C reaches it too (same process group) and SIGTERM is passed on; killing it instead would
    leave the ranks training on as orphans."""
    import signal

    proc = subprocess.Popen(cmd, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                continue  # the launcher got the same Ctrl-C and is stopping its ranks; wait for it
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch_training(config: str | None, overrides: list[str], nproc: int, launch_config: str | None = None,
                    resume: bool = False, debug: bool = False) -> int:
    """Validate the config, then run `tuneforge train` on `nproc` processes; returns 0 or raises TrainingError."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    check_engine(launch_config)
    if config and "=" in config and not Path(config).exists():  # `tuneforge train a.b=c`: tweak the demo
        config, overrides = None, [config, *overrides]
    if launch_config and launch_kind(launch_config) == "deepspeed":
        overrides = [*overrides, f"train.deepspeed={launch_config}"]
    load_training_config(resolve_config_arg(config), overrides)  # one readable error now, not N tracebacks later
    argv = [*(["--debug"] if debug else []), "train", config or "", *overrides, *(["--resume"] if resume else [])]
    if not config:
        argv.remove("")
    cmd = launch_command(argv, nproc, launch_config, free_port())
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    code = _run_launcher(cmd, env)
    if code != 0:
        raise TrainingError(f"distributed training failed (launcher exit code {code}); the failing rank's error "
                            "is printed above")
    return code
