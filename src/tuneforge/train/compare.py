"""`tuneforge compare-approaches CONFIG`: "which approach?" answered on the user's own classification data
(extractive QA and translation configs go to train/compare_gen.py).

Every route is trained (or not) and scored on the same held-out split (the config's `data.eval`):
  features     encoder frozen, mean-pooled embeddings + a linear head (stage cls, method features)
  full         encoder full fine-tune (stage cls, method full)
  lora         encoder LoRA (stage cls, method lora)
  zero_shot    decoder, label words scored by log-likelihood (eval/mcq.py's scorer)
  few_shot     the same with k training examples in the context
  sft_lora     decoder LoRA SFT on "text -> label word" replies, then scored like zero_shot on its chat template
  decoder_cls  decoder with a classification head on the last token (stage cls, method lora)
Each route is a normal run dir under the output dir; a route that fails is reported with its one-line error.
Each route uses its stage's default learning rate for its method (train/stage.py `lr_defaults`): one train.lr
fits no two of these routes, so the config's train.lr is not carried over.
A decoder costs ~20x an encoder per training example, so `decoder_examples` caps what the decoder routes that train
see (train.max_steps = the examples / the examples per step, drawn by the trainer's shuffle from the whole training
set); each row reports the examples it trained on, so the table states the budget it compares.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config import load_config
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir, open_run
from tuneforge.train import compare_decoder as dec
from tuneforge.train.cls_common import ClsData, build_data
from tuneforge.train.compare_gen import compare_generation
from tuneforge.train.compare_measure import (as_written, budget_steps, dataset_name, device, earlier_rows,
                                             examples_seen, load_average, run_route, saved_parameters)
from tuneforge.train.compare_report import write_report
from tuneforge.train.run import run_training
from tuneforge.train.stages import load_training_config

APPROACHES = ("features", "full", "lora", "zero_shot", "few_shot", "sft_lora", "decoder_cls")
DEFAULT_DECODER = "builtin:smollm2"


@dataclass
class Comparison:
    cfg: Config
    data: ClsData
    words: list[str]
    decoder: str
    out: Path
    shots: int
    decoder_examples: int | None = None
    base: dict = field(default_factory=dict)  # the user's config as written (unset fields left to the schema)


def compare_approaches(config: str, overrides: list[str] | None = None, approaches: list[str] | None = None,
                       decoder: str = DEFAULT_DECODER, out: str | None = None, shots: int = 4,
                       label_words: list[str] | None = None, decoder_examples: int | None = None) -> dict:
    """Run the chosen routes into `out` (default: <output.dir>/compare-<output.name>); returns the report dict."""
    cfg, stage = load_training_config(config, overrides or [])
    if (generation := stage.comparison(cfg)) is not None:  # extractive QA, translation: train/compare_gen.py
        return compare_generation(cfg, generation, approaches, decoder, out, shots, decoder_examples)
    if "features" not in stage.methods:  # the routes need a classification stage (encoder features included)
        raise ConfigError(f"stage: {cfg.stage}: compare-approaches needs a classification, extractive QA or "
                          "translation config", hint="start from examples/sentiment_minilm.yaml, "
                          "examples/qa_minilm.yaml or examples/translation_t5tiny.yaml")
    chosen = list(approaches or APPROACHES)
    for name in chosen:
        if name not in APPROACHES:
            raise ConfigError(f"--approaches: '{name}' is not an approach", hint=f"choose from {', '.join(APPROACHES)}")
    data = build_data(cfg)  # bad rows / unknown eval labels stop here, before any route runs
    if not data.eval:
        raise ConfigError("data.eval: compare-approaches scores every route on a held-out split; none is set")
    words = list(label_words or data.label_map.names)
    if len(words) != len(data.label_map.names):
        raise ConfigError(f"--label-words: {len(words)} words for {len(data.label_map.names)} labels "
                          f"({', '.join(data.label_map.names)})")
    if decoder_examples is not None and decoder_examples <= 0:
        raise ConfigError(f"--decoder-examples: {decoder_examples}: give a positive number of training examples")
    root = Path(out or Path(cfg.output.dir) / f"compare-{cfg.output.name or 'run'}")
    cmp = Comparison(cfg, data, words, decoder, root, shots, decoder_examples, as_written(cfg))
    result = {"dataset": dataset_name(cfg), "encoder": cfg.model.path, "decoder": decoder,
              "train_samples": len(data.train), "eval_samples": len(data.eval), "labels": words, "shots": shots,
              "decoder_examples": decoder_examples,
              "device": device(), "load_average": load_average(), "rows": []}
    kept = earlier_rows(root, result, chosen, APPROACHES)
    for name in chosen:
        trains = name not in ("zero_shot", "few_shot")
        kept[name] = run_route(name, lambda: ROUTES[name](cmp), trains)  # noqa: B023 - called at once
    result["rows"] = [kept[name] for name in APPROACHES if name in kept]
    result["kept_from_earlier"] = [name for name in APPROACHES if name in kept and name not in chosen]
    result["files"] = write_report(root, result)
    return result


# ------------------------------------------------------------------------------------------------- routes
def _route_task(cmp: Comparison, name: str) -> dict:
    """The config's task keys for one route. A pooled head (task.pooling + task.head_init) is a recipe of the
    encoder's full fine-tune; features reads task.pooling for its embeddings; the other routes use their model's
    own head, so the keys are left out there instead of refusing the route."""
    task = dict(cmp.base.get("task") or {})
    if name != "full":
        task.pop("head_init", None)
    if name not in ("full", "features"):
        task.pop("pooling", None)
    return task


def _route_config(cmp: Comparison, name: str, decoder_budget: bool = False, **changes) -> Config:
    tree = {**cmp.base, "task": _route_task(cmp, name), **changes}
    tree["train"] = {k: v for k, v in (cmp.base.get("train") or {}).items() if k != "lr"}
    if decoder_budget and cmp.decoder_examples:
        tree["train"]["max_steps"] = budget_steps(cmp.cfg, cmp.decoder_examples)
    tree["output"] = {**(cmp.base.get("output") or {}), "dir": str(cmp.out), "name": name, "overwrite": True}
    return load_config(None, [], base=tree)


def _trained_cls(cmp: Comparison, name: str, decoder_budget: bool = False, **changes) -> dict:
    cfg = _route_config(cmp, name, decoder_budget, **changes)
    out = run_training(cfg)
    run = RunDir(Path(out["run_dir"]))
    train_s = out.get("train_runtime")
    if train_s is None and "embed_train_s" in out:
        train_s = out["embed_train_s"] + out.get("head_train_s", 0)
    row = {"run_dir": out["run_dir"], "eval_accuracy": out.get("eval_accuracy"),
           "eval_f1_macro": out.get("eval_f1_macro"), "train_s": train_s,
           "trainable_params": saved_parameters(run), "train_examples": examples_seen(cfg, len(cmp.data.train))}
    row["infer_s_per_1k"] = _time_cls_inference(cmp, run)
    return row


def route_features(cmp: Comparison) -> dict:
    return _trained_cls(cmp, "features", method="features")


def route_full(cmp: Comparison) -> dict:
    return _trained_cls(cmp, "full", method="full")


def route_lora(cmp: Comparison) -> dict:
    return _trained_cls(cmp, "lora", method="lora")


def route_decoder_cls(cmp: Comparison) -> dict:
    return _trained_cls(cmp, "decoder_cls", True, method="lora", model={"path": cmp.decoder})


def _base_route(cmp: Comparison, name: str, shots: int) -> dict:
    from tuneforge.eval.run import load_for_eval

    cfg = _route_config(cmp, name, method="lora", model={"path": cmp.decoder})
    run = open_run(cfg, resume=False)
    try:
        model, tok = load_for_eval(cfg.model)
        lm = cmp.data.label_map
        picked = dec.draw_shots(cmp.data.train, lm, shots, cfg.train.seed) if shots else []
        contexts = [dec.plain_context(e, cmp.words, picked, lm) for e in cmp.data.eval]
        scored = dec.score_label_words(model, tok, contexts, cmp.data.eval, cmp.words, lm, delimiter=" ")
        run.write_json("eval_report.json", scored.pop("report"))
        run.write_json("results.json", scored)
    finally:
        run.release()
    return {"run_dir": str(run.root), "train_s": 0.0, "trainable_params": 0, **scored}


def route_zero_shot(cmp: Comparison) -> dict:
    return _base_route(cmp, "zero_shot", 0)


def route_few_shot(cmp: Comparison) -> dict:
    return _base_route(cmp, "few_shot", cmp.shots)


def route_sft_lora(cmp: Comparison) -> dict:
    from tuneforge.eval.run import load_for_eval

    lm = cmp.data.label_map
    train_file = dec.write_sft_data(cmp.out / "sft_lora_data.jsonl", cmp.data.train, cmp.words, lm)
    cutoff = (cmp.base.get("data") or {}).get("cutoff_len", cmp.cfg.data.cutoff_len) + 64  # + instruction
    cfg = _route_config(cmp, "sft_lora", True, stage="sft", method="lora", model={"path": cmp.decoder}, task={},
                        data={"train": [{"path": str(train_file)}], "cutoff_len": cutoff})
    out = run_training(cfg)
    run = RunDir(Path(out["run_dir"]))
    mc, template, system = run.model_config()
    model, tok = load_for_eval(mc)
    contexts = [dec.chat_context(tok, e, cmp.words, template, system) for e in cmp.data.eval]
    scored = dec.score_label_words(model, tok, contexts, cmp.data.eval, cmp.words, lm, delimiter="")
    run.write_json("eval_report.json", scored.pop("report"))
    return {"run_dir": out["run_dir"], "train_s": out.get("train_runtime"), "trainable_params": saved_parameters(run),
            "train_examples": examples_seen(cfg, len(cmp.data.train)), **scored}


ROUTES = {"features": route_features, "full": route_full, "lora": route_lora, "zero_shot": route_zero_shot,
          "few_shot": route_few_shot, "sft_lora": route_sft_lora, "decoder_cls": route_decoder_cls}


# ---------------------------------------------------------------------------------------------- measures
def _time_cls_inference(cmp: Comparison, run: RunDir) -> float:
    """Seconds per 1000 held-out texts through the saved classifier (load time excluded)."""
    import torch

    from tuneforge.models.heads import FeatureClassifier
    from tuneforge.models.load import load_model, load_tokenizer

    texts = [e.text for e in cmp.data.eval]
    pairs = [e.text_pair or "" for e in cmp.data.eval] if any(e.text_pair for e in cmp.data.eval) else None
    # a features run, or a full fine-tune under a pooled head (head.json next to the backbone): the saved head
    head_dir = next((d for d in (run.root / "features_head", run.root / "model") if (d / "head.json").is_file()), None)
    if head_dir is not None:
        clf = FeatureClassifier(head_dir)
        t0 = time.perf_counter()
        clf.logits(texts, pairs)
        return round(1000 * (time.perf_counter() - t0) / len(texts), 3)
    from transformers import AutoModelForSequenceClassification

    mc, _, _ = run.model_config()
    tok = load_tokenizer(mc)
    model = load_model(mc, auto_class=AutoModelForSequenceClassification, num_labels=len(cmp.words)).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    bs = max(cmp.cfg.train.batch_size, 32)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), bs):
            enc = tok(texts[i:i + bs], pairs[i:i + bs] if pairs else None, truncation=True,
                      max_length=cmp.cfg.data.cutoff_len, padding=True, return_tensors="pt")
            model(**enc)
    return round(1000 * (time.perf_counter() - t0) / len(texts), 3)


def compare_cli(config: str, overrides: list[str], approaches: list[str] | None, decoder: str, out: str | None,
                shots: int, label_words: list[str] | None, decoder_examples: int | None = None) -> dict:
    """The CLI face: run, then print the markdown table and where the files are."""
    result = compare_approaches(config, overrides, approaches, decoder, out, shots, label_words, decoder_examples)
    print((Path(result["files"]["md"])).read_text(encoding="utf-8"))
    print(f"written: {', '.join(result['files'].values())}")
    return result
