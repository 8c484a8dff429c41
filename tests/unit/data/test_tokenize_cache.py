"""Tokenization: truncation accounting, over-long policies, label masks, and the content-addressed cache."""

import pytest

from tuneforge.config import load_config
from tuneforge.data.collate import PadCollator
from tuneforge.data.formats import Sample
from tuneforge.data.tokenize import IGNORE, tokenize_samples
from tuneforge.errors import DataError


@pytest.fixture(scope="module")
def tok():
    from tiny_models import build_tokenizer

    return build_tokenizer()


def chat(q, a, line=1):
    return Sample("f.jsonl", line, messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}])


def cfg(*o):
    return load_config(None, ["data.template=auto", *o]).data


def test_labels_cover_only_the_answer(tok):
    data = tokenize_samples([chat("apple banana", "cherry dragon")], tok, cfg(), use_cache=False)
    x = data[0]
    trained = [t for t, l in zip(x["input_ids"], x["labels"]) if l != IGNORE]
    assert tok.decode(trained) == "cherry dragon<|im_end|>"
    assert data.stats["trained_tokens"] == len(trained)


def test_overlong_policies(tok):
    long = chat("apple " * 100, "banana", line=7)
    short = chat("apple", "banana", line=8)
    with pytest.raises(DataError, match=r"f\.jsonl:7: sample has \d+ tokens > data.cutoff_len=32"):
        tokenize_samples([short, long], tok, cfg("data.cutoff_len=32", "data.overlong=error"), use_cache=False)
    d = tokenize_samples([short, long], tok, cfg("data.cutoff_len=32", "data.overlong=drop"), use_cache=False)
    assert len(d) == 1 and d.stats["dropped_overlong"] == 1 and "f.jsonl:7" in d.stats["warnings"][0]
    # truncation that removes the whole answer drops the sample (it would teach nothing) and says so
    d = tokenize_samples([short, long], tok, cfg("data.cutoff_len=32"), use_cache=False)
    assert len(d) == 1 and d.stats["dropped_no_target"] == 1
    keep = chat("apple", "banana " * 50)
    d = tokenize_samples([keep], tok, cfg("data.cutoff_len=32"), use_cache=False)
    assert d.stats["truncated"] == 1 and len(d[0]["input_ids"]) == 32


def test_cache_hit_and_key_sensitivity(tok, tmp_path):
    samples = [chat("apple", "banana"), chat("cherry", "dragon")]
    c = cfg(f"data.cache_dir={tmp_path}")
    first = tokenize_samples(samples, tok, c)
    again = tokenize_samples(samples, tok, c)
    assert first.stats["cache"] == "miss" and again.stats["cache"] == "hit"
    assert (first.ids == again.ids).all() and (first.labels == again.labels).all()
    other = tokenize_samples(samples, tok, cfg(f"data.cache_dir={tmp_path}", "data.train_on_prompt=true"))
    assert other.stats["cache"] == "miss"  # masking option is part of the key
    changed = tokenize_samples([chat("apple", "banana!"), samples[1]], tok, c)
    assert changed.stats["cache"] == "miss"  # data content is part of the key
    assert len(list(tmp_path.glob("*.npz"))) == 3 and not list(tmp_path.glob("*.tmp*"))


def test_pad_collator_masks_padding():
    batch = PadCollator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                   {"input_ids": [5], "labels": [5]}])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"][1].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert (batch["labels"][1, 1:] == -100).all()
