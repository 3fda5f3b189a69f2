"""What ``check`` leaves behind: one line per verdict on the terminal, ``check.json`` (layout ``run.SCHEMA``,
documented in the README) and ``report.html``, a one-page report with its figures beside it as PNG files.
Everything is written atomically; the directory holds a complete report or none."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from sae_transfer.check import figures
from sae_transfer.core import verdict as V
from sae_transfer.core.io import write_json_atomic, write_text_atomic
from sae_transfer.core.labels import short
from sae_transfer.core.provenance import device_description, git_commit, package_versions


def _fmt(m: dict, digits: int = 3) -> str:
    if m["value"] is None:
        return "n/a"
    ci = f" [{m['lo']:.{digits}f}, {m['hi']:.{digits}f}]" if m["lo"] is not None and m["hi"] is not None else ""
    return f"{m['value']:.{digits}f}{ci}"


def line(r: dict) -> str:
    """``broken     code@120 on code: EV drop 0.147 [0.137, 0.157], ...; 8,192 tokens, decided``."""
    crit = "; ".join(f"{c.label} {_fmt(r['metrics'][c.key])}" for c in V.CRITERIA)
    how = ("decided early" if r["stopped_early"] else "decided") if r["decided"] else "not decided at this budget"
    poor = "; the SAE explains little even on the base here" if r["poor_on_base"] else ""
    where = f"{short(r['finetune'])} on {short(r['dataset'])}"
    return f"{r['verdict']:<10} {where}: {crit}; {r['tokens']:,} tokens, {how}{poor}"


def provenance(device: str) -> dict:
    return {"versions": package_versions(), "commit": git_commit(), "device": device_description(device)}


def results_table(data: dict) -> pd.DataFrame:
    rows = [{"finetune": short(r["finetune"]), "step": r["step"], "dataset": short(r["dataset"]),
             "verdict": r["verdict"], **{c.label: _fmt(r["metrics"][c.key]) for c in V.CRITERIA},
             "KL (finetune)": _fmt(r["metrics"]["kl_finetune"]), "L0 ratio": _fmt(r["metrics"]["l0_ratio"]),
             "density r": _fmt(r["metrics"]["density_r"]), "residual cos": _fmt(r["metrics"]["residual_cos"]),
             "tokens": r["tokens"], "decided": r["decided"]} for r in data["results"]]
    return pd.DataFrame(rows)


def recheck_table(r: dict) -> pd.DataFrame:
    rows = [{"feature": f["feature"], "activation sim": f"{f['act_sim']:.3f}", "model": m,
             "top contexts": " | ".join(c["text"] for c in f["contexts"][m])}
            for f in r["recheck"] for m in ("base", "finetune")]
    return pd.DataFrame(rows)


def adapt_table(a: dict) -> pd.DataFrame:
    rows = {"base SAE on the base": a["base_sae_on_base"], "base SAE on the finetune": a["base_sae_on_finetune"],
            f"adapted SAE on the finetune ({a['training_tokens']:,} tokens)": a["adapted_sae_on_finetune"]}
    return pd.DataFrame({k: {m: v[m] for m in ("ev_token", "ce_recovered", "delta_ce", "kl", "l0")}
                         for k, v in rows.items()}).T


def write(out: Path, data: dict) -> list[Path]:
    """``check.json``, the figures and ``report.html`` into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "check.json"]
    write_json_atomic(out / "check.json", data)
    figs = {"criteria.png": figures.criteria(data["results"])}
    steps = {r["step"] for r in data["results"]}
    if len(data["request"]["finetunes"]) > 1 and len(steps) > 1:
        figs["watch.png"] = figures.watch(data["results"])
    for name, fig in figs.items():
        tmp = out / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        plt.close(fig)
        tmp.replace(out / name)
        written.append(out / name)
    write_text_atomic(out / "report.html", _html(data, list(figs)))
    return written + [out / "report.html"]


def _html(data: dict, figs: list[str]) -> str:
    req, esc = data["request"], html.escape
    fts = req["finetunes"]
    which = (f"<code>{esc(short(fts[0]))}</code>" if len(fts) == 1 else
             f"{len(fts)} checkpoints, <code>{esc(short(fts[0]))}</code> to <code>{esc(short(fts[-1]))}</code>")
    parts = [f"<h1>Does the SAE <code>{esc(short(req['sae']))}</code> still work on {which}?</h1>",
             f"<p class='verdict {data['verdict']}'>Verdict: <b>{data['verdict']}</b> "
             f"(exit status {data['exit_status']}); base <code>{esc(req['base'])}</code>, hook "
             f"<code>{esc(req['hook'])}</code>.</p>",
             "<p>Each criterion compares the finetune with the base on the same tokens, with 95% intervals over token "
             f"batches (thresholds version {data['thresholds']['version']}): "
             + "; ".join(f"<b>{esc(c['label'])}</b>: {esc(c['rule'])}"
                         for c in (data["thresholds"]["criteria"][k.key] for k in V.CRITERIA))
             + ". The verdict is the worst of the three.</p>",
             results_table(data).to_html(index=False, border=0)]
    parts += [f"<img src='{f}' alt='{f}'>" for f in figs]
    for r in (r for r in data["results"] if r["finetune"] == fts[-1]):  # a series: the checkpoint that ships
        if r["recheck"]:
            parts += [f"<h2>Features to re-check: {esc(short(r['finetune']))} on {esc(short(r['dataset']))}</h2>",
                      "<p>The regular features whose activation similarity fell most, with the contexts they fire "
                      "on hardest in each model (the token in ⟦ ⟧).</p>",
                      recheck_table(r).to_html(index=False, border=0)]
    if data.get("adapt"):
        a = data["adapt"]
        parts += [f"<h2>Adapted SAE</h2><p>The SAE fine-tuned on <code>{esc(a['finetune'])}</code>'s activations "
                  f"over {a['training_tokens']:,} tokens of {esc(a['training_dataset'])} (lr {a['lr']:g}), saved in "
                  f"sae_lens format at <code>{esc(a['path'])}</code>; measured on the same tokens as the check.</p>",
                  adapt_table(a).to_html(float_format=lambda x: f"{x:.3f}", border=0)]
    prov = data.get("provenance", {})
    parts.append(f"<p class='small'>Commit {esc(prov.get('commit', ''))}, {esc(prov.get('device', ''))}, "
                 f"{data['seconds']:.0f} s.</p>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}.small{color:#666;font-size:12px}"
             ".verdict{font-size:18px}.transfers b{color:#1a7f37}.degraded b{color:#b35900}.broken b{color:#c00}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>check: {data['verdict']}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
