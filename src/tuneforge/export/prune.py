"""`tuneforge prune`: magnitude pruning.

- unstructured (`--sparsity 0.5`): in every Linear layer of the transformer blocks, the smallest-magnitude half of
  the weights is set to zero (per matrix). Files stay dense safetensors; the report gives the sparsity reached.
- structured (`--mlp 0.25`): a quarter of the MLP channels of every block is removed (lowest |up row| x |down
  column| importance), so the matrices and `intermediate_size` in the saved config really shrink and the model is
  faster on any runtime.
- depth (`--layers 3`): keep 3 evenly spaced blocks: a smaller student built from its teacher.

The saved model is reloaded with plain transformers and must reproduce the pruned model's logits; with
`--tolerance` the relative perplexity change on the sample text is checked too. Recovery fine-tuning is a normal
`tuneforge train` run with `model.path` set to the pruned dir (a structured prune stays small; dense training
refills the zeros of an unstructured one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tuneforge.errors import ConfigError
from tuneforge.export.merge import default_out, save_standard
from tuneforge.export.report import measure, write_report
from tuneforge.export.source import auto_class, load_merged, open_source
from tuneforge.export.verify import (
    all_logits,
    check,
    is_causal_lm,
    load_texts,
    max_abs_diff,
    perplexity,
    sample_ids,
)
from tuneforge.models.depth import keep_layers
from tuneforge.models.load import resolve_model_path
from tuneforge.models.registry import get_layers
from tuneforge.runs import atomic_dir

Log = Callable[[str], None]


@dataclass(frozen=True)
class MlpParts:
    expand: tuple[str, ...]  # Linear layers whose output rows are the channels (up, gate)
    project: str             # Linear layer whose input columns are the channels (down)


MLP = {
    "llama": MlpParts(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),
    "mistral": MlpParts(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),
    "qwen2": MlpParts(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),
    "qwen3": MlpParts(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),
    "bert": MlpParts(("intermediate.dense",), "output.dense"),
}


def _module(root, path: str):
    for part in path.split("."):
        root = getattr(root, part)
    return root


def _set_module(root, path: str, value) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_module(root, parent) if parent else root, name, value)


def prune_unstructured(model, sparsity: float) -> int:
    """Zero the `sparsity` fraction of smallest |w| in each Linear weight inside the blocks; returns matrices done."""
    import torch

    _, layers = get_layers(model)
    if layers is None:
        raise ConfigError(f"prune: cannot find the blocks of '{model.config.model_type}'")
    done = 0
    with torch.no_grad():
        for module in (m for layer in layers for m in layer.modules() if isinstance(m, torch.nn.Linear)):
            w = module.weight
            k = int(w.numel() * sparsity)
            if k:
                cut = w.abs().flatten().kthvalue(k).values
                w.masked_fill_(w.abs() <= cut, 0.0)
                done += 1
    return done


def prune_mlp_channels(model, fraction: float, multiple: int = 8) -> tuple[int, int]:
    """Remove `fraction` of the MLP channels in every block; returns (old, new) intermediate size."""
    import torch

    parts = MLP.get(getattr(model.config, "model_type", ""))
    _, layers = get_layers(model)
    if parts is None or layers is None:
        raise ConfigError(f"structured pruning supports {', '.join(MLP)} models, not '{model.config.model_type}'")
    old = model.config.intermediate_size
    new = max(multiple, round(old * (1 - fraction) / multiple) * multiple)
    if new >= old:
        raise ConfigError(f"--mlp {fraction} removes no channel of {old} (kept {new}, rounded to {multiple})")
    with torch.no_grad():
        for layer in layers:
            down = _module(layer, parts.project)
            score = down.weight.norm(dim=0)
            for name in parts.expand:
                score = score * _module(layer, name).weight.norm(dim=1)
            keep = score.topk(new).indices.sort().values
            for name in parts.expand:
                _set_module(layer, name, _shrink(_module(layer, name), keep, dim=0))
            _set_module(layer, parts.project, _shrink(down, keep, dim=1))
    model.config.intermediate_size = new
    return old, new


def _shrink(linear, keep, dim: int):
    import torch

    out = torch.nn.Linear(linear.in_features if dim == 0 else len(keep),
                          len(keep) if dim == 0 else linear.out_features,
                          bias=linear.bias is not None, dtype=linear.weight.dtype)
    out.weight.copy_(linear.weight.index_select(dim, keep))
    if linear.bias is not None:
        out.bias.copy_(linear.bias if dim == 1 else linear.bias.index_select(0, keep))
    return out


def prune_model(source: str, out: str | None = None, sparsity: float = 0.0, mlp: float = 0.0, layers: int = 0,
                tolerance: float | None = None, sample_file: str | None = None, eval_config: str | None = None,
                latency: bool = True,
                log: Log = print) -> dict:
    """Prune, save, reload with plain transformers and check; returns the before/after report."""
    import torch

    if not (0 <= sparsity < 1 and 0 <= mlp < 1) or not (sparsity or mlp or layers):
        raise ConfigError("prune needs --sparsity or --mlp in (0, 1), or --layers N",
                          hint="e.g. --sparsity 0.5, --mlp 0.25 or --layers 3")
    src = open_source(source)
    target = default_out(source, "pruned", out)
    model, tokenizer = load_merged(src)
    rows = sample_ids(tokenizer, load_texts(sample_file))
    reference = all_logits(model, rows)
    with atomic_dir(target) as tmp:
        before = measure(model, tokenizer, resolve_model_path(src.model.path), rows, label="dense",
                         eval_config=eval_config, eval_out=tmp, template=src.template, latency=latency,
                         logits=reference, log=log)
        info = {}
        if layers:
            info["kept_layers"] = keep_layers(model, layers)
            log(f"kept blocks {info['kept_layers']}")
        if mlp:
            info["intermediate_size"] = prune_mlp_channels(model, mlp)
            log(f"MLP channels {info['intermediate_size'][0]} -> {info['intermediate_size'][1]} per block")
        if sparsity:
            info["matrices_pruned"] = prune_unstructured(model, sparsity)
        pruned = all_logits(model, rows)
        save_standard(model, tokenizer, src, tmp)
        reloaded = auto_class(tmp).from_pretrained(tmp, dtype=torch.float32, use_safetensors=True).eval()
        diff = max_abs_diff(pruned, all_logits(reloaded, rows))
        checks = {"reload_max_abs_logit_diff": {"value": diff, "tolerance": 1e-4, "ok": diff <= 1e-4}}
        if tolerance is not None and is_causal_lm(reloaded):
            rel = abs(perplexity(pruned, rows) / perplexity(reference, rows) - 1)
            checks["perplexity_rel_diff"] = {"value": rel, "tolerance": tolerance, "ok": rel <= tolerance}
        for name, c in checks.items():
            check(f"prune {name}", c["value"], c["tolerance"])
        after = measure(reloaded, tokenizer, tmp, rows, label="pruned", eval_config=eval_config, eval_out=tmp,
                        template=src.template, latency=latency, logits=pruned, log=log)
        report = write_report(tmp, "prune", source, before, after, checks,
                              {"sparsity_target": sparsity, "mlp_fraction": mlp, "layers": layers, **info}, log=log)
    log(f"wrote {target}; recover with: tuneforge train CONFIG model.path={target}")
    return report
