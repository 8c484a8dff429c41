"""stage: distill on tiny models. The measure is held-out agreement with the teacher: a student trained with KD must
end closer to its teacher (mean KL on eval rows it never trained on) than the same student trained without KD
(alpha 0, same steps, same data order), by a wide margin. A KD term that is ignored, has the wrong sign or the
wrong direction of the KL fails these."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "train"))
from run_helpers import write_copy_task  # noqa: E402
from task_tiny_models import sentiment_rows, tiny_bert, write_jsonl  # noqa: E402

from tuneforge.config.load import load_config  # noqa: E402
from tuneforge.train.run import run_training  # noqa: E402


def mean_kl(teacher, student, batch, keep=None) -> float:
    """KL(teacher || student) per row (classification) or per kept token (LM), at temperature 1."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        t, s = teacher(**batch).logits.float(), student(**batch).logits.float()
    if keep is not None:
        t, s = t[keep], s[keep]
    return float(F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean"))


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill-sent")
    return write_jsonl(d / "train.jsonl", sentiment_rows(240, 0)), write_jsonl(d / "eval.jsonl", sentiment_rows(80, 1))


def test_classifier_student_from_teacher_gets_closer_with_kd(tmp_path, sentiment):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train, evals = sentiment
    common = [f"data.train=[{train}]", f"data.eval=[{evals}]", "data.cutoff_len=32", "train.batch_size=16",
              "train.threads=1", "train.logging_steps=5", f"output.dir={tmp_path}"]
    teacher = run_training(load_config(overrides=[
        "stage=cls", "method=full", f"model.path={tiny_bert()}", "train.lr=1e-2", "train.epochs=3",
        "output.name=teacher", *common]))["run_dir"]
    runs = {}
    for name, alpha in (("kd", 1.0), ("plain", 0.0)):
        out = run_training(load_config(overrides=[
            "stage=distill", "method=full", f"distill.teacher={teacher}", "distill.student_layers=1",
            f"distill.alpha={alpha}", "train.lr=3e-3", "train.max_steps=15", f"output.name={name}", *common]))
        runs[name] = out
    student_dir = Path(runs["kd"]["run_dir"])
    resolved = yaml.safe_load((student_dir / "config.yaml").read_text())["resolved"]
    assert resolved["distill.teacher"]["layers"] == 2 and resolved["distill.student"]["layers"] == 1
    assert resolved["distill.student"]["kept_layers"] == [0] and resolved["distill.student"]["source"] == "teacher"
    assert runs["kd"]["teacher_eval_accuracy"] >= 0.9

    tok = AutoTokenizer.from_pretrained(Path(teacher) / "model")
    texts = [json.loads(x)["sentence"] for x in Path(evals).read_text().splitlines()]
    batch = dict(tok(texts, padding=True, return_tensors="pt"))
    t_model = AutoModelForSequenceClassification.from_pretrained(Path(teacher) / "model").eval()
    kl = {n: mean_kl(t_model, AutoModelForSequenceClassification.from_pretrained(
        Path(r["run_dir"]) / "model").eval(), batch) for n, r in runs.items()}
    student = AutoModelForSequenceClassification.from_pretrained(student_dir / "model")
    assert student.config.num_hidden_layers == 1 and len(student.bert.encoder.layer) == 1  # plain reload
    assert kl["kd"] < 0.5 * kl["plain"], kl
    assert runs["kd"]["eval_accuracy"] >= runs["plain"]["eval_accuracy"] - 0.02, runs


def test_causal_lm_token_level_kd_gets_closer(tiny_llama, tmp_path):
    """A 2-layer teacher distilled token by token into a 1-layer copy of itself, on the chat (sft) data path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train = write_copy_task(tmp_path / "train.json", n=48, seed=0)
    evals = write_copy_task(tmp_path / "eval.json", n=16, seed=1)
    runs = {}
    for name, alpha in (("kd", 1.0), ("plain", 0.0)):
        out = run_training(load_config(overrides=[
            "stage=distill", "method=full", f"distill.teacher={tiny_llama}", "distill.student_layers=[1]",
            f"distill.alpha={alpha}", "distill.temperature=1.0", f"data.train={train}", f"data.eval={evals}",
            "data.template=auto", "train.lr=1e-2", "train.max_steps=12", "train.batch_size=8", "train.threads=1",
            f"output.dir={tmp_path}", f"output.name={name}"]))
        runs[name] = out
    assert runs["kd"]["eval_loss"] > 0 and runs["kd"]["teacher_eval_loss"] > 0
    resolved = yaml.safe_load((Path(runs["kd"]["run_dir"]) / "config.yaml").read_text())["resolved"]
    assert resolved["distill.student"]["kept_layers"] == [1] and resolved["data.packing"] is False

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    rows = json.loads(Path(evals).read_text())
    prompts = [[{"role": "user", "content": r["instruction"]}] for r in rows]
    texts = [tok.apply_chat_template(p + [{"role": "assistant", "content": r["output"]}], tokenize=False)
             for p, r in zip(prompts, rows)]
    batch = dict(tok(texts, padding=True, return_tensors="pt"))
    keep = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)  # positions that predict the answer
    for i, p in enumerate(prompts):
        start = len(tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True)) - 1
        keep[i, start:int(batch["attention_mask"][i].sum()) - 1] = True
    teacher = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    kl = {n: mean_kl(teacher, AutoModelForCausalLM.from_pretrained(Path(r["run_dir"]) / "model").eval(), batch,
                     keep) for n, r in runs.items()}
    assert kl["kd"] < 0.5 * kl["plain"], kl
