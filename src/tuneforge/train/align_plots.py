"""Reward-curve plots of the alignment stages (docs/align.md says what a healthy curve looks like)."""

from __future__ import annotations

from pathlib import Path

from tuneforge.train.plots import read_metrics

# One PNG per group: the curves that are read together.
GROUPS = {
    "rewards.png": ("rewards/chosen", "rewards/rejected", "rewards/margins"),
    "accuracy.png": ("rewards/accuracies", "accuracy"),
    "kl.png": ("kl", "log_odds_ratio", "nll_loss"),
    "reward.png": ("reward", "reward_std", "mean_reward", "margin"),
    "completion_length.png": ("completions/mean_length", "completions/clipped_ratio"),
    "clip_ratio.png": ("clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean"),
}


def plot_align_metrics(metrics_path: Path, out_dir: Path) -> list[Path]:
    """Train (solid) and eval (dashed) curves of each group present in metrics.jsonl; per-reward-function means
    (`rewards/<name>/mean`) join reward.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_func = sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    written = []
    for fname, keys in GROUPS.items():
        keys = keys + tuple(per_func) if fname == "reward.png" else keys
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        drawn = 0
        for key in keys:
            for prefix, style in (("", "-"), ("eval_", "--")):
                pts = [(r["step"], r[prefix + key]) for r in rows if isinstance(r.get(prefix + key), (int, float))]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=prefix + key)
                    drawn += 1
        if drawn:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out_dir / fname)
            written.append(out_dir / fname)
        plt.close(fig)
    return written
