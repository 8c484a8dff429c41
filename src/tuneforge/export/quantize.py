"""`tuneforge quantize`: post-training weight-only quantization with torchao, saved as safetensors that plain
`transformers.from_pretrained` loads (torchao installed), checked by perplexity against the float32 source.

int8: per-output-channel symmetric int8 weights for every Linear layer. Everything else (embeddings, norms) is
stored in `--dtype` (default bfloat16: SmolLM2-135M's file is 0.30x of float32; float32 storage gives 0.41x).
The embeddings are not quantized: a tied embedding / LM head (SmolLM2, Llama 3.2, small Qwen2) quantized by torchao
does not reload with transformers (its tie check calls `torch.equal`, which torchao's int8 embedding tensor lacks).
Storage is not compute: the checks here load the file the way `tuneforge eval` / `chat` do on this machine,
float32 on CPU (bfloat16 matmuls run ~5x slower than float32 on CPUs without AVX512-BF16/AMX; the bfloat16 parts
widen exactly), bfloat16 on a GPU.
int4: grouped int4 weights (torchao's `IntxWeightOnlyConfig`, which runs on CPU). Activations stay in floating point.
QLoRA (4-bit bitsandbytes training) is `model.quantization` in training, not this command.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.export.merge import default_out, save_standard
from tuneforge.export.report import measure, write_report
from tuneforge.export.source import auto_class, load_merged, open_source
from tuneforge.export.verify import (
    all_logits,
    check,
    is_causal_lm,
    load_texts,
    path_size,
    perplexity,
    sample_ids,
)
from tuneforge.models.load import resolve_model_path, torch_dtype
from tuneforge.runs import atomic_dir

Log = Callable[[str], None]
DEFAULT_TOLERANCE = {8: 0.02, 4: 0.10}  # max relative perplexity change on the sample text


def torchao_config(bits: int, group_size: int):
    """The transformers `TorchAoConfig` for int8 / int4 weight-only quantization."""
    if importlib.util.find_spec("torchao") is None:
        raise ModelLoadError("quantize needs torchao", hint="pip install torchao, the quant extra")
    import torch
    from torchao.quantization import (
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        PerGroup,
    )
    from transformers import TorchAoConfig

    if bits == 8:
        # Linear layers only (see the module docstring for why the embeddings are left alone)
        return TorchAoConfig(Int8WeightOnlyConfig(version=2))
    if bits == 4:
        return TorchAoConfig(IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size)))
    raise ConfigError(f"--bits {bits} is not supported", hint="8 or 4")


def quantize_model(source: str, out: str | None = None, bits: int = 8, group_size: int = 32,
                   dtype: str = "bfloat16",
                   tolerance: float | None = None, sample_file: str | None = None, eval_config: str | None = None,
                latency: bool = True,
                   log: Log = print) -> dict:
    """Merge (if an adapter), save float, re-load it quantized, save, reload from disk and compare perplexity."""
    import torch

    if dtype not in ("float32", "bfloat16"):  # before torchao is even looked for
        raise ConfigError(f"unknown --dtype '{dtype}'", hint="bfloat16 or float32")
    qcfg = torchao_config(bits, group_size)
    keep = getattr(torch, dtype)  # storage of the unquantized parts
    compute = torch_dtype("auto")  # what eval / chat load it in on this machine
    tolerance = DEFAULT_TOLERANCE[bits] if tolerance is None else tolerance
    src = open_source(source)
    target = default_out(source, f"int{bits}", out)
    model, tokenizer = load_merged(src)
    rows = sample_ids(tokenizer, load_texts(sample_file))
    reference = all_logits(model, rows)
    with atomic_dir(target) as tmp:
        before = measure(model, tokenizer, resolve_model_path(src.model.path), rows, label="float32",
                         eval_config=eval_config, eval_out=tmp, template=src.template, latency=latency,
                         logits=reference, log=log)
        plain = tmp / ".float"
        save_standard(model, tokenizer, src, plain)  # torchao quantizes while loading a checkpoint
        # the size to beat is this float32 checkpoint, not the source dir (an adapter, or a base stored in bf16)
        before["file_bytes"] = path_size(plain)
        del model
        cls = auto_class(plain)
        quantized = cls.from_pretrained(plain, quantization_config=qcfg, dtype=keep)
        quantized.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        import shutil

        shutil.rmtree(plain)
        reloaded = cls.from_pretrained(tmp, dtype=compute).eval()
        checks, logits = {}, None
        if is_causal_lm(reloaded):
            logits = all_logits(reloaded, rows)
            rel = abs(perplexity(logits, rows) / perplexity(reference, rows) - 1)
            checks["perplexity_rel_diff"] = {"value": rel, "tolerance": tolerance, "ok": rel <= tolerance}
            log(f"int{bits} vs float32: perplexity changed by {rel:.2%} on {len(rows)} samples")
        for name, c in checks.items():
            check(f"int{bits} {name}", c["value"], c["tolerance"])
        after = measure(reloaded, tokenizer, tmp, rows, label=f"int{bits}", eval_config=eval_config, eval_out=tmp,
                        template=src.template, latency=latency, logits=logits, log=log)
        report = write_report(tmp, f"quantize int{bits}", source, before, after, checks,
                              {"bits": bits, "group_size": group_size if bits == 4 else None, "dtype": dtype,
                               "checked_in": str(compute).removeprefix("torch.")},
                              log=log)
    log(f"wrote {target} (loads with transformers.AutoModel*.from_pretrained when torchao is installed)")
    return report
