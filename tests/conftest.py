"""Session fixtures: tiny random decoder models (Llama, Qwen2) with a locally trained tokenizer. No network."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_models import build_model_dir  # noqa: E402  (tests/ is on sys.path via rootdir conftest)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> str:
    return build_model_dir(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own tokenized-data cache (the converted-GGUF model cache stays shared)."""
    monkeypatch.setenv("TUNEFORGE_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "tf-data-cache"))
