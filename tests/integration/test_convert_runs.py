"""LLaMA-Factory's own SFT, DPO and pre-training configs run a few steps after conversion (`tuneforge train lf.yaml`
converts in memory), with the hub model replaced by a tiny local Llama and the demo data from ../shared/data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from shared_paths import DATA

from tuneforge.config import load_config
from tuneforge.train.run import run_training
from tuneforge.train.stages import STAGES

LF = DATA.parent / "lf_examples" / "train_lora"
DEMO = DATA / "llamafactory_demo"

CASES = {
    "qwen3_lora_sft.yaml": "data.train=[{path: identity, max_samples: 8}, {path: alpaca_en_demo, max_samples: 8}]",
    "qwen3_lora_dpo.yaml": "data.train=[{path: dpo_en_demo, max_samples: 8}]",
    "qwen3_lora_pretrain.yaml": "data.train=[{path: c4_demo, max_samples: 8}]",
}


@pytest.mark.parametrize("name", list(CASES))
def test_converted_llamafactory_config_trains(name, tiny_llama, tmp_path):
    if not (LF / name).exists():
        pytest.skip(f"no {LF / name}")
    cfg = load_config(LF / name, [f"model.path={tiny_llama}", f"data.dataset_dir={DEMO}", CASES[name],
                                  "data.cutoff_len=96", "train.max_steps=2", "train.batch_size=2",
                                  "train.grad_accum=1", "train.save_steps=0", "train.logging_steps=1", "train.threads=1", f"output.dir={tmp_path}",
                                  "output.overwrite=true", "model.trust_remote_code=false"])
    if cfg.stage not in STAGES:
        pytest.skip(f"stage {cfg.stage} is not registered in this checkout")
    out = run_training(cfg)
    run = Path(out["run_dir"])
    assert run.parent == tmp_path and run.name == {"qwen3_lora_sft.yaml": "sft", "qwen3_lora_dpo.yaml": "dpo",
                                                   "qwen3_lora_pretrain.yaml": "pretrain"}[name]
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), steps
    assert any((run / "adapter").glob("*.safetensors"))
