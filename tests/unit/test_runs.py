"""The run dir: atomic writes, config.yaml with the resolved section (and readable back as a config), the model
config of a finished run, metrics truncation on resume."""

from __future__ import annotations

import json

import pytest
import yaml

from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir, atomic_dir, atomic_write, is_run_dir, open_run


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "x.json"
    atomic_write(path, '{"ok": 1}')

    def boom(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, boom)
    assert json.loads(path.read_text()) == {"ok": 1} and [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "model") as d:
            (d / "weights").write_text("partial")
            raise RuntimeError("killed")
    assert not (tmp_path / "model").exists() and not (tmp_path / "model.tmp").exists()


def test_config_records_resolved_values_without_touching_the_users(tmp_path):
    cfg = load_config(None, [f"output.dir={tmp_path}", "output.name=r1", "model.path=some/model"])
    run = open_run(cfg, resume=False)
    run.record_resolved(**{"data.packing": True, "model.dtype": "float32"})
    tree = yaml.safe_load(run.config.read_text())
    assert tree["data"]["packing"] == "auto" and tree["resolved"] == {"data.packing": True, "model.dtype": "float32"}
    assert cfg.data.packing == "auto"
    assert run.read_config().data.packing == "auto"  # the resolved section is ignored when read as a config
    assert load_config(run.config).model.path == "some/model"
    run.release()
    (run.root / "results.json").write_text("{}")  # a dir with only config.yaml is a failed start: reusable
    with pytest.raises(ConfigError, match="already exists"):
        open_run(cfg, resume=False)


def test_model_config_of_a_finished_run(tmp_path):
    cfg = load_config(None, [f"output.dir={tmp_path}", "output.name=r2", "model.path=base/dir",
                             "data.template=chatml", "data.system=be brief"])
    run = open_run(cfg, resume=False)
    assert not is_run_dir(run.root)
    with pytest.raises(ConfigError, match="neither adapter/ nor model/"):
        run.model_config()
    run.adapter.mkdir()
    (run.adapter / "adapter_config.json").write_text("{}")
    mc, template, system = run.model_config()
    assert (mc.path, mc.adapter, template, system) == ("base/dir", str(run.adapter), "chatml", "be brief")
    assert is_run_dir(run.root)


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    run.metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)))
    run.truncate_metrics(2)
    assert [json.loads(x)["step"] for x in run.metrics.read_text().splitlines()] == [1, 2]
    run.truncate_metrics(None)
    assert not run.metrics.exists()


def test_other_ranks_do_not_write(tmp_path):
    run = RunDir(tmp_path, main=False)
    run.write_json("results.json", {"a": 1})
    assert not (tmp_path / "results.json").exists()
