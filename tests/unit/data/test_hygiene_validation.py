"""decontam validates its options and output before any detection work; one writer per output dir."""

import json
import subprocess
import sys

import pytest

from tuneforge.data.hygiene import run_decontam
from tuneforge.errors import ConfigError, DataError, LockedError


def files(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"instruction": "What is 2+2?", "output": "4"}) + "\n")
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": "What is 2+2?", "answer": "4"}) + "\n")
    return str(train), str(bench)


def decontam(train, bench, k=5, out=None):
    return run_decontam([train], [bench], ["exact"], 0.8, 13, "builtin:minilm", None, None, "auto", k, False,
                        out, None)


def test_out_existing_file_and_bad_k_fail_before_the_work(tmp_path):
    train, bench = files(tmp_path)
    existing = tmp_path / "report.txt"
    existing.write_text("keep me")
    with pytest.raises(DataError, match="--out must be a directory"):
        decontam(train, bench, out=str(existing))
    assert existing.read_text() == "keep me"
    for k in (0, -3):
        with pytest.raises(ConfigError, match="--k must be at least 1"):
            decontam(train, bench, k=k, out=str(tmp_path / "o"))
    summary = decontam(train, bench, out=str(tmp_path / "o"))
    assert summary["n_removed"] == 1


def test_second_writer_of_a_decontam_output_is_refused(tmp_path):
    train, bench = files(tmp_path)
    out = tmp_path / "o"
    code = (f"from tuneforge import run_lock; run_lock.acquire({str(out)!r}); print('locked', flush=True); "
            "import sys; sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"decontam output dir .* in use by pid {holder.pid}"):
            decontam(train, bench, out=str(out))
    finally:
        holder.kill()
        holder.wait()
