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
