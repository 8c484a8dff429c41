"""Question/answer extraction per record layout, field overrides, normalisation, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.data.qa_fields import FieldSpec, detect_layout, extract_qa, normalize, rows_to_qas
from tuneforge.data.readers import Row, read_rows
from tuneforge.errors import DataError

from shared_paths import DATA  # noqa: E402


def row(data: dict, line: int = 1, file: str = "f.jsonl") -> Row:
    return Row(data, file, line)


def qa_of(data: dict):
    r = row(data)
    return extract_qa(r, detect_layout(r))


def test_alpaca_question_includes_input():
    qa = qa_of({"instruction": "Translate.", "input": "Bonjour", "output": "Hello"})
    assert (qa.question, qa.answer) == ("Translate.\nBonjour", "Hello")


def test_chat_layouts_take_first_user_and_assistant_turns():
    share = qa_of({"conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "Q1"},
                                     {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}]})
    assert (share.question, share.answer) == ("Q1", "A1")
    parts = qa_of({"messages": [{"role": "user", "content": [{"type": "text", "value": "hi"}]},
                                {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]})
    assert (parts.question, parts.answer) == ("hi", "hello")
    dpo = qa_of({"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "good"}})
    assert dpo.answer == "good"


@pytest.mark.skipif(not DATA.exists(), reason="shared/data not available")
@pytest.mark.parametrize("rel, layout", [
    ("mmlu/test_dev_subset.jsonl", "mmlu"), ("gsm8k/test_dev_subset.jsonl", "qa"),
    ("truthfulqa/truthfulqa_dev_subset.jsonl", "truthfulqa"), ("openbookqa/openbookqa_dev_subset.jsonl", "openbookqa"),
    ("squad_v2_subset/squad_v2_shared.jsonl", "squad"), ("llamafactory_demo/alpaca_en_demo.json", "alpaca"),
    ("llamafactory_demo/v1_sft_demo.jsonl", "openai"), ("llamafactory_demo/dpo_en_demo.json", "sharegpt"),
])
def test_shared_benchmark_and_training_files(rel, layout):
    first = next(iter(read_rows(DATA / rel)))
    assert detect_layout(first) == layout
    qa = extract_qa(first, layout)
    assert qa.question.strip() and qa.file.endswith(Path(rel).name) and qa.line >= 1


def test_benchmark_answers():
    mmlu = qa_of({"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1})
    assert mmlu.question == "2+2?\nA. 3\nB. 4\nC. 5\nD. 6" and mmlu.answer == "4"
    obqa = qa_of({"question": {"stem": "Sun is a", "choices": [{"text": "star", "label": "A"},
                                                                {"text": "planet", "label": "B"}]}, "answerKey": "A"})
    assert obqa.question.startswith("Sun is a\nA. star") and obqa.answer == "star"
    squad = qa_of({"question": "Where?", "context": "...", "answers": {"text": ["France"], "answer_start": [0]}})
    assert squad.answer == "France"
    unanswerable = qa_of({"question": "Where?", "context": "...", "answers": {"text": [], "answer_start": []}})
    assert unanswerable.answer == ""
    tqa = qa_of({"Question": "Q?", "Best Answer": "A"})
    assert (tqa.question, tqa.answer) == ("Q?", "A")


def test_field_override_with_dotted_paths():
    spec = FieldSpec.parse("item.q:item.a")
    qa = extract_qa(row({"item": {"q": "What?", "a": "That"}}), "", spec)
    assert (qa.question, qa.answer) == ("What?", "That")
    with pytest.raises(DataError, match=r"f.jsonl:7: missing text field 'item.x'"):
        extract_qa(row({"item": {}}, line=7), "", FieldSpec.parse("item.x"))
    with pytest.raises(DataError, match="missing answer field 'nope'"):
        extract_qa(row({"q": "x"}), "", FieldSpec.parse("q:nope"))


def test_unknown_layout_mismatch_and_missing_fields_are_clear():
    with pytest.raises(DataError, match=r"f.jsonl:3: no question/answer text field found.*--field"):
        rows_to_qas([row({"foo": 1}, line=3)])
    mixed = [row({"instruction": "a", "output": "b"}, 1), row({"messages": [{"role": "user", "content": "x"}]}, 2)]
    with pytest.raises(DataError, match=r"f.jsonl:2: mismatched formats: .*'openai'.*'alpaca'"):
        rows_to_qas(mixed)
    missing = [row({"Question": "a", "Best Answer": "b"}, 1), row({"Best Answer": "c"}, 2)]
    with pytest.raises(DataError, match=r"f.jsonl:2: missing text field for layout 'truthfulqa'"):
        rows_to_qas(missing)
    with pytest.raises(DataError, match="empty input"):
        rows_to_qas([])


def test_layout_is_detected_per_file():
    rows = [row({"instruction": "a", "output": "b"}, 1, "a.json"), row({"Question": "q", "Best Answer": "x"}, 1, "b.csv")]
    assert [q.question for q in rows_to_qas(rows)] == ["a", "q"]


def test_normalize_ignores_case_whitespace_and_punctuation():
    assert normalize("  What's   the CAPITAL, of France?? ") == normalize("what s the capital of france")
    assert normalize("Ｆｕｌｌ\u3000width") == "full width"  # NFKC


def test_csv_rows(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("Question,Best Answer\nIs it?,Yes\n", encoding="utf-8")
    (qa,) = rows_to_qas(list(read_rows(p)))
    assert (qa.question, qa.answer, qa.line) == ("Is it?", "Yes", 2)
    json.dumps(qa.__dict__)  # plain data, serialisable for reports
