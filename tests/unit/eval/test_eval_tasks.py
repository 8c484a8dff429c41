import json
from pathlib import Path

import pytest

from tuneforge.config.evaluation import EvalTaskConfig
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.tasks import get_field, load_samples, render, resolve_task

from shared_paths import DATA  # noqa: E402
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared benchmark data not present")


def _jsonl(tmp_path, rows, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(p)


def _mcq(tmp_path, rows, **kw):
    cfg = EvalTaskConfig(file=_jsonl(tmp_path, rows), prompt="Q: {q}\nA:", choices="opts", gold="ans", **kw)
    return load_samples(resolve_task(cfg))


def test_field_paths_and_templates():
    row = {"question": {"stem": "Why?", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]},
           "xs": [1, 2]}
    assert get_field(row, "question.choices.text") == ["a", "b"]
    assert get_field(row, "xs.1") == 2
    assert render("{question.stem} {question[choices][1][text]} {xs[0]}", row) == "Why? b 1"


@pytest.mark.parametrize("ans,expected", [(1, 1), ("1", 1), ("B", 1), ("blue", 2), (0.0, 0)])
def test_gold_as_index_label_or_text(tmp_path, ans, expected):
    (s,) = _mcq(tmp_path, [{"q": "sky?", "opts": ["red", "green", "blue"], "ans": ans}])
    assert s.gold == expected and s.choices == ["red", "green", "blue"] and s.context == "Q: sky?\nA:"


@pytest.mark.parametrize("row,msg", [
    ({"q": "x", "opts": ["a", "b"]}, "missing gold field 'ans'"),
    ({"q": "x", "opts": ["a", "b"], "ans": None}, "missing gold"),
    ({"q": "x", "opts": ["a", "b"], "ans": 2}, "gold index 2 out of range for 2 choices"),
    ({"q": "x", "opts": ["a", "b"], "ans": "E"}, "not an index, a label"),
    ({"q": "x", "opts": [], "ans": 0}, "empty choices"),
    ({"q": "x", "opts": ["a", " "], "ans": 0}, "choice 1 is empty"),
    ({"q": "x", "opts": "a,b", "ans": 0}, "must be a list"),
    ({"opts": ["a", "b"], "ans": 0}, "prompt template needs field 'q'"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, msg):
    good = {"q": "fine", "opts": ["a", "b"], "ans": 0}
    with pytest.raises(DataError) as e:
        _mcq(tmp_path, [good, good, row])
    assert msg in str(e.value)
    assert f"t.jsonl:3:" in str(e.value)  # the third line of the file


def test_missing_file_and_incomplete_spec(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_samples(resolve_task(EvalTaskConfig(file=str(tmp_path / "nope.jsonl"), prompt="x", choices="c",
                                                 gold="g")))
    with pytest.raises(ConfigError, match="needs choices and gold"):
        resolve_task(EvalTaskConfig(file="x.jsonl", prompt="{q}"))
    with pytest.raises(ConfigError, match="needs `target`"):
        resolve_task(EvalTaskConfig(file="x.jsonl", prompt="{q}", type="generate"))


def test_csv_with_choice_templates(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("question,c0,c1,answer\nTwo plus two?,4,5,0\nbad,,x,1\n", encoding="utf-8")
    cfg = EvalTaskConfig(file=str(p), prompt="{question}", choices=["{c0}", "{c1}"], gold="answer", limit=1)
    with pytest.raises(DataError, match=r"m\.csv:3: choice 0 is empty"):
        load_samples(resolve_task(cfg))  # every row is validated, also beyond `limit`


def test_fewshot_is_deterministic_and_excludes_the_sample(tmp_path):
    rows = [{"q": f"q{i}", "opts": ["a", "b"], "ans": i % 2} for i in range(12)]
    a = _mcq(tmp_path, rows, fewshot=3, fewshot_delimiter="\n\n", fewshot_sampler="random")
    b = _mcq(tmp_path, rows, fewshot=3, fewshot_delimiter="\n\n", fewshot_sampler="random")
    assert [s.context for s in a] == [s.context for s in b]
    c = load_samples(resolve_task(EvalTaskConfig(file=_jsonl(tmp_path, rows), prompt="Q: {q}\nA:", choices="opts",
                                                 gold="ans", fewshot=3, fewshot_sampler="random")), seed=7)
    assert [s.context for s in a] != [s.context for s in c]
    for i, s in enumerate(a):
        shots = s.context.split("\n\n")
        assert len(shots) == 4 and f"Q: q{i}\n" not in "\n\n".join(shots[:-1])
        assert shots[0].endswith(" a") or shots[0].endswith(" b")
    # per-sample RNG: a sample's examples don't depend on `limit`
    lim = _mcq(tmp_path, rows, fewshot=3, limit=4, fewshot_sampler="random")
    assert [s.context for s in lim] == [s.context for s in a[:4]]
    first = _mcq(tmp_path, rows, fewshot=2, fewshot_sampler="first_n")
    assert first[0].context.startswith("Q: q1\nA: b\n\nQ: q2\nA: a\n\n")
    assert first[5].context.startswith("Q: q0\nA: a\n\nQ: q1\nA: b\n\n")


def test_too_few_fewshot_examples(tmp_path):
    with pytest.raises(DataError, match="wants 5 few-shot examples but only 2"):
        _mcq(tmp_path, [{"q": f"x{i}", "opts": ["a"], "ans": 0} for i in range(3)], fewshot=5)


@needs_data
def test_presets_on_shared_data():
    mmlu = load_samples(resolve_task(EvalTaskConfig(file=str(DATA / "mmlu/test_dev_subset.jsonl"), preset="mmlu",
                                                    fewshot=5, fewshot_file=str(DATA / "mmlu/dev.jsonl"),
                                                    fewshot_sampler="first_n")))
    assert len(mmlu) == 570 and mmlu[0].choices == ["A", "B", "C", "D"]
    ctx = mmlu[0].context
    assert ctx.startswith("The following are multiple choice questions (with answers) about abstract algebra.\n\n")
    assert ctx.count("\nAnswer:") == 6 and ctx.endswith("D. 120\nAnswer:")  # 5 same-subject shots + the question
    obqa = load_samples(resolve_task(EvalTaskConfig(file=str(DATA / "openbookqa/openbookqa_dev_subset.jsonl"),
                                                    preset="openbookqa")))
    assert len(obqa) == 100 and obqa[0].gold == 2 and obqa[0].context.startswith("Question: Steve")
    hs = load_samples(resolve_task(EvalTaskConfig(file=str(DATA / "openbookqa/openbookqa_dev_subset.jsonl"),
                                                  preset="hellaswag_obqa")))
    assert hs[0].context == obqa[0].context[len("Question: "):-len("\nAnswer:")]
    tqa = load_samples(resolve_task(EvalTaskConfig(file=str(DATA / "truthfulqa/truthfulqa_dev_subset.jsonl"),
                                                   preset="truthfulqa_mc1")))
    assert all(s.gold == 0 and len(s.choices) >= 2 for s in tqa)
    gsm = load_samples(resolve_task(EvalTaskConfig(file=str(DATA / "gsm8k/test_dev_subset.jsonl"), preset="gsm8k")))
    assert gsm[0].references[0].endswith("#### 694")
    squad = load_samples(resolve_task(EvalTaskConfig(file=str(DATA / "squad_v2_subset/squad_v2_shared.jsonl"),
                                                     preset="squad")))
    assert sum(s.references == [""] for s in squad) == 477  # unanswerable rows
