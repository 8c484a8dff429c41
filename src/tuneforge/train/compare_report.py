"""The `compare-approaches` table: one markdown table with the winner per column named, JSON, and a PNG chart."""

from __future__ import annotations

from pathlib import Path

from tuneforge.runs import atomic_json, atomic_write

# column key, header, better ("max" | "min"; None: a fact of the route, no winner), formatter
CLS_QUALITY = (("eval_accuracy", "accuracy"), ("eval_f1_macro", "macro-F1"))
COST = (
    ("train_s", "train s", "min", lambda v: f"{v:.1f}"),
    ("infer_s_per_1k", "infer s / 1k", "min", lambda v: f"{v:.2f}"),
    ("trainable_params", "trainable params", "min", lambda v: f"{int(v):,}"),
    ("train_examples", "train examples", None, lambda v: f"{int(v):,}"),
    ("peak_memory_mib", "peak MiB", "min", lambda v: f"{v:.0f}"),
)
# zero train time / zero trainable parameters belong to the routes that do not train: no "winner" there
_TRAINED_ONLY = {"train_s", "trainable_params"}


def _score(v: float) -> str:
    return f"{v:.3f}" if abs(v) <= 1 else f"{v:.2f}"  # fractions (accuracy, F1) vs 0-100 scores (BLEU, chrF)


def quality(result: dict) -> tuple:
    """The task's score columns: result["quality"] ([key, header] pairs, higher is better), else classification's."""
    return tuple(tuple(q) for q in result.get("quality") or CLS_QUALITY)


def columns(result: dict) -> tuple:
    """The quality columns, then the costs."""
    return (*((key, header, "max", _score) for key, header in quality(result)), *COST)


def winners(rows: list[dict], cols: tuple) -> dict[str, str]:
    """Best approach per column among the rows that have a number there (ties: the first listed)."""
    out = {}
    for key, _, better, _ in cols:
        if better is None:
            continue
        vals = [(r[key], r["approach"]) for r in rows if isinstance(r.get(key), (int, float))
                and not (key in _TRAINED_ONLY and not r.get("trains"))]
        if vals:
            pick = max if better == "max" else min
            best = pick(v for v, _ in vals)
            out[key] = next(name for v, name in vals if v == best)
    return out


def _setup(result: dict) -> str:
    if "labels" in result:  # classification
        return (f"Encoder `{result['encoder']}`, decoder `{result['decoder']}`; {result['train_samples']} train / "
                f"{result['eval_samples']} held-out eval examples, labels: {', '.join(result['labels'])}; "
                f"{result['shots']} shots for few-shot")
    return (f"{result['task']}: the config's model `{result['encoder']}` ({result['own_route']}), decoder "
            f"`{result['decoder']}`; {result['train_samples']} train / {result['eval_samples']} held-out examples; "
            f"{result['shots']} shots for few-shot")


def markdown(result: dict) -> str:
    rows, win, cols = result["rows"], result["winners"], columns(result)
    head = ["approach", *(h for _, h, _, _ in cols), "run dir / error"]
    lines = [f"# Which approach? {result['dataset']}", "",
             _setup(result)
             + (f"; the decoder routes that train see {result['decoder_examples']} examples (`--decoder-examples`)"
                if result.get("decoder_examples") else "") + f". Device: {result['device']}; load average at start "
             f"{result['load_average']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if result.get("kept_from_earlier"):  # a re-run of some routes into the same dir keeps the others' rows
        lines[4:4] = [f"Rows kept from an earlier run of the same setup: {', '.join(result['kept_from_earlier'])} "
                      f"(each row's time and load average are in compare.json).", ""]
    for r in rows:
        cells = [r["approach"]]
        for key, _, _, fmt in cols:
            v = r.get(key)
            txt = fmt(v) if isinstance(v, (int, float)) else "n/a"
            cells.append(f"**{txt}**" if win.get(key) == r["approach"] else txt)
        cells.append(f"error: {r['error']}" if r.get("error") else f"`{r.get('run_dir', '')}`")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Winners: " + "; ".join(f"{h}: **{win[k]}**" for k, h, _, _ in cols if k in win) + ".", "",
              "Train s = the stage's training time (features: embedding the train set + fitting the head); infer "
              "s / 1k = scoring (or generating for) the held-out split, per 1000 examples; trainable params = "
              "parameters the route trains and saves; train examples = examples the route trained on (steps x "
              "batch, or epochs x the set); peak MiB = process peak RSS during the route (CUDA: peak allocated). "
              "Train-time and parameter winners are among the routes that train."]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, scores: tuple = CLS_QUALITY) -> Path | None:
    """The task's two quality scores per approach, side by side (failed routes are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (k1, h1), (k2, h2) = scores[0], scores[1]
    ok = [r for r in rows if isinstance(r.get(k1), (int, float))]
    if not ok:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(ok)), 3.8), dpi=100)
    xs = range(len(ok))
    ax.bar([x - 0.2 for x in xs], [r[k1] for r in ok], width=0.4, label=h1)
    ax.bar([x + 0.2 for x in xs], [r.get(k2) or 0 for r in ok], width=0.4, label=h2)
    ax.set_xticks(list(xs), [r["approach"] for r in ok], rotation=20, ha="right")
    if all(abs(r[k1]) <= 1 and abs(r.get(k2) or 0) <= 1 for r in ok):
        ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()

    def save(tmp: Path) -> None:
        fig.savefig(tmp, format="png")

    atomic_write(path, save)
    plt.close(fig)
    return path


def write_report(out: Path, result: dict) -> dict:
    """compare.json, compare.md and compare.png under `out`; returns their paths."""
    result["winners"] = winners(result["rows"], columns(result))
    paths = {"json": atomic_json(out / "compare.json", result)}
    paths["md"] = atomic_write(out / "compare.md", markdown(result))
    png = chart(result["rows"], out / "compare.png", quality(result))
    if png:
        paths["png"] = png
    return {k: str(v) for k, v in paths.items()}
