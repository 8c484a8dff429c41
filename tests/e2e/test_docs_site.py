"""The docs site builds with `mkdocs build --strict` (offline), and the getting-started page's commands, run as
written on its own JSONL file (with a tiny local model swapped in for speed), give a trained run."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_docs_build_strict_offline(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_PROXY": "*", "NO_MKDOCS_2_WARNING": "1",
                              "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert out.returncode == 0, out.stdout + out.stderr
    site = tmp_path / "site"
    for page in ("getting-started", "concepts", "migrate", "reference/config", "reference/cli", "reference/api"):
        assert (site / page / "index.html").is_file(), page
    assert "model.path" in (site / "reference/config/index.html").read_text()
    assert "tuneforge convert" in (site / "reference/cli/index.html").read_text()


def _blocks(page: str) -> dict[str, str]:
    """Fenced blocks with a title="..." attribute, by title."""
    return {m.group(2): m.group(3) for m in
            re.finditer(r'```(\w+) title="([^"]+)"\n(.*?)```', page, flags=re.DOTALL)}


def test_getting_started_commands_give_a_trained_run(tiny_llama, tmp_path, monkeypatch):
    from tuneforge.cli import app

    blocks = _blocks((REPO / "docs" / "getting-started.md").read_text())
    (tmp_path / "my_data.jsonl").write_text(blocks["my_data.jsonl"])
    (tmp_path / "my_config.yaml").write_text(blocks["my_config.yaml"])
    monkeypatch.chdir(tmp_path)
    commands = [shlex.split(line) for line in blocks["commands"].splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["tuneforge", "data"], ["tuneforge", "train"], ["tuneforge", "chat"]]
    speed = [f"model.path={tiny_llama}", "train.max_steps=4", "train.lr=1e-2", "train.threads=1"]  # the page uses builtin:smollm2
    runner = CliRunner()
    for argv in commands:
        args = argv[1:] + (speed if argv[1] in ("data", "train") else [])
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (argv, res.output, res.exception)
    run = tmp_path / "runs" / "my-first-run"
    assert any((run / "adapter").glob("*.safetensors"))
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert (run / "data_report.json").is_file() and (run / "config.yaml").is_file()
