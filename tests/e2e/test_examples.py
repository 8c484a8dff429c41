"""Every file in examples/ is usable from a clone of the repository alone.

- each top-level examples/*.yaml validates against the schema and the stage table;
- no file in examples/ points outside the repository (no ../shared), and every data file a config names exists;
- copied to a temp dir without the shared folder beside it, the training examples run a few steps and the eval
  example scores a few samples: MiniLM ones on the packaged MiniLM, t5-tiny from its bundled config; the SmolLM2 ones
  with the tiny Llama fixture swapped in (a 135M model costs minutes of CPU here; tests/e2e/test_readme_job.py runs
  the packaged SmolLM2 itself), so what is tested is the example's data, paths, template and method from a clone.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tuneforge.config import load_config
from tuneforge.train.stages import load_training_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CONFIGS = sorted(EXAMPLES.glob("*.yaml"))
# Per example: extra overrides that keep a run to a few seconds on a CPU.
QUICK = {
    "sft_lora.yaml": ["data.cutoff_len=64", "data.eval_split=0.25"],
    "translation_smollm2.yaml": ["eval.after_train=false"],  # the example's cutoff: its system turn fills 64 tiny-tokenizer tokens
    "sentiment_minilm.yaml": ["data.cutoff_len=32"],
    "topics_minilm.yaml": ["data.cutoff_len=32"],
    "qa_smollm2.yaml": ["eval.tasks.0.limit=2", "eval.tasks.0.max_new_tokens=4"],
    "qa_minilm.yaml": ["data.cutoff_len=96", "task.doc_stride=32"],
    "translation_t5tiny.yaml": ["data.cutoff_len=24", "task.max_target_len=24", "task.max_new_tokens=8"],
}


def test_there_are_examples():
    assert len(CONFIGS) >= 6


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_validates_and_names_only_files_inside_the_repo(path: Path):
    cfg, _ = load_training_config(str(path), [])
    named = [s.path for s in [*cfg.data.train, *cfg.data.eval]] + [t.file for t in cfg.eval.tasks]
    named += [t.fewshot_file for t in cfg.eval.tasks if t.fewshot_file]
    if cfg.data.dataset_dir:
        named.append(cfg.data.dataset_dir)
        names = json.loads((Path(cfg.data.dataset_dir) / "dataset_info.json").read_text())
        named = [n for n in named if n not in names]
    for p in named:
        assert Path(p).exists() and Path(p).resolve().is_relative_to(REPO), f"{path.name}: {p}"


def test_no_example_file_points_outside_the_repo():
    offenders = [f"{p.relative_to(REPO)}" for p in EXAMPLES.rglob("*")
                 if p.is_file() and p.suffix in (".yaml", ".yml", ".json", ".md", ".txt")
                 and ("../shared" in p.read_text(errors="replace") or "/work/shared" in p.read_text(errors="replace"))]
    assert not offenders, f"ship the data in examples/data instead (see examples/data/SOURCES.md): {offenders}"


def test_supporting_files_parse():
    for p in EXAMPLES.rglob("*"):
        if p.is_file() and p.parent != EXAMPLES and p.suffix in (".yaml", ".yml"):
            assert isinstance(yaml.safe_load(p.read_text()), dict), p
        elif p.is_file() and p.suffix == ".json":
            json.loads(p.read_text())


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository's files (tracked + new, not ignored) copied to a temp dir with no shared folder beside it."""
    root = tmp_path_factory.mktemp("clone") / "tuneforge"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    assert not (root.parent / "shared").exists()
    return root


def _shrink(cfg, n: int) -> None:
    for spec in [*cfg.data.train, *cfg.data.eval]:
        spec.max_samples = min(spec.max_samples or n, n)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(QUICK))
def test_example_trains_a_few_steps_from_a_clone(name, clone, tmp_path, monkeypatch, request):
    monkeypatch.chdir(clone)
    path = clone / "examples" / name
    from tuneforge.train.run import run_training

    swap = [f"model.path={request.getfixturevalue('tiny_llama')}"] if "smollm2" in path.read_text() else []
    cfg, _ = load_training_config(str(path), [*QUICK[name], *swap, "train.max_steps=2", "train.logging_steps=1",
                                              "train.save_steps=0", "train.eval_steps=0", "train.batch_size=4", "train.threads=1",
                                              f"output.dir={tmp_path}", "output.name=run", "output.plot=false"])
    _shrink(cfg, 24)
    for p in [s.path for s in [*cfg.data.train, *cfg.data.eval]] + [cfg.data.dataset_dir or ""] + ([] if swap else [cfg.model.path]):
        if p and Path(p).exists():  # registry names and builtin: models are not paths
            assert Path(p).resolve().is_relative_to(clone.resolve()), f"{name} reads {p} from outside the clone"
    out = run_training(cfg)
    steps = [json.loads(line) for line in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), steps


@pytest.mark.slow
def test_eval_example_scores_a_few_samples_from_a_clone(clone, tmp_path, monkeypatch, tiny_llama):
    monkeypatch.chdir(clone)
    from tuneforge.eval.run import eval_cli

    path = clone / "examples" / "eval_smollm2.yaml"
    tasks = load_config(path).eval.tasks
    assert all(Path(t.file).is_relative_to(clone) for t in tasks)
    out = eval_cli([str(path), f"model.path={tiny_llama}", "eval.max_new_tokens=8", "eval.batch_size=2"],
                   out=str(tmp_path / "eval"),
                   tasks=["openbookqa", "gsm8k"], limit=2)
    assert out, out
    results = json.loads(next((tmp_path / "eval").rglob("results.json")).read_text())
    assert {"openbookqa", "gsm8k"} <= set(json.dumps(results).replace('"', " ").split()), results
