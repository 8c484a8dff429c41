import pytest
from pydantic import ValidationError

from tuneforge.config.evaluation import EvalConfig, EvalTaskConfig
from tuneforge.config.schema import Config


def test_config_without_eval_section_is_valid():
    cfg = Config.model_validate({"model": {"path": "x"}})
    assert cfg.eval.tasks == [] and cfg.eval.batch_size > 0


def test_every_field_is_described():
    for model in (EvalConfig, EvalTaskConfig):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"


def test_task_from_string_and_default_names():
    cfg = EvalConfig(tasks=["data/arc_easy.jsonl", {"file": "x.jsonl", "preset": "mmlu"}])
    assert [t.name for t in cfg.tasks] == ["arc_easy", "mmlu"]


def test_unknown_keys_metrics_and_duplicate_names_rejected():
    with pytest.raises(ValidationError, match="extra"):
        EvalConfig(tasks=[{"file": "a.jsonl", "promt": "x"}])
    with pytest.raises(ValidationError, match="unknown metric"):
        EvalTaskConfig(file="a.jsonl", metrics=["bleu", "meteor"])
    with pytest.raises(ValidationError, match="unique"):
        EvalConfig(tasks=["a/x.jsonl", "b/x.jsonl"])
    with pytest.raises(ValidationError):
        EvalConfig(batch_size=0)


def test_config_preset_names_match_the_preset_table():
    from tuneforge.config.evaluation import PRESETS as NAMES
    from tuneforge.eval.presets import PRESETS

    assert set(NAMES) == set(PRESETS)
