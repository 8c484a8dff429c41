"""`tuneforge sweep` on the tiny Llama: 6 trials, median pruning on intermediate eval loss, kill -9 mid-sweep and
resume from the SQLite study, best config as a loadable YAML, Optuna's plots; `runs list` / `runs compare` on the
trials it left."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from run_helpers import write_copy_task

TRIALS = 6
SPACE = """\
metric: eval_loss
direction: minimize
params:
  train.lr: {low: 1.0e-5, high: 3.0e-2, log: true}
  lora.r: {choices: [4, 8]}
pruner: {startup_trials: 2, warmup_steps: 0}
seed: 0
"""


def sweep_cmd(model, tmp):
    return [sys.executable, "-m", "tuneforge.cli", "sweep", "-", f"model.path={model}",
            f"data.train={tmp / 'train.json'}", f"data.eval={tmp / 'eval.json'}", f"output.dir={tmp / 'out'}",
            "train.max_steps=6", "train.eval_steps=2", "train.batch_size=4", "method=lora", "train.threads=1",
            "--space", str(tmp / "space.yaml"), "--trials", str(TRIALS), "--name", "t"]


@pytest.mark.slow
def test_sweep_prunes_resumes_after_kill_and_writes_best_config(tiny_llama, tmp_path):
    write_copy_task(tmp_path / "train.json", n=48, seed=0)
    write_copy_task(tmp_path / "eval.json", n=16, seed=1)  # held out: the pruner and the best trial judge on it
    (tmp_path / "space.yaml").write_text(SPACE)
    sweep_dir = tmp_path / "out" / "sweep-t"

    p = subprocess.Popen(sweep_cmd(tiny_llama, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 300
    while not (sweep_dir / "trials" / "trial-002").exists():  # trials 0 and 1 done, trial 2 running
        assert p.poll() is None, "sweep ended before it could be killed: " + p.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    before = json.loads((sweep_dir / "summary.json").read_text())
    assert before["complete"] + before["pruned"] == 2

    r = subprocess.run(sweep_cmd(tiny_llama, tmp_path), capture_output=True, text=True, timeout=600,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "interrupted trial(s) will run again" in r.stdout
    s = json.loads((sweep_dir / "summary.json").read_text())
    assert s["complete"] + s["pruned"] == TRIALS, "the two trials finished before the kill are not run again"
    assert s["failed"] == 1, "the trial killed mid-run is marked failed (and its parameters tried again)"
    assert s["pruned"] >= 1
    killed = next(row for row in s["rows"] if row["state"] == "fail")
    assert s["rows"][killed["trial"] + 1]["params"] == killed["params"], "the interrupted trial runs again first"
    finished = [row for row in s["rows"] if row["state"] != "fail"]
    assert len({row["params"]["train.lr"] for row in finished}) == TRIALS, "a resumed sampler proposes new points"

    complete = [row for row in s["rows"] if row["state"] == "complete"]
    assert s["best"]["value"] == min(row["value"] for row in complete)
    assert (sweep_dir / "history.png").stat().st_size > 0 and (sweep_dir / "importance.png").stat().st_size > 0
    assert "**best**" in (sweep_dir / "summary.md").read_text() and "**best**" in r.stdout

    from tuneforge.train.stages import load_training_config

    best, _ = load_training_config(str(sweep_dir / "best_config.yaml"), [])
    assert best.train.lr == pytest.approx(s["best"]["params"]["train.lr"])
    assert best.lora.r == s["best"]["params"]["lora.r"]
    best_run = sweep_dir / "trials" / f"trial-{s['best']['trial']:03d}"
    assert (best_run / "adapter" / "adapter_model.safetensors").exists(), "each trial is an ordinary run dir"

    from tuneforge.train.run_reports import compare_runs, list_runs

    listed = list_runs(sweep_dir / "trials")
    assert {row["state"] for row in listed} >= {"finished", "incomplete"}  # pruned trials stop before the end
    worst = max(complete, key=lambda row: row["value"])["run_dir"]
    out = compare_runs([best_run, worst], plot=tmp_path / "cmp.png")
    assert "train.lr" in out["differ"] and not any(k.startswith("output.") for k in out["differ"])
    assert (tmp_path / "cmp.png").stat().st_size > 0
    assert out["summaries"][0]["metrics"]["eval_loss"] == pytest.approx(s["best"]["value"])
