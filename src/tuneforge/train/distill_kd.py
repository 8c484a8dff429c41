"""The distillation loss and the Trainer that computes it (stage: distill, train/distill.py).

loss = alpha * T^2 * KD(student / T, teacher / T) + (1 - alpha) * hard-label loss

- classification heads: KL(teacher || student) over the classes (sigmoid BCE against the teacher's probabilities
  for multi-label), averaged over the batch; the hard loss is the usual CE / BCE on the labels.
- causal LMs: the same KL per target token (positions whose next-token label is not -100, as in SFT), summed and
  divided by the target tokens of the whole optimizer step, so it is token-weighted across gradient accumulation
  like train/sft_trainer.py.

T^2 keeps the KD gradients the same size whatever the temperature (Hinton et al., 2015). With alpha = 0 the teacher
is never run: the same recipe without KD, the baseline a distilled student should beat.

TRL's DistillationTrainer / GKD are on-policy (they sample completions from the student every step, from prompts
only); this is offline logit KD on the rows of the SFT / classification data path, so a small Trainer subclass is
the thin wrapper here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tuneforge.train.common import make_trainer_class
from tuneforge.train.loss import IGNORE, shift_labels


@dataclass(frozen=True)
class KDSettings:
    temperature: float
    alpha: float
    token_level: bool          # causal LM (per token) vs classification head (per sample)
    multi_label: bool = False  # classification: sigmoid per label instead of softmax over classes
    vocab: int | None = None   # causal LM: logits compared over the first `vocab` ids (both models know them)


def kd_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float, multi_label: bool = False,
                  reduction: str = "batchmean") -> torch.Tensor:
    """T^2 * KL(teacher || student) at temperature T over the last dim (or BCE to the teacher's sigmoid)."""
    t = temperature
    if multi_label:
        target = torch.sigmoid(teacher.float() / t)
        red = "mean" if reduction == "batchmean" else reduction
        return F.binary_cross_entropy_with_logits(student.float() / t, target, reduction=red) * t * t
    return F.kl_div(F.log_softmax(student.float() / t, -1), F.log_softmax(teacher.float() / t, -1),
                    log_target=True, reduction=reduction) * t * t


def classification_loss(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                        kd: KDSettings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(loss, KD part) of one batch of class logits; the hard loss alone when there is no teacher."""
    hard = (F.binary_cross_entropy_with_logits(student.float(), labels.float()) if kd.multi_label
            else F.cross_entropy(student.float(), labels))
    if teacher is None or kd.alpha == 0:
        return hard, None
    soft = kd_divergence(student, teacher, kd.temperature, kd.multi_label)
    return kd.alpha * soft + (1 - kd.alpha) * hard, soft


def token_loss_sums(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                    kd: KDSettings) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(hard CE sum, KD sum or None, number of targets) over the target positions of a batch of LM logits."""
    targets = shift_labels(labels)
    keep = targets != IGNORE
    s = student[keep]
    if kd.vocab is not None:
        s = s[..., :kd.vocab]
    hard = F.cross_entropy(s.float(), targets[keep], reduction="sum")
    if teacher is None or kd.alpha == 0:
        return hard, None, keep.sum()
    t = teacher[keep]
    if kd.vocab is not None:
        t = t[..., :kd.vocab]
    return hard, kd_divergence(s, t, kd.temperature, reduction="sum"), keep.sum()


class KDMixin:
    """compute_loss = the distillation loss above. Evaluation reports the student's hard-label loss (eval_loss),
    comparable with a run trained without KD."""

    def __init__(self, *args, teacher=None, kd: KDSettings, **kwargs):
        super().__init__(*args, **kwargs)
        self.tf_kd = kd
        self.tf_teacher = None
        if teacher is not None and kd.alpha > 0:
            self.tf_teacher = teacher.to(self.args.device).eval().requires_grad_(False)
        # LM: the Trainer counts the step's target tokens (num_items_in_batch) and does not rescale our sum;
        # classification: a per-batch mean that the Trainer divides by the accumulation steps.
        self.model_accepts_loss_kwargs = kd.token_level

    def _teacher_logits(self, inputs: dict) -> torch.Tensor | None:
        if self.tf_teacher is None:
            return None
        with torch.no_grad():
            return self.tf_teacher(**inputs).logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        teacher = self._teacher_logits(inputs) if model.training else None
        kd = self.tf_kd
        if kd.token_level:
            hard, soft, n = token_loss_sums(outputs.logits, teacher, labels, kd)
            total = hard if soft is None else kd.alpha * soft + (1 - kd.alpha) * hard
            denom = num_items_in_batch if (num_items_in_batch is not None and model.training) else n
            loss = total / (denom.clamp(min=1) if torch.is_tensor(denom) else max(int(denom), 1))
            if model.training and num_items_in_batch is not None and self.args.world_size > 1 \
                    and self.args.average_tokens_across_devices:
                loss = loss * self.args.world_size  # num_items_in_batch counts every process; DDP averages
        else:
            loss, soft = classification_loss(outputs.logits, teacher, labels, kd)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if not self.tf_kd.token_level:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)  # LM: the loss is the evaluation; no logits to gather
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


def kd_trainer(**kwargs):
    """The guarded Trainer with the distillation loss; `teacher=` and `kd=` go to KDMixin."""
    from transformers import Trainer

    return make_trainer_class(type("KDTrainer", (KDMixin, Trainer), {}))(**kwargs)
