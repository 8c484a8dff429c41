"""Commands that compress or convert a trained model: `export` (hf / gguf), `quantize`, `prune`, `merge`.

Each one verifies its result (logit difference, perplexity on sample text) and exits non-zero above tolerance,
writing nothing; each writes `export_report.json` + `export_report.md` next to its output.
"""

from __future__ import annotations

import typer

from tuneforge.cli._app import app, guarded, split_list

SAMPLE_HELP = "Held-out text (.txt paragraphs or .jsonl `text`) for the checks; default: built-in samples."
LATENCY_HELP = "Measure ms per generated token before and after (greedy, batch 1)."
EVAL_HELP = "A config with an `eval:` section; its tasks run before and after (tuneforge eval underneath)."


@app.command()
def export(
    source: str = typer.Argument(..., help="Run dir (adapter/ or model/), or a model dir."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output dir (default RUN/export/<format>)."),
    fmt: str = typer.Option("hf", "--format", "-f", help="hf (safetensors) or gguf (llama.cpp / Ollama)."),
    dtype: str = typer.Option("float32", help="hf: float32 | float16 | bfloat16."),
    quant: str = typer.Option("f16", help="gguf: f32 | f16 | bf16 | q8_0 | q5_1 | q5_0 | q4_1 | q4_0."),
    tolerance: float | None = typer.Option(None, help="Max abs logit diff (float32) or relative perplexity change."),
    sample_file: str | None = typer.Option(None, help=SAMPLE_HELP),
    eval_config: str | None = typer.Option(None, help=EVAL_HELP),
    latency: bool = typer.Option(True, "--latency/--no-latency", help=LATENCY_HELP),
) -> None:
    """Merge an adapter into its base (hf) or write a GGUF + Ollama Modelfile, then prove it matches."""
    if fmt == "gguf":
        from tuneforge.export.export_gguf import export_gguf

        guarded(export_gguf, source, out, quant=quant, tolerance=tolerance, sample_file=sample_file,
                eval_config=eval_config, latency=latency)
    elif fmt == "hf":
        from tuneforge.export.merge import export_hf

        kwargs = {} if tolerance is None else {"tolerance": tolerance, "ppl_tolerance": tolerance}
        guarded(export_hf, source, out, dtype=dtype, sample_file=sample_file, eval_config=eval_config, latency=latency,
                **kwargs)
    else:
        from tuneforge.cli._app import fail
        from tuneforge.errors import ConfigError

        fail(ConfigError(f"unknown --format '{fmt}'", hint="hf or gguf"))


@app.command()
def quantize(
    source: str = typer.Argument(..., help="Run dir or model dir."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output dir (default RUN/export/int<bits>)."),
    bits: int = typer.Option(8, help="8 (int8 weight-only, per channel) or 4 (int4 weight-only, grouped)."),
    group_size: int = typer.Option(32, help="int4: weights per scale."),
    dtype: str = typer.Option("bfloat16", help="Storage of the parts left unquantized (embeddings, norms): "
                              "bfloat16 (smaller file) or float32. Loading dtype stays the user's (float32 on CPU)."),
    tolerance: float | None = typer.Option(None, help="Max relative perplexity change (default 0.02 int8, 0.1 int4)."),
    sample_file: str | None = typer.Option(None, help=SAMPLE_HELP),
    eval_config: str | None = typer.Option(None, help=EVAL_HELP),
    latency: bool = typer.Option(True, "--latency/--no-latency", help=LATENCY_HELP),
) -> None:
    """Post-training weight-only quantization (torchao) that plain transformers loads; checked by perplexity."""
    from tuneforge.export.quantize import quantize_model

    guarded(quantize_model, source, out, bits=bits, group_size=group_size, dtype=dtype, tolerance=tolerance,
            sample_file=sample_file, eval_config=eval_config, latency=latency)


@app.command()
def prune(
    source: str = typer.Argument(..., help="Run dir or model dir."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output dir (default RUN/export/pruned)."),
    sparsity: float = typer.Option(0.0, help="Unstructured: fraction of each layer's weights set to zero."),
    mlp: float = typer.Option(0.0, help="Structured: fraction of MLP channels removed (matrices really shrink)."),
    layers: int = typer.Option(0, help="Depth: keep this many evenly spaced blocks (e.g. a student of half depth)."),
    tolerance: float | None = typer.Option(None, help="Max relative perplexity change (causal LMs)."),
    sample_file: str | None = typer.Option(None, help=SAMPLE_HELP),
    eval_config: str | None = typer.Option(None, help=EVAL_HELP),
    latency: bool = typer.Option(True, "--latency/--no-latency", help=LATENCY_HELP),
) -> None:
    """Magnitude pruning (unstructured zeros, or structured MLP channels); recover with `tuneforge train`."""
    from tuneforge.export.prune import prune_model

    guarded(prune_model, source, out, sparsity=sparsity, mlp=mlp, layers=layers, tolerance=tolerance,
            sample_file=sample_file,
            eval_config=eval_config, latency=latency)


@app.command()
def merge(
    sources: list[str] = typer.Argument(..., help="Run dirs, model dirs or adapter dirs of the same base."),
    out: str = typer.Option(..., "--out", "-o", help="Output dir."),
    method: str = typer.Option("linear", help="linear | slerp | ties | dare_linear | dare_ties | task_arithmetic."),
    weights: list[str] | None = typer.Option(None, "--weight", help="One weight per source (comma list ok)."),
    base: str | None = typer.Option(None, help="Common base model (default: the adapters' base)."),
    t: float = typer.Option(0.5, help="slerp: interpolation factor (0 = first source, 1 = second)."),
    density: float = typer.Option(0.5, help="ties / dare: fraction of each task vector kept."),
    seed: int = typer.Option(0, help="dare: seed of the random drop."),
) -> None:
    """Merge fine-tunes of one base (linear, SLERP, TIES, DARE); the result is checked finite, loads and generates."""
    from tuneforge.export.merge_models import merge_models

    guarded(merge_models, sources, out, method=method, weights=[float(w) for w in split_list(weights)] or None,
            base=base, t=t, density=density, seed=seed)
