"""Depth pruning: keep some of a model's blocks. Used by `tuneforge prune --layers` (export) and by `stage: distill`
to build a smaller student from its teacher (train), so it lives below both."""

from __future__ import annotations

from tuneforge.errors import ConfigError
from tuneforge.models.registry import base_model, get_layers


def evenly_spaced(n: int, count: int) -> list[int]:
    """`count` of `n` block indices, evenly spaced with the first and last kept (6 -> 3: [0, 2, 5])."""
    if count == 1:
        return [0]
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


def keep_layers(model, layers: int | list[int]) -> list[int]:
    """Keep `layers` blocks (a count: evenly spaced; a list: these indices, in order) and drop the rest, in place.
    Returns the kept indices; `config.num_hidden_layers` (and per-layer `layer_types`) follow, so the saved model
    reloads with plain transformers."""
    import torch

    path, blocks = get_layers(model)
    if blocks is None:
        raise ConfigError(f"cannot find the blocks of '{model.config.model_type}' to drop layers from")
    n = len(blocks)
    if isinstance(layers, int):
        if not 1 <= layers < n:
            raise ConfigError(f"keep {layers} layers: the model has {n} blocks; keep between 1 and {n - 1}")
        kept = evenly_spaced(n, layers)
    else:
        kept = list(layers)
        if not kept or len(set(kept)) != len(kept) or kept != sorted(kept) or not all(0 <= i < n for i in kept):
            raise ConfigError(f"layers {kept}: give distinct increasing block indices in 0..{n - 1}")
    new = torch.nn.ModuleList([blocks[i] for i in kept])
    for new_idx, layer in enumerate(new):
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = new_idx  # the KV cache is indexed by position in the new stack
    parent_path, _, name = path.rpartition(".")
    parent = base_model(model)
    for part in parent_path.split(".") if parent_path else []:
        parent = getattr(parent, part)
    setattr(parent, name, new)
    config = model.config
    config.num_hidden_layers = len(kept)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in kept]
    return kept
