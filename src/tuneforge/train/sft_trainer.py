"""The Trainer used by the sft/pt recipes: the guarded Trainer plus the fast paths of docs/performance.md.

- loss only on positions with a target, token-weighted across gradient accumulation (`train/loss.py`);
- optional token-budget micro-batches (`train.batch_tokens`, `data/batching.py`);
- padding-free packed batches (`data.packing`, `data/collate.py`) are counted as they are: every token is real.
"""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.batching import TokenBudgetBatchSampler
from tuneforge.models.registry import base_model
from tuneforge.train.common import make_trainer_class
from tuneforge.train.loss import labelled_loss_sum


class SFTLossMixin:
    """compute_loss / prediction_step on labelled positions only; batches from a token budget when configured."""

    tf_loss_chunk_size: int = 0
    tf_batch_tokens: int = 0
    tf_pad_batches: bool = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Always let the Trainer count target tokens over the whole accumulation step (num_items_in_batch) and
        # not divide the loss again by the number of micro-batches: that is what makes the loss token-weighted.
        self.model_accepts_loss_kwargs = True

    def train(self, *args, **kwargs):
        import gc

        # Everything alive now (libraries, model, data) lives for the whole run: freezing it keeps the collector
        # (a full gc.collect at train start, periodic collections during training) from re-scanning it.
        gc.freeze()
        try:
            return super().train(*args, **kwargs)
        finally:
            gc.unfreeze()  # the caller's objects become collectable again (several runs in one process)

    def floating_point_ops(self, inputs) -> int:
        # The Trainer's estimate walks every parameter at every step; the count does not change during training.
        if not hasattr(self, "_tf_flop_params"):
            model = base_model(self.model)
            self._tf_flop_params = model.num_parameters(exclude_embeddings=True) if hasattr(model, "num_parameters") \
                else 0
        ids = inputs.get("input_ids")
        return 6 * (ids.numel() if ids is not None else 0) * self._tf_flop_params

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, n_targets, outputs = labelled_loss_sum(model, dict(inputs), self.tf_loss_chunk_size)
        denom = num_items_in_batch if num_items_in_batch is not None else n_targets
        loss = loss_sum / denom.clamp(min=1) if hasattr(denom, "clamp") else loss_sum / max(int(denom), 1)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            # num_items_in_batch counts every process's targets while DDP averages gradients over processes.
            loss = loss * self.args.world_size
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Evaluation of a language model here is its loss; logits of kept positions only would not line up with
        # the label tensor anyway.
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def get_train_dataloader(self):
        if not self.tf_batch_tokens:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        sampler = TokenBudgetBatchSampler(self.train_dataset.lengths(), self.tf_batch_tokens,
                                          seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
                                          pad=self.tf_pad_batches, window=0 if not self.tf_pad_batches else 64)
        loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                            num_workers=0, pin_memory=self.args.dataloader_pin_memory)
        return self.accelerator.prepare(loader)


def sft_trainer(cfg: Config, packing: bool, args, **kwargs):
    """A guarded Trainer with the SFT loss and batching options of `cfg` and the resolved packing mode (same
    arguments as transformers.Trainer)."""
    from transformers import Trainer

    if packing:
        # Padding-free rows hold no pad token, so "all" input tokens are exactly the real ones (and no
        # attention_mask is needed to count them).
        args.include_num_input_tokens_seen = "all"
    cls = make_trainer_class(type("SFTTrainer", (SFTLossMixin, Trainer), {
        "tf_loss_chunk_size": cfg.train.loss_chunk_size,
        "tf_batch_tokens": cfg.train.batch_tokens,
        "tf_pad_batches": not packing,
    }))
    return cls(args=args, **kwargs)
