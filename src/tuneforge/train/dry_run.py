"""`tuneforge train --dry-run`: sizes and a peak-memory estimate before committing to a run.

The estimate starts from what this process holds after loading data and model (libraries + weights + data,
measured), then adds what training will allocate: gradients, AdamW moments, activations saved for backward, the
backward pass's working set and the output-head logits. Activations follow a Llama-style block in the model's
dtype; the micro-batch is sized as training will size it (padded rows, a packed row, or a token budget) at the
95th-percentile sample length.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import numpy as np

from tuneforge.config.schema import Config
from tuneforge.models.adapters import count_parameters
from tuneforge.models.registry import base_model

MIB = 1 << 20


@dataclass
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


def model_shape(model) -> Shape:
    base = base_model(model)
    c = base.config
    c = getattr(c, "text_config", None) or c
    hidden = getattr(c, "hidden_size", 0) or 0
    heads = getattr(c, "num_attention_heads", 1) or 1
    return Shape(hidden=hidden, intermediate=getattr(c, "intermediate_size", 4 * hidden) or 4 * hidden,
                 layers=getattr(c, "num_hidden_layers", 0) or 0, heads=heads,
                 kv_heads=getattr(c, "num_key_value_heads", heads) or heads,
                 head_dim=getattr(c, "head_dim", None) or hidden // heads, vocab=getattr(c, "vocab_size", 0) or 0)


def activation_floats_per_token(s: Shape) -> int:
    """Values one decoder layer keeps for backward, per token (norm inputs/outputs, q/k/v before and after rotary,
    attention output, MLP gate/up/activation/product)."""
    q = s.heads * s.head_dim
    kv = s.kv_heads * s.head_dim
    return 5 * s.hidden + 2 * q + 3 * kv + 4 * s.intermediate


def micro_batch_tokens(cfg: Config, packing: bool, lengths: np.ndarray) -> tuple[int, str]:
    """Tokens one forward pass will hold, and how that number was chosen."""
    t = cfg.train
    p95 = int(np.percentile(lengths, 95)) if len(lengths) else 0
    if t.batch_tokens:
        return t.batch_tokens, f"token budget {t.batch_tokens}"
    if packing:
        return t.batch_size * p95, f"packed row of {t.batch_size} samples at p95 length {p95}"
    padded = -(-p95 // 8) * 8
    return t.batch_size * padded, f"{t.batch_size} rows padded to {padded} (p95)"


def estimate_memory(shape: Shape, total: int, trainable: int, bytes_per_param: int, tokens: int,
                    target_fraction: float, cfg: Config, resident_mib: float) -> dict:
    """Peak-memory model in MiB: measured resident set + grads + AdamW + activations (+ backward) + logits."""
    t = cfg.train
    grads = trainable * bytes_per_param
    optim = trainable * 8 if "adamw" in t.optim or "adam" in t.optim else trainable * 4
    per_layer = activation_floats_per_token(shape) * tokens * bytes_per_param
    # Checkpointing keeps each layer's input and re-runs one layer at a time in backward.
    acts = (shape.layers * shape.hidden * tokens * bytes_per_param + per_layer) if t.gradient_checkpointing \
        else shape.layers * per_layer
    # Backward allocates the activations' gradients while the saved activations are still alive, and the CPU
    # allocator keeps freed blocks: measured peaks (tiny Llama, 660-2640 tokens, LoRA and full) sit near
    # 2x the saved activations. With checkpointing, the re-run layer and its gradients.
    backward = 2 * per_layer if t.gradient_checkpointing else acts
    kept = tokens * target_fraction  # logits only where there is a target (train/loss.py)
    rows = min(kept, t.loss_chunk_size) if t.loss_chunk_size else kept
    logits = rows * shape.vocab * 4 * 3  # logits, softmax, their gradient (fp32)
    parts = {"resident_now (libraries, weights, data)": resident_mib * MIB, "gradients": grads,
             "optimizer_states": optim, "activations": acts, "backward_working_set": backward, "logits": logits}
    out = {k: round(v / MIB, 1) for k, v in parts.items()}
    out["estimated_peak"] = round(sum(parts.values()) / MIB, 1)
    return out


def hints(cfg: Config, packing: bool, mem: dict, shape: Shape, tokens: int, bytes_per_param: int) -> list[str]:
    out = []
    if not cfg.train.gradient_checkpointing and mem["activations"] > 1024:
        kept = (shape.layers * shape.hidden + 3 * activation_floats_per_token(shape)) * tokens * bytes_per_param / MIB
        saved = mem["activations"] + mem["backward_working_set"] - kept
        out.append(f"train.gradient_checkpointing=true would save about {saved:,.0f} MiB (about 25% slower on CPU)")
    if not cfg.train.loss_chunk_size and mem["logits"] > 512:
        out.append(f"train.loss_chunk_size=1024 would cut the {mem['logits']:,.0f} MiB of logits to "
                   f"{1024 * shape.vocab * 12 / MIB:,.0f} MiB")
    if not packing:
        out.append("data.packing=true trains padding-free (faster, less memory, same loss)")
    return out


def _resident_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dry_run(stage, cfg: Config) -> dict:
    """Load data and model the way `stage` (a language-model stage: sft, pt) trains them, then estimate."""
    from rich.console import Console
    from rich.table import Table

    tokenizer = stage.load_tokenizer(cfg)  # with the template's special tokens, as training would
    data, _, _ = stage.build_data(cfg, tokenizer)
    model, new_token_ids = stage.build_model(cfg, tokenizer)
    model, packing = stage.prepare_model(model, cfg, new_token_ids)
    total, trainable = count_parameters(model)
    lengths = data.lengths()
    shape = model_shape(model)
    bpp = next(model.parameters()).element_size()
    tokens, how = micro_batch_tokens(cfg, packing, lengths)
    frac = data.stats.get("trained_tokens", 0) / max(int(lengths.sum()), 1)
    import transformers.trainer  # noqa: F401  (training holds it too: ~90 MiB of libraries)

    mem = estimate_memory(shape, total, trainable, bpp, tokens, frac, cfg, _resident_mib())
    out = {"parameters": total, "trainable_parameters": trainable,
           "trainable_percent": round(100 * trainable / max(total, 1), 4), "train_samples": len(data),
           "train_tokens": int(lengths.sum()), "target_token_fraction": round(frac, 3),
           "packing": packing, "micro_batch_tokens": tokens, "micro_batch": how, "memory_estimate_mib": mem,
           "hints": hints(cfg, packing, mem, shape, tokens, bpp)}
    table = Table(title="dry run", show_header=False)
    for k, v in out.items():
        if k in ("memory_estimate_mib", "hints"):
            continue
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    for k, v in mem.items():
        table.add_row(f"memory: {k}", f"{v:,.0f} MiB")
    console = Console()
    console.print(table)
    for h in out["hints"]:
        console.print(f"hint: {h}")
    return out
