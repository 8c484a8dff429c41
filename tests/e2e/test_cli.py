"""The CLI as users meet it: help lists every command, bad input gives one line naming file/line/key, exit != 0."""

import json
import subprocess
import sys

import pytest



def tf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in err, err
    assert err.startswith("error:"), err
    assert len(err.splitlines()) <= 2, err  # rich may soft-wrap a long line once
    for n in needles:
        assert n in err, (n, err)


def test_help_lists_commands():
    r = tf("--help")
    assert r.returncode == 0
    for cmd in ("train", "chat", "env", "data"):
        assert cmd in r.stdout


def test_unknown_config_key_suggests(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 1e-4\n  batchsize: 4\n")
    assert_one_line_error(tf("train", str(cfg)), "train.batchsize", "did you mean 'train.batch_size'")


def test_bad_override_type():
    assert_one_line_error(tf("train", "-", "train.epochs=lots"), "train.epochs")


def test_missing_model_file(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    r = tf("train", "-", f"model.path={tmp_path / 'no-such-model'}", f"data.train={data}",
           f"output.dir={tmp_path}")
    assert_one_line_error(r, "no-such-model")


def test_malformed_data_line(tiny_llama, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n{oops\n")
    r = tf("train", "-", f"model.path={tiny_llama}", f"data.train={data}", f"output.dir={tmp_path}",
           "output.name=x")
    assert_one_line_error(r, "d.jsonl:2", "malformed JSON")
    assert not any((tmp_path / "x").glob("checkpoints/*")), "nothing half-written"


@pytest.mark.parametrize("row,msg", [
    ({"instruction": "a"}, "missing field 'output'"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "wrong role order"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "robot", "value": "b"}]}, "unknown role 'robot'"),
])
def test_data_check_bad_rows(tiny_llama, tmp_path, row, msg):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + json.dumps(row) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{path: {tiny_llama}}}\ndata: {{train: {data}}}\n")
    assert_one_line_error(tf("data", "check", str(cfg)), "d.jsonl:2", msg)


def test_data_check_reports_counts_and_truncation(tiny_llama, tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"instruction": "a " * n, "output": "b " * 5} for n in (2, 4, 300)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{path: {tiny_llama}}}\ndata: {{train: {data}, cutoff_len: 64}}\n")
    r = tf("data", "check", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "train_samples" in r.stdout and "tokens.length_percentiles" in r.stdout
    stats = json.loads(tf("data", "check", str(cfg), "--json").stdout)
    # the 300-word prompt leaves no response tokens under 64 tokens: dropped, counted and named
    assert stats["train_samples"] == 3 and stats["tokens.kept"] == 2 and stats["tokens.dropped_no_target"] == 1
    assert any("d.jsonl:3" in w for w in stats["warnings"])


def test_pickle_only_model_refused(tiny_llama, tmp_path):
    import shutil
    from pathlib import Path

    shutil.copytree(tiny_llama, tmp_path / "m")
    for f in Path(tmp_path / "m").glob("*.safetensors"):
        f.unlink()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"never unpickled")
    r = tf("chat", "-m", str(tmp_path / "m"), "-p", "hi")
    assert_one_line_error(r, "safetensors only")


def test_env_runs():
    r = tf("env")
    assert r.returncode == 0 and "transformers" in r.stdout


def test_chat_one_shot_with_trained_adapter(tiny_llama, tmp_path):
    from run_helpers import write_copy_task

    data = write_copy_task(tmp_path / "d.json", n=8)
    r = tf("train", "-", f"model.path={tiny_llama}", f"data.train={data}", f"output.dir={tmp_path}",
           "output.name=run", "train.max_steps=2")
    assert r.returncode == 0, r.stderr
    r = tf("chat", "-m", str(tmp_path / "run"), "-p", "Repeat after me: apple", "--max-new-tokens", "4")
    assert r.returncode == 0, r.stderr
    r = tf("chat", "-m", tiny_llama, "--adapter", str(tmp_path / "run" / "adapter"), "-p", "hi",
           "--max-new-tokens", "4")
    assert r.returncode == 0, r.stderr
    assert_one_line_error(tf("chat", "-m", tiny_llama, "--adapter", str(tmp_path), "-p", "hi"),
                          "adapter_config.json")
