"""README command (1): the built-in demo on the real SmolLM2-135M-Instruct must visibly learn its new identity."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_builtin_identity_demo_learns(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tuneforge.cli", "train", f"output.dir={tmp_path}", "output.name=demo"],
                       capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "demo"
    demo = json.loads((run / "demo.json").read_text())
    # Before: SmolLM2 does not call itself Forge. After: it does, also for phrasings not in the training data.
    assert not any("Forge" in d["before"] for d in demo)
    assert sum("Forge" in d["after"] or "tuneforge" in d["after"] for d in demo) >= 2, demo
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses[-1] < 0.5 * losses[0], losses
    for name in ("config.yaml", "env.json", "data_report.json", "plots/loss.png", "adapter/adapter_model.safetensors",
                 "adapter/tokenizer_config.json", "results.json"):
        assert (run / name).exists(), name
    assert "before / after training" in r.stdout
    # The replies printed after training come from the in-process model (left on packed-training attention); the
    # saved adapter, reloaded, must say exactly the same (a broken decode path once garbled only the former).
    import torch

    from tuneforge.config.load import builtin_config_path, load_config
    from tuneforge.config.schema import ModelConfig
    from tuneforge.eval.run import load_for_eval
    from tuneforge.train.demo import demo_replies

    cfg = load_config(builtin_config_path("identity"))  # what `tuneforge train` ran
    model, tok = load_for_eval(ModelConfig(path="builtin:smollm2", adapter=str(run / "adapter")))
    torch.set_num_threads(2)
    assert demo_replies(model, tok, cfg) == [d["after"] for d in demo]
