import pytest

from tuneforge.config import load_config, parse_overrides
from tuneforge.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides_nest(tmp_path):
    p = write(tmp_path, "model:\n  path: m\ntrain:\n  lr: 0.1\ndata:\n  train: a.json\n")
    cfg = load_config(p, ["train.lr=1e-4", "lora.r=16", "train.gradient_checkpointing=true"])
    assert cfg.train.lr == 1e-4 and cfg.lora.r == 16 and cfg.train.gradient_checkpointing is True
    assert cfg.data.train[0].path == "a.json" and cfg.model.path == "m"


def test_unknown_key_suggests_closest(tmp_path):
    p = write(tmp_path, "train:\n  learnig_rate: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "train.learnig_rate" in str(e.value) and str(p) in str(e.value)


def test_unknown_override_suggests(tmp_path):
    with pytest.raises(ConfigError, match=r"lora\.rr.*did you mean 'lora\.r'"):
        load_config(None, ["lora.rr=4"])
    with pytest.raises(ConfigError, match=r"did you mean 'train\.epochs'"):
        load_config(None, ["train.epoch=4"])


def test_unknown_section_suggests():
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_config(None, ["trian.lr=1"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"'train\.batch_size'.*got 'four'"):
        load_config(None, ["train.batch_size=four"])


def test_bad_literal_names_key():
    with pytest.raises(ConfigError, match=r"'method'"):
        load_config(None, ["method=qlora2"])


def test_hf_aliases():
    cfg = load_config(None, ["train.learning_rate=3e-4", "lora.lora_alpha=8"])
    assert cfg.train.lr == 3e-4 and cfg.lora.alpha == 8


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.lr"])


def test_invalid_yaml_reports_line(tmp_path):
    p = write(tmp_path, "train:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml:\d+: invalid YAML"):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_relative_data_paths_resolve_next_to_config(tmp_path):
    (tmp_path / "d.json").write_text("[]")
    p = write(tmp_path, "data:\n  train: d.json\n")
    cfg = load_config(p)
    assert cfg.data.train[0].path == str(tmp_path / "d.json")


def test_builtin_default_config_is_valid():
    from tuneforge.train.run import resolve_config_arg

    cfg = load_config(resolve_config_arg(None))
    assert cfg.model.path == "builtin:smollm2" and cfg.method == "lora" and cfg.demo_prompts


def test_relative_eval_task_files_resolve_next_to_config(tmp_path):
    (tmp_path / "t.jsonl").write_text("{}\n")
    p = write(tmp_path, "eval:\n  tasks:\n    - {file: t.jsonl, preset: mmlu}\n")
    cfg = load_config(p)
    assert cfg.eval.tasks[0].file == str(tmp_path / "t.jsonl")


def test_packing_accepts_true_false_auto_and_names_the_key_otherwise(tmp_path):
    assert load_config(None, []).data.packing == "auto"
    assert load_config(None, ["data.packing=true"]).data.packing is True
    assert load_config(None, ["data.packing=off"]).data.packing is False
    with pytest.raises(ConfigError, match=r"'data\.packing'.*must be true, false or auto.*got 'maybe'"):
        load_config(None, ["data.packing=maybe"])
    p = write(tmp_path, "data:\n  packing: sometimes\n")
    with pytest.raises(ConfigError, match=r"data\.packing.*sometimes"):
        load_config(p)


def test_one_alias_table_for_yaml_and_overrides(tmp_path):
    from tuneforge.config.load import load_config
    from tuneforge.errors import ConfigError

    f = tmp_path / "c.yaml"
    f.write_text("train:\n  learning_rate: 0.001\n  num_train_epochs: 2\nlora:\n  rank: 4\n")
    cfg = load_config(f)
    assert (cfg.train.lr, cfg.train.epochs, cfg.lora.r) == (0.001, 2, 4)
    assert load_config(f, ["train.learning_rate=0.5"]).train.lr == 0.5
    f.write_text("train:\n  learning_rate: 0.001\n  lr: 0.002\n")
    with pytest.raises(ConfigError, match="both 'train.learning_rate' and 'train.lr'"):
        load_config(f)


def test_teacher_adapter_and_reward_files_resolve_next_to_config(tmp_path, monkeypatch):
    for d in ("teacher", "rm_run", "ad"):
        (tmp_path / d).mkdir()
    (tmp_path / "r.py").write_text("def f(**kw):\n    return []\n")
    p = write(tmp_path, "model:\n  adapter: ad\ndistill:\n  teacher: teacher\n"
                        "align:\n  rewards: [exact_number, 'rm:rm_run', 'r.py:f', 'pkg.mod:fn']\n")
    monkeypatch.chdir("/")
    cfg = load_config(p)
    assert cfg.distill.teacher == str(tmp_path / "teacher") and cfg.model.adapter == str(tmp_path / "ad")
    assert cfg.align.rewards == ["exact_number", f"rm:{tmp_path / 'rm_run'}", f"{tmp_path / 'r.py'}:f", "pkg.mod:fn"]


def test_override_reaches_one_item_of_a_list(tmp_path):
    p = write(tmp_path, "model:\n  path: m\ndata:\n  train:\n    - {path: a.json, max_samples: 10}\n    - {path: b.json}\n"
                        "eval:\n  tasks:\n    - {name: t, preset: translation, file: v.jsonl}\n")
    cfg = load_config(p, ["data.train.1.max_samples=5", "eval.tasks.0.file=w.jsonl"])
    assert [(s.path, s.max_samples) for s in cfg.data.train] == [("a.json", 10), ("b.json", 5)]
    assert cfg.eval.tasks[0].file == "w.jsonl" and cfg.eval.tasks[0].preset == "translation"
    with pytest.raises(ConfigError, match=r"data.train has 2 item\(s\), no index 2"):
        load_config(p, ["data.train.2.max_samples=5"])
    q = write(tmp_path, "model:\n  path: m\ndata:\n  train: [a.json]\n")
    with pytest.raises(ConfigError, match=r"data.train.0 is a value"):
        load_config(q, ["data.train.0.max_samples=5"])
