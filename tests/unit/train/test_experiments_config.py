"""Launch configs (ours and LLaMA-Factory's, as they are), the refusals that save N tracebacks, the sweep space
file and the tracker names: all checked before any process or trial starts."""

import os
from pathlib import Path

import pytest
from shared_paths import DATA

from tuneforge.errors import ConfigError
from tuneforge.train.launch import check_engine, engine, launch_command, launch_kind
from tuneforge.train.sweep import load_space, overrides_for
from tuneforge.train.tracking import check_trackers

REPO = Path(__file__).resolve().parents[3]
LF = DATA.parent / "lf_examples"


def test_our_launch_configs_are_recognised():
    d = REPO / "examples" / "distributed"
    kinds = {p.name: (launch_kind(str(p)), engine(str(p))) for p in sorted(d.iterdir()) if p.suffix != ".md"}
    assert kinds == {"ddp.yaml": ("accelerate", "DDP"), "fsdp2.yaml": ("accelerate", "FSDP"),
                     "fsdp2_offload.yaml": ("accelerate", "FSDP"), "ds_z2.json": ("deepspeed", "DEEPSPEED"),
                     "ds_z2_offload.json": ("deepspeed", "DEEPSPEED"), "ds_z3.json": ("deepspeed", "DEEPSPEED"),
                     "ds_z3_offload.json": ("deepspeed", "DEEPSPEED")}


@pytest.mark.skipif(not LF.is_dir(), reason="LLaMA-Factory examples not present")
def test_llamafactory_launch_files_are_accepted_as_they_are():
    for p in sorted((LF / "accelerate").glob("*.yaml")):
        assert (launch_kind(str(p)), engine(str(p))) == ("accelerate", "FSDP"), p
    for p in sorted((LF / "deepspeed").glob("*.json")):
        assert (launch_kind(str(p)), engine(str(p))) == ("deepspeed", "DEEPSPEED"), p


def test_launch_commands():
    plain = launch_command(["train", "c.yaml"], 4, None, 29500)
    assert plain[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node" in plain
    assert plain[-4:] == ["-m", "tuneforge.cli", "train", "c.yaml"]
    acc = launch_command(["train", "c.yaml"], 8, str(REPO / "examples/distributed/fsdp2.yaml"), 29500)
    assert acc[1:3] == ["-m", "accelerate.commands.launch"] and acc[acc.index("--num_processes") + 1] == "8"


def test_bad_launch_configs_get_one_line(tmp_path):
    (tmp_path / "x.yaml").write_text("foo: 1\n")
    with pytest.raises(ConfigError, match="neither an accelerate config"):
        launch_kind(str(tmp_path / "x.yaml"))
    (tmp_path / "y.json").write_text("{nope")
    with pytest.raises(ConfigError, match="does not parse"):
        launch_kind(str(tmp_path / "y.json"))
    with pytest.raises(ConfigError, match="does not exist"):
        launch_kind(str(tmp_path / "missing.yaml"))


def test_fsdp_and_deepspeed_refused_on_cpu_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(ConfigError, match="FSDP needs CUDA devices"):
        check_engine(str(REPO / "examples/distributed/fsdp2.yaml"))
    with pytest.raises(ConfigError, match="DeepSpeed is not installed|DEEPSPEED needs CUDA"):
        check_engine(str(REPO / "examples/distributed/ds_z3.json"))
    check_engine(None)  # plain DDP over gloo is fine on CPU


def test_space_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("metric: eval_accuracy\ndirection: maximize\nparams:\n  train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n"
                 "  lora.r: [4, 8]\n  train.batch_size: {low: 2, high: 8, step: 2}\npruner: none\n")
    s = load_space(p)
    assert (s.metric, s.direction, s.startup_trials) == ("eval_accuracy", "maximize", None)
    assert [q.name for q in s.params] == ["train.lr", "lora.r", "train.batch_size"]
    assert overrides_for({"train.lr": 1e-4, "lora.r": 8, "x.name": "a b"}) == ["train.lr=0.0001", "lora.r=8",
                                                                               "x.name=a b"]
    for body, msg in [("params: {train.lr: {low: 1, high: 0}}", "low < high"),
                      ("params: {train.lr: {low: 0, high: 1, log: true}}", "low > 0"),
                      ("params: {}", "at least one parameter"),
                      ("direction: up\nparams: {train.lr: [1]}", "minimize or maximize"),
                      ("param: {train.lr: [1]}", "unknown key"),
                      ("params: {train.lr: {lo: 1, high: 2}}", "params.train.lr: unknown key")]:
        p.write_text(body)
        with pytest.raises(ConfigError, match=msg):
            load_space(p)


def test_trackers():
    assert check_trackers(["none"]) == []
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'"):
        check_trackers(["tensorbord"])


def test_tracker_files_follow_each_run_but_a_users_uri_wins(tmp_path, monkeypatch):
    from tuneforge.config.schema import Config
    from tuneforge.runs import RunDir
    from tuneforge.train.tracking import tracking_args

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after the test: tracking_args sets it
    cfg = Config.model_validate({"train": {"report_to": ["tensorboard", "mlflow"]}})
    for name in ("a", "b"):  # two runs in one process, as in a sweep
        assert tracking_args(cfg, RunDir(tmp_path / name)) == {"report_to": ["tensorboard", "mlflow"],
                                                                "run_name": name}
        assert os.environ["MLFLOW_TRACKING_URI"] == (tmp_path / name / "mlruns").resolve().as_uri()
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / name / "tensorboard")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mine.db")
    tracking_args(cfg, RunDir(tmp_path / "c"))
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///mine.db"
