"""`tuneforge merge`: merge fine-tunes of one base model: linear, SLERP, task arithmetic, TIES, DARE.

Why not mergekit: it pins its own torch/transformers/peft ranges and brings a second model-loading stack; the
math is small. Task-vector methods (task_arithmetic, ties, dare_linear, dare_ties) use peft's
`peft.utils.merge_utils` (the same functions behind `add_weighted_adapter`) on full weights: each source
(model, adapter merged into its base, or run dir) becomes `theta_i - theta_base`, the combined vector is added to
the base. Linear averages the weights (normalised); SLERP interpolates two models along the sphere per tensor.

Sources must share the architecture, tensor names and shapes (one line names the first mismatch). The result is
saved, reloaded with plain transformers, checked finite, and must generate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tuneforge.config.schema import ModelConfig
from tuneforge.errors import ConfigError
from tuneforge.export.merge import save_standard
from tuneforge.export.report import write_report
from tuneforge.export.source import Source, auto_class, load_merged, open_source
from tuneforge.export.verify import (
    SAMPLE_TEXTS,
    VerificationError,
    all_logits,
    perplexity,
    sample_ids,
    weight_stats,
)
from tuneforge.models.load import adapter_base
from tuneforge.runs import atomic_dir

Log = Callable[[str], None]
TASK_VECTOR_METHODS = ("task_arithmetic", "ties", "dare_linear", "dare_ties")
METHODS = ("linear", "slerp", *TASK_VECTOR_METHODS)


def _source(path: str, base: str | None) -> Source:
    """A run dir / model dir, or a bare adapter dir (on --base, else the base named in its adapter_config)."""
    p = Path(path)
    if (p / "adapter_config.json").is_file() and not (p / "config.yaml").is_file():
        base_name = base or adapter_base(str(p))  # the recorded base (built-in / local path), else the hub id
        if not base_name:
            raise ConfigError(f"adapter {path} does not name its base", hint="pass --base")
        return Source(ModelConfig(path=base_name, adapter=str(p), dtype="float32"), label=p.name)
    return open_source(path)


def _base_path(sources: list[Source], base: str | None) -> str | None:
    if base:
        return base
    bases = {s.model.path for s in sources if s.has_adapter}
    return bases.pop() if len(bases) == 1 and all(s.has_adapter for s in sources) else None


def _weights_of(src: Source) -> tuple[dict, object, object]:
    model, tokenizer = load_merged(src)
    return {k: v.detach().float().clone() for k, v in model.state_dict().items()}, model, tokenizer


def check_compatible(names: list[str], states: list[dict], types: list[str]) -> None:
    """Refuse, in one line, sources that are not fine-tunes of one architecture."""
    for name, state, mtype in zip(names[1:], states[1:], types[1:]):
        if mtype != types[0]:
            raise ConfigError(f"cannot merge {names[0]} ({types[0]}) with {name} ({mtype}): different architectures")
        missing = sorted(set(states[0]) ^ set(state))
        if missing:
            raise ConfigError(f"cannot merge {names[0]} with {name}: tensor '{missing[0]}' is only in one of them")
        for key, tensor in states[0].items():
            if state[key].shape != tensor.shape:
                raise ConfigError(f"cannot merge {names[0]} with {name}: '{key}' has shape {tuple(tensor.shape)} "
                                  f"vs {tuple(state[key].shape)}")


def slerp(a, b, t: float, eps: float = 1e-8):
    """Spherical interpolation of two tensors (linear when they are almost parallel)."""
    import torch

    va, vb = a.flatten(), b.flatten()
    na, nb = va.norm(), vb.norm()
    if na < eps or nb < eps:
        return (1 - t) * a + t * b
    cos = torch.clamp(torch.dot(va / na, vb / nb), -1.0, 1.0)
    if 1 - cos.abs() < 1e-6:
        return (1 - t) * a + t * b
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def combine(method: str, states: list[dict], weights: list[float], base: dict | None, t: float,
            density: float) -> dict:
    """The merged state dict."""
    import torch
    from peft.utils import merge_utils

    merged = {}
    w = torch.tensor(weights, dtype=torch.float32)
    for key in states[0]:
        tensors = [s[key] for s in states]
        if not tensors[0].is_floating_point():
            merged[key] = tensors[0]
        elif method == "linear":
            merged[key] = sum(wi * x for wi, x in zip((w / w.sum()).tolist(), tensors))
        elif method == "slerp":
            merged[key] = slerp(tensors[0], tensors[1], t)
        else:
            deltas = [x - base[key] for x in tensors]
            if method == "task_arithmetic":
                delta = merge_utils.task_arithmetic(deltas, w)
            elif method in ("ties", "dare_ties"):
                delta = getattr(merge_utils, method)(deltas, w, density)
            else:
                delta = merge_utils.dare_linear(deltas, w, density)
            merged[key] = base[key] + delta
    return merged


def merge_models(sources: list[str], out: str, method: str = "linear", weights: list[float] | None = None,
                 base: str | None = None, t: float = 0.5, density: float = 0.5, seed: int = 0,
                 log: Log = print) -> dict:
    """Merge, save to `out`, reload, check finite + generates; returns the report."""
    import torch

    if method not in METHODS:
        raise ConfigError(f"unknown merge method '{method}'", hint=f"choose from {', '.join(METHODS)}")
    if len(sources) < 2:
        raise ConfigError("merge needs at least two sources")
    if method == "slerp" and len(sources) != 2:
        raise ConfigError(f"slerp merges exactly two models, got {len(sources)}")
    if weights is not None and len(weights) != len(sources):
        raise ConfigError(f"{len(weights)} --weight values for {len(sources)} sources")
    if not 0 < density <= 1 or not 0 <= t <= 1:
        raise ConfigError("--density must be in (0, 1] and --t in [0, 1]")
    srcs = [_source(s, base) for s in sources]
    base_path = _base_path(srcs, base)
    if method in TASK_VECTOR_METHODS and base_path is None:
        raise ConfigError(f"{method} needs the common base model", hint="pass --base MODEL_DIR")
    loaded = [_weights_of(s) for s in srcs]
    states = [x[0] for x in loaded]
    types = [getattr(x[1].config, "model_type", "?") for x in loaded]
    check_compatible(sources, states, types)
    base_state = None
    if method in TASK_VECTOR_METHODS:
        base_state, base_model, _ = _weights_of(Source(ModelConfig(path=base_path, dtype="float32")))
        check_compatible([base_path, *sources], [base_state, *states],
                         [getattr(base_model.config, "model_type", "?"), *types])
    torch.manual_seed(seed)  # DARE drops at random
    merged = combine(method, states, weights or [1.0] * len(states), base_state, t, density)
    model, tokenizer = loaded[0][1], loaded[0][2]
    rows = sample_ids(tokenizer, SAMPLE_TEXTS)
    before = [{"label": s, **weight_stats(m), "perplexity": round(perplexity(all_logits(m, rows), rows), 4)}
              for s, (_, m, _) in zip(sources, loaded)]
    model.load_state_dict(merged, strict=False)
    target = Path(out)
    with atomic_dir(target) as tmp:
        save_standard(model, tokenizer, srcs[0], tmp)
        reloaded = auto_class(tmp).from_pretrained(tmp, dtype=torch.float32, use_safetensors=True).eval()
        bad = [k for k, v in reloaded.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise VerificationError(f"merged tensor '{bad[0]}' has NaN/inf ({len(bad)} tensors); output not written")
        logits = all_logits(reloaded, rows)
        generated = _generate(reloaded, tokenizer)
        after = {"label": f"merged ({method})", **weight_stats(reloaded),
                 "perplexity": round(perplexity(logits, rows), 4), "sample": generated}
        report = write_report(tmp, f"merge {method}", ", ".join(sources), before[0], after,
                              {"finite": {"value": 0.0, "tolerance": 0.0, "ok": True}},
                              {"method": method, "weights": weights, "t": t, "density": density, "seed": seed,
                               "base": base_path, "sources": before}, log=log)
    log(f"wrote {target}")
    return report


def _generate(model, tokenizer) -> str:
    """A few greedy tokens: the merged model must still run generation end to end."""
    import torch

    prompt = tokenizer(SAMPLE_TEXTS[0][:40], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    if out.shape[1] <= prompt.shape[1]:
        raise VerificationError("the merged model generated no token")
    return tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
