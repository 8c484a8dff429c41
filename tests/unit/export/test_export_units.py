"""Fast checks of the export building blocks (no model loads): Modelfile, template families, GGUF refusals,
SLERP, sample text reading, the merge refusal rules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tuneforge.errors import ConfigError, DataError
from tuneforge.export.gguf import _permute, check_supported
from tuneforge.export.merge_models import check_compatible, combine, slerp
from tuneforge.export.modelfile import modelfile, template_family
from tuneforge.export.verify import VerificationError, check, load_texts


def test_modelfile_names_the_template_and_stops():
    assert template_family("auto", "{{ '<|im_start|>' + m['role'] }}") == "chatml"
    assert template_family("llama3", None) == "llama3" and template_family("auto", "plain {{ x }}") is None
    text = modelfile("model-q8_0.gguf", "chatml", "Be brief.", ["</s>"], 2048)
    assert text.startswith("FROM ./model-q8_0.gguf\n") and "<|im_start|>{{ .Role }}" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "</s>"' in text
    assert 'SYSTEM """Be brief."""' in text and "PARAMETER num_ctx 2048" in text
    unknown = modelfile("m.gguf", None, None, ["</s>"])
    assert "TEMPLATE" not in unknown.replace("# chat template", "")


def test_gguf_refuses_what_it_cannot_write():
    model = SimpleNamespace(config=SimpleNamespace(model_type="gpt2"))
    with pytest.raises(ConfigError, match="GGUF export supports llama, qwen2"):
        check_supported(model, None, "q8_0")
    with pytest.raises(ConfigError, match="unknown GGUF --quant"):
        check_supported(model, None, "q3_k")


def test_qk_permutation_interleaves_rotary_halves_per_head():
    w = torch.arange(8.0).reshape(8, 1)  # 2 heads x head_dim 4: halves [0,1 | 2,3] -> pairs (0,2), (1,3)
    assert _permute(w.numpy(), 2).reshape(-1).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_slerp_ends_and_middle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(), torch.tensor(1.0)) and torch.allclose(mid[0], mid[1])  # on the arc


def test_task_vector_merges_start_from_the_base():
    base = {"w": torch.zeros(4)}
    states = [{"w": torch.tensor([1.0, -1.0, 0.0, 2.0])}, {"w": torch.tensor([1.0, 1.0, 0.0, -2.0])}]
    merged = combine("task_arithmetic", states, [1.0, 1.0], base, 0.5, 1.0)
    assert merged["w"].tolist() == [2.0, 0.0, 0.0, 0.0]
    linear = combine("linear", states, [1.0, 3.0], None, 0.5, 1.0)
    assert linear["w"].tolist() == [1.0, 0.5, 0.0, -1.0]


def test_incompatible_sources_are_named():
    with pytest.raises(ConfigError, match="different architectures"):
        check_compatible(["a", "b"], [{}, {}], ["llama", "qwen2"])
    with pytest.raises(ConfigError, match="'w' has shape"):
        check_compatible(["a", "b"], [{"w": torch.zeros(2)}, {"w": torch.zeros(3)}], ["llama", "llama"])


def test_tolerance_check_and_sample_files(tmp_path):
    check("diff", 1e-5, 1e-4)
    with pytest.raises(VerificationError, match="above the tolerance"):
        check("diff", float("nan"), 1e-4)
    p = tmp_path / "held.jsonl"
    p.write_text('{"text": "one"}\n\n{"text": "two"}\n', encoding="utf-8")
    assert load_texts(str(p)) == ["one", "two"]
    p.write_text('{"text": "one"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match="held.jsonl:2"):
        load_texts(str(p))
