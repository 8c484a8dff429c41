"""What a training stage is. Each stage module (sft.py, pt.py, cls.py, qa.py, seq2seq.py) defines one subclass and
registers one instance in `train/stages.py`; the rest of the code asks the stage object and never compares names.

How to add a stage: write `train/<name>.py` with a `Stage` subclass (its data builder/checker, model, trainer and
what it saves, read top to bottom in `run`), and add one line to `STAGES` in `train/stages.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.models.load import check_model_source
from tuneforge.runs import RunDir

if TYPE_CHECKING:
    from tuneforge.train.compare_task import GenComparison


class Stage:
    """A training recipe plus the facts other commands need about it."""

    name: str = ""
    description: str = ""
    methods: tuple[str, ...] = ("lora", "full", "freeze")  # valid `method:` values
    metrics: tuple[str, ...] = ("loss",)  # valid `task.metric` values; the first is the default main metric
    peft_task_type: str = "CAUSAL_LM"  # tells peft which head to train and save next to a LoRA adapter
    # train.lr per method when the user sets none (docs/compare.md has the evidence); absent = the schema default
    lr_defaults: dict[str, float] = {}
    lr_defaults_decoder: dict[str, float] = {}  # the same for decoder-only models, where they differ
    # Recipe keys this stage honours (docs/tasks.md "Stronger recipes"); validate() refuses the others when set,
    # so a key never silently does nothing.
    recipe_keys: frozenset[str] = frozenset()
    lower_is_better: tuple[str, ...] = ()  # metrics where smaller wins (e.g. ter); the rest: higher wins

    def validate(self, cfg: Config) -> None:
        """Cross-field checks that depend on the stage; one ConfigError line naming the key."""
        if cfg.method not in self.methods:
            raise ConfigError(f"method: {cfg.method} does not apply to stage: {self.name}",
                              hint=f"stage {self.name} supports method {' | '.join(self.methods)}")
        if cfg.task.metric != "auto" and cfg.task.metric not in self.metrics:
            raise ConfigError(f"task.metric: '{cfg.task.metric}' is not a metric of stage {self.name}",
                              hint=f"choose from {', '.join(self.metrics)}")
        self._validate_recipe(cfg)

    @staticmethod
    def asked_recipe_keys(cfg: Config) -> list[str]:
        """The recipe keys a config turns on, in a fixed order."""
        t = cfg.train
        asked = {"train.label_smoothing": t.label_smoothing > 0, "task.class_weights": cfg.task.class_weights != "none",
                 "train.early_stopping_patience": t.early_stopping_patience > 0,
                 "train.validation_split": t.validation_split > 0,
                 "task.soft_label_column": cfg.task.soft_label_column is not None}
        return [k for k, on in asked.items() if on]

    def _validate_recipe(self, cfg: Config) -> None:
        t = cfg.train
        for key in (k for k in self.asked_recipe_keys(cfg) if k not in self.recipe_keys):
            honoured = sorted(self.recipe_keys)
            raise ConfigError(f"{key} does not apply to stage {self.name} (method {cfg.method})",
                              hint=f"here it supports {', '.join(honoured)}" if honoured else "remove it")
        if t.early_stopping_patience:
            if not cfg.data.eval and not cfg.data.eval_split and not t.validation_split:
                raise ConfigError("train.early_stopping_patience needs eval data to watch",
                                  hint="set data.eval, data.eval_split, or train.validation_split (cls) to hold "
                                  "out part of the training data")
            if t.save_steps and not t.eval_steps:
                raise ConfigError(f"train.save_steps ({t.save_steps}) with early stopping needs train.eval_steps: "
                                  "without it evaluations and checkpoints both happen once per epoch",
                                  hint=f"set train.eval_steps={t.save_steps} (or a divisor of it)")
            if t.eval_steps and t.save_steps and t.save_steps % t.eval_steps:
                raise ConfigError(f"train.save_steps ({t.save_steps}) must be a multiple of train.eval_steps "
                                  f"({t.eval_steps}) with early stopping (the best evaluation needs a checkpoint)",
                                  hint=f"set train.save_steps={t.eval_steps} or leave it unset")

    def selection(self, cfg: Config) -> tuple[str, bool]:
        """(metric, greater_is_better) that early stopping watches and the best checkpoint is chosen by."""
        metric = self.main_metric(cfg)
        return metric, metric not in self.lower_is_better

    def main_metric(self, cfg: Config) -> str:
        """The metric this stage reports first and selects checkpoints by."""
        return self.metrics[0] if cfg.task.metric == "auto" else cfg.task.metric

    def default_lr(self, cfg: Config) -> float | None:
        """This stage's learning rate for `cfg.method` when the config does not set `train.lr`, else None.
        Recorded as `resolved: {train.lr: ...}`; the validated config is left as the user wrote it."""
        if "lr" in cfg.train.model_fields_set:
            return None
        if cfg.method in self.lr_defaults_decoder:
            from tuneforge.models.family import is_decoder_only

            if is_decoder_only(cfg.model):
                return self.lr_defaults_decoder[cfg.method]
        return self.lr_defaults.get(cfg.method)

    def preflight(self, cfg: Config) -> None:
        """Cheap checks before the run dir is created and data is read: the model (and adapter) can be found and
        hold loadable weights. A stage with other inputs extends this."""
        if cfg.task.random_init:  # weights are created from config.json (examples/models/t5-tiny): none to check
            return
        check_model_source(cfg.model)

    def check_data(self, cfg: Config) -> dict[str, Any]:
        """`tuneforge data check`: read, validate and tokenize the data without training; counts and lengths."""
        raise NotImplementedError

    def comparison(self, cfg: Config) -> GenComparison | None:
        """`compare-approaches` on a generation task (train/compare_gen.py): the rows and how a decoder is asked;
        None: the stage offers none (classification has its own routes, train/compare.py)."""
        return None

    def dry_run(self, cfg: Config) -> dict[str, Any]:
        """`tuneforge train --dry-run`: sizes and a memory estimate."""
        raise ConfigError(f"--dry-run is not available for stage {self.name}",
                          hint="use `tuneforge data check` for the data side")

    def seed_ensemble(self, cfg: Config, parent: RunDir, roots: list) -> dict[str, Any]:
        """After `train.seeds`: metrics of the seed runs' predictions combined (a stage whose predictions can be
        averaged says how); empty when the stage has none."""
        return {}

    def run(self, cfg: Config, run: RunDir, resume: bool) -> dict[str, Any]:
        """Train and save into `run`; return the final metrics."""
        raise NotImplementedError
