"""`tuneforge sweep cfg.yaml --space space.yaml --trials N`: hyper-parameter search with Optuna.

Optuna does the searching (TPE sampler, median pruner, SQLite storage); we add the glue:
- every trial is an ordinary run dir, `<sweep>/trials/trial-NNN/`, trained by the ordinary `run_training`;
- the pruner sees the trial's evaluation metric each time the Trainer evaluates (`train.eval_steps`);
- the study lives in `<sweep>/study.db`, so running the same command again resumes a killed sweep: a trial that was
  running when the sweep died is marked failed and its parameters are tried again first;
- at the end (and after every trial) `summary.md`, `best_config.yaml` and the Optuna plots are rewritten
  (`train/sweep_report.py`).

The space file (examples/sweeps/):

    metric: eval_loss            # a key of the run's final metrics (results.json)
    direction: minimize          # or maximize
    params:
      train.lr: {low: 1.0e-5, high: 1.0e-2, log: true}    # float
      lora.r: {choices: [4, 8, 16]}                         # categorical
      train.batch_size: {low: 2, high: 8, step: 2}         # int (both bounds integers)
    pruner: {startup_trials: 2, warmup_steps: 0}          # median pruning; `pruner: none` turns it off
    seed: 0                                               # TPE seed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError, TrainingError
from tuneforge.runs import atomic_write
from tuneforge.train.observers import observe
from tuneforge.train.run import resolve_config_arg, run_training
from tuneforge.train.stages import load_training_config
from tuneforge.train.sweep_report import write_report


@dataclass
class Param:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list | None = None

    def suggest(self, trial):
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.choices)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)) and \
                (self.step is None or isinstance(self.step, int)):
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)


@dataclass
class Space:
    metric: str
    direction: str
    params: list[Param]
    startup_trials: int | None = 2  # None: no pruning
    warmup_steps: int = 0
    seed: int = 0
    source: dict = field(default_factory=dict)


def load_space(path: str | Path) -> Space:
    """The search space file, validated: one readable line naming the file and key for anything wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--space: {p} does not exist")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    unknown = set(tree) - {"metric", "direction", "params", "pruner", "seed"}
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {sorted(unknown)}", hint="metric, direction, params, pruner, seed")
    direction = tree.get("direction", "minimize")
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"{p}: direction must be minimize or maximize, got {direction!r}")
    params_tree = tree.get("params")
    if not isinstance(params_tree, dict) or not params_tree:
        raise ConfigError(f"{p}: params: needs at least one parameter, e.g. train.lr: {{low: 1e-5, high: 1e-3}}")
    params = [_param(p, name, spec) for name, spec in params_tree.items()]
    pruner = tree.get("pruner", {})
    if pruner in ("none", None, False):
        startup, warmup = None, 0
    elif isinstance(pruner, dict) and set(pruner) <= {"startup_trials", "warmup_steps"}:
        startup, warmup = int(pruner.get("startup_trials", 2)), int(pruner.get("warmup_steps", 0))
    else:
        raise ConfigError(f"{p}: pruner: expected none or {{startup_trials: N, warmup_steps: N}}")
    return Space(metric=str(tree.get("metric", "eval_loss")), direction=direction, params=params,
                 startup_trials=startup, warmup_steps=warmup, seed=int(tree.get("seed", 0)), source=tree)


def _param(path: Path, name: str, spec) -> Param:
    where = f"{path}: params.{name}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{low, high[, log, step]}} or {{choices: [...]}}")
    extra = set(spec) - {"low", "high", "log", "step", "choices"}
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        return Param(name, choices=spec["choices"])
    try:
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
            raise ValueError
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: needs numbers low < high") from None
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0")
    return Param(name, low=low, high=high, log=bool(spec.get("log", False)), step=spec.get("step"))


def overrides_for(params: dict) -> list[str]:
    """Config overrides (`key=value`, values as YAML) for one trial's parameters."""
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in params.items()]


def _pruning_callback(trial, metric: str):
    from transformers import TrainerCallback

    class ReportToOptuna(TrainerCallback):
        """Hand each evaluation's metric to the pruner; stop the trial when the median rule says so."""

        def __init__(self):
            self.reported: set[int] = set()

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            # The stage's closing evaluate() can land on a step already reported by the last periodic one.
            if metrics and metric in metrics and state.global_step not in self.reported:
                self.reported.add(state.global_step)
                import optuna

                trial.report(float(metrics[metric]), state.global_step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"step {state.global_step}: {metric}={metrics[metric]:.4g}")

    return ReportToOptuna()


def _study(space: Space, sweep_dir: Path, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=space.startup_trials, n_warmup_steps=space.warmup_steps)
              if space.startup_trials is not None else optuna.pruners.NopPruner())
    storage = f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=space.direction,
                                pruner=pruner)
    # A resumed sweep must not replay the first proposals of a fresh sampler: offset the seed by the trials so far
    # (still deterministic for a given history).
    study.sampler = optuna.samplers.TPESampler(seed=space.seed + len(study.get_trials(deepcopy=False)))
    return study


def _requeue_interrupted(study) -> int:
    """Trials left RUNNING by a killed sweep: mark them failed and enqueue their parameters again."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params)  # (skip_if_exists would see the failed trial itself and skip)
    return len(stale)


def run_sweep(config: str | None, overrides: list[str], space_path: str, trials: int,
              name: str | None = None) -> dict:
    """Run (or resume) a sweep until `trials` trials have completed or been pruned; returns the summary."""
    from optuna.trial import TrialState

    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    space = load_space(space_path)
    config_path = resolve_config_arg(config)
    base, _ = load_training_config(config_path, overrides)
    for bound in ("low", "high"):  # every parameter name and both ends of its range must make a valid config
        edge = {p.name: (p.choices[0] if p.choices else getattr(p, bound)) for p in space.params}
        load_training_config(config_path, [*overrides, *overrides_for(edge)])
    if space.startup_trials is not None and not base.train.eval_steps:
        print("sweep: train.eval_steps is 0, so trials are only evaluated at the end and cannot be pruned early",
              flush=True)
    name = name or Path(space_path).stem
    sweep_dir = Path(base.output.dir) / f"sweep-{name}"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(sweep_dir / "space.yaml", yaml.safe_dump(space.source, sort_keys=False))
    study = _study(space, sweep_dir, name)
    requeued = _requeue_interrupted(study)
    if requeued:
        print(f"sweep: resuming; {requeued} interrupted trial(s) will run again", flush=True)

    def objective(trial) -> float:
        params = {p.name: p.suggest(trial) for p in space.params}
        run_overrides = [*overrides, *overrides_for(params), f"output.dir={sweep_dir / 'trials'}",
                         f"output.name=trial-{trial.number:03d}", "output.overwrite=true"]
        cfg, _ = load_training_config(config_path, run_overrides)
        trial.set_user_attr("run_dir", str(sweep_dir / "trials" / f"trial-{trial.number:03d}"))
        with observe(_pruning_callback(trial, space.metric)):
            out = run_training(cfg)
        if space.metric not in out:
            raise ConfigError(f"{space_path}: metric '{space.metric}' is not among the run's final metrics",
                              hint=f"available: {', '.join(sorted(k for k in out if k.startswith('eval_')))}")
        return float(out[space.metric])

    def after_trial(study, trial):
        write_report(study, space, sweep_dir, _best_config(base, config_path, overrides, study))

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if trials > done:
        # A diverged trial (non-finite loss at a high lr) is a result, not a reason to stop the sweep.
        study.optimize(objective, n_trials=trials - done, catch=(TrainingError,), callbacks=[after_trial])
    return write_report(study, space, sweep_dir, _best_config(base, config_path, overrides, study))


def _best_config(base: Config, config_path: str | None, overrides: list[str], study) -> Config | None:
    """The base config with the best completed trial's parameters (what `tuneforge train best_config.yaml` runs)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    cfg, _ = load_training_config(config_path, [*overrides, *overrides_for(study.best_trial.params)])
    return cfg
