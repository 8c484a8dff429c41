"""`tuneforge train --dry-run`: sizes and a memory estimate before committing to a run."""

from __future__ import annotations

from tuneforge.config.schema import Config


def estimate_memory(total: int, trainable: int, bytes_per_param: int, tokens_per_batch: int, hidden: int,
                    layers: int, vocab: int, checkpointing: bool) -> dict:
    """Rough peak-memory model (MiB): weights + grads + AdamW states + activations (+ logits)."""
    mib = 1 << 20
    weights = total * bytes_per_param
    grads = trainable * bytes_per_param
    optim = trainable * 8  # two fp32 moments
    # ~ 34 * hidden bytes per token per layer for a Llama block in fp32 (saved activations), ~2 layers with ckpt.
    per_layer = 34 * hidden * tokens_per_batch * bytes_per_param / 4
    acts = per_layer * (2 if checkpointing else layers)
    logits = tokens_per_batch * vocab * 4 * 3  # logits, log-softmax, grad
    return {k: round(v / mib, 1) for k, v in
            {"weights": weights, "grads": grads, "optimizer": optim, "activations": acts, "logits": logits,
             "total": weights + grads + optim + acts + logits}.items()}


def dry_run(cfg: Config) -> dict:
    from rich.console import Console
    from rich.table import Table

    from tuneforge.models.adapters import count_parameters
    from tuneforge.train.sft import build_model, prepare_for_training
    from tuneforge.models.load import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    from tuneforge.data.load import load_datasets
    from tuneforge.data.tokenize import tokenize_samples

    train, _, report = load_datasets(cfg)
    data = tokenize_samples(train, tokenizer, cfg)
    model = prepare_for_training(build_model(cfg, tokenizer), cfg)
    total, trainable = count_parameters(model)
    lengths = data.lengths()
    p95 = int(sorted(lengths)[int(0.95 * (len(lengths) - 1))]) if len(lengths) else 0
    conf = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    bpp = next(model.parameters()).element_size()
    mem = estimate_memory(total, trainable, bpp, cfg.train.batch_size * p95, getattr(conf, "hidden_size", 0),
                          getattr(conf, "num_hidden_layers", 0), getattr(conf, "vocab_size", 0),
                          cfg.train.gradient_checkpointing)
    out = {"parameters": total, "trainable_parameters": trainable,
           "trainable_percent": round(100 * trainable / max(total, 1), 4), "train_samples": len(data),
           "train_tokens": int(lengths.sum()), "memory_estimate_mib": mem}
    t = Table(title="dry run", show_header=False)
    for k, v in out.items():
        t.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    Console().print(t)
    return out
