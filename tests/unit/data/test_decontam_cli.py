"""`tuneforge decontam`, `tuneforge data dedup` and `tuneforge data filter` end to end (fake encoder)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

import decontam_fakes
from tuneforge.cli import app
from tuneforge.data.dedup import dedup, shingles
from tuneforge.data.qa_fields import QA
from tuneforge.data.quality import QualityRules, filter_quality, garbled_reason
from tuneforge.errors import DataError

runner = CliRunner()
BENCH = [{"Question": "What happens if you eat a pomegranate?", "Best Answer": "Nothing in particular happens"},
         {"Question": "Is tap water safe to drink?", "Best Answer": "It depends on your current location"}]
TRAIN = [{"instruction": "What happens if you eat a pomegranate?", "input": "", "output": "Nothing in particular"},
         {"instruction": "Describe a process of making crepes.", "input": "", "output": "Mix flour, eggs and milk."},
         {"instruction": "is tap water safe to drink", "input": "", "output": "It depends on your location"},
         {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."}]


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # commands without --out write ./<name>_decontam: keep that out of the repo
    decontam_fakes.install(monkeypatch)
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    bench = tmp_path / "tqa.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in BENCH), encoding="utf-8")
    train = tmp_path / "train.json"
    train.write_text(json.dumps(TRAIN), encoding="utf-8")
    return tmp_path, train, bench


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res, res.output + (res.stderr if res.stderr_bytes is not None else "")


def test_decontam_writes_filtered_data_in_the_same_format_and_a_report(files):
    tmp, train, bench = files
    res, out = invoke("decontam", "--train", train, "--against", bench, "--out", tmp / "o")
    assert res.exit_code == 0, out
    kept = json.loads((tmp / "o" / "train.json").read_text())
    assert [r["instruction"] for r in kept] == [TRAIN[1]["instruction"], TRAIN[3]["instruction"]]
    for name in ("report.jsonl", "report.md", "similarity_hist.png", "summary.json"):
        assert (tmp / "o" / name).exists(), name
    summary = json.loads((tmp / "o" / "summary.json").read_text())
    assert summary["n_removed"] == 2 and summary["records_by_category"]["duplicate"] == 2


def test_decontam_keeps_csv_and_jsonl_formats(files):
    tmp, _, bench = files
    src = tmp / "train.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["instruction", "input", "output"])
        w.writeheader()
        w.writerows(TRAIN)
    jsonl = tmp / "more.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in TRAIN[1:]), encoding="utf-8")
    res, out = invoke("decontam", "--train", f"{src},{jsonl}", "--against", bench, "--method", "exact,ngram",
                      "-o", tmp / "o")
    assert res.exit_code == 0, out
    rows = list(csv.DictReader(open(tmp / "o" / "train.csv", encoding="utf-8")))
    assert len(rows) == 2 and list(rows[0]) == ["instruction", "input", "output"]
    assert len((tmp / "o" / "more.jsonl").read_text().splitlines()) == 2
    assert not (tmp / "o" / "similarity_hist.png").exists()  # no embeddings, no histogram


def test_decontam_reads_a_config(files):
    tmp, train, bench = files
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"data:\n  train: [{train.name}]\n  decontaminate_against: [{bench.name}]\n", encoding="utf-8")
    res, out = invoke("decontam", "--train", cfg, "--method", "exact", "-o", tmp / "o")
    assert res.exit_code == 0, out
    assert len(json.loads((tmp / "o" / "train.json").read_text())) == 2  # both leaks are exact matches


@pytest.mark.parametrize("content, msg", [
    ("[]", "dataset has no records"),
    (json.dumps([{"foo": "bar"}]), "no question/answer text field found"),
    (json.dumps([TRAIN[0], {"messages": [{"role": "user", "content": "x"}]}]), "mismatched formats"),
])
def test_decontam_errors_are_one_line(files, content, msg):
    tmp, _, bench = files
    bad = tmp / "bad.json"
    bad.write_text(content, encoding="utf-8")
    res, out = invoke("decontam", "--train", bad, "--against", bench)
    assert res.exit_code == 2 and msg in out and "Traceback" not in out, out


def test_decontam_missing_files_and_benchmarks(files):
    tmp, train, bench = files
    res, out = invoke("decontam", "--train", train, "--against", tmp / "nope.jsonl")
    assert res.exit_code == 2 and "nope.jsonl: data file not found" in out
    res, out = invoke("decontam", "--train", train)
    assert res.exit_code == 2 and "no benchmark files" in out
    res, out = invoke("decontam", "--train", train, "--against", bench, "--field", "missing")
    assert res.exit_code == 2 and "missing text field 'missing'" in out


def test_dedup_exact_and_minhash(files):
    tmp, _, _ = files
    base = "Explain how photosynthesis turns light water and carbon dioxide into sugar and oxygen in plants"
    rows = [{"instruction": base, "output": "Chlorophyll absorbs light."},
            {"instruction": base.upper() + "!!", "output": "chlorophyll absorbs light"},  # exact after normalising
            {"instruction": base.replace("sugar", "glucose"), "output": "Chlorophyll absorbs light."},  # near
            {"instruction": "Name three primary colours.", "output": "Red, yellow, blue."}]
    src = tmp / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res, out = invoke("data", "dedup", src, "-o", tmp / "o")
    assert res.exit_code == 0, out
    kept = [json.loads(x) for x in (tmp / "o" / "d.jsonl").read_text().splitlines()]
    assert kept == [rows[0], rows[3]]
    removed = [json.loads(x) for x in (tmp / "o" / "removed.jsonl").read_text().splitlines()]
    assert [(r["line"], r["method"], r["duplicate_of"]) for r in removed] == [
        (2, "exact", f"{src}:1"), (3, "minhash", f"{src}:1")]


def test_dedup_embedding_and_errors(files):
    qas = [QA("What is the capital of France?", "Paris"), QA("The capital of France: what is it?", "Paris"),
           QA("Write a haiku about rain.", "Drops")]
    result = dedup(qas, ("embedding",), threshold=0.9, model="builtin:minilm")  # fake cosine 0.935
    assert result.kept == [0, 2] and result.removed[0].of == 0
    with pytest.raises(DataError, match="unknown dedup method"):
        dedup(qas, ("simhash",))
    with pytest.raises(DataError, match="empty input"):
        dedup([])
    assert shingles("A, b!") == {"a b"} and shingles("abcdefg") == {"abcde", "bcdef", "cdefg"}


def test_quality_rules():
    qas = [QA("Tell me a joke.", "Why did the chicken cross the road?"), QA("Say something.", ""),
           QA("", "orphan answer"), QA("Explain gravity.", "Gravity is \ufffd\ufffd broken"),
           QA("Explain tea.", "TÃ©a is a drink that Ã© many enjoy"), QA("Scream.", "a" * 30),
           QA("Repeat.", " ".join(["the same"] * 40))]
    res = filter_quality(qas)
    assert res.kept == [0]
    reasons = dict(res.dropped)
    assert reasons[1] == ["empty answer"] and reasons[2] == ["empty question"]
    assert all(r[0].startswith("garbled") for i, r in reasons.items() if i >= 3)
    assert filter_quality(qas[:1], QualityRules(max_chars=10)).dropped[0][1][0].startswith("long")
    text_only = [QA("A document about rivers and lakes.", ""), QA("", "")]
    assert filter_quality(text_only).kept == [0]  # no answers in the data: empty answers are not judged
    assert garbled_reason("Plain text with numbers 1234567890 and code: x == y") is None


def test_filter_language_cli(files):
    pytest.importorskip("py3langid")
    tmp, _, _ = files
    rows = [{"instruction": "Describe the water cycle in a few sentences.", "output": "Water evaporates, "
             "condenses into clouds and falls as rain."},
            {"instruction": "描述一下水循环的过程。", "output": "水蒸发后凝结成云，然后以雨的形式落下。"},
            {"instruction": "Name a fruit.", "output": ""}]
    src = tmp / "m.json"
    src.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    res, out = invoke("data", "filter", src, "--lang", "en", "-o", tmp / "o")
    assert res.exit_code == 0, out
    assert json.loads((tmp / "o" / "m.json").read_text()) == rows[:1]
    summary = json.loads((tmp / "o" / "summary.json").read_text())
    assert summary["by_reason"] == {"language": 1, "empty": 1}
