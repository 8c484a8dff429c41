"""What a sweep leaves behind: `summary.md` / `summary.json` (one row per trial), `best_config.yaml` and Optuna's
own history and parameter-importance plots as PNG. Rewritten after every trial, so a killed sweep still has them."""

from __future__ import annotations

from pathlib import Path

import yaml

from tuneforge.config.schema import Config
from tuneforge.runs import atomic_json, atomic_write


def trial_rows(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        last = max(t.intermediate_values) if t.intermediate_values else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value,
                     "last_reported": t.intermediate_values[last] if last is not None else None,
                     "at_step": last, "params": dict(t.params), "run_dir": t.user_attrs.get("run_dir")})
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def summary_markdown(rows: list[dict], metric: str, direction: str, best: int | None) -> str:
    names = sorted({k for r in rows for k in r["params"]})
    head = ["trial", "state", metric, *names, "run dir"]
    lines = [f"# Sweep: {metric} ({direction})", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        value = _fmt(r["value"]) if r["state"] == "complete" else \
            (f"({_fmt(r['last_reported'])} at step {r['at_step']})" if r["at_step"] is not None else "")
        mark = " **best**" if r["trial"] == best else ""
        lines.append("| " + " | ".join([f"{r['trial']}{mark}", r["state"], value,
                                        *(_fmt(r["params"].get(n)) for n in names), _fmt(r["run_dir"])]) + " |")
    return "\n".join(lines) + "\n"


def _save_plot(ax_or_fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = getattr(ax_or_fig, "figure", ax_or_fig)
    fig.set_size_inches(7, 4)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_plots(study, sweep_dir: Path) -> list[str]:
    """history.png always (once a trial finished); importance.png once two trials completed with varied params."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    written = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return written
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _save_plot(ovm.plot_optimization_history(study), sweep_dir / "history.png")
        written.append("history.png")
        if len(complete) >= 2 and any(len({t.params.get(k) for t in complete}) > 1 for k in complete[0].params):
            _save_plot(ovm.plot_param_importances(study), sweep_dir / "importance.png")
            written.append("importance.png")
    return written


def write_report(study, space, sweep_dir: Path, best_config: Config | None) -> dict:
    """Write summary.md/json, best_config.yaml and plots; return the summary dict."""
    from optuna.trial import TrialState

    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "complete"]
    best = study.best_trial if complete else None
    summary = {"metric": space.metric, "direction": space.direction, "study": str(sweep_dir / "study.db"),
               "trials": len(rows),
               "complete": len(complete),
               "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
               "failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
               "best": {"trial": best.number, "value": best.value, "params": best.params,
                        "run_dir": best.user_attrs.get("run_dir")} if best else None,
               "rows": rows}
    if best_config is not None:
        tree = best_config.model_dump(mode="json")
        header = (f"# Best of sweep {sweep_dir.name}: trial {best.number}, {space.metric}={best.value:.6g}\n"
                  f"# params: {best.params}\n")
        atomic_write(sweep_dir / "best_config.yaml", header + yaml.safe_dump(tree, sort_keys=False))
    summary["plots"] = write_plots(study, sweep_dir)
    atomic_json(sweep_dir / "summary.json", summary)
    atomic_write(sweep_dir / "summary.md", summary_markdown(rows, space.metric, space.direction,
                                                            best.number if best else None))
    return summary
