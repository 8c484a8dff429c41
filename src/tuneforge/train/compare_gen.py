"""`tuneforge compare-approaches` on a generation task: extractive QA (stage qa) or translation (stage seq2seq).

Every route is scored on the same held-out rows, which the config's own stage selected and which are written once
to `<out>/data/` (so every route reads exactly the same rows):
  span_head / seq2seq   the config as written: an encoder with a span head, or an encoder-decoder
  zero_shot             the decoder asked with an instruction (system turn) and the row (user turn), greedy
  few_shot              the same with `shots` solved training rows before the question
  sft_lora              decoder LoRA SFT on the training rows as those chat turns, then asked as zero_shot
The decoder routes are scored by `tuneforge eval`'s generation scorer (the squad / translation presets: SQuAD EM and
F1, sacrebleu BLEU and chrF); the config's own stage scores its route with the same metric code.
sft_lora uses the recipe the repo measured for decoder LoRA SFT on these tasks (r 16, alpha 32, lr 1e-3:
examples/qa_smollm2.yaml, examples/translation_smollm2.yaml); the config's epochs / batch / schedule are kept, and
`decoder_examples` caps its steps as for classification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuneforge.config import load_config
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir, atomic_jsonl, open_run
from tuneforge.train.compare_measure import (as_written, budget_steps, dataset_name, device, earlier_rows,
                                             examples_seen, load_average, run_route, saved_parameters)
from tuneforge.train.compare_report import write_report
from tuneforge.train.compare_task import GenComparison
from tuneforge.train.run import run_training

PROMPTED = ("zero_shot", "few_shot")
SFT_LORA = {"r": 16, "alpha": 32, "target": "all-linear"}
SFT_LR = 1e-3
# train keys every stage honours; recipe keys of the config's own stage (label smoothing, ...) stay with it
_PORTABLE_TRAIN = ("epochs", "max_steps", "batch_size", "grad_accum", "scheduler", "warmup_ratio", "weight_decay",
                   "max_grad_norm", "seed", "threads")


@dataclass
class GenRun:
    cfg: Config
    task: GenComparison
    decoder: str
    out: Path
    shots: int
    decoder_examples: int | None
    base: dict
    files: dict[str, Path]


def compare_generation(cfg: Config, task: GenComparison, approaches: list[str] | None, decoder: str,
                       out: str | None, shots: int, decoder_examples: int | None) -> dict:
    """Run the chosen routes into `out` (default: <output.dir>/compare-<output.name>); returns the report dict."""
    routes = (task.own_route, "zero_shot", "few_shot", "sft_lora")
    chosen = list(approaches or routes)
    for name in chosen:
        if name not in routes:
            raise ConfigError(f"--approaches: '{name}' is not a route for {task.kind}",
                              hint=f"choose from {', '.join(routes)}")
    if decoder_examples is not None and decoder_examples <= 0:
        raise ConfigError(f"--decoder-examples: {decoder_examples}: give a positive number of training examples")
    if "few_shot" in chosen and not task.shots:
        raise ConfigError("few_shot: no training row with a reference to show", hint="leave few_shot out (-a)")
    root = Path(out or Path(cfg.output.dir) / f"compare-{cfg.output.name or 'run'}")
    files = {name: atomic_jsonl(root / "data" / f"{name}.jsonl", rows)
             for name, rows in (("train", task.train), ("heldout", task.heldout), ("shots", task.shots))}
    run = GenRun(cfg, task, decoder, root, shots, decoder_examples, as_written(cfg), files)
    result = {"task": task.kind, "own_route": task.own_route, "dataset": dataset_name(cfg), "encoder": cfg.model.path,
              "decoder": decoder, "train_samples": len(task.train), "eval_samples": len(task.heldout), "shots": shots,
              "decoder_examples": decoder_examples, "quality": [list(q) for q in task.quality],
              "sft_recipe": {"lora": SFT_LORA, "lr": SFT_LR}, "device": device(), "load_average": load_average(),
              "rows": []}
    kept = earlier_rows(root, result, chosen, routes)
    for name in chosen:
        route = _own_route if name == task.own_route else ROUTES[name]
        kept[name] = run_route(name, lambda: route(run, name), name not in PROMPTED)  # noqa: B023 - called at once
    result["rows"] = [kept[name] for name in routes if name in kept]
    result["kept_from_earlier"] = [name for name in routes if name in kept and name not in chosen]
    result["files"] = write_report(root, result)
    return result


def _output(run: GenRun, name: str) -> dict:
    return {**(run.base.get("output") or {}), "dir": str(run.out), "name": name, "overwrite": True}


def _own_route(run: GenRun, name: str) -> dict:
    """The config as written, reading the written rows: its own stage trains, predicts and scores."""
    tree = dict(run.base)
    data = {k: v for k, v in (run.base.get("data") or {}).items() if k not in ("max_samples", "eval_split")}
    tree["data"] = {**data, "train": [{"path": str(run.files["train"])}], "eval": [{"path": str(run.files["heldout"])}]}
    tree["task"] = {**(run.base.get("task") or {}), **run.task.own_task}
    tree["output"] = _output(run, name)
    cfg = load_config(None, [], base=tree)
    out = run_training(cfg)
    row = {"run_dir": out["run_dir"], "train_s": out.get("train_runtime"),
           "trainable_params": saved_parameters(RunDir(Path(out["run_dir"]))),
           "train_examples": examples_seen(cfg, len(run.task.train))}
    row.update({key: out.get(key) for key, _ in run.task.quality})
    if out.get("eval_predict_s") is not None:
        row["infer_s_per_1k"] = round(1000 * out["eval_predict_s"] / len(run.task.heldout), 3)
    return row


def _eval_section(run: GenRun, shots: int) -> dict:
    task = {"name": "heldout", "file": str(run.files["heldout"]), **run.task.eval_task, "fewshot": shots}
    if shots:  # drawn per sample with a fixed seed from the training rows, never from the held-out ones
        task.update(fewshot_file=str(run.files["shots"]), fewshot_sampler="random")
    return {"tasks": [task], "batch_size": 16, "progress": "off"}


def _decoder_tree(run: GenRun, name: str, shots: int = 0) -> dict:
    """An SFT LoRA config on the decoder: trained by sft_lora, or only holding the prompt for the prompted routes."""
    train = {k: v for k, v in (run.base.get("train") or {}).items() if k in _PORTABLE_TRAIN}
    if run.decoder_examples:
        train["max_steps"] = budget_steps(run.cfg, run.decoder_examples)
    return {"stage": "sft", "method": "lora", "model": {"path": run.decoder}, "lora": dict(SFT_LORA),
            "data": {"train": [{"path": str(run.files["train"]), **run.task.sft_data}], "template": "auto",
                     "system": run.task.system, "cutoff_len": run.task.sft_cutoff},
            "train": {**train, "lr": SFT_LR}, "eval": {**_eval_section(run, shots), "after_train": name == "sft_lora"},
            "output": _output(run, name)}


def _scored(run: GenRun, results: dict) -> dict:
    """The eval task's scores as the table's columns, and its generation time per 1000 rows."""
    task = results["tasks"]["heldout"]
    row = {key: task["metrics"].get(key.removeprefix("eval_")) for key, _ in run.task.quality}
    row["infer_s_per_1k"] = round(1000 * task["seconds"] / max(task["n"], 1), 3)
    return row


def _prompted_route(run: GenRun, name: str) -> dict:
    from tuneforge.eval.run import Target, evaluate

    cfg = load_config(None, [], base=_decoder_tree(run, name, run.shots if name == "few_shot" else 0))
    rd = open_run(cfg, resume=False)
    try:
        target = Target(name, cfg.model, rd.eval_dir, cfg.data.template, cfg.data.system)
        results = evaluate(target, cfg.eval, log=lambda msg: None)
        row = {"run_dir": str(rd.root), "train_s": 0.0, "trainable_params": 0, **_scored(run, results)}
        rd.write_json("results.json", row)
    finally:
        rd.release()
    return row


def _sft_route(run: GenRun, name: str) -> dict:
    import json

    cfg = load_config(None, [], base=_decoder_tree(run, name))
    out = run_training(cfg)
    rd = RunDir(Path(out["run_dir"]))
    results = json.loads((rd.eval_dir / "results.json").read_text(encoding="utf-8"))
    return {"run_dir": out["run_dir"], "train_s": out.get("train_runtime"), "trainable_params": saved_parameters(rd),
            "train_examples": examples_seen(cfg, len(run.task.train)), **_scored(run, results)}


ROUTES = {"zero_shot": _prompted_route, "few_shot": _prompted_route, "sft_lora": _sft_route}
