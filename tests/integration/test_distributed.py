"""Two CPU processes (gloo) through `tuneforge train --nproc 2`: the same loss curve as one process with the same
global batch, one run dir named once, main-process-only writes, kill -9 of the whole job + `--resume` on two
processes and on one; the single-process run also reports to TensorBoard and MLflow, offline."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from run_helpers import losses, write_copy_task

STEPS = 8
# One process: 4 samples per step. Two processes: 1 sample x 2 accumulation micro-batches each = the same 4 samples
# (accelerate hands consecutive batches of the shuffled order to alternating ranks), so loss and token counts
# must agree: token-weighted across micro-batches *and* ranks.
SINGLE = ["train.batch_size=4", "train.grad_accum=1"]
TWO = ["train.batch_size=1", "train.grad_accum=2", "--nproc", "2"]
# fp32 all-reduce of gradients sums in another order than one process does; measured differences are ~1e-7.
RTOL = 1e-4


def cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tuneforge.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def train_args(model, data, out, *extra):
    return ["train", "-", f"model.path={model}", f"data.train={data}", f"output.dir={out}",
            f"train.max_steps={STEPS}", "train.lr=3e-3", "method=lora", "lora.dropout=0", "train.threads=1", *extra]


def finish(p, timeout=300):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return out


def kill_tree(pid: int) -> None:
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)


def tokens_seen(run_dir) -> list[int]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["num_input_tokens_seen"] for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def two_process_run(tiny_llama, tmp_path_factory):
    """One uninterrupted 2-process run without output.name: rank 0 alone must choose the timestamped name."""
    tmp = tmp_path_factory.mktemp("ddp")
    data = write_copy_task(tmp / "d.json", n=64)
    out = finish(cli(*train_args(tiny_llama, data, tmp / "runs", "train.save_steps=4", *TWO)))
    return tmp, data, out


@pytest.fixture(scope="module")
def one_process_run(tiny_llama, two_process_run):
    """The same global batch in one process; it also reports to TensorBoard and MLflow (offline, in the run dir)."""
    tmp, data, _ = two_process_run
    finish(cli(*train_args(tiny_llama, data, tmp / "single", "output.name=one", "train.report_to=[tensorboard,mlflow]",
                           *SINGLE)))
    return tmp / "single" / "one"


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(two_process_run, one_process_run):
    tmp, _, stdout = two_process_run
    runs = sorted((tmp / "runs").iterdir())
    assert len(runs) == 1, f"one run dir for the whole job, got {runs}"
    ddp = runs[0]
    assert stdout.count("done run dir") == 1, "only the main process prints"
    resolved = yaml.safe_load((ddp / "config.yaml").read_text())["resolved"]["distributed"]
    assert resolved == {"type": "MULTI_CPU", "world_size": 2, "global_batch": 4}
    assert not [p for p in ddp.rglob("*") if ".tmp" in p.name], "no half-written files from a second writer"
    # every rank's part of a checkpoint lands in it: the ranks stage into one dir and only rank 0 renames it, after
    # all of them wrote (the second rank's RNG state was lost, or its rename moved a half-written checkpoint)
    for ckpt in sorted((ddp / "checkpoints").glob("checkpoint-*")):
        names = {p.name for p in ckpt.iterdir()}
        assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json", "optimizer.pt"} <= names, (ckpt, names)
    assert not (ddp / "checkpoints" / ".staging").exists()

    one = one_process_run
    assert len(losses(ddp)) == STEPS
    assert losses(ddp) == pytest.approx(losses(one), rel=RTOL)
    assert tokens_seen(ddp) == tokens_seen(one), "global token counts (summed over ranks)"


@pytest.mark.slow
def test_kill_both_processes_then_resume_on_two(tiny_llama, two_process_run):
    tmp, data, _ = two_process_run
    reference = losses(next((tmp / "runs").iterdir()))
    args = train_args(tiny_llama, data, tmp / "killed", "output.name=k", "train.save_steps=2", *TWO)
    p = cli(*args)
    run = tmp / "killed" / "k"
    deadline = time.time() + 300
    while not (run / "checkpoints" / "checkpoint-4").exists():
        assert p.poll() is None, "run ended before it could be killed: " + p.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    kill_tree(p.pid)  # a crashed node: launcher, torchrun agent and both ranks (torchrun puts ranks in own sessions)
    p.wait()
    assert not (run / "adapter").exists()
    shutil.copytree(run, tmp / "killed" / "k1")  # the same crash, resumed below on one process

    finish(cli(*args, "--resume"))
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == list(range(1, STEPS + 1)), "each step logged exactly once"
    assert losses(run) == pytest.approx(reference, rel=RTOL)
    assert (run / "adapter" / "adapter_model.safetensors").exists()

    # A changed world size: the 2-process checkpoint continues on 1 process with the same global batch.
    one = train_args(tiny_llama, data, tmp / "killed", "output.name=k1", "train.save_steps=2", *SINGLE)
    finish(cli(*one, "--resume"))
    assert losses(tmp / "killed" / "k1") == pytest.approx(reference, rel=RTOL)


@pytest.mark.slow
def test_trackers_write_offline_files_their_own_tools_read(one_process_run, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((one_process_run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "TensorBoard event file in the run dir"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tb_loss = [e.value for e in acc.Scalars("train/loss")]
    assert tb_loss == pytest.approx(losses(one_process_run), rel=1e-6)

    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri((one_process_run / "mlruns").resolve().as_uri())
    try:
        found = mlflow.search_runs(search_all_experiments=True,
                                   filter_string=f"tags.mlflow.runName = '{one_process_run.name}'")
    finally:
        mlflow.set_tracking_uri(before)
    assert len(found) == 1
    assert found.iloc[0]["metrics.loss"] == pytest.approx(losses(one_process_run)[-1], rel=1e-6)
