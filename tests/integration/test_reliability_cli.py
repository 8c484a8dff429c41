"""Bad-input matrix through the real CLI app (in-process runner): each input path fails in one line, exit 2,
before any work and without leaving a run dir behind."""

import json
import struct

import pytest
from typer.testing import CliRunner

from tuneforge.cli import app


def tf(*args):
    return CliRunner().invoke(app, list(args))


def one_line(r, *needles, code=2):
    out = r.output.strip()
    assert r.exit_code == code, out
    assert "Traceback" not in out and out.startswith("error:"), out
    assert len(out.splitlines()) <= 3, out  # rich may soft-wrap a long line
    flat = " ".join(out.split())
    for n in needles:
        assert n in flat, (n, out)


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    return str(p)


def test_bad_inputs_fail_early_in_one_line(tmp_path, tiny_llama, data):
    runs = tmp_path / "runs"
    common = [f"data.train={data}", f"output.dir={runs}", "output.name=r"]
    # config: a run name that leaves output.dir
    one_line(tf("train", "-", f"model.path={tiny_llama}", f"data.train={data}", f"output.dir={runs}",
                "output.name=../../elsewhere"), "output.name", "inside output.dir")
    # model: missing path, checked before the run dir exists or data is read
    one_line(tf("train", "-", "model.path=/nonexistent/model", *common), "model path not found")
    # model: a GGUF with valid magic followed by garbage names the file
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc" + bytes(64))
    one_line(tf("train", "-", f"model.path={gguf}", *common), "broken.gguf: corrupted or unsupported GGUF")
    # adapter: missing dir
    one_line(tf("train", "-", f"model.path={tiny_llama}", "model.adapter=/nonexistent/adapter", *common),
             "adapter path not found")
    assert not runs.exists(), "no failed start leaves a run dir"
    # data check without model.path says which key is missing
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  train: {data}\n")
    one_line(tf("data", "check", str(cfg)), "model.path is not set")


def test_decontam_options_are_validated_before_the_work(tmp_path, data):
    bench = tmp_path / "b.jsonl"
    bench.write_text(json.dumps({"question": "hi", "answer": "hello"}) + "\n")
    existing = tmp_path / "out.txt"
    existing.write_text("x")
    one_line(tf("decontam", "--train", data, "--against", str(bench), "--method", "exact", "-o", str(existing)),
             "--out must be a directory")
    one_line(tf("decontam", "--train", data, "--against", str(bench), "--method", "exact", "--k", "0",
                "-o", str(tmp_path / "o")), "--k must be at least 1")
    assert existing.read_text() == "x"


def test_eval_output_dir_has_one_writer(tmp_path, tiny_llama):
    import subprocess
    import sys

    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text(json.dumps({"question": "1?", "choices": ["a", "b"], "answer": 0}) + "\n")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(json.dumps({"model": {"path": tiny_llama}, "eval": {"tasks": [
        {"name": "t", "file": str(mcq), "prompt": "{question}", "choices": "choices", "gold": "answer"}]}}))
    out = tmp_path / "eval-out"
    code = (f"from tuneforge import run_lock; run_lock.acquire({str(out)!r}); print('locked', flush=True); "
            "import sys; sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        one_line(tf("eval", "--config", str(cfg), "--out", str(out)), "eval output dir", f"in use by pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "results.json").exists()


def test_a_config_error_is_reported_before_the_training_stack_is_imported(tmp_path):
    """`tuneforge train bad.yaml` must answer without importing transformers / peft (seconds of start-up)."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: sft\ntrain:\n  lr: abc\n")
    code = ("import sys; from typer.testing import CliRunner; from tuneforge.cli import app; "
            f"r = CliRunner().invoke(app, ['train', {str(bad)!r}]); "
            "print(r.exit_code, 'transformers' in sys.modules, 'peft' in sys.modules); print(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "2 False False", out
    assert "train.lr" in out


@pytest.mark.parametrize("args", [["-", "train.lr=abc"], ["train.lr=abc"], ["builtin:identity", "train.lr=abc"]])
def test_the_early_config_check_reads_every_config_form(args):
    """'-' (defaults + overrides), a leading override (tweaks the demo) and builtin: names all reach the check."""
    one_line(tf("train", *args), "train.lr")
