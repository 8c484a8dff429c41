"""A saved adapter names its base portably (hub id / the user's path, never the GGUF cache) and resolves back."""

import json
import shutil

import pytest

from tuneforge.config.schema import ModelConfig
from tuneforge.errors import ModelLoadError
from tuneforge.models.load import (
    BUILTIN_HUB_IDS,
    adapter_base,
    load_tokenizer,
    record_base,
)


def adapter_dir(tmp_path, base_recorded_by_peft):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base_recorded_by_peft,
                                                       "peft_type": "LORA"}))
    return d


def test_local_base_recorded_with_its_hash_and_resolved_back(tmp_path, tiny_llama):
    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    d = adapter_dir(tmp_path, "/home/someone/.cache/tuneforge/gguf/x-123")
    record_base(d, ModelConfig(path=str(base)))
    conf = json.loads((d / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == str(base.resolve()) and conf["peft_type"] == "LORA"
    assert adapter_base(str(d)) == str(base)
    assert load_tokenizer(ModelConfig(adapter=str(d))) is not None  # model.path may be left out
    weights = next(base.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(ModelLoadError, match="different weights"):
        adapter_base(str(d))


def test_builtin_base_is_recorded_as_its_hub_id():
    from tuneforge.models.load import portable_base_id

    assert portable_base_id("builtin:smollm2") == BUILTIN_HUB_IDS["smollm2"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert portable_base_id("org/model") == "org/model"


def test_hub_id_without_a_local_copy_is_returned_as_is(tmp_path):
    d = adapter_dir(tmp_path, "org/some-model")
    assert adapter_base(str(d)) == "org/some-model"
