"""The package's shape is checked, not just described: import layers and acyclicity (import-linter, configured in
pyproject.toml), and no code outside the stage modules branches on a stage name."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "tuneforge"
STAGE_MODULES = {"train/stages.py", "train/stage.py", "train/pt.py", "train/sft.py", "train/cls.py", "train/qa.py",
                 "train/seq2seq.py"}


def lint_imports(cwd: Path, src: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_layer_and_cycle_contracts_hold():
    r = lint_imports(ROOT, ROOT / "src")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


@pytest.fixture()
def scratch(tmp_path):
    """A copy of the package and its import-linter config, to break on purpose."""
    shutil.copytree(PKG, tmp_path / "src" / "tuneforge", ignore=shutil.ignore_patterns("__pycache__", "resources"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")


def test_an_upward_import_breaks_the_layer_contract(scratch):
    _append(scratch / "src/tuneforge/data/formats.py", "from tuneforge.train import stages  # noqa")
    r = lint_imports(scratch, scratch / "src")
    assert r.returncode != 0 and "BROKEN" in r.stdout and "tuneforge.data.formats" in r.stdout, r.stdout


def test_an_import_cycle_breaks_the_acyclic_contract(scratch):
    # data.load -> data.formats -> data.readers; make readers import load back
    _append(scratch / "src/tuneforge/data/readers.py", "import tuneforge.data.load  # noqa")
    r = lint_imports(scratch, scratch / "src")
    assert r.returncode != 0 and "no import cycles" in r.stdout and "BROKEN" in r.stdout, r.stdout


STAGE_NAMES = r"(pt|sft|cls|qa|seq2seq)"
COMPARES = [
    re.compile(r"\bstage\b\s*(==|!=|\bin\b|\bnot in\b)"),  # cfg.stage == "...", stage in (...)
    re.compile(rf"[\"']{STAGE_NAMES}[\"']\s*(==|!=)"),  # "sft" == x
    re.compile(rf"(==|!=)\s*[\"']{STAGE_NAMES}[\"']"),  # x == "sft"
    re.compile(rf"\bin\s*[\(\[{{]\s*[\"']{STAGE_NAMES}[\"']\s*,"),  # x in ("sft", ...)
]


# models/heads.py: [CLS]-token pooling, not the classification stage; data/formats.py: the `format: qa` record layout
NOT_A_STAGE = {'how == "cls"', 'fmt == "qa"'}


def test_no_stage_name_is_compared_outside_the_stage_modules():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel in STAGE_MODULES:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(p.search(code) for p in COMPARES) and not any(x in code for x in NOT_A_STAGE):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "ask the stage object instead:\n" + "\n".join(offenders)
