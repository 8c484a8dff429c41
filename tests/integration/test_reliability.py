"""Faults a scheduler or a bad hyper-parameter causes: SIGTERM, divergence, collapse, a full disk, a second writer.

Each run is a tiny Llama on CPU. The SIGTERM and disk-full runs are real CLI processes (signals, exit codes and
a file-size limit need their own process); the others call the same entry point in-process to save start-up time.
"""

import hashlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time

import pytest
from run_helpers import losses, write_copy_task

from tuneforge.errors import LockedError, TrainingError
from tuneforge.runs import RunDir

pytestmark = pytest.mark.slow


def base_args(model, data, out, name, steps, *extra):
    return ["-", f"model.path={model}", f"data.train={data}", f"output.dir={out}", f"output.name={name}",
            f"train.max_steps={steps}", "train.batch_size=4", "train.threads=1", "eval.after_train=false",
            "demo_prompts=[]", *extra]


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture
def in_process():
    """`tuneforge train` in this process (torch's thread count restored afterwards)."""
    import torch

    from tuneforge.train.run import run_from_cli

    threads = torch.get_num_threads()
    yield lambda args, resume=False: run_from_cli(args[0], args[1:], resume=resume)
    torch.set_num_threads(threads)


def loss_steps(run_dir):
    return [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)]


def test_sigterm_saves_a_checkpoint_exits_143_and_resume_is_bit_exact(tiny_llama, tmp_path):
    from tuneforge.config.load import load_config
    from tuneforge.runs import open_run

    data = write_copy_task(tmp_path / "d.json", n=64)
    def args(name):
        return base_args(tiny_llama, data, tmp_path, name, 40, "train.lr=3e-3", "lora.dropout=0.1")

    ref = cli(*args("ref"))
    assert ref.wait(600) == 0, ref.stderr.read()

    run = tmp_path / "term"
    p = cli(*args("term"))
    deadline = time.time() + 600
    while not (run / "metrics.jsonl").exists() or len(loss_steps(run)) < 3:
        assert p.poll() is None, "run ended before the signal: " + p.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.01)
    # the "already exists" hint says --resume: a second writer on a live run is refused, naming the holder
    with pytest.raises(LockedError, match=f"in use by pid {p.pid} "):
        open_run(load_config(None, args("term")[1:]), resume=True)
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert RunDir(run).latest_checkpoint() is not None and not (run / "adapter").exists()

    r = cli(*args("term"), "--resume")
    out, err = r.communicate(timeout=600)
    assert r.returncode == 0, err
    assert "resuming from checkpoint-" in out
    assert loss_steps(run) == list(range(1, 41)), "each step logged exactly once"
    assert losses(run) == losses(tmp_path / "ref")  # bit-identical, dropout RNG included


def _digest(ckpt):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(ckpt.iterdir()) if f.is_file()}


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit: EFBIG from write() instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_divergence_names_a_checkpoint_that_resumes_and_a_full_disk_keeps_it(tiny_llama, tmp_path, in_process):
    data = write_copy_task(tmp_path / "d.json", n=64)
    def args(lr, steps):
        return base_args(tiny_llama, data, tmp_path, "div", steps, f"train.lr={lr}", "method=full",
                         "train.save_steps=1", "train.save_total_limit=3", "train.max_grad_norm=0")

    run = RunDir(tmp_path / "div")
    in_process(args(1e-3, 3))
    with pytest.raises(TrainingError, match="non-finite loss") as e:
        in_process(args(1e30, 8), resume=True)  # the new peak lr applies on resume, and blows the weights up
    good = run.latest_checkpoint()
    assert good is not None and str(good) in str(e.value) and "--resume" in str(e.value)
    assert any(run.is_diverged(c) for c in run.checkpoints.glob("checkpoint-*")), "later checkpoints marked"
    from tuneforge.train.guards import weights_finite

    assert weights_finite(good)

    # disk full while saving the next checkpoint: one line, the good checkpoint untouched, nothing half-written
    before = _digest(good)
    p = subprocess.run([sys.executable, "-m", "tuneforge.cli", "train", *args(1e-3, 8), "--resume"],
                       capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size(150_000),
                       check=False)
    assert p.returncode == 3, p.stderr
    assert "no space left while saving checkpoint-" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert f"--resume to continue from {good}" in p.stderr
    assert _digest(good) == before and not (run.checkpoints / ".staging").exists()

    in_process(args(1e-3, 8), resume=True)  # the named checkpoint really resumes
    assert loss_steps(run.root) == list(range(1, 9))
    assert all(math.isfinite(x) and x < 20 for x in losses(run.root))
    assert (run.model / "model.safetensors").exists()


def test_collapse_stops_instead_of_ending_done(tiny_llama, tmp_path, in_process):
    data = write_copy_task(tmp_path / "d.json", n=64)
    with pytest.raises(TrainingError, match="collapse") as e:
        in_process(base_args(tiny_llama, data, tmp_path, "collapse", 12, "train.lr=1e6", "method=full",
                             "train.max_grad_norm=0"))
    assert "results.json" not in os.listdir(tmp_path / "collapse")
    # warn mode finishes, loudly
    out = in_process(base_args(tiny_llama, data, tmp_path, "collapse-warn", 8, "train.lr=1e6", "method=full",
                               "train.max_grad_norm=0", "train.on_divergence=warn"))
    assert out["run_dir"].endswith("collapse-warn") and "collapse" in str(e.value)
