"""Tiny-model training runs through the real recipe: the loss must fall, and the run dir must be complete."""

import json
from pathlib import Path

import pytest

from run_helpers import losses, write_copy_task
from tuneforge.config import load_config
from tuneforge.train.run import run_training


def train(model_dir, tmp_path, *overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_copy_task(tmp_path / "copy.json")
    cfg = load_config(None, [f"model.path={model_dir}", f"data.train={data}", "data.template=auto",
                             f"output.dir={tmp_path / 'runs'}", "output.name=r", "train.max_steps=30",
                             "train.lr=3e-3", "train.batch_size=8", "train.logging_steps=1", *overrides])
    out = run_training(cfg)
    return Path(out["run_dir"]), out


@pytest.mark.parametrize("method", ["lora", "full", "freeze"])
def test_llama_methods_learn(tiny_llama, tmp_path, method):
    extra = {"freeze": ["freeze.trainable_layers=1", "freeze.modules=[lm_head]"],
             "lora": ["train.lr=2e-2"]}.get(method, [])
    run, out = train(tiny_llama, tmp_path, f"method={method}", *extra)
    ls = losses(run)
    assert len(ls) == 30
    assert sum(ls[-5:]) / 5 < 0.7 * sum(ls[:3]) / 3, ls
    for name in ("config.yaml", "env.json", "metrics.jsonl", "plots/loss.png", "data_report.json", "results.json"):
        assert (run / name).exists(), name
    assert json.loads((run / "results.json").read_text())["packing"] is True  # auto, resolved for a Llama
    final = run / ("adapter" if method == "lora" else "model")
    assert any(final.glob("*.safetensors")) and not list(final.glob("*.bin"))


def test_qwen2_lora_targets_all_linear_and_learns(tiny_qwen2, tmp_path):
    import json

    run, _ = train(tiny_qwen2, tmp_path, "method=lora", "lora.r=4", "train.lr=2e-2")
    targets = set(json.loads((run / "adapter" / "adapter_config.json").read_text())["target_modules"])
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    ls = losses(run)
    assert sum(ls[-5:]) / 5 < 0.7 * sum(ls[:3]) / 3, ls


def test_adapter_round_trip_with_plain_peft(tiny_llama, tmp_path):
    """What we save loads with plain transformers + peft and gives the same logits as our loader."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.config.schema import ModelConfig
    from tuneforge.models.load import load_model

    run, _ = train(tiny_llama, tmp_path, "method=lora", "train.max_steps=5")
    ours = load_model(ModelConfig(path=tiny_llama, adapter=str(run))).eval()
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), run / "adapter").eval()
    x = torch.tensor([[1, 5, 9, 20, 33]])
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, plain(x).logits, atol=1e-6)
        merged = plain.merge_and_unload()
        assert torch.allclose(merged(x).logits, ours(x).logits, atol=1e-4)


def test_pt_stage_learns(tiny_llama, tmp_path):
    import json

    p = tmp_path / "text.jsonl"
    p.write_text("".join(json.dumps({"text": "apple banana cherry dragon eagle falcon " * 4}) + "\n"
                         for _ in range(40)))
    cfg = load_config(None, ["stage=pt", f"model.path={tiny_llama}", f"data.train={p}", "data.cutoff_len=32",
                             f"output.dir={tmp_path}", "output.name=pt", "train.max_steps=20", "train.lr=3e-3",
                             "method=full"])
    out = run_training(cfg)
    ls = losses(Path(out["run_dir"]))
    assert ls[-1] < 0.5 * ls[0], ls


def test_named_template_adds_missing_special_tokens(tiny_llama, tmp_path):
    """llama3 on a tokenizer without <|eot_id|>: tokens are added before tokenizing, embeddings resized."""
    from transformers import AutoTokenizer

    run, _ = train(tiny_llama, tmp_path, "data.template=llama3", "method=full", "train.max_steps=3")
    tok = AutoTokenizer.from_pretrained(run / "model")
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert eot is not None and eot != tok.unk_token_id
    report = (run / "data_report.json").read_text()
    assert '"kept": 64' in report


def test_gradient_checkpointing_gives_the_same_losses(tiny_llama, tmp_path):
    """Checkpointing trades compute for memory only: the loss trajectory must not change."""
    a, _ = train(tiny_llama, tmp_path / "a", "method=lora", "train.lr=2e-2", "train.max_steps=6")
    b, _ = train(tiny_llama, tmp_path / "b", "method=lora", "train.lr=2e-2", "train.max_steps=6",
                 "train.gradient_checkpointing=true")
    import pytest

    assert losses(b) == pytest.approx(losses(a), rel=1e-4)


def test_lora_trains_rows_of_new_template_tokens_and_reloads(tiny_llama, tmp_path):
    """llama3 tokens added to a base model under LoRA: their embedding/head rows train, save and reload."""
    import json

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.config.schema import ModelConfig
    from tuneforge.models.load import load_model

    run, _ = train(tiny_llama, tmp_path, "data.template=llama3", "method=lora", "train.lr=2e-2",
                   "train.max_steps=8")
    tok = AutoTokenizer.from_pretrained(run / "adapter")
    base_rows = AutoModelForCausalLM.from_pretrained(tiny_llama).get_input_embeddings().weight.shape[0]
    new_ids = list(range(base_rows, len(tok)))
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert eot in new_ids  # a new row, not a re-registered BPE piece
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert cfg["trainable_token_indices"] == {"embed_tokens": new_ids, "lm_head": new_ids}  # untied head too
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    rows = {k: v for k, v in saved.items() if "trainable_tokens" in k}
    assert len(rows) == 2 and all(v.shape[0] == len(new_ids) for v in rows.values()), list(saved)

    x = torch.tensor([[1, 5, eot, 9]])
    with torch.no_grad():  # reload twice (fresh random rows each time): the trained rows replace them
        a = load_model(ModelConfig(path=tiny_llama, adapter=str(run))).eval()(x).logits
        b = load_model(ModelConfig(path=tiny_llama, adapter=str(run))).eval()(x).logits
    torch.testing.assert_close(a, b)
