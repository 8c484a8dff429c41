"""`train.keep_sparsity`: a recovery fine-tune after unstructured pruning that keeps the pruned weights at zero.

`tuneforge prune --sparsity 0.5` zeroes half of every block's Linear weights; an ordinary fine-tune of the pruned
model would refill them. With `train.keep_sparsity: true` the zeros of every Linear weight at the start of training
form a mask, and after each optimizer step the masked weights are set back to zero (a projected-gradient step: the
same result as training `weight * mask` with torch.nn.utils.prune, without renaming the parameters to
`weight_orig` / `weight_mask`). Checkpoints and the saved model therefore are ordinary safetensors with the zeros
in place, and `--resume` rebuilds the same mask from the checkpoint's zeros.
"""

from __future__ import annotations

from transformers import TrainerCallback

from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir


def zero_masks(model) -> dict:
    """{weight parameter: bool mask of its zeros} for every Linear weight that has zeros."""
    import torch

    masks = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.is_floating_point():
            mask = module.weight.detach() == 0
            if bool(mask.any()):
                masks[module.weight] = mask
    return masks


class KeepSparsity(TrainerCallback):
    """Re-zero the weights that were zero when training began, after every optimizer step."""

    def __init__(self, run: RunDir):
        self.run = run
        self.masks: dict = {}

    def on_train_begin(self, args, state, control, model=None, **kw):
        if hasattr(model, "peft_config"):
            raise ConfigError("train.keep_sparsity: an adapter's update is dense once merged, so it cannot keep "
                              "pruned weights at zero", hint="use method: full (or freeze) for a recovery fine-tune")
        self.masks = zero_masks(model)
        zeros = sum(int(m.sum()) for m in self.masks.values())
        total = sum(m.numel() for m in self.masks.values())
        self.run.record_resolved(**{"train.keep_sparsity": {
            "matrices": len(self.masks), "zero_weights": zeros, "sparsity": round(zeros / total, 4) if total else 0.0}})
        if state.is_world_process_zero:
            print(f"keep_sparsity: {zeros} zero weights in {len(self.masks)} Linear matrices stay zero"
                  + ("" if zeros else " (none found: is this a pruned model?)"), flush=True)

    def on_optimizer_step(self, args, state, control, **kw):
        import torch

        with torch.no_grad():
            for weight, mask in self.masks.items():
                weight.masked_fill_(mask, 0.0)
