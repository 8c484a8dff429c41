"""Run-dir confinement, locking, failed-start reuse and checkpoint trust (no model needed)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tuneforge import run_lock
from tuneforge.config.load import load_config
from tuneforge.errors import ConfigError, LockedError
from tuneforge.runs import RunDir, open_run


def cfg(tmp_path, *extra):
    return load_config(None, [f"output.dir={tmp_path / 'runs'}", "output.name=r1", *extra])


@pytest.mark.parametrize("name", ["../escape", "/etc/x", "a/../../b", "~/x", ".", "a//b"])
def test_output_name_cannot_leave_output_dir(tmp_path, name):
    with pytest.raises(ConfigError, match="output.name"):
        load_config(None, [f"output.dir={tmp_path}", f"output.name={name}"])
    assert load_config(None, ["output.name=team/exp-1.2"]).output.name == "team/exp-1.2"


def test_symlinked_name_pointing_outside_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / "r1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="outside"):
        open_run(cfg(tmp_path), resume=False)
    assert not any((tmp_path / "elsewhere").iterdir())


def _hold_lock_in_child(directory):
    """A second process that holds the lock until its stdin closes; returns it once the lock is taken."""
    code = textwrap.dedent(f"""
        import sys
        from tuneforge import run_lock
        run_lock.acquire({str(directory)!r})
        print("locked", flush=True)
        sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_not_stale(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    holder = _hold_lock_in_child(run_dir)
    try:
        with pytest.raises(LockedError, match=f"in use by pid {holder.pid} on "):
            open_run(cfg(tmp_path), resume=False)
        with pytest.raises(LockedError):  # the hint's `--resume` is refused too
            run_lock.acquire(run_dir)
    finally:
        holder.kill()  # like kill -9: no clean-up ran, the lock file is left behind
        holder.wait()
    assert json.loads((run_dir / ".lock").read_text())["pid"] == holder.pid
    run = open_run(cfg(tmp_path), resume=False)  # the kernel dropped the dead holder's lock
    assert run.config.is_file() and run_lock.read_holder(run_dir)["pid"] == os.getpid()
    run.release()


def test_output_dir_lock_is_reentrant_in_one_process(tmp_path):
    a = run_lock.acquire(tmp_path / "d")
    b = run_lock.acquire(tmp_path / "d")
    assert a is b
    b.release()
    a.release()
    run_lock.acquire(tmp_path / "d").release()


def test_failed_start_leaves_a_reusable_name_and_hints_work(tmp_path):
    c = cfg(tmp_path)
    run = open_run(c, resume=False)  # a start that then failed on bad data: only config.yaml was written
    run.release()
    with pytest.raises(ConfigError, match="no complete checkpoint") as e:
        open_run(c, resume=True)
    assert "without --resume" in str(e.value)
    open_run(c, resume=False).release()  # the same command again is not refused
    (run.root / "results.json").write_text("{}")  # a finished run is never silently reused
    with pytest.raises(ConfigError, match="already exists") as e:
        open_run(c, resume=False)
    assert "--resume" not in str(e.value) and "output.name" in str(e.value)


def test_refused_start_leaves_no_directory_behind(tmp_path):
    with pytest.raises(ConfigError):
        open_run(cfg(tmp_path), resume=True)
    assert not (tmp_path / "runs" / "r1").exists()


def test_latest_checkpoint_skips_diverged(tmp_path):
    run = RunDir(tmp_path)
    for n in (2, 4):
        (run.checkpoints / f"checkpoint-{n}").mkdir(parents=True)
        (run.checkpoints / f"checkpoint-{n}" / "trainer_state.json").write_text("{}")
    assert run.latest_checkpoint().name == "checkpoint-4"
    run.mark_diverged(run.checkpoints / "checkpoint-4", "test")
    assert run.latest_checkpoint().name == "checkpoint-2"


def test_two_trainings_in_one_process_do_not_share_a_run_dir(tmp_path):
    run = open_run(cfg(tmp_path), resume=False)
    with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
        open_run(cfg(tmp_path), resume=False)
    run.release()
