"""`tuneforge compare-approaches`: encoder vs decoder, features vs fine-tuning vs prompting, on the user's data."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import app, guarded, split_list


@app.command("compare-approaches")
def compare_approaches(
    config: str = typer.Argument(..., help="A classification (stage cls), extractive QA (qa) or translation "
                                           "(seq2seq) config with a held-out split, e.g. examples/sentiment_minilm.yaml."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides like data.train.0.max_samples=500."),
    approaches: Optional[list[str]] = typer.Option(
        None, "--approaches", "-a", help="Subset, comma-separated or repeated: features, full, lora, zero_shot, "
                                         "few_shot, sft_lora, decoder_cls; qa: span_head, zero_shot, few_shot, "
                                         "sft_lora; seq2seq: seq2seq and the same three (default: all)."),
    decoder: str = typer.Option("builtin:smollm2", "--decoder", help="Decoder LM for the decoder routes."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output dir (default: <output.dir>/compare-<name>)."),
    shots: int = typer.Option(4, "--shots", help="Examples in context for few_shot."),
    label_words: Optional[list[str]] = typer.Option(
        None, "--label-words", help="Words the decoder routes use per label, in label order (default: the names)."),
    decoder_examples: Optional[int] = typer.Option(
        None, "--decoder-examples", help="Training examples for the decoder routes that train (sft_lora, "
                                         "decoder_cls): a budget, as train.max_steps (default: the config's epochs)."),
) -> None:
    """Run and score every route on the same held-out split; one markdown table (winner per column), JSON, PNG.

    Classification: encoder features / full / LoRA vs decoder prompting, SFT and a classification head. Extractive
    QA and translation: the config's own model (span head, encoder-decoder) vs decoder zero-shot, few-shot and LoRA
    SFT, scored with SQuAD EM / F1 or BLEU / chrF."""
    from tuneforge.train.compare import compare_cli

    guarded(compare_cli, config, overrides or [], split_list(approaches) or None, decoder, out, shots,
            split_list(label_words) or None, decoder_examples)
