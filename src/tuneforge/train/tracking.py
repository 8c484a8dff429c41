"""`train.report_to`: experiment trackers through transformers' own callbacks, always offline, inside the run dir.

- tensorboard -> `<run>/tensorboard/` event files (`tensorboard --logdir runs/`)
- mlflow      -> `<run>/mlruns/` file store (`mlflow ui --backend-store-uri <run>/mlruns`), unless the user set
                 MLFLOW_TRACKING_URI themselves
- wandb       -> offline mode, files under `<run>/wandb/` (`wandb sync` uploads them later, if ever)

metrics.jsonl and plots/ are written whatever this says. A tracker that is not installed stops the run before it
starts, with the extra to install.
"""

from __future__ import annotations

import importlib.util
import os

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir

_SET_BY_US: dict[str, str] = {}  # environment values we chose (several runs in one process, e.g. a sweep)
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # name -> module it needs


def check_trackers(names: list[str]) -> list[str]:
    """The trackers asked for, validated: known names, installed packages ('none' means no tracker)."""
    names = [n.strip().lower() for n in names if n.strip() and n.strip().lower() != "none"]
    for n in names:
        if n not in TRACKERS:
            raise ConfigError(f"train.report_to: unknown tracker '{n}'", hint=f"one of {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[n]) is None:
            raise ConfigError(f"train.report_to: {n} is not installed",
                              hint="pip install 'tuneforge[track]'" if n != "wandb" else "pip install wandb")
    return names


def tracking_args(cfg: Config, run: RunDir) -> dict:
    """TrainingArguments fields (report_to, run_name) for the trackers of `cfg`, pointed at files in the run dir."""
    names = check_trackers(cfg.train.report_to)
    if "tensorboard" in names:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.root / "tensorboard")
    if "mlflow" in names:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri or uri == _SET_BY_US.get("mlflow"):  # the user's own URI wins; ours follows the run (sweeps)
            _SET_BY_US["mlflow"] = os.environ["MLFLOW_TRACKING_URI"] = (run.root / "mlruns").resolve().as_uri()
            # MLflow 3 keeps the file store in maintenance mode behind this switch; a database store would put
            # its artifact root in the working directory, outside the run dir.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "tuneforge")
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
        if not os.environ.get("WANDB_DIR") or os.environ["WANDB_DIR"] == _SET_BY_US.get("wandb"):
            _SET_BY_US["wandb"] = os.environ["WANDB_DIR"] = str(run.root)
    return {"report_to": names or "none", "run_name": run.root.name}
