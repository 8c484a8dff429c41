"""Dry-run memory model: micro-batch sizing and how each option moves the estimate."""

from __future__ import annotations

import numpy as np

from tuneforge.config.schema import Config
from tuneforge.train.dry_run import Shape, estimate_memory, hints, micro_batch_tokens

SHAPE = Shape(hidden=512, intermediate=1376, layers=8, heads=8, kv_heads=4, head_dim=64, vocab=8192)
LENGTHS = np.array([50, 100, 150, 200, 300, 393] * 10)


def cfg(**train) -> Config:
    c = Config()
    for k, v in train.items():
        section, key = k.split("__")
        setattr(getattr(c, section), key, v)
    return c


def test_micro_batch_tokens_follow_the_batching_mode():
    p95 = int(np.percentile(LENGTHS, 95))
    assert micro_batch_tokens(cfg(), True, LENGTHS)[0] == 4 * p95
    assert micro_batch_tokens(cfg(), False, LENGTHS)[0] == 4 * (-(-p95 // 8) * 8)
    assert micro_batch_tokens(cfg(train__batch_tokens=2048), True, LENGTHS)[0] == 2048


def mem(c: Config, trainable: int = 600_000) -> dict:
    return estimate_memory(SHAPE, 32_000_000, trainable, 4, 1320, 0.5, c, resident_mib=400.0)


def test_estimate_reacts_to_checkpointing_chunked_loss_and_full_training():
    base = mem(cfg())
    assert base["estimated_peak"] > base["resident_now (libraries, weights, data)"] == 400.0
    assert mem(cfg(train__gradient_checkpointing=True))["activations"] < base["activations"] / 3
    assert mem(cfg(train__loss_chunk_size=64))["logits"] < base["logits"]
    full = mem(cfg(), trainable=32_000_000)
    assert full["optimizer_states"] == round(32_000_000 * 8 / (1 << 20), 1)
    assert full["estimated_peak"] > base["estimated_peak"] + 300


def test_hints_point_at_the_memory_options():
    big = Shape(hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=8, head_dim=128, vocab=128256)
    c = cfg(data__packing=False)
    m = estimate_memory(big, 8_000_000_000, 20_000_000, 2, 8192, 0.5, c, resident_mib=16000.0)
    text = " ".join(hints(c, False, m, big, 8192, 2))
    assert "gradient_checkpointing" in text and "loss_chunk_size" in text and "packing" in text
    assert hints(cfg(data__packing=True), True, mem(cfg(data__packing=True)), SHAPE, 1320, 4) == []


def test_backward_working_set_counts_once_more_the_activations():
    m = mem(cfg())
    assert m["backward_working_set"] == m["activations"]
    ck = mem(cfg(train__gradient_checkpointing=True))
    assert ck["backward_working_set"] < m["backward_working_set"] / 3
    parts = sum(v for k, v in m.items() if k != "estimated_peak")
    assert abs(m["estimated_peak"] - parts) < 1
