"""Kill -9 mid-run and resume: identical losses to an uninterrupted run. NaN loss: clean stop, good checkpoint kept."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from run_helpers import losses, write_copy_task


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tuneforge.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def base_args(model, data, out, name, steps=40):
    return ["train", "-", f"model.path={model}", f"data.train={data}", f"output.dir={out}", f"output.name={name}",
            f"train.max_steps={steps}", "train.save_steps=5", "train.save_total_limit=3", "train.lr=3e-3",
            "train.batch_size=4", "method=lora", "lora.dropout=0.1", "train.threads=1"]


def test_sigkill_then_resume_matches_uninterrupted(tiny_llama, tmp_path):
    data = write_copy_task(tmp_path / "d.json", n=64)
    ref = cli(*base_args(tiny_llama, data, tmp_path, "ref"))
    assert ref.wait(600) == 0, ref.stderr.read()
    ref_losses = losses(tmp_path / "ref")
    assert len(ref_losses) == 40

    run = tmp_path / "killed"
    p = cli(*base_args(tiny_llama, data, tmp_path, "killed"))
    deadline = time.time() + 600
    while not (run / "checkpoints" / "checkpoint-10").exists():
        assert p.poll() is None, "run ended before it could be killed: " + p.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run / "adapter").exists()

    r = cli(*base_args(tiny_llama, data, tmp_path, "killed"), "--resume")
    assert r.wait(600) == 0, r.stderr.read()
    resumed = losses(run)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == list(range(1, 41)), "each step logged exactly once"
    assert resumed == ref_losses  # bit-identical on CPU with the same seed (dropout RNG restored too)
    assert (run / "adapter" / "adapter_model.safetensors").exists()


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tiny_llama, tmp_path):
    data = write_copy_task(tmp_path / "d.json", n=32)
    args = base_args(tiny_llama, data, tmp_path, "nan", steps=30)
    args = [a for a in args if not a.startswith(("train.lr", "train.save_steps"))]
    p = cli(*args, "train.lr=1e12", "train.save_steps=1", "train.max_grad_norm=0", "method=full")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 3, err
    assert "non-finite loss" in err and "Traceback" not in err
    ckpts = sorted((tmp_path / "nan" / "checkpoints").glob("checkpoint-*"))
    assert ckpts, "checkpoints are kept for inspection"
    assert all((c / "trainer_state.json").exists() for c in ckpts)
    assert not (tmp_path / "nan" / "model").exists(), "no final model from a diverged run"
    # The checkpoint written just before the NaN holds the weights that produced it: never offered for resume.
    assert (ckpts[-1] / "diverged.json").exists() and str(ckpts[-1]) not in err
    from tuneforge.runs import RunDir

    good = RunDir(tmp_path / "nan").latest_checkpoint()
    assert (str(good) in err) if good else "no checkpoint was written before the loss went bad" in err
