"""`stage: ppo` (LLaMA-Factory's online RLHF) runs as grpo: TRL 1.16 has no PPO trainer any more, and GRPO with
the trained reward model as a reward (`align.rewards: [rm:<rm run dir>]`) is the same recipe without a value
model. The note is printed once at validation; everything else is grpo.py."""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.train.grpo import GrpoStage


class PpoStage(GrpoStage):
    name = "ppo"
    description = "LLaMA-Factory's ppo, run as grpo (TRL 1.16 has no PPO trainer); rewards as in grpo"

    def validate(self, cfg: Config) -> None:
        print("stage: ppo runs as grpo (TRL 1.16 has no PPO trainer; a reward model is align.rewards: "
              "[rm:<rm run dir>])", flush=True)
        super().validate(cfg)


STAGE = PpoStage()
