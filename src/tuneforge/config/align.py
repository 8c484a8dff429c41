"""`align:` section: settings of the alignment stages (rm, dpo, orpo, simpo, kto, grpo, rloo).

Every field is defaulted, so configs without an `align:` section stay valid. Names follow LLaMA-Factory where it
has one (`pref_beta`, `pref_loss`, `pref_ftx`, `simpo_gamma`, `kto_*_weight`) so its configs read the same here;
each stage reads only the fields it needs (docs/align.md lists which).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# TRL 1.16 DPOTrainer loss types (paired, offline); `sft` is exposed as pref_ftx instead.
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm")


class AlignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- offline preference (dpo / orpo / simpo / kto) -----------------------------------------------------------
    pref_beta: float = Field(0.1, gt=0, description="beta: strength of the pull towards the reference (dpo/kto), "
                             "reward scale (simpo), or the odds-ratio weight lambda (orpo).")
    pref_loss: Literal[DPO_LOSSES] = Field(  # type: ignore[valid-type]
        "sigmoid", description="DPO loss variant (TRL names): sigmoid (DPO), ipo, hinge (SLiC), robust, exo_pair, "
        "nca_pair, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop, sigmoid_norm.")
    pref_ftx: float = Field(0.0, ge=0, description="Weight of an SFT loss on the chosen response added to the "
                            "preference loss (RPO; dpo), or the NLL weight cpo_alpha (simpo).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed label noise (robust / cDPO).")
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO target reward margin.")
    precompute_ref: bool = Field(False, description="Compute reference log-probs once before training (full "
                                 "fine-tuning then holds no reference copy during training).")
    share_prompt: bool = Field(True, description="dpo: run each pair's prompt once (chosen and rejected answers "
                               "attend to one copy, no padding) and project only answer tokens through the LM head; "
                               "same log-probs, less time and memory. Off: TRL's padded batch.")
    kto_desirable_weight: float = Field(1.0, gt=0, description="KTO weight of desirable (label true) samples.")
    kto_undesirable_weight: float = Field(1.0, gt=0, description="KTO weight of undesirable samples.")

    # --- online (grpo / rloo) ------------------------------------------------------------------------------------
    rewards: list[str] = Field(
        default_factory=list, description="Reward sources: built-ins (exact_number, contains_reference, "
        "format:<regex>, length:<target tokens>), a trained rm run (rm:<run dir>), or module:function / "
        "path/to/file.py:function.")
    reward_weights: list[float] = Field(default_factory=list, description="One weight per reward (default 1 each).")
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(64, gt=0, description="Max new tokens per sampled completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts.")
    kl_beta: float = Field(0.0, ge=0, description="KL penalty towards the reference in grpo/rloo (0: none, "
                           "no reference forward).")
    epsilon: float = Field(0.2, gt=0, description="Clipping range of the policy ratio.")
