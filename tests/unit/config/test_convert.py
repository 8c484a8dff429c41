"""`tuneforge convert` on every real LLaMA-Factory file in ../shared/lf_examples: each converts, each source key is
accounted for exactly once (mapped, without effect, or not carried over, with a reason), and the result validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from shared_paths import DATA
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.convert import convert_tree
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.train.migrate import convert_file, validate_converted
from tuneforge.train.stages import STAGES

LF = DATA.parent / "lf_examples"
FILES = sorted(p for p in LF.rglob("*") if p.suffix in (".yaml", ".json"))
pytestmark = pytest.mark.skipif(not FILES, reason=f"no LLaMA-Factory examples at {LF}")


def test_the_fixture_set_is_complete():
    assert len(FILES) >= 29, FILES  # 22 YAML + 7 DeepSpeed JSON at the pinned LLaMA-Factory commit


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(LF)))
def test_every_file_converts_and_no_key_is_dropped_silently(path: Path):
    conv = convert_file(path)
    if conv.kind in ("deepspeed", "accelerate"):
        assert conv.notes and str(path) in conv.notes[0]  # used as it is; the note says how
        return
    source_keys = list(yaml.safe_load(path.read_text()))
    fates = [k for k, _ in conv.mapped] + [k for k, _ in conv.ignored] + [k for k, _ in conv.unsupported]
    assert sorted(fates) == sorted(source_keys), "every key must be reported exactly once"
    assert all(reason for _, reason in conv.ignored + conv.unsupported)
    if conv.kind == "train" and conv.config.get("stage") not in STAGES:
        with pytest.raises(ConfigError, match="stage"):
            validate_converted(conv)
    else:
        cfg = validate_converted(conv)
        assert cfg.model.path  # every LLaMA-Factory config names its model


def test_unsupported_keys_are_named_with_the_reason():
    conv = convert_file(LF / "extras/galore/llama3_full_sft.yaml")
    names = {k for k, _ in conv.unsupported}
    assert names == {"use_galore", "galore_layerwise", "galore_target", "galore_rank", "galore_scale"}
    assert all("GaLore" in r for _, r in conv.unsupported)


def test_values_are_translated_not_just_renamed():
    conv = convert_tree({"model_name_or_path": "m", "stage": "dpo", "pref_loss": "orpo", "finetuning_type": "lora",
                         "lora_rank": 4, "lora_target": "q_proj,v_proj", "dataset": "a,b", "max_samples": 10,
                         "template": "qwen", "output_dir": "saves/x/lora/sft", "val_size": 0.1,
                         "learning_rate": "1e-4", "report_to": "none"})
    c = conv.config
    assert c["stage"] == "orpo"  # LLaMA-Factory runs ORPO as dpo + pref_loss; here it is a stage
    assert c["lora"] == {"r": 4, "target": ["q_proj", "v_proj"], "alpha": 8}  # LF's default alpha: 2 x rank
    assert c["data"]["train"] == [{"path": "a", "max_samples": 10}, {"path": "b", "max_samples": 10}]
    assert c["data"]["template"] == "chatml" and c["data"]["eval_split"] == 0.1
    assert c["output"] == {"dir": "saves/x/lora", "name": "sft"}
    assert c["train"]["lr"] == 1e-4 and c["train"]["report_to"] == []
    Config.model_validate(c)


def test_cli_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "tf.yaml"
    src = LF / "train_lora/qwen3_lora_sft.yaml"
    res = CliRunner().invoke(app, ["convert", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "mapped       lora_rank -> lora.r" in res.output and "ignored      ddp_timeout" in res.output
    cfg = Config.model_validate({k: v for k, v in yaml.safe_load(out.read_text()).items()})
    assert cfg.lora.r == 8 and cfg.train.grad_accum == 8 and cfg.method == "lora"
    again = CliRunner().invoke(app, ["convert", str(src), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    strict = CliRunner().invoke(app, ["convert", str(LF / "extras/pissa/llama3_lora_sft.yaml"), "--strict"])
    assert strict.exit_code == 2 and "pissa_init" in strict.output


def test_train_on_a_llamafactory_file_converts_in_memory_or_names_what_it_cannot_honour(tmp_path, capsys):
    from tuneforge.config import load_config

    cfg = load_config(LF / "train_lora/qwen3_lora_sft.yaml", ["data.cutoff_len=64"])
    assert cfg.lora.r == 8 and cfg.data.cutoff_len == 64 and cfg.output.name == "sft"
    assert "LLaMA-Factory config, converted in memory" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="galore_rank"):
        load_config(LF / "extras/galore/llama3_full_sft.yaml")


def test_our_own_config_with_a_stray_flat_key_is_not_taken_for_llamafactory(tmp_path):
    from tuneforge.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {path: m}\nlearning_rate: 1.0e-4\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_config(cfg)
