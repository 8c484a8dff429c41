"""Export commands on tiny random models: every result is reloaded and compared with its source.

LoRA/DoRA adapters here have random non-zero B matrices (see tests/export_runs.py), so a wrong merge, a wrong
q/k permutation in the GGUF writer or a lost tensor changes the logits and fails the test.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from export_runs import lora_run
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.export.verify import VerificationError


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("export-runs")
    return {"lora": lora_run(root, tiny_llama, "lora", seed=1), "lora2": lora_run(root, tiny_llama, "lora2", seed=2),
            "dora": lora_run(root, tiny_llama, "dora", seed=3, dora=True)}


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_merged_model_matches_the_adapter_and_loads_with_plain_transformers(runs, kind, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.export.merge import export_hf

    report = export_hf(str(runs[kind]), str(tmp_path / "hf"), latency=False)
    assert report["max_abs_logit_diff"] <= 1e-4 and report["checks"]["max_abs_logit_diff"]["ok"]
    # the gate compares exact (float64) forwards; the float32-vs-float32 number is reported beside it
    assert report["compared_in"] == "float64" and report["max_abs_logit_diff_float32"] <= 1e-4
    assert report["float32_noise_floor"] <= 1e-4
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert not any("lora" in k for k in model.state_dict())
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert "<|im_start|>" in tok.chat_template
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    assert json.loads((tmp_path / "hf" / "export_report.json").read_text())["after"]["parameters"] > 0


def test_a_failed_check_exits_non_zero_and_writes_nothing(runs, tmp_path):
    res = cli("export", runs["lora"], "-o", tmp_path / "half", "--dtype", "float16", "--tolerance", "0",
              "--no-latency")
    assert res.exit_code == 4 and "above the tolerance" in res.output
    assert not (tmp_path / "half").exists() and not (tmp_path / "half.tmp").exists()


@pytest.mark.parametrize("arch,quant", [("llama", "f32"), ("qwen2", "q8_0")])
def test_gguf_reloads_with_the_same_logits_and_template(arch, quant, tmp_path, tiny_llama, tiny_qwen2):
    from tuneforge.export.export_gguf import export_gguf

    base = tiny_llama if arch == "llama" else tiny_qwen2
    run = lora_run(tmp_path, base, f"{arch}-run", seed=4)
    report = export_gguf(str(run), str(tmp_path / "gguf"), quant=quant, latency=False)
    if quant == "f32":
        assert report["max_abs_logit_diff"] <= 1e-3
    else:
        assert report["checks"]["perplexity_rel_diff"]["value"] <= 0.01
        assert report["tensor_types"]["Q8_0"] > 0
    assert report["tokenizer_mismatches"] == 0
    modelfile = (tmp_path / "gguf" / "Modelfile").read_text()
    assert f"FROM ./model-{quant}.gguf" in modelfile and "<|im_start|>{{ .Role }}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    from gguf import GGUFReader

    fields = GGUFReader(tmp_path / "gguf" / f"model-{quant}.gguf").fields
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()
    from transformers import AutoTokenizer

    assert fields["tokenizer.ggml.eot_token_id"].contents() == AutoTokenizer.from_pretrained(base).convert_tokens_to_ids(
        "<|im_end|>")


def test_prune_unstructured_and_structured(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    from tuneforge.export.prune import prune_model

    sparse = prune_model(str(runs["lora"]), str(tmp_path / "sparse"), sparsity=0.5, latency=False)
    assert 0.49 <= sparse["after"]["sparsity"] <= 0.52 and sparse["checks"]["reload_max_abs_logit_diff"]["ok"]
    slim = prune_model(str(runs["lora"]), str(tmp_path / "slim"), mlp=0.25, latency=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "slim")
    assert model.config.intermediate_size == 96 and model.model.layers[0].mlp.down_proj.weight.shape == (64, 96)
    assert slim["after"]["parameters"] < slim["before"]["parameters"]
    shallow = prune_model(str(runs["lora"]), str(tmp_path / "shallow"), layers=1, latency=False)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "shallow")
    assert student.config.num_hidden_layers == 1 and shallow["kept_layers"] == [0]
    out = student.generate(torch.tensor([[1, 5, 9]]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)  # the KV cache works with the renumbered block


@pytest.mark.parametrize("method", ["ties", "slerp"])
def test_merge_two_lora_fine_tunes_from_the_cli(runs, method, tmp_path):
    from transformers import AutoModelForCausalLM

    from tuneforge.export.merge_models import _weights_of
    from tuneforge.export.source import open_source

    res = cli("merge", runs["lora"], runs["lora2"], "-o", tmp_path / "m", "--method", method, "--density", "0.7")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "m" / "export_report.json").read_text())
    assert report["after"]["sample"] and report["after"]["perplexity"] > 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m").state_dict()
    a, b = (_weights_of(open_source(str(runs[k])))[0] for k in ("lora", "lora2"))
    key = "model.layers.0.self_attn.q_proj.weight"
    to_a, to_b = float((merged[key] - a[key]).norm()), float((merged[key] - b[key]).norm())
    assert to_a > 1e-3 and to_b > 1e-3  # a real mix, not a copy of either source
    if method == "slerp":  # t = 0.5 lies halfway along the arc
        assert abs(to_a - to_b) / to_a < 1e-3


def test_merging_incompatible_models_is_refused_in_one_line(runs, tiny_qwen2, tmp_path):
    res = cli("merge", runs["lora"], tiny_qwen2, "-o", tmp_path / "bad")
    errors = [line for line in res.output.splitlines() if "error:" in line]
    assert res.exit_code == 2 and len(errors) == 1 and "cannot merge" in errors[0] and "different architectures" in errors[0]
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao (extra `quant`) not installed")
def test_int8_weight_only_is_smaller_and_keeps_perplexity(runs, tmp_path):
    from tuneforge.export.quantize import quantize_model

    report = quantize_model(str(runs["lora"]), str(tmp_path / "q8"), bits=8, latency=False)
    wide = quantize_model(str(runs["lora"]), str(tmp_path / "q8f"), bits=8, dtype="float32", latency=False)
    assert (report["dtype"], report["checked_in"], wide["dtype"]) == ("bfloat16", "float32", "float32")
    # the tiny model is mostly embedding (kept unquantized); SmolLM2's ratios are in docs/export.md
    ratio, wide_ratio = (r["after"]["file_bytes"] / r["before"]["file_bytes"] for r in (report, wide))
    assert ratio < 0.4 < wide_ratio < 0.65
    assert report["checks"]["perplexity_rel_diff"]["ok"] and wide["checks"]["perplexity_rel_diff"]["ok"]
    import torch
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "q8", dtype=torch.float32)
    linears = [m for n, m in reloaded.named_modules() if type(m).__name__ == "Linear" and "lm_head" not in n]
    assert linears and all("Int8" in type(m.weight).__name__ for m in linears)


@pytest.mark.skipif(importlib.util.find_spec("torchao") is not None, reason="torchao is installed")
def test_quantize_without_torchao_says_what_to_install(runs, tmp_path):
    res = cli("quantize", runs["lora"], "-o", tmp_path / "q")
    assert res.exit_code == 2 and "pip install torchao" in res.output


def test_verification_error_is_a_user_error():
    assert VerificationError("x").exit_code == 4


def test_quantize_rejects_an_unknown_dtype_in_one_line(runs, tmp_path):
    res = cli("quantize", runs["lora"], "-o", tmp_path / "q", "--dtype", "float16")
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and "--dtype" in errors[0] and "float16" in errors[0]
    assert not (tmp_path / "q").exists()
