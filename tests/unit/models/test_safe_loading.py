"""One guarded loader: pickle weights are refused everywhere; corrupted GGUF and unset model.path are one line."""

import json
import struct

import pytest

from tuneforge.config.schema import ModelConfig
from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.models.load import check_model_source, load_model, load_tokenizer


def pickle_only_dir(path):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not-really-a-pickle")
    return path


def test_decontam_encoder_refuses_pickle_weights(tmp_path):
    from tuneforge.data.embed_index import load_encoder

    d = pickle_only_dir(tmp_path / "enc")
    with pytest.raises(ModelLoadError, match="only has pickle weights"):
        load_encoder(str(d))


def test_sentence_transformer_module_subdir_with_pickle_is_refused(tmp_path):
    from tuneforge.safe_weights import check_local_weights

    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "model.safetensors").write_bytes(b"")
    pickle_only_dir(tmp_path / "enc" / "2_Dense")
    with pytest.raises(ModelLoadError, match="2_Dense"):
        check_local_weights(tmp_path / "enc")


def test_feature_head_backbone_and_head_file_are_guarded(tmp_path):
    from tuneforge.models.heads import FeatureClassifier

    d = pickle_only_dir(tmp_path / "backbone")
    head = tmp_path / "head"
    head.mkdir()
    (head / "head.json").write_text(json.dumps({"backbone": str(d), "head": "linear", "dim": 4, "labels": ["a"]}))
    with pytest.raises(ModelLoadError, match="pickle"):
        FeatureClassifier(head)


def test_model_and_adapter_pickles_refused_before_loading(tmp_path):
    d = pickle_only_dir(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="only has pickle"):
        check_model_source(ModelConfig(path=str(d)))
    with pytest.raises(ModelLoadError, match="only has pickle"):
        load_model(ModelConfig(path=str(d)))
    a = tmp_path / "adapter"
    a.mkdir()
    (a / "adapter_config.json").write_text("{}")
    (a / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="adapter .* pickle"):
        check_model_source(ModelConfig(path="some/hub-id", adapter=str(a)))


def test_corrupted_gguf_names_the_file(tmp_path):
    f = tmp_path / "broken.gguf"
    # valid magic + version 3 + tensor/kv counts, then a metadata key whose bytes are not UTF-8
    f.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc" + b"\x00" * 64)
    for call in (load_tokenizer, check_model_source):
        with pytest.raises(ModelLoadError, match=r"broken\.gguf: corrupted or unsupported GGUF file"):
            call(ModelConfig(path=str(f)))


def test_unset_model_path_says_so():
    with pytest.raises(ConfigError, match="model.path is not set"):
        load_tokenizer(ModelConfig())
