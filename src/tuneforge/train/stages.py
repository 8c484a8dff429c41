"""The stage table: stage name -> stage object. A new stage is one module plus one line here."""

from __future__ import annotations

import difflib

from tuneforge.config import load_config
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.train import cls, distill, dpo, grpo, kto, orpo, ppo, pt, qa, rloo, rm, seq2seq, sft, simpo
from tuneforge.train.stage import Stage

STAGES: dict[str, Stage] = {
    "pt": pt.STAGE,
    "sft": sft.STAGE,
    "cls": cls.STAGE,
    "qa": qa.STAGE,
    "seq2seq": seq2seq.STAGE,
    "rm": rm.STAGE,
    "dpo": dpo.STAGE,
    "orpo": orpo.STAGE,
    "simpo": simpo.STAGE,
    "kto": kto.STAGE,
    "grpo": grpo.STAGE,
    "rloo": rloo.STAGE,
    "ppo": ppo.STAGE,
    "distill": distill.STAGE,
}


def get_stage(cfg: Config) -> Stage:
    """The config's stage object, after its stage-specific checks (invalid stage x method pairs stop here)."""
    stage = STAGES.get(cfg.stage)
    if stage is None:
        close = difflib.get_close_matches(cfg.stage, list(STAGES), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"stages: {', '.join(STAGES)}"
        raise ConfigError(f"stage: '{cfg.stage}' is not a stage", hint=hint)
    stage.validate(cfg)
    return stage


def load_training_config(path: str | None, overrides: list[str]) -> tuple[Config, Stage]:
    """A validated config and its stage: every training command starts here, before any work is done."""
    cfg = load_config(path, overrides)
    return cfg, get_stage(cfg)
