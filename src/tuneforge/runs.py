"""The run directory: the one module that creates, writes and reads a run.

Layout (docs/INTERNALS.md): `config.yaml` (what the user asked + a `resolved:` section with what the run decided),
`env.json`, `data_report.json`, `metrics.jsonl`, `plots/`, `checkpoints/checkpoint-N/`, `adapter/` or `model/`,
`results.json`, `predictions.jsonl`, `eval/`.

Every file is written atomically (temp file or temp dir, then rename) through `atomic_write` / `atomic_dir`, so a
kill never leaves a half-written file that looks complete. The run name is decided once, on the main process, and
shared with every rank; only the main process writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from tuneforge import run_lock
from tuneforge.config.load import RESOLVED_KEY, load_config
from tuneforge.config.schema import Config, ModelConfig
from tuneforge.environment import collect
from tuneforge.errors import ConfigError


# ------------------------------------------------------------------------------------------- atomic writes

def atomic_write(path: str | Path, content: str | bytes | Callable[[Path], Any]) -> Path:
    """Write text, bytes, or whatever `content(tmp_path)` writes, to a temp file, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if callable(content):
            content(tmp)
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def atomic_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    return atomic_write(path, "".join(json.dumps(r, ensure_ascii=False, default=float) + "\n" for r in records))


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp dir next to `target`; when the block succeeds it replaces `target` in one rename."""
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


# ------------------------------------------------------------------------------------------- processes

def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch; True in a single process."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def shared_value(make: Callable[[], Any]) -> Any:
    """`make()` evaluated on the main process and handed to every rank (one value for the whole job)."""
    if world_size() <= 1:
        return make()
    import torch.distributed as dist

    state = _process_state()
    box: list = [None]
    if state.is_main_process:
        try:
            box = [("value", make())]
        except BaseException as e:  # the other ranks must not wait in the broadcast forever
            dist.broadcast_object_list([("error", getattr(e, "exit_code", 1))], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise SystemExit(value)  # rank 0 prints why (one line); the other ranks stop quietly, same exit code
    return value


def wait_for_everyone() -> None:
    if world_size() > 1:
        _process_state().wait_for_everyone()


def _process_state():
    """accelerate's process state, initialising the process group from the launcher's environment the way the
    Trainer will (`use_cpu` on a machine without CUDA: gloo; a bare PartialState() there would see one process)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


# ------------------------------------------------------------------------------------------- the run dir

DIVERGED_MARKER = "diverged.json"  # inside a checkpoint written after the loss left its sane range


def checkpoint_step(path: Path) -> int:
    """N of a `checkpoint-N` dir; -1 for anything else."""
    tail = Path(path).name.removeprefix("checkpoint-")
    return int(tail) if tail.isdigit() and Path(path).name.startswith("checkpoint-") else -1


@dataclass
class RunDir:
    root: Path
    main: bool = True  # only the main process writes; other ranks read

    def __post_init__(self):
        self.root = Path(self.root)

    config = property(lambda self: self.root / "config.yaml")
    env = property(lambda self: self.root / "env.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    plots = property(lambda self: self.root / "plots")
    checkpoints = property(lambda self: self.root / "checkpoints")
    adapter = property(lambda self: self.root / "adapter")
    model = property(lambda self: self.root / "model")
    eval_dir = property(lambda self: self.root / "eval")

    # -------------------------------------------------------------- writing (main process only)
    def write_json(self, name: str, obj: Any) -> Path:
        path = self.root / name
        return atomic_json(path, obj) if self.main else path

    def write_jsonl(self, name: str, records: Iterable[dict]) -> Path:
        path = self.root / name
        return atomic_jsonl(path, records) if self.main else path

    def write_config(self, cfg: Config, resolved: dict | None = None) -> None:
        """config.yaml: the validated config as the user asked for it, plus `resolved:` runtime decisions."""
        if not self.main:
            return
        tree = cfg.model_dump(mode="json")
        if resolved:
            tree[RESOLVED_KEY] = resolved
        atomic_write(self.config, yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))

    def record_resolved(self, **values: Any) -> dict:
        """Add runtime decisions (`data.packing: true` for `auto`, the dtype, the template) to config.yaml."""
        tree = self._config_tree()
        resolved = {**tree.pop(RESOLVED_KEY, {}), **values}
        if self.main:
            atomic_write(self.config, yaml.safe_dump({**tree, RESOLVED_KEY: resolved}, sort_keys=False,
                                                     allow_unicode=True))
        return resolved

    def write_env(self, cfg: Config) -> None:
        """Versions, git sha, devices, seed and the sha256 of every data file (before training starts)."""
        if self.main:
            files = [s.path for s in [*cfg.data.train, *cfg.data.eval]]
            atomic_json(self.env, collect(files, cfg.train.seed))

    def truncate_metrics(self, step: int | None) -> None:
        """Fresh run: no metrics yet. Resume: forget steps logged after the checkpoint (each step once)."""
        if not self.main or not self.metrics.exists():
            return
        if step is None:
            self.metrics.unlink()
            return
        keep = [ln for ln in self.metrics.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        atomic_write(self.metrics, "".join(ln + "\n" for ln in keep))

    def release(self) -> None:
        """End of this writer's lifetime: drop the run dir's lock (main process; a no-op elsewhere)."""
        if self.main:
            run_lock.release(self.root)

    # -------------------------------------------------------------- reading
    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint that is not marked diverged (what `--resume` continues from)."""
        if not self.checkpoints.is_dir():
            return None
        steps = [(checkpoint_step(p), p) for p in self.checkpoints.glob("checkpoint-*")
                 if p.is_dir() and checkpoint_step(p) >= 0 and (p / "trainer_state.json").exists()
                 and not self.is_diverged(p)]
        return max(steps)[1] if steps else None

    def is_diverged(self, ckpt: Path) -> bool:
        return (Path(ckpt) / DIVERGED_MARKER).exists()

    def mark_diverged(self, ckpt: Path, reason: str) -> None:
        """Keep the checkpoint for inspection, but never resume from it."""
        if self.main:
            atomic_json(Path(ckpt) / DIVERGED_MARKER, {"reason": reason})

    def _config_tree(self) -> dict:
        if not self.config.is_file():
            raise ConfigError(f"{self.root} is not a run dir (no config.yaml)")
        return yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}

    def resolved(self) -> dict:
        return dict(self._config_tree().get(RESOLVED_KEY) or {})

    def read_config(self, overrides: list[str] | None = None) -> Config:
        """The run's config as validated at its start (runtime decisions are in `resolved()`)."""
        if not self.config.is_file():
            raise ConfigError(f"{self.root} is not a run dir (no config.yaml)")
        return load_config(self.config, overrides)

    def has_model(self) -> bool:
        return (self.adapter / "adapter_config.json").is_file() or self.model.is_dir()

    def model_config(self) -> tuple[ModelConfig, str, str | None]:
        """(ModelConfig, chat template, system prompt) of the run's final model: base + adapter/, or model/."""
        cfg = self.read_config()
        if (self.adapter / "adapter_config.json").is_file():
            mc = cfg.model.model_copy(update={"adapter": str(self.adapter)})
        elif self.model.is_dir():
            mc = cfg.model.model_copy(update={"path": str(self.model), "gguf_file": None, "adapter": None,
                                              "tokenizer": None})
        else:
            raise ConfigError(f"run dir {self.root} has neither adapter/ nor model/", hint="did training finish?")
        return mc, cfg.data.template, cfg.data.system


def is_run_dir(path: str | Path) -> bool:
    """A finished run: config.yaml plus an adapter/ or model/."""
    p = Path(path)
    return p.is_dir() and (p / "config.yaml").is_file() and RunDir(p).has_model()


def open_run(cfg: Config, resume: bool, resolved: dict | None = None) -> RunDir:
    """Create (or, with resume, reopen) the run dir, lock it and write config.yaml. Every rank gets the same dir.

    The main process holds an exclusive lock on the dir until `run.release()` (or its exit): a second writer
    (say `--resume` on a run that is still training) is refused with one line naming the holder."""
    root = Path(shared_value(lambda: str(_choose_and_lock(cfg, resume))))
    run = RunDir(root, main=is_main_process())
    if run.main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(run.checkpoints / ".staging", ignore_errors=True)  # leftovers of a killed save
        run.write_config(cfg, resolved)
    wait_for_everyone()
    return run


def _choose_and_lock(cfg: Config, resume: bool) -> Path:
    """Main process: the run's root, locked, after checking that this start may write there."""
    root = _choose_root(cfg, resume)
    existed = root.exists()
    lock = run_lock.acquire(root, "run dir", reentrant=False)
    try:
        _check_root(root, cfg, resume)
    except BaseException:
        lock.release()
        if not existed:
            shutil.rmtree(root, ignore_errors=True)  # only our lock file is in it
        raise
    return root


def _choose_root(cfg: Config, resume: bool) -> Path:
    parent = Path(cfg.output.dir)
    if cfg.output.name:
        root = parent / cfg.output.name
        if not root.resolve().is_relative_to(parent.resolve()):  # a symlinked name pointing elsewhere
            raise ConfigError(f"output.name '{cfg.output.name}' resolves to {root.resolve()}, outside "
                              f"output.dir {parent.resolve()}", hint="choose a plain run name")
    elif resume:
        candidates = sorted((p for p in parent.glob(f"{cfg.stage}-*") if RunDir(p).latest_checkpoint()),
                            key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"--resume: no run with checkpoints under {parent}/ (set output.name to choose one)")
        root = candidates[-1]
    else:
        root = parent / f"{cfg.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    return root


def is_unstarted(root: Path) -> bool:
    """A run dir whose start failed before anything worth keeping: config.yaml but no checkpoint, model or
    results (bad data, bad model path). Starting again may reuse its name."""
    run = RunDir(root)
    return run.config.is_file() and not run.latest_checkpoint() and not run.has_model() and \
        not (root / "results.json").exists()


def _check_root(root: Path, cfg: Config, resume: bool) -> None:
    if resume:
        if RunDir(root).latest_checkpoint():
            return
        hint = ("it never reached a checkpoint: run the same command without --resume to start it again"
                if is_unstarted(root) else "start a new run without --resume")
        raise ConfigError(f"--resume: {root} has no complete checkpoint to resume from", hint=hint)
    contents = [p for p in root.iterdir() if p.name != run_lock.LOCK_NAME] if root.is_dir() else []
    if not contents or cfg.output.overwrite:
        return
    if is_unstarted(root):
        print(f"reusing run dir {root}: an earlier start left no checkpoint, model or results", flush=True)
        return
    hint = ("add --resume to continue from its latest checkpoint, or choose a new output.name"
            if RunDir(root).latest_checkpoint() else "choose a new output.name, or set output.overwrite=true")
    raise ConfigError(f"run dir {root} already exists", hint=hint)
