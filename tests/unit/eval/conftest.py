import pytest

from tiny_lm import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """Path of a tiny random Llama dir (model + tokenizer), built once per test run."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
