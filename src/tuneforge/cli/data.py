"""Data hygiene commands: `decontam`, `data dedup`, `data filter` (the jobs live in tuneforge.data.hygiene)."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import app, data_app, guarded, split_list


@app.command("decontam")
def decontam(
    train: list[str] = typer.Option(..., "--train", help="Training data: file, directory or config .yaml."),
    against: Optional[list[str]] = typer.Option(None, "--against", help="Benchmark file/dir (repeatable or "
                                                "comma-separated); default: the config's decontaminate_against."),
    method: str = typer.Option("exact,ngram,embedding", "--method", help="Candidate searches to run."),
    threshold: Optional[float] = typer.Option(None, help="Cosine at which an embedding neighbour with the same "
                                              "answer counts as a rewording (default 0.75)."),
    ngram: Optional[int] = typer.Option(None, help="Word n-gram size of the unique n-gram search (default 8)."),
    model: str = typer.Option("builtin:minilm", help="sentence-transformers model dir (default: packaged "
                              "all-MiniLM-L6-v2)."),
    field: Optional[str] = typer.Option(None, "--field", help="Benchmark text fields QUESTION[:ANSWER], dotted "
                                        "paths (e.g. question.stem)."),
    train_field: Optional[str] = typer.Option(None, "--train-field", help="Training text fields QUESTION[:ANSWER]."),
    index: str = typer.Option("auto", help="auto | flat (exact) | hnsw (approximate) | brute (numpy)."),
    k: int = typer.Option(5, help="Nearest benchmark questions checked per training record."),
    keep_similar: bool = typer.Option(False, "--keep-similar", help="Keep similar-but-different records (the "
                                      "question's template with another answer or numbers)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output dir (default ./<train>_decontam)."),
    cache_dir: Optional[str] = typer.Option(None, help="Embedding cache dir (default ~/.cache/tuneforge/embeddings)."),
) -> None:
    """Remove benchmark items leaked into training data (stem, choices, answer, unique n-grams, embeddings)."""
    from tuneforge.data.hygiene import run_decontam

    guarded(run_decontam, split_list(train), split_list(against), split_list([method]), threshold, ngram, model,
            field, train_field, index, k, keep_similar, out, cache_dir)


@data_app.command("dedup")
def data_dedup(
    inputs: list[str] = typer.Argument(..., help="Data file(s), directory or config .yaml."),
    method: str = typer.Option("exact,minhash", "--method", help="exact, minhash and/or embedding."),
    threshold: Optional[float] = typer.Option(None, help="Near-duplicate threshold (default: Jaccard 0.8 for "
                                              "minhash, cosine 0.95 for embedding)."),
    field: Optional[str] = typer.Option(None, "--field", help="Text fields QUESTION[:ANSWER]."),
    model: str = typer.Option("builtin:minilm", help="Embedding model for --method embedding."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output dir (default ./<input>_dedup)."),
    cache_dir: Optional[str] = typer.Option(None, help="Embedding cache dir."),
) -> None:
    """Remove exact and near-duplicate records inside a dataset (keeps the first occurrence)."""
    from tuneforge.data.hygiene import run_dedup

    guarded(run_dedup, inputs, split_list([method]), threshold, field, model, out, cache_dir)


@data_app.command("filter")
def data_filter(
    inputs: list[str] = typer.Argument(..., help="Data file(s), directory or config .yaml."),
    min_answer_chars: int = typer.Option(1, help="Drop answers shorter than this (1 = drop empty answers)."),
    min_question_chars: int = typer.Option(1, help="Drop questions shorter than this."),
    max_chars: Optional[int] = typer.Option(None, help="Drop records longer than this (question + answer)."),
    min_words: Optional[int] = typer.Option(None, help="Drop records with fewer words (question + answer)."),
    lang: Optional[str] = typer.Option(None, help="Keep only this language (ISO 639-1, e.g. en; py3langid)."),
    garbled: bool = typer.Option(True, "--garbled/--no-garbled", help="Drop garbled text (mojibake, U+FFFD...)."),
    field: Optional[str] = typer.Option(None, "--field", help="Text fields QUESTION[:ANSWER]."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output dir (default ./<input>_filtered)."),
) -> None:
    """Quality filters: empty/short/long records, garbled responses, language id."""
    from tuneforge.data.hygiene import run_filter

    rules = {"min_answer_chars": min_answer_chars, "min_question_chars": min_question_chars,
             "max_chars": max_chars, "min_words": min_words, "garbled": garbled, "lang": lang}
    guarded(run_filter, inputs, rules, field, out)
