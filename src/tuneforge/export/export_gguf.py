"""`tuneforge export --format gguf`: merge (if an adapter), write the GGUF + Modelfile, load it back, compare.

Checks: float32 files must match the source logits (max abs diff, default tolerance 1e-3); other types must keep
perplexity on the sample text within a relative tolerance (default 1 % for f16/bf16/q8_0, 5 % for q5, 10 % for q4).
The tokenizer rebuilt from the file must tokenize the sample text like the source tokenizer (mismatches counted).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from tuneforge.data.templates import stop_token_ids
from tuneforge.export.gguf import QUANTS, check_supported, write_gguf
from tuneforge.export.merge import default_out
from tuneforge.export.modelfile import modelfile, template_family
from tuneforge.export.report import measure, write_report
from tuneforge.export.source import chat_template, load_merged, open_source
from tuneforge.export.verify import (
    all_logits,
    check,
    load_texts,
    max_abs_diff,
    perplexity,
    sample_ids,
)
from tuneforge.models.load import resolve_model_path
from tuneforge.runs import atomic_dir

Log = Callable[[str], None]
PPL_TOLERANCE = {"f16": 0.01, "bf16": 0.01, "q8_0": 0.01, "q5_0": 0.05, "q5_1": 0.05, "q4_0": 0.10, "q4_1": 0.10}


def export_gguf(source: str, out: str | None = None, quant: str = "f16", tolerance: float | None = None,
                sample_file: str | None = None, eval_config: str | None = None,
                latency: bool = True, log: Log = print) -> dict:
    """Write `<out>/model-<quant>.gguf` + `Modelfile` + report; raises VerificationError above tolerance."""
    src = open_source(source)
    target = default_out(source, f"gguf-{quant}", out)
    model, tokenizer = load_merged(src)
    check_supported(model, tokenizer, quant)
    rows = sample_ids(tokenizer, load_texts(sample_file))
    reference = all_logits(model, rows)
    name = f"model-{quant}.gguf"
    template = chat_template(src, tokenizer)
    stops = stop_token_ids(tokenizer, src.template)
    with atomic_dir(target) as tmp:
        before = measure(model, tokenizer, resolve_model_path(src.model.path), rows, label="hf float32",
                         eval_config=eval_config, eval_out=tmp, template=src.template, latency=latency,
                         logits=reference, log=log)
        counts = write_gguf(model, tokenizer, tmp / name, quant, template, src.label, stops)
        family = template_family(src.template, template)
        stop_text = [tokenizer.convert_ids_to_tokens(i) for i in stops]
        (tmp / "Modelfile").write_text(modelfile(name, family, src.system, stop_text,
                                                 getattr(model.config, "max_position_embeddings", None)),
                                       encoding="utf-8")
        loaded, gguf_tok = load_gguf(tmp, name)
        logits = all_logits(loaded, rows)
        diff = max_abs_diff(reference, logits)
        checks = {}
        if quant == "f32":
            tol = 1e-3 if tolerance is None else tolerance
            checks["max_abs_logit_diff"] = {"value": diff, "tolerance": tol, "ok": diff <= tol}
        else:
            tol = PPL_TOLERANCE[quant] if tolerance is None else tolerance
            rel = abs(perplexity(logits, rows) / perplexity(reference, rows) - 1)
            checks["perplexity_rel_diff"] = {"value": rel, "tolerance": tol, "ok": rel <= tol}
        mismatches = tokenizer_mismatches(tokenizer, gguf_tok, load_texts(sample_file))
        log(f"gguf {quant} vs source: max abs logit diff {diff:.3g}; tokenizer mismatches "
            f"{mismatches}/{len(load_texts(sample_file))} texts; tensors {counts}")
        llama_cpp = llama_cpp_diff(tmp / name, rows, reference)
        if llama_cpp is not None:
            log(f"llama.cpp vs source: max abs logit diff {llama_cpp:.3g}")
        for check_name, c in checks.items():
            check(f"gguf {quant} {check_name}", c["value"], c["tolerance"])
        after = measure(loaded, tokenizer, tmp / name, rows, label=f"gguf {quant}", eval_config=eval_config,
                        eval_out=tmp, template=src.template, latency=latency, logits=logits, log=log)
        report = write_report(tmp, f"export gguf {quant}", source, before, after, checks,
                              {"max_abs_logit_diff": diff, "tensor_types": counts, "template_family": family,
                               "tokenizer_mismatches": mismatches, "llama_cpp_max_abs_logit_diff": llama_cpp},
                              log=log)
    log(f"wrote {target / name} and {target / 'Modelfile'}")
    return report


def load_gguf(folder: Path, name: str):
    """The file as transformers reads it (de-quantized to float32), and the tokenizer rebuilt from it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=name)


def tokenizer_mismatches(source_tok, gguf_tok, texts: list[str]) -> int:
    """How many texts the GGUF tokenizer splits differently from the source tokenizer."""
    def ids(tok, text):
        return tok(text, add_special_tokens=False)["input_ids"]

    return sum(ids(source_tok, t) != ids(gguf_tok, t) for t in texts)


def llama_cpp_diff(path: Path, rows, reference) -> float | None:
    """Max abs logit diff through llama.cpp itself (only when llama-cpp-python is installed)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    import numpy as np
    import torch
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=max(len(r) for r in rows) + 8, logits_all=True, verbose=False)
    worst = 0.0
    for r, ref in zip(rows, reference):
        llm.reset()
        llm.eval(list(r))
        got = torch.from_numpy(np.array(llm.scores[: len(r)], dtype=np.float32))
        worst = max(worst, float((got[:, : ref.shape[-1]] - ref[:, : got.shape[-1]]).abs().max()))
    return worst


__all__ = ["QUANTS", "export_gguf"]
