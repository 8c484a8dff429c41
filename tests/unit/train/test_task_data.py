"""Task data: label mapping from data, clear file:line errors, class balance, seq2seq columns, TaskConfig."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tuneforge.config.load import load_config
from tuneforge.config.task import TaskConfig
from tuneforge.data.task_data import LabelMap, balance_report, build_label_map, class_counts, cls_examples, seq2seq_examples
from tuneforge.data.task_rows import load_rows, split_holdout
from tuneforge.train.stages import STAGES, load_training_config
from tuneforge.errors import ConfigError, DataError


def spec(path, **kw):
    return SimpleNamespace(path=str(path), max_samples=kw.get("max_samples"), columns=kw.get("columns", {}))


def write(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def test_config_defaults_and_unknown_key():
    cfg = load_config(overrides=["stage=cls"])
    assert cfg.task.doc_stride > 0 and STAGES["cls"].main_metric(cfg) == "accuracy"
    assert STAGES["qa"].main_metric(cfg) == "f1"
    with pytest.raises(ConfigError, match="did you mean 'task.label_column'"):
        load_config(overrides=["task.label_colum=x"])
    with pytest.raises(ConfigError, match="task.metric: 'bleu' is not a metric of stage cls"):
        load_training_config(None, ["stage=cls", "task.metric=bleu"])  # checked by the stage, at load
    with pytest.raises(ConfigError, match="method: features does not apply to stage: sft"):
        load_training_config(None, ["stage=sft", "method=features"])  # used to run freeze tuning silently
    with pytest.raises(ConfigError, match="did you mean 'seq2seq'"):
        load_training_config(None, ["stage=seq2sq"])


def test_string_labels_sorted_and_saved(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"text": "a", "label": "sports"}, {"text": "b", "label": "business"},
                                   {"text": "c", "label": "sports"}])
    ex = cls_examples(load_rows([spec(p)]), TaskConfig())
    lm = build_label_map(ex, TaskConfig())
    assert lm.names == ["business", "sports"] and [lm.encode(e) for e in ex] == [1, 0, 1]
    lm.save(tmp_path / "lm.json")
    assert LabelMap.load(tmp_path / "lm.json").names == lm.names


def test_int_labels_take_label_text_names(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"sentence": "x", "label": 1, "label_text": "positive"},
                                   {"sentence": "y", "label": 0, "label_text": "negative"}])
    ex = cls_examples(load_rows([spec(p)]), TaskConfig())
    lm = build_label_map(ex, TaskConfig())
    assert lm.names == ["negative", "positive"]
    assert [lm.encode(e) for e in ex] == [1, 0]
    assert ex[0].text == "x"  # 'sentence' detected as the text column


def test_fixed_label_order_and_pairs(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"sentence1": "a", "sentence2": "b", "label": "entailment"},
                                   {"sentence1": "c", "sentence2": "d", "label": "contradiction"}])
    task = TaskConfig(labels=["entailment", "neutral", "contradiction"])
    ex = cls_examples(load_rows([spec(p)]), task)
    assert ex[0].text_pair == "b"
    lm = build_label_map(ex, task)
    assert [lm.encode(e) for e in ex] == [0, 2]
    assert class_counts(ex, lm) == {"entailment": 1, "neutral": 0, "contradiction": 1}


def test_multi_label_detected(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": ["y"]}])
    ex = cls_examples(load_rows([spec(p)]), TaskConfig())
    lm = build_label_map(ex, TaskConfig())
    assert lm.multi_label and lm.encode(ex[0]) == [1.0, 1.0] and lm.encode(ex[1]) == [0.0, 1.0]


def test_missing_label_names_file_and_line(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(DataError, match=r"t\.jsonl:2: missing label field 'label'"):
        cls_examples(load_rows([spec(p)]), TaskConfig())


def test_an_empty_label_is_told_apart_from_a_missing_field(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nhello,a\nworld,\n")
    with pytest.raises(DataError, match=r"t\.csv:3: empty label in field 'label'"):
        cls_examples(load_rows([spec(p)]), TaskConfig())


def test_missing_text_names_fields(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"body": "a", "label": "x"}])
    with pytest.raises(DataError, match=r"t\.jsonl:1: missing text field") as e:
        cls_examples(load_rows([spec(p)]), TaskConfig())
    assert "body" in str(e.value)
    ex = cls_examples(load_rows([spec(p, columns={"text": "body"})]), TaskConfig())  # fixed by a column map
    assert ex[0].text == "a"


def test_unknown_label_at_eval(tmp_path):
    tr = write(tmp_path, "train.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    ev = write(tmp_path, "eval.jsonl", [{"text": "a", "label": "pos"}, {"text": "c", "label": "neutral"}])
    lm = build_label_map(cls_examples(load_rows([spec(tr)]), TaskConfig()), TaskConfig())
    bad = cls_examples(load_rows([spec(ev)]), TaskConfig())[1]
    with pytest.raises(DataError, match=r"eval\.jsonl:2: unknown label 'neutral'.*neg, pos"):
        lm.encode(bad)


def test_balance_report_flags_imbalance():
    lines = balance_report({"a": 100, "b": 10, "c": 0})
    text = "\n".join(lines)
    assert "imbalanced" in text and "no samples" in text


def test_split_holdout_is_deterministic():
    a = split_holdout(list(range(100)), 0.2, 0)
    assert a == split_holdout(list(range(100)), 0.2, 0)
    assert len(a[1]) == 20 and not set(a[0]) & set(a[1])


def test_seq2seq_language_columns(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"en": "one", "de": "eins"}])
    ex = seq2seq_examples(load_rows([spec(p)]), TaskConfig(source_lang="en", target_lang="de",
                                                           source_prefix="translate: "))
    assert (ex[0].source, ex[0].target) == ("translate: one", "eins")
    with pytest.raises(DataError, match=r"t\.jsonl:1: missing target field 'fr'"):
        seq2seq_examples(load_rows([spec(p)]), TaskConfig(source_lang="en", target_lang="fr"))


def test_max_samples_and_missing_file(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"text": str(i), "label": "a"} for i in range(10)])
    assert len(load_rows([spec(p, max_samples=3)])) == 3
    with pytest.raises(DataError, match="not found"):
        load_rows([spec(tmp_path / "nope.jsonl")])


def test_data_check_shows_class_balance(tmp_path):
    from task_tiny_models import minilm_dir

    rows = [{"text": f"t{i}", "label": "big"} for i in range(40)] + [{"text": "x", "label": "small"}] * 4
    p = write(tmp_path, "t.jsonl", rows)
    cfg = load_config(overrides=["stage=cls", f"model.path={minilm_dir()}", f"data.train=[{p}]",
                                 "data.eval_split=0.25"])
    out = STAGES["cls"].check_data(cfg)
    assert "big" in out["train.classes"] and out["labels"] == "big, small"
    assert any("imbalanced" in w for w in out["warnings"])


def test_empty_texts_are_kept_but_counted_in_data_check_and_the_data_report(tmp_path):
    from task_tiny_models import minilm_dir

    from tuneforge.train.cls_common import build_data

    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(20)] + [{"text": "  ", "label": "a"}]
    p = write(tmp_path, "t.jsonl", rows)
    cfg = load_config(overrides=["stage=cls", f"model.path={minilm_dir()}", f"data.train=[{p}]",
                                 "data.eval_split=0"])
    out = STAGES["cls"].check_data(cfg)
    assert out["empty_text"] == 1 and out["train_samples"] == 21
    assert any("samples with an empty text: 1 (first: " in w and "t.jsonl:21" in w for w in out["warnings"])

    class Run:
        def write_json(self, name, obj):
            self.report = obj

    run = Run()
    build_data(cfg, run)
    assert run.report["empty_text"]["count"] == 1 and run.report["empty_text"]["first"][0].endswith("t.jsonl:21")


def _cls_file_with_bad_rows(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"text": "good one", "label": "a"}\n'
                 '{"text": "no label here"}\n'
                 '{"text": "broken json", "label": "b"\n'
                 '{"label": "b"}\n'
                 '{"text": "good two", "label": "b"}\n'
                 '{"text": "good three", "label": "a"}\n', encoding="utf-8")
    ev = write(tmp_path, "ev.jsonl", [{"text": "x", "label": "a"}, {"text": "y", "label": "never-trained"}])
    return p, ev


def test_data_invalid_skip_leaves_out_and_counts_bad_cls_rows(tmp_path):
    from tuneforge.runs import RunDir
    from tuneforge.train.cls_common import build_data

    p, ev = _cls_file_with_bad_rows(tmp_path)
    base = ["stage=cls", "model.path=builtin:minilm", f"data.train=[{{path: {p}}}]", f"data.eval=[{{path: {ev}}}]"]
    with pytest.raises(DataError, match="mixed.jsonl:3: malformed JSON"):
        build_data(load_training_config(None, base)[0])  # the default: stop at the first bad row (read first)
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    data = build_data(load_training_config(None, [*base, "data.invalid=skip"])[0], run)
    assert [e.text for e in data.train] == ["good one", "good two", "good three"]
    assert [e.text for e in data.eval] == ["x"]  # the eval row with a label training never saw is left out too
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["invalid"]
    assert report["count"] == 4, report  # no label, broken JSON, no text, unknown eval label
    first = report["first"]
    assert any(m.endswith("mixed.jsonl:2: missing label field 'label'") for m in first), first
    assert any("mixed.jsonl:3: malformed JSON" in m for m in first), first
    assert any("mixed.jsonl:4: missing text field" in m for m in first), first
    assert any("ev.jsonl:2" in m and "never-trained" in m for m in first), first


def test_data_invalid_skip_with_no_usable_row_says_how_many_were_skipped(tmp_path):
    from tuneforge.train.cls_common import build_data

    p = write(tmp_path, "t.jsonl", [{"text": "a"}, {"text": "b"}])
    cfg = load_training_config(None, ["stage=cls", "model.path=builtin:minilm", f"data.train=[{{path: {p}}}]",
                                      "data.eval_split=0", "data.invalid=skip"])[0]
    with pytest.raises(DataError, match="no usable training rows: all 2 were invalid and skipped"):
        build_data(cfg)


def test_data_invalid_skip_leaves_out_and_counts_bad_seq2seq_rows(tmp_path):
    from tuneforge.runs import RunDir
    from tuneforge.train.seq2seq import build_data

    p = tmp_path / "pairs.jsonl"
    p.write_text('{"source": "a cat", "target": "eine Katze"}\n{"source": "no target"}\n{"source": "bad\n'
                 '{"source": "a dog", "target": "ein Hund"}\n', encoding="utf-8")
    base = ["stage=seq2seq", f"data.train=[{{path: {p}}}]", "data.eval_split=0"]
    with pytest.raises(DataError, match="pairs.jsonl:3: malformed JSON"):
        build_data(load_training_config(None, base)[0])
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    train, _, skipped = build_data(load_training_config(None, [*base, "data.invalid=skip"])[0], run)
    assert [e.target for e in train] == ["eine Katze", "ein Hund"] and len(skipped) == 2
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["train"] == {"samples": 2} and report["invalid"]["count"] == 2, report
    assert any("pairs.jsonl:2: missing target field" in m for m in report["invalid"]["first"]), report
