"""Bad-input matrix for the data pipeline: every failure names file and line; nothing is silently dropped."""

import json

import pytest

from tuneforge.config import load_config
from tuneforge.data.load import load_datasets
from tuneforge.data.readers import read_rows
from tuneforge.errors import DataError


def cfg_for(path, *extra):
    return load_config(None, [f"data.train={path}", *extra])


def jsonl(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return p


GOOD = {"instruction": "hi", "input": "", "output": "hello"}


def test_alpaca_with_history_and_system(tmp_path):
    p = jsonl(tmp_path, [{"instruction": "q2", "input": "ctx", "output": "a2", "system": "be nice",
                          "history": [["q1", "a1"]]}])
    train, _, rep = load_datasets(cfg_for(p))
    assert train[0].messages == [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2\nctx"},
        {"role": "assistant", "content": "a2"}]
    assert rep.read == 1


def test_sharegpt_and_openai(tmp_path):
    sg = jsonl(tmp_path, [{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}], "s.jsonl")
    oa = jsonl(tmp_path, [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                                        {"role": "assistant", "content": "b"}]}], "o.jsonl")
    assert load_datasets(cfg_for(sg))[0][0].messages[-1] == {"role": "assistant", "content": "b"}
    assert load_datasets(cfg_for(oa))[0][0].messages[0]["role"] == "system"


def test_malformed_json_line_names_line(tmp_path):
    p = jsonl(tmp_path, [GOOD, GOOD, '{"instruction": "x", "output": '])
    with pytest.raises(DataError, match=r"d\.jsonl:3: malformed JSON"):
        load_datasets(cfg_for(p))


def test_missing_field_names_line_and_field(tmp_path):
    p = jsonl(tmp_path, [GOOD, {"instruction": "x", "input": ""}])
    with pytest.raises(DataError, match=r"d\.jsonl:2: missing field 'output'"):
        load_datasets(cfg_for(p))


def test_wrong_role_order(tmp_path):
    p = jsonl(tmp_path, [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                       {"role": "assistant", "content": "c"}]}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: wrong role order"):
        load_datasets(cfg_for(p))


def test_must_end_with_assistant(tmp_path):
    p = jsonl(tmp_path, [{"messages": [{"role": "user", "content": "a"}]}])
    with pytest.raises(DataError, match="end with an assistant"):
        load_datasets(cfg_for(p))


def test_non_utf8_names_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid UTF-8"):
        load_datasets(cfg_for(p))


def test_empty_dataset(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n")
    with pytest.raises(DataError, match="no usable samples"):
        load_datasets(cfg_for(p))


def test_json_list_reports_record_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]\n')
    with pytest.raises(DataError, match=r"d\.json:3: missing field 'output'"):
        load_datasets(cfg_for(p))


def test_skip_mode_counts_invalid(tmp_path):
    p = jsonl(tmp_path, [GOOD, {"instruction": "x"}, GOOD, "not json"])
    with pytest.raises(DataError):  # data.invalid=error (the default): the first bad line stops with file:line
        load_datasets(cfg_for(p))
    train, _, rep = load_datasets(cfg_for(p, "data.invalid=skip"))  # a malformed JSON line is a bad row too
    assert len(train) == 2 and rep.invalid == 2 and rep.read == 4 and ":4: malformed JSON" in rep.warnings[1]
    p = jsonl(tmp_path, [GOOD, {"instruction": "x"}, GOOD], "ok.jsonl")
    train, _, rep = load_datasets(cfg_for(p, "data.invalid=skip"))
    assert len(train) == 2 and rep.invalid == 1 and "ok.jsonl:2" in rep.warnings[0]


def test_csv_and_dir(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.csv").write_text("instruction,input,output\nq,,a\nq2,,a2\n")
    jsonl(d, [GOOD], "b.jsonl")
    rows = list(read_rows(d))
    assert len(rows) == 3 and rows[1].line == 3 and rows[1].file.endswith("a.csv")
    train, _, _ = load_datasets(cfg_for(d))
    assert len(train) == 3


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD, GOOD]), p)
    assert len(load_datasets(cfg_for(p))[0]) == 2


def test_mixing_weights_and_max_samples_and_eval_split(tmp_path):
    a = jsonl(tmp_path, [{**GOOD, "output": f"a{i}"} for i in range(20)], "a.jsonl")
    b = jsonl(tmp_path, [{**GOOD, "output": f"b{i}"} for i in range(20)], "b.jsonl")
    cfg = load_config(None, [f'data.train=[{{path: "{a}", weight: 1.0}}, {{path: "{b}", weight: 0.5}}]',
                             "data.eval_split=0.2"])
    train, evals, _ = load_datasets(cfg)
    assert len(train) + len(evals) == 30 and len(evals) == 6
    outs = [s.messages[-1]["content"] for s in train + evals]
    assert sum(o.startswith("b") for o in outs) == 10
    cfg = load_config(None, [f"data.train={a}", "data.max_samples=5"])
    train, _, rep = load_datasets(cfg)
    assert len(train) == 5 and rep.capped == 15


def test_llamafactory_registry(tmp_path):
    lf = "/work/shared/data/llamafactory_demo"
    cfg = load_config(None, [f"data.dataset_dir={lf}", "data.train=[alpaca_en_demo, kto_en_demo]"])
    train, _, rep = load_datasets(cfg)
    assert rep.per_dataset[f"{lf}/alpaca_en_demo.json"] == 999
    assert rep.per_dataset[f"{lf}/kto_en_demo.json"] == 300
    with pytest.raises(DataError, match="did you mean 'alpaca_en_demo'"):
        load_datasets(load_config(None, [f"data.dataset_dir={lf}", "data.train=alpaca_en_dem"]))


def test_pt_text_from_registry():
    lf = "/work/shared/data/llamafactory_demo"
    cfg = load_config(None, ["stage=pt", f"data.dataset_dir={lf}", "data.train=c4_demo"])
    train, _, _ = load_datasets(cfg)
    assert len(train) == 300 and train[0].text


def test_json_list_line_numbers_survive_escaped_quotes(tmp_path):
    p = tmp_path / "q.json"
    p.write_text('[\n {"instruction": "say \\"hi\\" {now}", "output": "ok"},\n {"instruction": "b", "output": "c"}\n]\n')
    assert [r.line for r in read_rows(p)] == [2, 3]


def test_hf_save_to_disk_dir_and_missing_hub_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_list([GOOD, GOOD, GOOD]).save_to_disk(str(tmp_path / "hf"))
    train, _, _ = load_datasets(cfg_for(tmp_path / "hf"))
    assert len(train) == 3 and train[0].file.endswith("[train]")
    with pytest.raises(DataError, match="could not be loaded with `datasets`"):
        load_datasets(cfg_for("someone/not-a-local-dataset"))


def test_sharegpt_custom_tags(tmp_path):
    p = jsonl(tmp_path, [{"dialog": [{"speaker": "me", "text": "a"}, {"speaker": "bot", "text": "b"}]}])
    cfg = load_config(None, [f'data.train=[{{path: "{p}", format: sharegpt, columns: {{messages: dialog}}, '
                             'tags: {role_tag: speaker, content_tag: text, user_tag: me, assistant_tag: bot}}]'])
    assert load_datasets(cfg)[0][0].messages == [{"role": "user", "content": "a"},
                                                 {"role": "assistant", "content": "b"}]


def test_squad_rows_train_as_chat_and_unanswerable_ones_are_counted(tmp_path):
    ctx = "The Normans gave their name to Normandy, a region in France."
    p = jsonl(tmp_path, [
        {"context": ctx, "question": "Where is Normandy?", "answers": {"text": ["France", "France"],
                                                                       "answer_start": [53, 53]}},
        {"context": ctx, "question": "Who named Iceland?", "answers": {"text": [], "answer_start": []}},
        {"context": ctx, "question": "Who named Normandy?", "answers": [{"text": "The Normans", "answer_start": 0}]}])
    train, _, rep = load_datasets(cfg_for(p))  # auto-detected as `qa`
    assert [s.messages for s in train] == [
        [{"role": "user", "content": f"Context: {ctx}\nQuestion: Where is Normandy?"},
         {"role": "assistant", "content": "France"}],
        [{"role": "user", "content": f"Context: {ctx}\nQuestion: Who named Normandy?"},
         {"role": "assistant", "content": "The Normans"}]]
    assert rep.read == 3 and rep.as_dict()["unanswerable_skipped"] == 1


def test_squad_row_without_answers_names_line(tmp_path):
    p = jsonl(tmp_path, [{"context": "c", "question": "q", "answers": {"text": ["c"], "answer_start": [0]}},
                         {"context": "c", "question": "q", "answer": "c"}])
    with pytest.raises(DataError, match=r"d\.jsonl:2: missing field 'answers'"):
        load_datasets(load_config(None, [f"data.train=[{{path: {p}, format: qa}}]"]))


def test_squad_row_whose_answer_is_not_in_its_context_names_line(tmp_path):
    p = jsonl(tmp_path, [{"context": "The Normans gave their name to Normandy.", "question": "Who?",
                          "answers": {"text": ["Normans"], "answer_start": [0]}}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: answer_start 0 does not match the context"):
        load_datasets(cfg_for(p))
