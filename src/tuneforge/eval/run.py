"""`tuneforge eval`: evaluate a model (base, base + adapter, merged, or a run dir) on the `eval:` tasks, and compare.

Output of one evaluation (default `<run dir>/eval/`): `results.json` (metrics, CIs, n, timing, fingerprints),
`results.md`, `predictions/<task>.jsonl` (one record per sample). A comparison writes `compare.md`,
`compare.json` and `compare_<task>.png`; results whose fingerprint (task spec, data file, model, settings) is
unchanged are reused instead of re-evaluated.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tuneforge import run_lock
from tuneforge.config import load_config
from tuneforge.config.evaluation import EvalConfig
from tuneforge.config.load import deep_merge, parse_overrides
from tuneforge.config.schema import Config, ModelConfig
from tuneforge.errors import ConfigError
from tuneforge.eval.generate import GenSettings, generate, score_generations
from tuneforge.eval.logprobs import is_reward_model
from tuneforge.eval.mcq import McqScorer, mc2_score, mcq_metric_names, resolve_max_length
from tuneforge.eval.preference import PrefContext, load_reward_model, run_preference
from tuneforge.eval.progress import TaskProgress
from tuneforge.eval.report import _fmt, add_intervals, compare, results_markdown
from tuneforge.eval.tasks import TaskSpec, load_samples, resolve_task
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.runs import RunDir, atomic_jsonl, atomic_write, is_run_dir

Log = Callable[[str], None]


@dataclass
class Target:
    """One model to evaluate and where its results go."""

    label: str
    model: ModelConfig
    out_dir: Path
    template: str = "auto"
    system: str | None = None  # default system prompt of the run (preference tasks render pairs as it trained)


# ------------------------------------------------------------------------------------------- evaluation

def prepare_tasks(eval_cfg: EvalConfig, only: list[str] | None = None, limit: int | None = None
                  ) -> list[tuple[TaskSpec, list]]:
    """Resolve and validate every task (all file errors surface before a model is loaded)."""
    if not eval_cfg.tasks:
        raise ConfigError("no eval tasks", hint="add an `eval: tasks:` list to the config (see docs/eval.md)")
    tasks = [t for t in eval_cfg.tasks if not only or t.name in only]
    if only and len(tasks) != len(set(only)):
        known = [t.name for t in eval_cfg.tasks]
        raise ConfigError(f"unknown task(s) {sorted(set(only) - set(known))}", hint=f"tasks in the config: {known}")
    out = []
    for t in tasks:
        if limit:
            t = t.model_copy(update={"limit": min(limit, t.limit or limit)})
        spec = resolve_task(t)
        out.append((spec, load_samples(spec, eval_cfg.seed)))
    return out


def fingerprint(spec: TaskSpec, eval_cfg: EvalConfig, model: ModelConfig) -> str:
    """Hash of everything a task's result depends on (spec, data files, model, decoding settings)."""
    files = [f for f in (spec.cfg.file, spec.cfg.fewshot_file) if f]
    stamp = [(f, os.path.getsize(f), os.path.getmtime(f)) for f in files if os.path.exists(f)]
    mdl = model.model_dump(mode="json")
    for key in ("path", "adapter"):
        p = mdl.get(key)
        if p and os.path.exists(p):
            mdl[key + "_mtime"] = max((q.stat().st_mtime for q in Path(p).rglob("*") if q.is_file()),
                                      default=os.path.getmtime(p))
    settings = eval_cfg.model_dump(mode="json", include={"max_length", "max_new_tokens", "do_sample", "temperature",
                                                          "top_p", "seed", "ci", "ci_level", "bootstrap_samples"})
    resolved = [spec.prompt, spec.description, spec.fewshot, spec.fewshot_sampler, spec.stop, spec.metrics,
                spec.max_new_tokens]  # preset defaults can change between versions
    blob = json.dumps([spec.cfg.model_dump(mode="json"), resolved, stamp, mdl, settings], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate(target: Target, eval_cfg: EvalConfig, tasks: list[tuple[TaskSpec, list]] | None = None,
             log: Log = print, reuse: bool = False, model: Any = None, tokenizer: Any = None) -> dict:
    """Run the tasks on one model; write results.json / results.md / predictions/ (after every task).

    results.json accumulates: other tasks already there for the same model are kept, and with `reuse` a task
    whose fingerprint is unchanged is not run again. Returns the results dict (all its tasks)."""
    tasks = tasks if tasks is not None else prepare_tasks(eval_cfg)
    out = target.out_dir
    prints = {spec.name: fingerprint(spec, eval_cfg, target.model) for spec, _ in tasks}
    old = _load_results(out)
    kept = old["tasks"] if old and old.get("model") == describe(target.model) else {}
    results: dict[str, Any] = {"label": target.label, "model": describe(target.model), "tasks": dict(kept),
                               "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    todo = []
    for spec, samples in tasks:
        if reuse and kept.get(spec.name, {}).get("fingerprint") == prints[spec.name]:
            log(f"[{target.label}] {spec.name}: results in {out} are up to date, reused")
        else:
            todo.append((spec, samples))
    if todo and eval_cfg.threads:
        import torch

        torch.set_num_threads(eval_cfg.threads)
    if todo and model is None:
        model, tokenizer = load_for_eval(target.model)
    for spec, samples in todo:
        t0 = time.perf_counter()
        progress = TaskProgress(f"[{target.label}] {spec.name}", len(samples), eval_cfg.progress, log)
        try:
            metrics, records, mode, extra = _run_task(model, tokenizer, spec, samples, eval_cfg, target, progress)
        finally:
            progress.close()
        secs, n = time.perf_counter() - t0, len(records)
        main = spec.main_metric if spec.main_metric in metrics else next(iter(metrics))
        task_res = {"type": spec.type, "n": n, "metrics": metrics, "main": main, "file": spec.cfg.file,
                    "fewshot": spec.fewshot, "fewshot_sampler": spec.fewshot_sampler if spec.fewshot else None,
                    "limit": spec.cfg.limit, "seconds": round(secs, 3),
                    "samples_per_s": round(n / secs, 2) if secs else None, "scoring": mode, "threads": _threads(),
                    "fingerprint": prints[spec.name], **extra}
        add_intervals(task_res, records, eval_cfg.ci, eval_cfg.ci_level, eval_cfg.bootstrap_samples, eval_cfg.seed)
        results["tasks"][spec.name] = task_res
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        atomic_jsonl(out / "predictions" / f"{spec.name}.jsonl", records)
        _write_results(out, results)
        lo, hi = task_res["ci"][main]
        log(f"[{target.label}] {spec.name}: {main} {_fmt(main, metrics[main])} [{_fmt(main, lo)}, {_fmt(main, hi)}] "
            f"n={n} ({secs:.1f} s, {task_res['samples_per_s']} samples/s)")
    if not todo and not (out / "results.json").exists():
        _write_results(out, results)
    return results


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _run_task(model, tokenizer, spec: TaskSpec, samples, eval_cfg: EvalConfig, target: Target, progress):
    """(metrics, per-sample records, scoring mode, extra result fields) of one task."""
    if spec.type == "preference":
        ctx = PrefContext(target.template, target.system, resolve_max_length(model, tokenizer, eval_cfg.max_length),
                          eval_cfg.batch_size, target.model)
        return run_preference(model, tokenizer, samples, spec.metrics, spec.cfg.beta, spec.cfg.reference, ctx,
                              progress)
    if is_reward_model(model):
        raise ConfigError(f"eval task '{spec.name}': {describe(target.model)} is a reward model; it scores "
                          "preference pairs only", hint="use type: preference, or evaluate a causal LM")
    if spec.type == "mcq":
        return (*_run_mcq(model, tokenizer, spec, samples, eval_cfg, progress), {})
    return (*_run_generate(model, tokenizer, spec, samples, eval_cfg, target.template, progress, target.system), {})


def _run_mcq(model, tokenizer, spec: TaskSpec, samples: list, eval_cfg: EvalConfig, progress=None):
    scorer = McqScorer(model, tokenizer, batch_size=eval_cfg.batch_size, max_length=eval_cfg.max_length,
                       mode=eval_cfg.scoring, batch_tokens=eval_cfg.batch_tokens)
    scores = scorer.score(samples, delimiter=spec.cfg.target_delimiter, progress=progress)
    names = mcq_metric_names(spec, samples)
    records = []
    for s, r in zip(samples, scores):
        per = {"acc": r.acc, "acc_norm": r.acc_norm}
        if "mc2" in names:
            per["mc2"] = mc2_score(r.loglikelihoods, s.gold_labels or [int(i == s.gold) for i in range(len(s.choices))])
        records.append({"id": s.id, "file": s.file, "line": s.line, "prompt": s.context, "choices": s.choices,
                        "gold": s.gold, **({"gold_labels": s.gold_labels} if s.gold_labels else {}),
                        "pred": r.pred, "pred_norm": r.pred_norm,
                        "loglikelihoods": [round(x, 5) for x in r.loglikelihoods], "greedy": r.greedy,
                        "scores": {k: per[k] for k in names}})
    n = max(len(records), 1)
    return {k: sum(rec["scores"][k] for rec in records) / n for k in names}, records, scorer.mode


def _run_generate(model, tokenizer, spec: TaskSpec, samples: list, eval_cfg: EvalConfig, template: str,
                  progress=None, system: str | None = None):
    settings = GenSettings(batch_size=eval_cfg.batch_size, max_new_tokens=eval_cfg.max_new_tokens,
                           do_sample=eval_cfg.do_sample, temperature=eval_cfg.temperature, top_p=eval_cfg.top_p,
                           seed=eval_cfg.seed, max_length=eval_cfg.max_length, template=template,
                           system=system)
    # a task's own value, else an explicitly set eval.max_new_tokens, else the preset's (lm-eval's), else the default
    explicit = eval_cfg.max_new_tokens if "max_new_tokens" in eval_cfg.model_fields_set else None
    new = spec.cfg.max_new_tokens or explicit or spec.max_new_tokens or eval_cfg.max_new_tokens
    outputs = generate(model, tokenizer, samples, settings, stop=spec.stop, max_new_tokens=new, progress=progress)
    summary, per = score_generations(spec, samples, outputs)
    records = [{"id": s.id, "file": s.file, "line": s.line, "prompt": s.prompt,
                **({"fewshot_turns": [list(t) for t in s.turns]} if s.turns else {}), "output": o,
                "references": s.references, **p} for s, o, p in zip(samples, outputs, per)]
    return summary, records, "sampled" if eval_cfg.do_sample else "greedy"


def load_for_eval(model_cfg: ModelConfig):
    """Model (with adapter if any) in eval mode + tokenizer, via the shared loader; a saved reward model (an rm
    run: a one-output sequence classifier) loads with its score head."""
    tokenizer = load_tokenizer(model_cfg)
    model = load_reward_model(model_cfg, tokenizer) or load_model(model_cfg)
    model.eval()
    return model, tokenizer


def describe(m: ModelConfig) -> str:
    s = m.path + (f" ({m.gguf_file})" if m.gguf_file else "")
    return s + (f" + adapter {m.adapter}" if m.adapter else "")


def _write_results(out: Path, results: dict) -> None:
    atomic_write(out / "results.json", json.dumps(results, indent=2))
    atomic_write(out / "results.md", results_markdown(results))


def _load_results(out: Path) -> dict | None:
    p = out / "results.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
    except (OSError, json.JSONDecodeError):
        return None


def load_records(out: Path, task: str) -> list[dict]:
    p = out / "predictions" / f"{task}.jsonl"
    if not p.exists():
        return []
    with open(p, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------------ targets / CLI

def run_target(run: Path) -> tuple[Target, Config]:
    """The trained model of a run dir: base + adapter/, or the merged/full model/ dir."""
    rd = RunDir(run)
    model, template, system = rd.model_config()
    return Target(rd.root.name, model, rd.eval_dir, template, system), rd.read_config()


def config_run_dir(cfg: Config) -> Path | None:
    """The run dir a config trains into, when it is fixed (output.name set) and holds a trained model."""
    if cfg.output.name:
        run = Path(cfg.output.dir) / cfg.output.name
        if is_run_dir(run):
            return run
    return None


def _fix_task_paths(cfg: Config, base: Path) -> None:
    for t in cfg.eval.tasks:
        for key in ("file", "fewshot_file", "reference"):
            p = getattr(t, key)
            if p and not Path(p).is_absolute() and not Path(p).exists() and (base / p).exists():
                setattr(t, key, os.path.normpath(base / p))


def load_eval_config(path: str, overrides: list[str]) -> Config:
    cfg = load_config(path, overrides)
    _fix_task_paths(cfg, Path(path).resolve().parent)
    return cfg


def resolve_single(target: str | None, config: str | None, overrides: list[str],
                   out: str | None) -> tuple[Target, Config]:
    """What `tuneforge eval X` evaluates: a run dir, a config (its trained run if present, else its model),
    or a model path/id with tasks from --config."""
    if target and is_run_dir(target):
        tgt, cfg = run_target(Path(target))
        if config or overrides:
            cfg = load_eval_config(config, overrides) if config else _apply(cfg, overrides, Path(target))
    elif target and target.endswith((".yaml", ".yml")):
        cfg = load_eval_config(target, overrides)
        run = config_run_dir(cfg)
        if run:
            tgt = run_target(run)[0]
        else:
            label = cfg.output.name or Path(cfg.model.path).stem or "model"
            tgt = Target(label, cfg.model, _default_out(cfg, label), cfg.data.template, cfg.data.system)
    else:
        if not config:
            raise ConfigError("which tasks? give a config with an `eval:` section",
                              hint="tuneforge eval MODEL --config eval.yaml, or tuneforge eval eval.yaml")
        cfg = load_eval_config(config, overrides)
        model = cfg.model.model_copy(update={"path": target, "gguf_file": None}) if target else cfg.model
        label = Path(model.path).stem or "model"
        tgt = Target(label, model, _default_out(cfg, label), cfg.data.template, cfg.data.system)
    if out:
        tgt.out_dir = Path(out)
    elif cfg.eval.output_dir:
        tgt.out_dir = Path(cfg.eval.output_dir)
    return tgt, cfg


def _apply(cfg: Config, overrides: list[str], run: Path) -> Config:
    tree = deep_merge(cfg.model_dump(mode="json"), parse_overrides(overrides))
    new = Config.model_validate(tree)
    _fix_task_paths(new, run)
    return new


def _default_out(cfg: Config, label: str) -> Path:
    return Path(cfg.output.dir) / f"eval-{_safe(label)}"


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def eval_cli(targets: list[str], config: str | None = None, out: str | None = None, compare_mode: bool = False,
             tasks: list[str] | None = None, limit: int | None = None, force: bool = False) -> dict:
    """Entry point of `tuneforge eval` (see commands.py for the arguments)."""
    log = plain_log()
    overrides = [t for t in targets if "=" in t and not Path(t).exists()]
    names = [t for t in targets if t not in overrides]
    if compare_mode:
        return compare_cli(names, config, overrides, out, tasks, limit, force, log)
    if len(names) > 1:
        raise ConfigError(f"got {len(names)} models to evaluate; use --compare to compare several",
                          hint="tuneforge eval --compare runs/base-vs runs/tuned")
    target, cfg = resolve_single(names[0] if names else None, config, overrides, out)
    prepared = prepare_tasks(cfg.eval, tasks, limit)
    with run_lock.acquire(target.out_dir, "eval output dir"):  # one writer per results.json
        results = evaluate(target, cfg.eval, prepared, log=log, reuse=not force)
    log(f"results: {target.out_dir / 'results.md'}")
    return results


def plain_log() -> Log:
    """Messages to stderr, one line each and never wrapped (a log file must stay greppable)."""
    import sys

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    return log


def compare_targets(names: list[str], ref_cfg: Config, out_dir: Path) -> list[Target]:
    """Targets for a comparison: run dirs, `base` (the reference config's model without adapter), model paths."""
    found = []
    for name in names:
        if name == "base":
            model = ref_cfg.model.model_copy(update={"adapter": None})
            found.append(Target("base", model, out_dir / "base", ref_cfg.data.template, ref_cfg.data.system))
        elif is_run_dir(name):
            found.append(run_target(Path(name))[0])
        elif Path(name).is_dir() and (Path(name) / "config.yaml").is_file():
            raise ConfigError(f"run dir {name} has no adapter/ or model/ yet", hint="did training finish?")
        else:
            model = ref_cfg.model.model_copy(update={"path": name, "gguf_file": None, "adapter": None})
            found.append(Target(_safe(Path(name).stem or name), model, out_dir / _safe(Path(name).name or name),
                                ref_cfg.data.template, ref_cfg.data.system))
    labels = [t.label for t in found]
    for i, t in enumerate(found):  # same run name twice / two paths with the same stem
        if labels.count(t.label) > 1:
            t.label = f"{t.label}#{i + 1}"
    return found


def compare_cli(names: list[str], config: str | None, overrides: list[str], out: str | None,
                tasks: list[str] | None, limit: int | None, force: bool, log: Log) -> dict:
    if len(names) < 2:
        raise ConfigError("--compare needs at least two models", hint="e.g. tuneforge eval --compare base runs/my-run")
    runs = [Path(n) for n in names if is_run_dir(n)]
    if config:
        ref_cfg = load_eval_config(config, overrides)
    elif runs:
        ref_cfg = _apply(run_target(runs[0])[1], overrides, runs[0])
    else:
        raise ConfigError("--compare of model paths needs --config (for the tasks and the base model)")
    out_dir = Path(out) if out else (runs[-1] / "eval" / "compare" if runs else
                                     Path(ref_cfg.output.dir) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    targets = compare_targets(names, ref_cfg, out_dir)
    prepared = prepare_tasks(ref_cfg.eval, tasks, limit)
    lock = run_lock.acquire(out_dir, "comparison output dir")  # one writer; an error exit frees it with the process
    entries = []
    for t in targets:
        res = evaluate(t, ref_cfg.eval, prepared, log=log, reuse=not force)
        res = dict(res, tasks={spec.name: res["tasks"][spec.name] for spec, _ in prepared})
        recs = {name: load_records(t.out_dir, name) for name in res["tasks"]}
        entries.append({"label": t.label, "results": res, "records": recs})
    e = ref_cfg.eval
    path = compare(entries, out_dir, e.ci_level, e.bootstrap_samples, e.seed)
    lock.release()
    log(f"comparison: {path}")
    return {"report": str(path), "models": [t.label for t in targets]}


def after_training(cfg: Config, run: RunDir, log: Log = print) -> dict:
    """Hook for the end of `tuneforge train` when `eval.after_train` is set: evaluate the run, write run/eval/."""
    if not cfg.eval.after_train or not cfg.eval.tasks or not run.main:
        return {}
    target, _ = run_target(run.root)
    results = evaluate(target, cfg.eval, log=log)
    return {f"eval/{name}/{m}": v for name, t in results["tasks"].items() for m, v in t["metrics"].items()}
