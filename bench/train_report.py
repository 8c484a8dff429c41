"""JSON + markdown report for bench_train.py: per-run numbers, the issue's ratios, loss at equal steps."""

from __future__ import annotations

# (label, ours, peer, metric, target, higher_is_better)
RATIOS = [
    ("LoRA real tok/s vs best unpacked peer (TRL, gc off)", "tf_lora_packed", "trl_lora_nogc", "tokens_per_s", 1.6, True),
    ("LoRA real tok/s vs LF packing (gc off, cross-attending)", "@best_lora", "lf_lora_packing_nogc", "tokens_per_s",
     1.2, True),
    ("Full FT real tok/s vs TRL (gc off)", "tf_full_packed", "trl_full_nogc", "tokens_per_s", 1.3, True),
    ("launch -> first optimizer step vs LF LoRA (defaults)", "tf_lora_packed", "lf_lora_default",
     "launch_to_first_step_s", 0.4, False),
    ("launch -> first optimizer step vs TRL LoRA", "tf_lora_packed", "trl_lora_nogc", "launch_to_first_step_s", None,
     False),
    ("peak RSS, fast setting vs LF's fast setting (packing, gc off)", "@best_lora", "lf_lora_packing_nogc",
     "peak_rss_mib", 1.0, False),
    ("peak RSS vs LF LoRA defaults (gc on)", "tf_lora_packed", "lf_lora_default", "peak_rss_mib", None, False),
]


def _fmt(v, nd=1, pct=False):
    if v is None:
        return "–"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _best_lora(runs: dict) -> str | None:
    cands = [n for n in ("tf_lora_packed", "tf_lora_packed_2k") if runs.get(n, {}).get("tokens_per_s")]
    return max(cands, key=lambda n: runs[n]["tokens_per_s"]) if cands else None


def _loss_compare(a: dict, b: dict) -> dict | None:
    la, lb = a.get("loss_by_step") or {}, b.get("loss_by_step") or {}
    common = sorted(set(map(int, la)) & set(map(int, lb)))
    if not common:
        return None
    diffs = [abs(float(la.get(s, la.get(str(s)))) - float(lb.get(s, lb.get(str(s))))) for s in common]
    return {"steps": len(common), "max_abs_diff": round(max(diffs), 5), "mean_abs_diff": round(sum(diffs) / len(diffs), 5)}


def build_report(runs: dict, meta: dict) -> tuple[dict, str]:
    best = _best_lora(runs)
    ratios = []
    for label, ours, peer, metric, target, higher in RATIOS:
        ours = (best or "tf_lora_packed") if ours == "@best_lora" else ours
        a, b = (runs.get(ours) or {}).get(metric), (runs.get(peer) or {}).get(metric)
        r = round(a / b, 3) if a and b else None
        ok = None if r is None or target is None else (r >= target if higher else r <= target)
        ratios.append({"what": label, "tuneforge_run": ours, "peer_run": peer, "metric": metric, "tuneforge": a,
                       "peer": b, "ratio": r, "target": target, "met": ok})
    loss = {
        "tf_lora_packed vs tf_lora_unpacked": _loss_compare(runs.get("tf_lora_packed", {}), runs.get("tf_lora_unpacked", {})),
        "tf_lora_packed vs trl_lora_nogc": _loss_compare(runs.get("tf_lora_packed", {}), runs.get("trl_lora_nogc", {})),
        "tf_lora_unpacked vs trl_lora_nogc": _loss_compare(runs.get("tf_lora_unpacked", {}), runs.get("trl_lora_nogc", {})),
        "tf_full_packed vs trl_full_nogc": _loss_compare(runs.get("tf_full_packed", {}), runs.get("trl_full_nogc", {})),
    }
    report = {"meta": meta, "ratios": ratios, "loss_parity": loss, "runs": runs}
    return report, _markdown(report)


def _markdown(rep: dict) -> str:
    m, runs = rep["meta"], rep["runs"]
    out = [f"# Training benchmark ({m['stamp']}): tuneforge vs LLaMA-Factory / TRL, {m['steps']} steps each", "",
           f"Sequential runs on {m['cpus']} CPUs; load average before {' '.join(m['loadavg_before'])}, after "
           f"{' '.join(m['loadavg_after'])}. MFU peak {m['peak_gflops']} GFLOP/s (fp32 GEMM measured in this "
           "invocation). Real tokens = non-padding input tokens / train_runtime (LF packing corrected for its "
           "attended pack padding).", "", "## Ratios (the issue's targets)", "",
           "| what | tuneforge run | peer run | tuneforge | peer | ratio | target | met |", "|---|---|---|---|---|---|---|---|"]
    for r in rep["ratios"]:
        tgt = "–" if r["target"] is None else (f"≥ {r['target']}" if r["metric"] == "tokens_per_s" else f"≤ {r['target']}")
        met = "–" if r["met"] is None else ("yes" if r["met"] else "**no**")
        out.append(f"| {r['what']} | {r['tuneforge_run']} | {r['peer_run']} | {_fmt(r['tuneforge'])} | "
                   f"{_fmt(r['peer'])} | {_fmt(r['ratio'], 2)} | {tgt} | {met} |")
    out += ["", "## Runs", "",
            "| run | tool | method | steps | real tok/s | steady tok/s | MFU | peak RSS MiB | launch→1st step s | "
            "preprocess s | wall s | loss step 1 → last | token cache |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        out.append(f"| {name} | {r.get('tool')} | {r.get('method')} | {r.get('steps')} | {_fmt(r.get('tokens_per_s'))} | "
                   f"{_fmt(r.get('steady_tokens_per_s'))} | {_fmt(r.get('mfu'), pct=True)} | "
                   f"{_fmt(r.get('peak_rss_mib'), 0)} | {_fmt(r.get('launch_to_first_step_s'))} | "
                   f"{_fmt(r.get('preprocess_s'), 2)} | {_fmt(r.get('wall_s'))} | "
                   f"{_fmt(r.get('first_loss'), 4)} → {_fmt(r.get('final_loss'), 4)} | {r.get('token_cache') or '–'} |")
    descr = [f"- `{n}`: {r['what']}" for n, r in runs.items() if r.get("what")]
    out += ["", *descr, "", "## Loss at equal steps", "", "| pair | steps compared | max abs diff | mean abs diff |",
            "|---|---|---|---|"]
    for pair, c in rep["loss_parity"].items():
        if c:
            out.append(f"| {pair} | {c['steps']} | {c['max_abs_diff']} | {c['mean_abs_diff']} |")
    names = [n for n, r in runs.items() if r.get("loss_by_step")]
    marks = sorted({1, 5, 10, 20, 30, 40, m["steps"]} & set(range(1, m["steps"] + 1)))
    out += ["", "| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for s in marks:
        vals = []
        for n in names:
            lb = runs[n]["loss_by_step"]
            v = lb.get(s, lb.get(str(s)))
            vals.append(_fmt(float(v), 4) if v is not None else "–")
        out.append(f"| {s} | " + " | ".join(vals) + " |")
    p = m.get("preprocess") or {}
    out += ["", f"Preprocessing (load + template + tokenize {p.get('samples')} examples, one process): tuneforge "
            f"cold {p.get('cold_s')} s, from the token cache {p.get('cached_s')} s; peers' `preprocess s` column is "
            "their load+tokenize phase (no cache: LF overwrite_cache, TRL map).", ""]
    floor, lf = m.get("import_floor") or {}, (runs.get("lf_lora_default") or {}).get("launch_to_first_step_s")
    if floor.get("best_s"):
        rel = f" = {floor['best_s'] / lf:.2f}x LF's launch → first step" if lf else ""
        out += [f"Import floor (a process that only imports {floor['imports']}; best of {len(floor['all_s'])}): "
                f"{floor['best_s']} s{rel}. No trainer built on these libraries starts faster.", ""]
    return "\n".join(out)
